//! Another service using kmsd through the client library: `cargo run --example service` against a running daemon
//! (`KMSD_ENDPOINT`, default http://127.0.0.1:50051), authenticated by the token in `KMSD_TOKEN` (try the
//! administrator's: `KMSD_TOKEN=$(cat kmsd-data/admin.token)`; a service principal needs CreateKey rights, or a key
//! made for it, and GenerateDataKey and Decrypt in the key's policy).
//!
//! It asks for a data key bound to the record it protects, keeps only the encrypted key beside the record, and
//! later asks kmsd to decrypt it, saying why, so the audit log can answer "who read invoice 42, and for what?".

use std::time::Duration;

use kmsd_client::pb::CreateKeyRequest;
use kmsd_client::{ClientBuilder, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoint =
        std::env::var("KMSD_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let mut builder = ClientBuilder::new(endpoint);
    if let Ok(token) = std::env::var("KMSD_TOKEN") {
        builder = builder.token(token);
    }
    let kms = builder
        .timeout(Duration::from_secs(2))
        .retries(3, Duration::from_millis(50))
        .connect()
        .await?;

    // The service's key, made on first run.
    match kms.describe_key("alias/invoices").await {
        Ok(_) => {}
        Err(Error::NotFound(_)) => {
            kms.create_key(CreateKeyRequest {
                description: "invoices service".into(),
                alias: "alias/invoices".into(),
                ..Default::default()
            })
            .await?;
        }
        Err(e) => return Err(e),
    }

    // Writing invoice 42: a fresh data key, bound to the invoice it protects.
    let context = [("invoice", "42")];
    let data_key = kms
        .with_reason("store invoice 42")
        .generate_data_key("alias/invoices", &context)
        .await?;
    println!(
        "data key {} bytes under {} v{}",
        data_key.plaintext.len(),
        data_key.key_id,
        data_key.key_version
    );
    // ... encrypt the invoice locally with data_key.plaintext, store data_key.ciphertext_blob beside it,
    // and drop the plaintext (it is zeroized on drop).
    let stored_blob = data_key.ciphertext_blob.clone();
    drop(data_key);

    // Reading invoice 42 later: the same context, and a reason for the audit log.
    let opened = kms
        .with_reason("customer asked for a copy of invoice 42")
        .with_request_id("support-ticket-1234")
        .decrypt(&stored_blob, &context, Some("alias/invoices"))
        .await?;
    println!(
        "data key recovered ({} bytes); audit request id support-ticket-1234",
        opened.plaintext.len()
    );

    // A blob presented with the wrong context is refused, and the refusal is a typed error.
    match kms.decrypt(&stored_blob, &[("invoice", "43")], None).await {
        Err(Error::InvalidCiphertext(details)) => {
            println!("refused as expected: {}", details.message)
        }
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
