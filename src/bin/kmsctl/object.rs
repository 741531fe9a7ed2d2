//! `kmsctl object put|get|head|list|delete|rewrap`: the storage client from the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use kmsd_client::Client;
use kmsd_client::objects::{CustomerKey, Encryption, ObjectClient, ObjectInfo, open_store};
use serde_json::{Value, json};

use super::output::{Output, table};
use super::{Failure, parse_pair};

#[derive(Args)]
pub struct ObjectArgs {
    /// Where objects live: a directory, file:///dir, or s3://bucket[/prefix] (AWS_* variables configure S3).
    #[arg(
        long,
        global = true,
        env = "KMSD_STORE",
        default_value = "./kmsd-objects"
    )]
    store: String,
    #[command(subcommand)]
    command: ObjectCommand,
}

#[derive(Clone, Copy, ValueEnum)]
enum Sse {
    /// The store's own KMS key (alias/kmsd/storage), created on first use.
    S3,
    /// A KMS key you name with --kms-key.
    Kms,
    /// Your own key, given with every put and get; the store keeps only an HMAC of it.
    C,
}

#[derive(Args)]
struct CustomerKeyArgs {
    /// SSE-C: the 256-bit key, base64.
    #[arg(
        long,
        env = "KMSD_CUSTOMER_KEY",
        hide_env_values = true,
        requires = "customer_key_md5"
    )]
    customer_key: Option<String>,
    /// SSE-C: the key's MD5, base64 (`openssl dgst -md5 -binary KEYFILE | base64`).
    #[arg(long, env = "KMSD_CUSTOMER_KEY_MD5")]
    customer_key_md5: Option<String>,
}

impl CustomerKeyArgs {
    fn key(&self) -> Result<Option<CustomerKey>, Failure> {
        match (&self.customer_key, &self.customer_key_md5) {
            (Some(k), Some(m)) => CustomerKey::from_base64(k, m)
                .map(Some)
                .map_err(|e| Failure(e.to_string())),
            _ => Ok(None),
        }
    }
}

#[derive(Subcommand)]
enum ObjectCommand {
    /// Encrypt and store a file (or stdin).
    Put {
        bucket: String,
        key: String,
        #[arg(long = "in")]
        input: Option<PathBuf>,
        /// Server-side encryption mode [default: s3, or c when a customer key is given].
        #[arg(long, value_enum)]
        sse: Option<Sse>,
        /// SSE-KMS: the KMS key (id or alias).
        #[arg(long)]
        kms_key: Option<String>,
        #[command(flatten)]
        customer: CustomerKeyArgs,
        /// Your own encryption-context pair, KEY=VALUE; repeatable. Bucket and key are always added.
        #[arg(long = "context", value_parser = parse_pair)]
        context: Vec<(String, String)>,
    },
    /// Fetch and decrypt an object to a file (or stdout).
    Get {
        bucket: String,
        key: String,
        #[arg(long = "out")]
        output: Option<PathBuf>,
        #[command(flatten)]
        customer: CustomerKeyArgs,
    },
    /// How an object is stored: mode, KMS key and version, size.
    Head {
        bucket: String,
        key: String,
    },
    /// List a bucket's objects.
    List {
        bucket: String,
        #[arg(long, default_value = "")]
        prefix: String,
    },
    Delete {
        bucket: String,
        key: String,
    },
    /// Re-encrypt an object's data key under its key's newest version, or under another key, without rewriting it.
    Rewrap {
        bucket: String,
        key: String,
        /// The destination KMS key; the object's own key's primary version when absent.
        #[arg(long)]
        to: Option<String>,
    },
}

fn info_json(info: &ObjectInfo) -> Value {
    let r = &info.record;
    json!({
        "bucket": info.bucket,
        "key": info.key,
        "mode": r.mode.as_str(),
        "kms_key_id": r.kms_key_id,
        "key_version": r.key_version,
        "size": r.size,
        "created": r.created,
        "context": r.context,
    })
}

fn print_info(out: &Output, info: &ObjectInfo) {
    if out.json {
        println!("{}", info_json(info));
        return;
    }
    let r = &info.record;
    let mut lines = vec![
        ("Object", format!("{}/{}", info.bucket, info.key)),
        ("Encryption", r.mode.as_str().to_owned()),
    ];
    if let Some(k) = &r.kms_key_id {
        lines.push(("KMS key", k.clone()));
    }
    if let Some(v) = r.key_version {
        lines.push(("Key version", v.to_string()));
    }
    lines.push(("Size", format!("{} bytes", r.size)));
    lines.push(("Created", r.created.clone()));
    if !r.context.is_empty() {
        let pairs: Vec<String> = r.context.iter().map(|(k, v)| format!("{k}={v}")).collect();
        lines.push(("Context", pairs.join(", ")));
    }
    // Progress and metadata go to stderr for `get`, whose stdout may be the object itself.
    for (k, v) in lines {
        eprintln!("{:<13}{v}", format!("{k}:"));
    }
}

