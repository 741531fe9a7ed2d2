//! `kmsctl whoami | principals | tokens | access-keys | keys policy`: identity and access control.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use kmsd_client::Client;
use kmsd_client::pb::*;
use serde_json::{Value, json};

use super::Failure;
use super::output::{Output, table, time};

#[derive(Subcommand)]
pub enum PrincipalsCommand {
    /// Create a principal (then give it a token with `kmsctl tokens create`, or map a certificate to it).
    Create {
        /// 1-64 characters of A-Z a-z 0-9 . _ @ -
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// An administrator: manages principals, tokens, keys and policies, reads the audit log, uses every key.
        #[arg(long)]
        admin: bool,
        /// May create keys.
        #[arg(long)]
        create_keys: bool,
        /// A client-certificate identity (URI SAN or subject CN) that authenticates as this principal; repeatable.
        #[arg(long = "certificate-subject")]
        certificate_subjects: Vec<String>,
    },
    List,
    /// Stop every token and certificate of a principal from authenticating (permanent).
    Disable {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Issue a bearer token for a principal; it is printed once and kmsd keeps only its hash.
    Create {
        principal: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime such as 3600s, 90m, 12h or 30d; no expiry when absent.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<u64>,
    },
    /// List tokens (ids and dates, never the tokens).
    List {
        #[arg(long)]
        principal: Option<String>,
    },
    Revoke {
        token_id: String,
    },
}

#[derive(Subcommand)]
pub enum AccessKeysCommand {
    /// Issue an access key for a principal (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the AWS endpoint); the
    /// secret is printed once.
    Create {
        principal: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List access keys (ids and dates, never the secrets).
    List {
        #[arg(long)]
        principal: Option<String>,
    },
    Revoke {
        access_key_id: String,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Print a key's policy as JSON.
    Get { key: String },
    /// Replace a key's policy with the JSON in FILE ("-" for stdin).
    Put {
        key: String,
        #[arg(long)]
        file: PathBuf,
    },
}

fn parse_ttl(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a lifetime such as 90m, 12h or 30d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?} needs a unit: s, m, h or d")),
    };
    match n.checked_mul(scale) {
        Some(0) | None => Err(format!("{s:?} must be more than zero")),
        Some(secs) => Ok(secs),
    }
}

/// Reads a policy file ("-" for stdin): the JSON `kmsctl keys policy get` prints.
pub fn read_policy(path: &PathBuf) -> Result<KeyPolicy, Failure> {
    let bytes = super::read_input(Some(path))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Failure(format!("{}: not UTF-8 text", path.display())))?;
    let policy = kmsd_proto::key_policy::PolicyDocument::from_json(text).map_err(|e| {
        Failure(format!(
            "{}: not a key policy ({e}); expected {{\"statements\": [{{\"principals\": [...], \"operations\": [...], \
             ...}}]}}",
            path.display()
        ))
    })?;
    Ok(KeyPolicy::from(&policy))
}

/// The policy as a file holds it, ready for `keys policy put --file`.
pub fn print_policy(key_id: &str, policy: KeyPolicy) {
    eprintln!("# policy of key {key_id}");
    println!(
        "{}",
        kmsd_proto::key_policy::PolicyDocument::from(policy).to_json_pretty()
    );
}

fn principal_json(p: &Principal) -> Value {
    json!({
        "name": p.name,
        "description": p.description,
        "admin": p.admin,
        "create_keys": p.create_keys,
        "certificate_subjects": p.certificate_subjects,
        "creation_time": time(&p.creation_time),
        "disabled_time": time(&p.disabled_time),
    })
}

fn token_json(t: &Token) -> Value {
    json!({
        "token_id": t.token_id,
        "principal": t.principal,
        "description": t.description,
        "creation_time": time(&t.creation_time),
        "expiration_time": time(&t.expiration_time),
        "revocation_time": time(&t.revocation_time),
    })
}

fn access_key_json(k: &AccessKey) -> Value {
    json!({
        "access_key_id": k.access_key_id,
        "principal": k.principal,
        "description": k.description,
        "creation_time": time(&k.creation_time),
        "revocation_time": time(&k.revocation_time),
    })
}

