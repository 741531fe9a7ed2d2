//! A release pipeline signing its artifacts with a kmsd key pair through the client library: `cargo run --example
//! release_signing -- FILE` against a running daemon (`KMSD_ENDPOINT`, `KMSD_TOKEN` as for `examples/service.rs`).
//!
//! The private key never leaves kmsd: the pipeline hashes the artifact itself and sends only the digest (message
//! type DIGEST), kmsd signs it and records who signed what (the digest's SHA-256, never the artifact), and anyone
//! with the public key (DER SubjectPublicKeyInfo, as `kmsctl public-key` prints it as PEM) verifies the signature
//! without kmsd, with `openssl dgst -sha256 -verify`.

use kmsd_client::pb::CreateKeyRequest;
use kmsd_client::{ClientBuilder, Error};
use sha2::{Digest, Sha256};

const KEY: &str = "alias/release-signing";
const ALGORITHM: &str = "ECDSA_SHA_256";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: release_signing FILE")?;
    let endpoint =
        std::env::var("KMSD_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let mut builder = ClientBuilder::new(endpoint);
    if let Ok(token) = std::env::var("KMSD_TOKEN") {
        builder = builder.token(token);
    }
    let kms = builder.connect().await?;

    // The signing key, made on first run: a P-256 key pair whose private half only kmsd holds.
    match kms.describe_key(KEY).await {
        Ok(_) => {}
        Err(Error::NotFound(_)) => {
            kms.create_key(CreateKeyRequest {
                key_spec: "ECC_NIST_P256".into(),
                key_usage: "SIGN_VERIFY".into(),
                alias: KEY.into(),
                description: "release signing".into(),
                ..Default::default()
            })
            .await?;
        }
        Err(e) => return Err(e.into()),
    }

    let digest = Sha256::digest(std::fs::read(&path)?);
    let signed = kms
        .with_reason(format!("release {path}"))
        .sign_digest(KEY, &digest, ALGORITHM)
        .await?;
    std::fs::write(format!("{path}.sig"), &signed.signature)?;
    let public = kms.get_public_key(KEY).await?;
    std::fs::write(format!("{path}.pub.der"), &public.public_key)?;

    // kmsd agrees, and says no to a signature of anything else.
    assert!(
        kms.verify_digest(KEY, &digest, &signed.signature, ALGORITHM)
            .await?
    );
    let other = Sha256::digest(b"not the release");
    assert!(
        !kms.verify_digest(KEY, &other, &signed.signature, ALGORITHM)
            .await?
    );
    println!(
        "signed {path} with {} ({ALGORITHM}): {path}.sig; public key {path}.pub.der \
         (openssl dgst -sha256 -verify <(openssl pkey -pubin -inform DER -in {path}.pub.der) -signature {path}.sig {path})",
        signed.key_id
    );
    Ok(())
}
