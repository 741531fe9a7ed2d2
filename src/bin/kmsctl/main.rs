//! kmsctl: the command-line client for kmsd.
//!
//! Plaintext is raw bytes (from a file or stdin, to a file or stdout); ciphertext blobs are base64 text, so they
//! pass through shells, environment variables and JSON unharmed. `--json` prints one JSON object for scripts.

mod access;
mod audit;
mod bench;
mod object;
mod output;
mod signing;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kmsd_client::pb::*;
use kmsd_client::{Client, ClientBuilder};
use zeroize::Zeroizing;

use output::Output;

#[derive(Parser)]
#[command(name = "kmsctl", version, about = "Command-line client for kmsd")]
struct Cli {
    /// The daemon's gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "KMSD_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,
    /// Bearer token (an administrator's is in <data-dir>/admin.token).
    #[arg(long, global = true, env = "KMSD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the bearer token from this file instead (keeps it out of the environment and `ps`).
    #[arg(long, global = true, env = "KMSD_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the daemon's certificate; needed for https endpoints.
    #[arg(long, global = true, env = "KMSD_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with --client-key.
    #[arg(long, global = true, env = "KMSD_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(long, global = true, env = "KMSD_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, inspect and manage keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage aliases (alias/<name>).
    #[command(subcommand)]
    Aliases(AliasesCommand),
    /// Encrypt up to 4096 bytes; prints the ciphertext blob as base64.
    Encrypt(EncryptArgs),
    /// Decrypt a base64 ciphertext blob; writes the plaintext bytes.
    Decrypt(DecryptArgs),
    /// Re-encrypt a blob under another key (or the primary version of its own) without exposing the plaintext.
    Reencrypt(ReencryptArgs),
    /// Generate a data key: its plaintext and its blob, both base64.
    Datakey(DatakeyArgs),
    /// Sign a message (or its digest) with a SIGN_VERIFY key; prints the signature as base64.
    Sign(signing::SignArgs),
    /// Verify a signature with a SIGN_VERIFY key; exits 1 if it is not valid.
    Verify(signing::VerifyArgs),
    /// An asymmetric key's public key, as PEM (SubjectPublicKeyInfo), for openssl and others.
    PublicKey(signing::PublicKeyArgs),
    /// A key pair for use elsewhere: its public and private keys as PEM, and the private key sealed under a
    /// symmetric key (base64, last line; `kmsctl decrypt` opens it).
    DatakeyPair(signing::DataKeyPairArgs),
    /// The HMAC of a message with a GENERATE_VERIFY_MAC key, base64.
    Mac(signing::MacArgs),
    /// Verify an HMAC; exits 1 if it is not valid.
    VerifyMac(signing::VerifyMacArgs),
    /// Load-test the daemon: calls/s and latency percentiles for one operation.
    Bench(bench::BenchArgs),
    /// Query, export and verify the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Store objects encrypted (SSE-KMS, SSE-S3, SSE-C) in a directory or an S3 bucket.
    Object(object::ObjectArgs),
    /// Who the daemon knows you as.
    Whoami,
    /// The standard gRPC health check (needs no credentials); exits 1 unless SERVING. For probes and scripts.
    Health {
        /// A service name such as kms.v1.KeyManagementService; the whole server when absent.
        #[arg(long, default_value = "")]
        service: String,
        /// Also show the audit log's extent and the disk under it, with the floors (an administrator's
        /// DescribeLog, so it needs a token and is audited; leave it off in probes).
        #[arg(long)]
        details: bool,
    },
    /// Manage principals (administrators only).
    #[command(subcommand)]
    Principals(access::PrincipalsCommand),
    /// Issue, list and revoke bearer tokens (administrators only).
    #[command(subcommand)]
    Tokens(access::TokensCommand),
    /// Issue, list and revoke access keys for AWS SDKs and the AWS CLI (administrators only).
    #[command(subcommand)]
    AccessKeys(access::AccessKeysCommand),
    /// Random bytes from the daemon's CSPRNG, base64.
    Random {
        /// How many bytes (1-1024).
        #[arg(long, default_value_t = 32)]
        bytes: u32,
    },
    /// Move a stopped daemon's SQLite database into an empty PostgreSQL database: keys, principals, tokens,
    /// policies and the audit log with its chain, checkpoints and prune marks, then verify the copy against the
    /// source. The SQLite file is left as it was; start kmsd with --database-url afterwards.
    MigrateToPostgres {
        /// The data directory holding kmsd.db (and, unless --root-key-file says otherwise, root.key).
        #[arg(long, env = "KMSD_DATA_DIR", default_value = "./kmsd-data")]
        data_dir: PathBuf,
        /// The root key file, needed to check the copy (every key version must unwrap).
        #[arg(long, env = "KMSD_ROOT_KEY_FILE")]
        root_key_file: Option<PathBuf>,
        /// The PostgreSQL database to move into (postgres://...); it must hold no kmsd data yet.
        #[arg(long, env = "KMSD_DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key.
    Create {
        #[arg(long, default_value = "")]
        description: String,
        /// A tag, as KEY=VALUE; repeatable.
        #[arg(long = "tag", value_parser = parse_pair)]
        tags: Vec<(String, String)>,
        /// An alias to create with the key (alias/<name>).
        #[arg(long)]
        alias: Option<String>,
        /// Rotate automatically every this many days (1-2560).
        #[arg(long)]
        rotation_days: Option<u32>,
        /// The key's policy, a JSON file (see `kmsctl keys policy`); administrators only may use it otherwise.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Grant yourself these operations on the new key (comma-separated, as in a policy).
        #[arg(long, value_delimiter = ',')]
        grant_creator: Vec<String>,
        /// What the key is (AWS's names): SYMMETRIC_DEFAULT (the default), HMAC_224|256|384|512,
        /// RSA_2048|3072|4096, ECC_NIST_P256|P384|P521, ECC_SECG_P256K1, ECC_NIST_EDWARDS25519, ML_DSA_44|65|87.
        #[arg(long, default_value = "")]
        spec: String,
        /// What it is for: ENCRYPT_DECRYPT, SIGN_VERIFY or GENERATE_VERIFY_MAC; by default the spec's only usage
        /// (ENCRYPT_DECRYPT for RSA).
        #[arg(long, default_value = "")]
        usage: String,
        /// EXTERNAL: you import the material (`keys import-parameters`, `keys import`); KMSD (the default): kmsd
        /// makes it.
        #[arg(long, default_value = "")]
        origin: String,
    },
    /// For a key of origin EXTERNAL: write the wrapping public key (wrapping-key.pem) and the import token
    /// (import-token.bin) to a directory. Both are good for 24 hours.
    ImportParameters {
        key: String,
        /// RSAES_OAEP_SHA_256 (the default), RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256 (for private keys) or
        /// RSA_AES_KEY_WRAP_SHA_1.
        #[arg(long, default_value = "")]
        algorithm: String,
        /// RSA_2048 (the default), RSA_3072 or RSA_4096.
        #[arg(long, default_value = "")]
        wrapping_spec: String,
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Import wrapped key material (made with the files `keys import-parameters` wrote).
    Import {
        key: String,
        /// The import token file (import-token.bin).
        #[arg(long)]
        import_token: PathBuf,
        /// The wrapped material file.
        #[arg(long)]
        material: PathBuf,
        /// When kmsd deletes the material (RFC 3339); it does not expire otherwise.
        #[arg(long)]
        valid_to: Option<String>,
    },
    /// Delete an EXTERNAL key's imported material now; the key is PENDING_IMPORT until it is imported again.
    DeleteImported {
        key: String,
    },
    /// Read or replace a key's policy: who may use it besides administrators.
    #[command(subcommand)]
    Policy(access::PolicyCommand),
    /// List keys (every page).
    List,
    /// Show a key's metadata.
    Describe {
        key: String,
    },
    Enable {
        key: String,
    },
    Disable {
        key: String,
    },
    /// Make a new version primary; older versions keep decrypting.
    Rotate {
        key: String,
    },
    /// List a key's versions.
    Versions {
        key: String,
    },
    /// Schedule the key's destruction after a waiting period.
    ScheduleDeletion {
        key: String,
        /// Waiting period in days (7-30).
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Cancel a scheduled deletion; the key returns DISABLED.
    CancelDeletion {
        key: String,
    },
    /// Replace a key's description.
    UpdateDescription {
        key: String,
        description: String,
    },
    /// Add tags, or give existing ones new values.
    Tag {
        key: String,
        /// KEY=VALUE pairs.
        #[arg(required = true, value_parser = parse_pair)]
        tags: Vec<(String, String)>,
    },
    /// Remove tags by key.
    Untag {
        key: String,
        #[arg(required = true)]
        tag_keys: Vec<String>,
    },
    /// Print a key's tags.
    Tags {
        key: String,
    },
    /// Turn automatic rotation on or off, or show its schedule.
    #[command(subcommand)]
    Rotation(RotationCommand),
}

#[derive(Subcommand)]
enum RotationCommand {
    /// Rotate automatically every DAYS days (1-2560; 365 when absent); with rotation on, changes the period.
    Enable {
        key: String,
        #[arg(long)]
        days: Option<u32>,
    },
    Disable {
        key: String,
    },
    /// Whether the key rotates automatically, every how many days, and when next.
    Status {
        key: String,
    },
}

#[derive(Subcommand)]
enum AliasesCommand {
    /// Point a new alias at a key.
    Create {
        alias: String,
        key: String,
    },
    Delete {
        alias: String,
    },
    /// Point an existing alias at another key.
    Update {
        alias: String,
        key: String,
    },
    /// List aliases (every page), optionally only one key's.
    List {
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Args)]
struct ContextArgs {
    /// Encryption context pair, as KEY=VALUE; repeatable. Decrypt needs exactly the pairs used to encrypt.
    #[arg(long = "context", value_parser = parse_pair)]
    context: Vec<(String, String)>,
}

impl ContextArgs {
    fn map(&self) -> HashMap<String, String> {
        self.context.iter().cloned().collect()
    }
}

#[derive(Args)]
struct EncryptArgs {
    #[arg(long)]
    key: String,
    #[command(flatten)]
    context: ContextArgs,
    /// RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256 with an RSA key (which takes no context); SYMMETRIC_DEFAULT otherwise.
    #[arg(long, default_value = "")]
    algorithm: String,
    /// Plaintext file; stdin when absent or "-".
    #[arg(long = "in")]
    input: Option<PathBuf>,
    /// Where to write the base64 blob; stdout when absent.
    #[arg(long = "out")]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct DecryptArgs {
    /// Refuse the blob unless it belongs to this key (required with --algorithm).
    #[arg(long)]
    key: Option<String>,
    #[command(flatten)]
    context: ContextArgs,
    /// RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256 for an RSA key's ciphertext; SYMMETRIC_DEFAULT otherwise.
    #[arg(long, default_value = "")]
    algorithm: String,
    /// File holding the base64 blob; stdin when absent or "-".
    #[arg(long = "in")]
    input: Option<PathBuf>,
    /// Where to write the plaintext; stdout when absent.
    #[arg(long = "out")]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct ReencryptArgs {
    /// Destination key; the source key's primary version when absent.
    #[arg(long)]
    to: Option<String>,
    /// Refuse the blob unless it belongs to this key.
    #[arg(long)]
    from: Option<String>,
    /// Source encryption context pair, KEY=VALUE; repeatable.
    #[arg(long = "source-context", value_parser = parse_pair)]
    source_context: Vec<(String, String)>,
    /// Destination encryption context pair, KEY=VALUE; repeatable.
    #[arg(long = "context", value_parser = parse_pair)]
    context: Vec<(String, String)>,
    #[arg(long = "in")]
    input: Option<PathBuf>,
    #[arg(long = "out")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Spec {
    #[value(name = "AES_256")]
    Aes256,
    #[value(name = "AES_128")]
    Aes128,
}

#[derive(Args)]
struct DatakeyArgs {
    #[arg(long)]
    key: String,
    #[arg(long, value_enum, conflicts_with = "bytes")]
    spec: Option<Spec>,
    /// Data key length in bytes (1-1024), instead of --spec.
    #[arg(long)]
    bytes: Option<u32>,
    /// Only the encrypted data key (GenerateDataKeyWithoutPlaintext).
    #[arg(long)]
    no_plaintext: bool,
    #[command(flatten)]
    context: ContextArgs,
}

pub(crate) fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// A failure to report: what went wrong, in words a person can act on.
pub(crate) struct Failure(pub(crate) String);

/// What the daemon said, as a person acts on it: the gRPC code, the finer kind of failure when it differs, the
/// message, and the request id the call's audit record carries.
impl From<kmsd_client::Error> for Failure {
    fn from(e: kmsd_client::Error) -> Self {
        let Some(details) = e.details() else {
            return Failure(e.to_string());
        };
        let code = format!("{:?}", e.code());
        let mut text = match details.kind.map(|k| k.as_str()) {
            Some(kind) if kind != code => format!("{code} ({kind}): {}", details.message),
            _ => format!("{code}: {}", details.message),
        };
        if let Some(id) = &details.request_id {
            text.push_str(&format!(" [request id {id}]"));
        }
        Failure(text)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure(e.to_string())
    }
}

impl Cli {
    /// The connection settings every command shares: endpoint, TLS files and token.
    fn builder(&self) -> Result<ClientBuilder, Failure> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))
        };
        let mut builder = ClientBuilder::new(self.endpoint.clone());
        if let Some(token) = &self.token {
            builder = builder.token(token.trim());
        }
        if let Some(path) = &self.token_file {
            let token = Zeroizing::new(read(path)?);
            let token = std::str::from_utf8(&token)
                .map_err(|_| Failure(format!("{} does not hold a token", path.display())))?;
            builder = builder.token(token.trim());
        }
        if let Some(ca) = &self.ca_cert {
            builder = builder.ca_certificate(read(ca)?);
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            builder = builder.identity(read(cert)?, read(key)?);
        }
        Ok(builder)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread serves a single command; a load generator needs a worker per core.
    let mut builder = if matches!(cli.command, Command::Bench(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kmsctl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("kmsctl: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let out = Output { json: cli.json };
    let builder = cli.builder()?;
    let command = match cli.command {
        Command::Bench(args) => return bench::run(&builder, &cli.endpoint, cli.json, args).await,
        // Offline verification reads a file; there is no daemon to reach.
        Command::Audit(audit::AuditCommand::Verify(args))
            if args.db.is_some() || args.archive.is_some() =>
        {
            return audit::verify_offline(&out, args);
        }
        // Moving a database reads files and a database; no daemon may run.
        Command::MigrateToPostgres {
            data_dir,
            root_key_file,
            database_url,
        } => {
            return migrate_to_postgres(&out, &data_dir, root_key_file.as_deref(), &database_url)
                .await;
        }
        command => command,
    };
    let kms = builder.connect().await.map_err(|e| {
        Failure(format!(
            "cannot connect to {} ({e}); is kmsd running? (set --endpoint or KMSD_ENDPOINT)",
            cli.endpoint
        ))
    })?;
    match command {
        Command::Bench(_) => unreachable!("handled above"),
        Command::Audit(cmd) => audit::run(&kms, &out, cmd).await,
        Command::Object(args) => object::run(kms, &out, args).await,
        Command::Whoami => access::whoami(&kms, &out).await,
        Command::MigrateToPostgres { .. } => unreachable!("handled above"),
        Command::Health { service, details } => {
            let status = kms.health(&service).await?;
            println!("{}", status.as_str());
            if details {
                audit::run(&kms, &out, audit::AuditCommand::Status).await?;
            }
            if status == kmsd_client::Serving::Serving {
                Ok(())
            } else {
                Err(Failure(format!("the daemon reports {}", status.as_str())))
            }
        }
        Command::Principals(cmd) => access::principals(&kms, &out, cmd).await,
        Command::Tokens(cmd) => access::tokens(&kms, &out, cmd).await,
        Command::AccessKeys(cmd) => access::access_keys(&kms, &out, cmd).await,
        Command::Keys(cmd) => keys(&kms, &out, cmd).await,
        Command::Aliases(cmd) => aliases(&kms, &out, cmd).await,
        Command::Encrypt(args) => {
            let plaintext = read_input(args.input.as_ref())?;
            let context = args.context.map();
            let r = if args.algorithm.is_empty() || args.algorithm == "SYMMETRIC_DEFAULT" {
                kms.encrypt(&args.key, &plaintext, &pairs(&context)).await?
            } else if !context.is_empty() {
                return Err(Failure(
                    "an encryption context applies to SYMMETRIC_DEFAULT keys only".into(),
                ));
            } else {
                kms.encrypt_with(&args.key, &plaintext, &args.algorithm)
                    .await?
            };
            out.blob(
                &r.key_id,
                r.key_version,
                &r.ciphertext_blob,
                args.output.as_ref(),
            )
        }
        Command::Decrypt(args) => {
            let blob = read_blob(args.input.as_ref())?;
            let context = args.context.map();
            let r = if args.algorithm.is_empty() || args.algorithm == "SYMMETRIC_DEFAULT" {
                kms.decrypt(&blob, &pairs(&context), args.key.as_deref())
                    .await?
            } else {
                let key = args.key.as_deref().ok_or_else(|| {
                    Failure(
                        "--algorithm needs --key: an RSA ciphertext does not name its key".into(),
                    )
                })?;
                kms.decrypt_with(key, &blob, &args.algorithm).await?
            };
            out.plaintext(&r.key_id, r.key_version, &r.plaintext, args.output.as_ref())
        }
        Command::Reencrypt(args) => {
            let blob = read_blob(args.input.as_ref())?;
            let r = kms
                .re_encrypt(ReEncryptRequest {
                    ciphertext_blob: blob,
                    source_key_id: args.from.unwrap_or_default(),
                    source_encryption_context: args.source_context.into_iter().collect(),
                    destination_key_id: args.to.unwrap_or_default(),
                    destination_encryption_context: args.context.into_iter().collect(),
                })
                .await?
                .encrypted;
            out.blob(
                &r.key_id,
                r.key_version,
                &r.ciphertext_blob,
                args.output.as_ref(),
            )
        }
        Command::Datakey(args) => {
            let key_spec = match args.spec {
                None => DataKeySpec::Unspecified,
                Some(Spec::Aes256) => DataKeySpec::Aes256,
                Some(Spec::Aes128) => DataKeySpec::Aes128,
            } as i32;
            if args.no_plaintext {
                let r = kms
                    .generate_data_key_without_plaintext_with(
                        GenerateDataKeyWithoutPlaintextRequest {
                            key_id: args.key,
                            key_spec,
                            number_of_bytes: args.bytes,
                            encryption_context: args.context.map(),
                        },
                    )
                    .await?;
                out.data_key(&r.key_id, r.key_version, None, &r.ciphertext_blob);
            } else {
                let r = kms
                    .generate_data_key_with(GenerateDataKeyRequest {
                        key_id: args.key,
                        key_spec,
                        number_of_bytes: args.bytes,
                        encryption_context: args.context.map(),
                    })
                    .await?;
                out.data_key(
                    &r.key_id,
                    r.key_version,
                    Some(&r.plaintext),
                    &r.ciphertext_blob,
                );
            }
            Ok(())
        }
        Command::Sign(args) => signing::sign(&kms, &out, args).await,
        Command::Verify(args) => signing::verify(&kms, &out, args).await,
        Command::PublicKey(args) => signing::public_key(&kms, &out, args).await,
        Command::Mac(args) => signing::mac(&kms, &out, args).await,
        Command::DatakeyPair(args) => signing::data_key_pair(&kms, &out, args).await,
        Command::VerifyMac(args) => signing::verify_mac(&kms, &out, args).await,
        Command::Random { bytes } => {
            let plaintext = kms.generate_random(bytes).await?;
            out.random(&plaintext);
            Ok(())
        }
    }
}

/// A context map as the client's `(key, value)` pairs.
fn pairs(map: &HashMap<String, String>) -> Vec<(&str, &str)> {
    map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn keys(kms: &Client, out: &Output, cmd: KeysCommand) -> Result<(), Failure> {
    let meta = match cmd {
        KeysCommand::Create {
            description,
            tags,
            alias,
            rotation_days,
            policy,
            grant_creator,
            spec,
            usage,
            origin,
        } => {
            let policy = policy.as_ref().map(access::read_policy).transpose()?;
            kms.create_key(CreateKeyRequest {
                description,
                tags: tags.into_iter().collect(),
                alias: alias.unwrap_or_default(),
                rotation_period_days: rotation_days.unwrap_or(0),
                policy,
                grant_creator,
                key_spec: spec,
                key_usage: usage,
                origin,
            })
            .await?
        }
        KeysCommand::List => {
            out.key_list(&kms.list_all_keys().await?);
            return Ok(());
        }
        KeysCommand::Describe { key } => kms.describe_key(&key).await?,
        KeysCommand::ImportParameters {
            key,
            algorithm,
            wrapping_spec,
            out: dir,
        } => {
            let p = kms
                .get_parameters_for_import(&key, &algorithm, &wrapping_spec)
                .await?;
            let (pem_path, token_path) =
                (dir.join("wrapping-key.pem"), dir.join("import-token.bin"));
            std::fs::write(&pem_path, signing::pem("PUBLIC KEY", &p.public_key))?;
            std::fs::write(&token_path, &p.import_token)?;
            let valid_to = output::time(&p.parameters_valid_to);
            if out.json {
                output::print_json(&serde_json::json!({
                    "key_id": p.key_id,
                    "wrapping_key": pem_path,
                    "import_token": token_path,
                    "parameters_valid_to": valid_to,
                }));
            } else {
                println!(
                    "wrote {} and {} (valid until {valid_to})",
                    pem_path.display(),
                    token_path.display()
                );
            }
            return Ok(());
        }
        KeysCommand::Import {
            key,
            import_token,
            material,
            valid_to,
        } => {
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| Failure(format!("cannot read {}: {e}", p.display())))
            };
            let valid_to = valid_to
                .map(|text| {
                    kmsd::clock::UnixMillis::parse_rfc3339(&text)
                        .and_then(|t| std::time::SystemTime::try_from(t).ok())
                        .ok_or_else(|| {
                            Failure(format!("--valid-to {text:?} is not an RFC 3339 time"))
                        })
                })
                .transpose()?;
            kms.import_key_material(&key, &read(&import_token)?, &read(&material)?, valid_to)
                .await?;
            kms.describe_key(&key).await?
        }
        KeysCommand::DeleteImported { key } => {
            kms.delete_imported_key_material(&key).await?;
            kms.describe_key(&key).await?
        }
        KeysCommand::Enable { key } => kms.enable_key(&key).await?,
        KeysCommand::Disable { key } => kms.disable_key(&key).await?,
        KeysCommand::Rotate { key } => kms.rotate_key(&key).await?,
        KeysCommand::Versions { key } => {
            out.versions(&kms.list_key_versions(&key).await?);
            return Ok(());
        }
        KeysCommand::ScheduleDeletion { key, days } => {
            kms.schedule_key_deletion(&key, days).await?
        }
        KeysCommand::Policy(access::PolicyCommand::Get { key }) => {
            let of = kms.get_key_policy(&key).await?;
            access::print_policy(&of.key_id, of.policy);
            return Ok(());
        }
        KeysCommand::Policy(access::PolicyCommand::Put { key, file }) => {
            let of = kms
                .put_key_policy(&key, access::read_policy(&file)?)
                .await?;
            access::print_policy(&of.key_id, of.policy);
            return Ok(());
        }
        KeysCommand::CancelDeletion { key } => kms.cancel_key_deletion(&key).await?,
        KeysCommand::UpdateDescription { key, description } => {
            kms.update_key_description(&key, &description).await?
        }
        KeysCommand::Tag { key, tags } => kms.tag_key(&key, tags).await?,
        KeysCommand::Untag { key, tag_keys } => kms.untag_key(&key, tag_keys).await?,
        KeysCommand::Tags { key } => {
            out.tags(&kms.list_key_tags(&key).await?);
            return Ok(());
        }
        KeysCommand::Rotation(RotationCommand::Enable { key, days }) => {
            kms.enable_key_rotation(&key, days.unwrap_or(0)).await?
        }
        KeysCommand::Rotation(RotationCommand::Disable { key }) => {
            kms.disable_key_rotation(&key).await?
        }
        KeysCommand::Rotation(RotationCommand::Status { key }) => {
            out.rotation_status(&kms.get_key_rotation_status(&key).await?);
            return Ok(());
        }
    };
    out.key(&meta);
    Ok(())
}

async fn aliases(kms: &Client, out: &Output, cmd: AliasesCommand) -> Result<(), Failure> {
    match cmd {
        AliasesCommand::Create { alias, key } => {
            out.aliases(&[kms.create_alias(&alias, &key).await?]);
        }
        AliasesCommand::Update { alias, key } => {
            out.aliases(&[kms.update_alias(&alias, &key).await?]);
        }
        AliasesCommand::Delete { alias } => {
            kms.delete_alias(&alias).await?;
            out.done(&format!("deleted {alias}"));
        }
        AliasesCommand::List { key } => {
            out.aliases(&kms.list_all_aliases(key.as_deref()).await?);
        }
    }
    Ok(())
}

pub(crate) fn read_input(path: Option<&PathBuf>) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut buf = Zeroizing::new(Vec::new());
    match path {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::File::open(p)
                .and_then(|mut f| f.read_to_end(&mut buf))
                .map_err(|e| Failure(format!("cannot read {}: {e}", p.display())))?;
        }
        _ => {
            std::io::stdin().read_to_end(&mut buf)?;
        }
    }
    Ok(buf)
}

