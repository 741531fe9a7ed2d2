//! `kmsctl sign`, `verify`, `public-key`, `mac` and `verify-mac`: key pairs and HMAC keys from the command line.
//!
//! Messages come from a file or stdin, signatures and MACs go out as base64, public keys as PEM, so that
//! `openssl pkeyutl` / `openssl dgst` can check what kmsd made and the other way round.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Args;
use kmsd_client::Client;
use serde_json::json;

use crate::output::{Output, print_json};
use crate::{Failure, read_input};

#[derive(Args)]
pub struct SignArgs {
    #[arg(long)]
    key: String,
    /// One of the key's signing algorithms (ECDSA_SHA_256, RSASSA_PSS_SHA_256, ED25519_SHA_512, ...).
    #[arg(long)]
    algorithm: String,
    /// The input is the digest of the message (of the algorithm's hash), not the message.
    #[arg(long)]
    digest: bool,
    /// The message (1-4096 bytes), or its digest; stdin when absent or "-".
    #[arg(long = "in")]
    input: Option<PathBuf>,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    sign: SignArgs,
    /// The signature, base64.
    #[arg(long)]
    signature: String,
}

#[derive(Args)]
pub struct PublicKeyArgs {
    key: String,
}

#[derive(Args)]
pub struct MacArgs {
    #[arg(long)]
    key: String,
    /// The key's MAC algorithm (HMAC_SHA_224|256|384|512).
    #[arg(long)]
    algorithm: String,
    /// The message (1-4096 bytes); stdin when absent or "-".
    #[arg(long = "in")]
    input: Option<PathBuf>,
}

#[derive(Args)]
pub struct VerifyMacArgs {
    #[command(flatten)]
    mac: MacArgs,
    /// The MAC, base64.
    #[arg(long = "mac")]
    value: String,
}

#[derive(Args)]
pub struct DataKeyPairArgs {
    /// The SYMMETRIC_DEFAULT key that seals the private key.
    #[arg(long)]
    key: String,
    /// RSA_2048|3072|4096, ECC_NIST_P256|P384|P521, ECC_SECG_P256K1 or ECC_NIST_EDWARDS25519.
    #[arg(long)]
    spec: String,
    /// An encryption context pair, KEY=VALUE; repeatable.
    #[arg(long = "context", value_parser = crate::parse_pair)]
    context: Vec<(String, String)>,
    /// Only the sealed private key and the public key.
    #[arg(long)]
    without_plaintext: bool,
}

fn base64_arg(name: &str, text: &str) -> Result<Vec<u8>, Failure> {
    BASE64
        .decode(text.trim())
        .map_err(|e| Failure(format!("--{name} is not base64: {e}")))
}

/// DER as PEM with `label`, 64 characters a line (RFC 7468).
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let encoded = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub async fn sign(kms: &Client, out: &Output, args: SignArgs) -> Result<(), Failure> {
    let message = read_input(args.input.as_ref())?;
    let r = if args.digest {
        kms.sign_digest(&args.key, &message, &args.algorithm)
            .await?
    } else {
        kms.sign(&args.key, &message, &args.algorithm).await?
    };
    if out.json {
        print_json(&json!({
            "key_id": r.key_id,
            "signing_algorithm": r.signing_algorithm,
            "signature": BASE64.encode(&r.signature),
        }));
    } else {
        println!("{}", BASE64.encode(&r.signature));
    }
    Ok(())
}

/// Exits 0 when the signature is valid; a signature that is not is a failure (exit status 1).
pub async fn verify(kms: &Client, out: &Output, args: VerifyArgs) -> Result<(), Failure> {
    let signature = base64_arg("signature", &args.signature)?;
    let a = args.sign;
    let message = read_input(a.input.as_ref())?;
    let valid = if a.digest {
        kms.verify_digest(&a.key, &message, &signature, &a.algorithm)
            .await?
    } else {
        kms.verify(&a.key, &message, &signature, &a.algorithm)
            .await?
    };
    report(out, "signature", valid)
}

pub async fn public_key(kms: &Client, out: &Output, args: PublicKeyArgs) -> Result<(), Failure> {
    let r = kms.get_public_key(&args.key).await?;
    if out.json {
        print_json(&json!({
            "key_id": r.key_id,
            "key_spec": r.key_spec,
            "key_usage": r.key_usage,
            "public_key": BASE64.encode(&r.public_key),
            "signing_algorithms": r.signing_algorithms,
            "encryption_algorithms": r.encryption_algorithms,
        }));
    } else {
        print!("{}", pem("PUBLIC KEY", &r.public_key));
    }
    Ok(())
}

/// Prints the public key (and, unless asked not to, the private key) as PEM, then the sealed private key as base64,
/// which `kmsctl decrypt` opens with the same context.
pub async fn data_key_pair(
    kms: &Client,
    out: &Output,
    args: DataKeyPairArgs,
) -> Result<(), Failure> {
    let context: Vec<(&str, &str)> = args
        .context
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (key_id, private, blob, public) = if args.without_plaintext {
        let r = kms
            .generate_data_key_pair_without_plaintext(&args.key, &args.spec, &context)
            .await?;
        (r.key_id, None, r.private_key_ciphertext_blob, r.public_key)
    } else {
        let r = kms
            .generate_data_key_pair(&args.key, &args.spec, &context)
            .await?;
        (
            r.key_id.clone(),
            Some(r.private_key.clone()),
            r.private_key_ciphertext_blob.clone(),
            r.public_key.clone(),
        )
    };
    if out.json {
        let mut v = json!({
            "key_id": key_id,
            "key_pair_spec": args.spec,
            "public_key": BASE64.encode(&public),
            "private_key_ciphertext_blob": BASE64.encode(&blob),
        });
        if let Some(private) = &private {
            v["private_key"] = json!(BASE64.encode(private.as_slice()));
        }
        print_json(&v);
    } else {
        print!("{}", pem("PUBLIC KEY", &public));
        if let Some(private) = &private {
            print!(
                "{}",
                zeroize::Zeroizing::new(pem("PRIVATE KEY", private)).as_str()
            );
        }
        println!("{}", BASE64.encode(&blob));
    }
    Ok(())
}

pub async fn mac(kms: &Client, out: &Output, args: MacArgs) -> Result<(), Failure> {
    let message = read_input(args.input.as_ref())?;
    let r = kms
        .generate_mac(&args.key, &message, &args.algorithm)
        .await?;
    if out.json {
        print_json(&json!({
            "key_id": r.key_id,
            "mac_algorithm": r.mac_algorithm,
            "mac": BASE64.encode(&r.mac),
        }));
    } else {
        println!("{}", BASE64.encode(&r.mac));
    }
    Ok(())
}

pub async fn verify_mac(kms: &Client, out: &Output, args: VerifyMacArgs) -> Result<(), Failure> {
    let mac = base64_arg("mac", &args.value)?;
    let a = args.mac;
    let message = read_input(a.input.as_ref())?;
    let valid = kms.verify_mac(&a.key, &message, &mac, &a.algorithm).await?;
    report(out, "MAC", valid)
}

fn report(out: &Output, what: &str, valid: bool) -> Result<(), Failure> {
    if !valid {
        return Err(Failure(format!(
            "the {what} is NOT valid for this message and key"
        )));
    }
    if out.json {
        print_json(&json!({ "valid": true }));
    } else {
        println!("the {what} is valid");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn pem_wraps_at_64_characters() {
        let text = super::pem("PUBLIC KEY", &[0u8; 100]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN PUBLIC KEY-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last(), Some(&"-----END PUBLIC KEY-----"));
    }
}