fn print_access_keys(out: &Output, list: &[AccessKey]) {
    if out.json {
        let all: Vec<Value> = list.iter().map(access_key_json).collect();
        println!("{}", json!({ "access_keys": all }));
        return;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|k| {
            vec![
                k.access_key_id.clone(),
                k.principal.clone(),
                time(&k.creation_time),
                time(&k.revocation_time),
                k.description.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ACCESS KEY ID",
            "PRINCIPAL",
            "CREATED",
            "REVOKED",
            "DESCRIPTION",
        ],
        &rows,
    );
}

fn print_principals(out: &Output, list: &[Principal]) {
    if out.json {
        let all: Vec<Value> = list.iter().map(principal_json).collect();
        println!("{}", json!({ "principals": all }));
        return;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                if p.admin {
                    "admin"
                } else if p.create_keys {
                    "create-keys"
                } else {
                    ""
                }
                .to_owned(),
                if p.disabled_time.is_some() {
                    format!("disabled {}", time(&p.disabled_time))
                } else {
                    "enabled".to_owned()
                },
                p.certificate_subjects.join(" "),
                p.description.clone(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "ROLE",
            "STATE",
            "CERTIFICATE SUBJECTS",
            "DESCRIPTION",
        ],
        &rows,
    );
}

fn print_tokens(out: &Output, list: &[Token]) {
    if out.json {
        let all: Vec<Value> = list.iter().map(token_json).collect();
        println!("{}", json!({ "tokens": all }));
        return;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            vec![
                t.token_id.clone(),
                t.principal.clone(),
                time(&t.creation_time),
                time(&t.expiration_time),
                time(&t.revocation_time),
                t.description.clone(),
            ]
        })
        .collect();
    table(
        &[
            "TOKEN ID",
            "PRINCIPAL",
            "CREATED",
            "EXPIRES",
            "REVOKED",
            "DESCRIPTION",
        ],
        &rows,
    );
}

pub async fn whoami(kms: &Client, out: &Output) -> Result<(), Failure> {
    let r = kms.who_am_i().await?;
    if out.json {
        println!(
            "{}",
            json!({"principal": r.principal, "admin": r.admin, "create_keys": r.create_keys,
                   "method": r.method, "credential": r.credential})
        );
    } else {
        let role = if r.admin { " (administrator)" } else { "" };
        println!("{}{role}, by {} {}", r.principal, r.method, r.credential);
    }
    Ok(())
}

pub async fn principals(kms: &Client, out: &Output, cmd: PrincipalsCommand) -> Result<(), Failure> {
    let list = match cmd {
        PrincipalsCommand::Create {
            name,
            description,
            admin,
            create_keys,
            certificate_subjects,
        } => vec![
            kms.create_principal(CreatePrincipalRequest {
                name,
                description,
                admin,
                create_keys,
                certificate_subjects,
            })
            .await?,
        ],
        PrincipalsCommand::List => kms.list_principals().await?,
        PrincipalsCommand::Disable { name } => vec![kms.disable_principal(&name).await?],
    };
    print_principals(out, &list);
    Ok(())
}

pub async fn tokens(kms: &Client, out: &Output, cmd: TokensCommand) -> Result<(), Failure> {
    match cmd {
        TokensCommand::Create {
            principal,
            description,
            ttl,
        } => {
            let ttl = ttl.filter(|&seconds| seconds > 0).map(Duration::from_secs);
            let (token, info) = kms.create_token(&principal, &description, ttl).await?;
            if out.json {
                let mut doc = token_json(&info);
                doc["token"] = Value::String(token.to_string());
                println!("{doc}");
            } else {
                // The token alone on stdout, for `$(kmsctl tokens create ...)`; the rest on stderr.
                eprintln!(
                    "# token {} for principal {}: shown once, kmsd keeps only its hash",
                    info.token_id, info.principal
                );
                println!("{}", token.as_str());
            }
        }
        TokensCommand::List { principal } => {
            let list = kms.list_tokens(principal.as_deref()).await?;
            print_tokens(out, &list);
        }
        TokensCommand::Revoke { token_id } => {
            let info = kms.revoke_token(&token_id).await?;
            print_tokens(out, &[info]);
        }
    }
    Ok(())
}

pub async fn access_keys(
    kms: &Client,
    out: &Output,
    cmd: AccessKeysCommand,
) -> Result<(), Failure> {
    match cmd {
        AccessKeysCommand::Create {
            principal,
            description,
        } => {
            let (secret, info) = kms.create_access_key(&principal, &description).await?;
            if out.json {
                let mut doc = access_key_json(&info);
                doc["secret_access_key"] = Value::String(secret.to_string());
                println!("{doc}");
            } else {
                // Shell assignments on stdout, for `eval "$(kmsctl access-keys create svc)"`; the rest on stderr.
                eprintln!(
                    "# access key {} for principal {}: the secret is shown once",
                    info.access_key_id, info.principal
                );
                println!("export AWS_ACCESS_KEY_ID={}", info.access_key_id);
                println!("export AWS_SECRET_ACCESS_KEY={}", secret.as_str());
            }
        }
        AccessKeysCommand::List { principal } => {
            let list = kms.list_access_keys(principal.as_deref()).await?;
            print_access_keys(out, &list);
        }
        AccessKeysCommand::Revoke { access_key_id } => {
            let info = kms.revoke_access_key(&access_key_id).await?;
            print_access_keys(out, &[info]);
        }
    }
    Ok(())
}