fn read_blob(path: Option<&PathBuf>) -> Result<Vec<u8>, Failure> {
    let text = read_input(path)?;
    let trimmed: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    BASE64.decode(&trimmed).map_err(|_| {
        Failure("the ciphertext blob must be base64 text (as `kmsctl encrypt` prints it)".into())
    })
}

pub(crate) fn write_output(path: Option<&PathBuf>, bytes: &[u8]) -> Result<(), Failure> {
    match path {
        Some(p) if p.as_os_str() != "-" => std::fs::write(p, bytes)
            .map_err(|e| Failure(format!("cannot write {}: {e}", p.display()))),
        _ => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(bytes)?;
            stdout.flush()?;
            Ok(())
        }
    }
}

async fn migrate_to_postgres(
    out: &Output,
    data_dir: &std::path::Path,
    root_key_file: Option<&std::path::Path>,
    url: &str,
) -> Result<(), Failure> {
    let url = kmsd::storage::DatabaseUrl::parse(url)
        .map_err(|e| Failure(format!("--database-url: {e}")))?;
    let moved = kmsd::server::move_to_postgres(data_dir, root_key_file, &url)
        .await
        .map_err(Failure)?;
    let i = &moved.imported;
    if out.json {
        output::print_json(&serde_json::json!({
            "database": url.to_string(),
            "keys": i.keys,
            "principals": i.principals,
            "tokens": i.tokens,
            "audit_records": i.records,
            "checkpoints": i.checkpoints,
            "prune_marks": i.prunes,
            "verified": true,
            "head_seq": moved.head_seq,
            "head_hash": moved.head_hash,
        }));
    } else {
        println!(
            "moved {} keys, {} principals, {} tokens and {} audit records ({} checkpoints, {} prune marks) to {url}",
            i.keys, i.principals, i.tokens, i.records, i.checkpoints, i.prunes
        );
        println!(
            "verified: the copy's audit chain ({} records, head {} {}) and every key version check out; start kmsd \
             with --database-url (the SQLite file is unchanged; keep it until the new setup has served)",
            moved.records_verified, moved.head_seq, moved.head_hash
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks over every command and argument: a subcommand argument that shadows a global
    /// one (`--token`, say) panics at parse time, which only this finds before a user does.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