pub async fn run(kms: Client, out: &Output, args: ObjectArgs) -> Result<(), Failure> {
    let store = open_store(&args.store).map_err(|e| Failure(e.to_string()))?;
    let objects = ObjectClient::new(store, kms);
    let failed = |e: kmsd_client::objects::ObjectError| Failure(e.to_string());
    match args.command {
        ObjectCommand::Put {
            bucket,
            key,
            input,
            sse,
            kms_key,
            customer,
            context,
        } => {
            let customer = customer.key()?;
            let encryption = match (sse, kms_key, customer) {
                (Some(Sse::Kms) | None, Some(k), None) => Encryption::Kms(k),
                (Some(Sse::Kms), None, _) => {
                    return Err(Failure("--sse kms needs --kms-key".into()));
                }
                (Some(Sse::C) | None, None, Some(c)) => Encryption::Customer(c),
                (Some(Sse::C), _, None) => {
                    return Err(Failure(
                        "--sse c needs --customer-key and --customer-key-md5".into(),
                    ));
                }
                (Some(Sse::S3) | None, None, None) => Encryption::ServiceManaged,
                _ => {
                    return Err(Failure(
                        "choose one mode: --kms-key (SSE-KMS), --customer-key (SSE-C), or neither (SSE-S3)".into(),
                    ));
                }
            };
            let context: BTreeMap<String, String> = context.into_iter().collect();
            let info = match input {
                Some(path) if path.as_os_str() != "-" => {
                    let file = tokio::fs::File::open(&path)
                        .await
                        .map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))?;
                    objects.put(&bucket, &key, file, encryption, &context).await
                }
                _ => {
                    objects
                        .put(&bucket, &key, tokio::io::stdin(), encryption, &context)
                        .await
                }
            }
            .map_err(failed)?;
            print_info(out, &info);
            if out.json {
                return Ok(());
            }
        }
        ObjectCommand::Get {
            bucket,
            key,
            output,
            customer,
        } => {
            let customer = customer.key()?;
            let info = match output {
                Some(path) if path.as_os_str() != "-" => {
                    // Written beside the target and renamed only once every frame has verified.
                    let partial = path.with_extension("kmsd-partial");
                    let file = tokio::fs::File::create(&partial)
                        .await
                        .map_err(|e| Failure(format!("cannot write {}: {e}", partial.display())))?;
                    let got = objects.get(&bucket, &key, file, customer.as_ref()).await;
                    match got {
                        Ok(info) => {
                            std::fs::rename(&partial, &path)?;
                            info
                        }
                        Err(e) => {
                            let _ = std::fs::remove_file(&partial);
                            return Err(failed(e));
                        }
                    }
                }
                _ => objects
                    .get(&bucket, &key, tokio::io::stdout(), customer.as_ref())
                    .await
                    .map_err(failed)?,
            };
            if out.json {
                eprintln!("{}", info_json(&info));
            }
        }
        ObjectCommand::Head { bucket, key } => {
            let info = objects.head(&bucket, &key).await.map_err(failed)?;
            if out.json {
                println!("{}", info_json(&info));
            } else {
                print_info(out, &info);
            }
        }
        ObjectCommand::List { bucket, prefix } => {
            let listed = objects.list(&bucket, &prefix).await.map_err(failed)?;
            if out.json {
                let all: Vec<Value> = listed
                    .iter()
                    .map(|l| json!({"key": l.key, "stored_bytes": l.stored_bytes, "last_modified": l.last_modified}))
                    .collect();
                println!("{}", json!({ "objects": all }));
            } else {
                let rows: Vec<Vec<String>> = listed
                    .iter()
                    .map(|l| {
                        vec![
                            l.key.clone(),
                            l.stored_bytes.to_string(),
                            l.last_modified.clone(),
                        ]
                    })
                    .collect();
                table(&["KEY", "STORED BYTES", "LAST MODIFIED"], &rows);
            }
        }
        ObjectCommand::Delete { bucket, key } => {
            objects.delete(&bucket, &key).await.map_err(failed)?;
            out.done(&format!("deleted {bucket}/{key}"));
        }
        ObjectCommand::Rewrap { bucket, key, to } => {
            let info = objects
                .rewrap(&bucket, &key, to.as_deref())
                .await
                .map_err(failed)?;
            if out.json {
                println!("{}", info_json(&info));
            } else {
                print_info(out, &info);
            }
        }
    }
    Ok(())
}
