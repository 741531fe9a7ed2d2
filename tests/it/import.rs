//! Imported key material (BYOK) through a real daemon: keys of origin EXTERNAL, import tokens and their limits,
//! importing again, deleting, and expiry on the injected clock. Material is wrapped here with aws-lc-rs directly, as
//! an owner's tooling would; `tests/aws/` wraps it with the `openssl` command line.

use std::time::{Duration, SystemTime};

use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey,
};
use kmsd_client::Error;
use kmsd_proto::ErrorKind;
use kmsd_proto::pb::*;

use crate::support::*;

/// Wraps `material` for the public key GetParametersForImport gave, as `algorithm` says.
fn wrap(public_der: &[u8], algorithm: &str, material: &[u8]) -> Vec<u8> {
    let public =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(public_der).unwrap()).unwrap();
    let oaep = if algorithm.ends_with("SHA_1") {
        &OAEP_SHA1_MGF1SHA1
    } else {
        &OAEP_SHA256_MGF1SHA256
    };
    let mut rsa_out = vec![0; public.ciphertext_size()];
    if algorithm.starts_with("RSAES_OAEP") {
        return public
            .encrypt(oaep, material, &mut rsa_out, None)
            .unwrap()
            .to_vec();
    }
    let mut aes_key = [0u8; 32];
    getrandom::fill(&mut aes_key).unwrap();
    let mut out = public
        .encrypt(oaep, &aes_key, &mut rsa_out, None)
        .unwrap()
        .to_vec();
    let mut wrapped = vec![0; material.len() + 16];
    let kek = AesKek::new(&AES_256, &aes_key).unwrap();
    out.extend_from_slice(kek.wrap_with_padding(material, &mut wrapped).unwrap());
    out
}

fn kind(e: &Error) -> Option<ErrorKind> {
    e.details().and_then(|d| d.kind)
}

async fn external(client: &kmsd_client::Client, spec: &str) -> KeyMetadata {
    client
        .create_key(CreateKeyRequest {
            key_spec: spec.into(),
            origin: "EXTERNAL".into(),
            ..Default::default()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_key_waits_for_its_material_then_takes_only_that_material() {
    let server = TestServer::start().await;
    let client = server.kms_client().await;
    let key = external(&client, "").await;
    assert_eq!(
        (
            state(&key),
            key.origin.as_str(),
            key.expiration_model.as_str()
        ),
        (
            KeyState::PendingImport,
            "EXTERNAL",
            "KEY_MATERIAL_DOES_NOT_EXPIRE"
        )
    );
    let id = key.key_id.clone();
    let e = client.encrypt(&id, b"x", &[]).await.unwrap_err();
    assert!(matches!(e, Error::KeyState(_)), "{e}");
    assert!(e.to_string().contains("ImportKeyMaterial"), "{e}");

    // Every wrapping algorithm and size works.
    let material = [0x11u8; 32];
    for (algorithm, size) in [
        ("RSAES_OAEP_SHA_256", ""),
        ("RSAES_OAEP_SHA_1", "RSA_3072"),
        ("RSA_AES_KEY_WRAP_SHA_256", "RSA_4096"),
        ("RSA_AES_KEY_WRAP_SHA_1", "RSA_2048"),
    ] {
        let p = client
            .get_parameters_for_import(&id, algorithm, size)
            .await
            .unwrap();
        client
            .import_key_material(
                &id,
                &p.import_token,
                &wrap(&p.public_key, algorithm, &material),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{algorithm} {size}: {e}"));
    }
    assert_eq!(
        state(&client.describe_key(&id).await.unwrap()),
        KeyState::Enabled
    );
    let sealed = client
        .encrypt(&id, b"under imported material", &[])
        .await
        .unwrap();

    // The token is the key's, unaltered, within its 24 hours; the material is what it was first.
    let p = client.get_parameters_for_import(&id, "", "").await.unwrap();
    let other = external(&client, "").await.key_id;
    let other_p = client
        .get_parameters_for_import(&other, "", "")
        .await
        .unwrap();
    let good = wrap(&p.public_key, "RSAES_OAEP_SHA_256", &material);
    let e = client
        .import_key_material(&id, &other_p.import_token, &good, None)
        .await
        .unwrap_err();
    assert_eq!(
        kind(&e),
        Some(ErrorKind::InvalidImportToken),
        "another key's token: {e}"
    );
    let mut altered = p.import_token.clone();
    altered[40] ^= 1;
    let e = client
        .import_key_material(&id, &altered, &good, None)
        .await
        .unwrap_err();
    assert_eq!(kind(&e), Some(ErrorKind::InvalidImportToken), "{e}");
    let mut tampered = good.clone();
    tampered[3] ^= 1;
    let e = client
        .import_key_material(&id, &p.import_token, &tampered, None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidCiphertext(_)),
        "altered material: {e}"
    );
    let different = wrap(&p.public_key, "RSAES_OAEP_SHA_256", &[0x22u8; 32]);
    let e = client
        .import_key_material(&id, &p.import_token, &different, None)
        .await
        .unwrap_err();
    assert_eq!(kind(&e), Some(ErrorKind::IncorrectKeyMaterial), "{e}");
    let short = wrap(&p.public_key, "RSAES_OAEP_SHA_256", &[0x11u8; 31]);
    let e = client
        .import_key_material(&id, &p.import_token, &short, None)
        .await
        .unwrap_err();
    assert_eq!(
        kind(&e),
        Some(ErrorKind::IncorrectKeyMaterial),
        "31 bytes: {e}"
    );
    server.clock.advance(Duration::from_secs(24 * 3600));
    let e = client
        .import_key_material(&id, &p.import_token, &good, None)
        .await
        .unwrap_err();
    assert_eq!(kind(&e), Some(ErrorKind::ExpiredImportToken), "{e}");

    // Deleting the material makes the key wait again; the same material brings it back, old blobs and all.
    client.delete_imported_key_material(&id).await.unwrap();
    assert_eq!(
        state(&client.describe_key(&id).await.unwrap()),
        KeyState::PendingImport
    );
    let e = client
        .decrypt(&sealed.ciphertext_blob, &[], None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::KeyState(_)), "{e}");
    let p = client.get_parameters_for_import(&id, "", "").await.unwrap();
    client
        .import_key_material(
            &id,
            &p.import_token,
            &wrap(&p.public_key, "RSAES_OAEP_SHA_256", &material),
            None,
        )
        .await
        .unwrap();
    let server = server.restart().await;
    let client = server.kms_client().await;
    let opened = client
        .decrypt(&sealed.ciphertext_blob, &[], None)
        .await
        .unwrap();
    assert_eq!(&opened.plaintext[..], b"under imported material");

    // Keys whose material kmsd made take no import; imported keys do not rotate.
    let made = client
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .key_id;
    let e = client
        .get_parameters_for_import(&made, "", "")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    let e = client.rotate_key(&id).await.unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    let e = client
        .create_key(CreateKeyRequest {
            origin: "EXTERNAL".into(),
            rotation_period_days: 90,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_material_expires_on_time_and_is_recorded() {
    let server = TestServer::start().await;
    let client = server.kms_client().await;
    let id = external(&client, "HMAC_256").await.key_id;
    let material = [0x5cu8; 40];
    let p = client.get_parameters_for_import(&id, "", "").await.unwrap();
    let wrapped = wrap(&p.public_key, "RSAES_OAEP_SHA_256", &material);
    // The daemon's clock is the injected one; valid_to is an hour past it.
    let now = SystemTime::UNIX_EPOCH
        + Duration::from_millis(kmsd::clock::Clock::now(&server.clock).0 as u64);
    let e = client
        .import_key_material(
            &id,
            &p.import_token,
            &wrapped,
            Some(now - Duration::from_secs(1)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument(_)),
        "a past valid_to: {e}"
    );
    client
        .import_key_material(
            &id,
            &p.import_token,
            &wrapped,
            Some(now + Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let key = client.describe_key(&id).await.unwrap();
    assert_eq!(key.expiration_model, "KEY_MATERIAL_EXPIRES");
    let mac = client
        .generate_mac(&id, b"m", "HMAC_SHA_256")
        .await
        .unwrap()
        .mac;

    server.clock.advance(Duration::from_secs(3599));
    server.server.run_maintenance().await.unwrap();
    assert_eq!(
        state(&client.describe_key(&id).await.unwrap()),
        KeyState::Enabled
    );
    server.clock.advance(Duration::from_secs(1));
    server.server.run_maintenance().await.unwrap();
    assert_eq!(
        state(&client.describe_key(&id).await.unwrap()),
        KeyState::PendingImport
    );
    let e = client
        .generate_mac(&id, b"m", "HMAC_SHA_256")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::KeyState(_)), "{e}");
    let expired = server
        .audit_client()
        .await
        .query_events(QueryEventsRequest {
            key_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let e = expired
        .iter()
        .find(|e| e.event_name == "ImportedMaterialExpired")
        .expect("the expiry is recorded");
    assert_eq!(e.principal, "kmsd");
    // The material's bytes are gone from the database, not only from memory.
    let files = database_files(server.data_dir());
    let stored = server
        .server
        .kms()
        .storage()
        .versions_of(kmsd::keys::KeyId::parse(&id).unwrap())
        .await
        .unwrap();
    assert!(stored.iter().all(|v| v.wrapped_material.is_none()));
    assert!(!files.windows(material.len()).any(|w| w == material));

    // The same material, imported again, gives the same MACs.
    let p = client.get_parameters_for_import(&id, "", "").await.unwrap();
    client
        .import_key_material(
            &id,
            &p.import_token,
            &wrap(&p.public_key, "RSAES_OAEP_SHA_256", &material),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        client
            .generate_mac(&id, b"m", "HMAC_SHA_256")
            .await
            .unwrap()
            .mac,
        mac
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_key_imports_with_aes_key_wrap_and_signs() {
    let server = TestServer::start().await;
    let client = server.kms_client().await;
    let id = external(&client, "ECC_NIST_P256").await.key_id;
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
    )
    .unwrap();
    let der = pkcs8.to_pkcs8v1().unwrap();
    let p = client
        .get_parameters_for_import(&id, "RSA_AES_KEY_WRAP_SHA_256", "RSA_3072")
        .await
        .unwrap();
    // Too large for RSA-OAEP alone: refused by the wrapping, not accepted cut short.
    let p_oaep = client.get_parameters_for_import(&id, "", "").await.unwrap();
    let oaep_key =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&p_oaep.public_key).unwrap())
            .unwrap();
    assert!(oaep_key.max_plaintext_size(&OAEP_SHA256_MGF1SHA256) < der.as_ref().len() + 100);
    client
        .import_key_material(
            &id,
            &p.import_token,
            &wrap(&p.public_key, "RSA_AES_KEY_WRAP_SHA_256", der.as_ref()),
            None,
        )
        .await
        .unwrap();
    // Its public key is the imported key's; what kmsd signs, the imported key's public half verifies.
    let public = client.get_public_key(&id).await.unwrap().public_key;
    use aws_lc_rs::signature::KeyPair;
    let parsed = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        pkcs8.public_key().as_ref(),
    );
    let signed = client
        .sign(&id, b"imported", "ECDSA_SHA_256")
        .await
        .unwrap();
    parsed.verify(b"imported", &signed.signature).unwrap();
    assert!(!public.is_empty());
    // A P-384 private key is not this P-256 key's material.
    let other = external(&client, "ECC_NIST_P256").await.key_id;
    let p = client
        .get_parameters_for_import(&other, "RSA_AES_KEY_WRAP_SHA_256", "")
        .await
        .unwrap();
    let p384 = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
    )
    .unwrap()
    .to_pkcs8v1()
    .unwrap();
    let e = client
        .import_key_material(
            &other,
            &p.import_token,
            &wrap(&p.public_key, "RSA_AES_KEY_WRAP_SHA_256", p384.as_ref()),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(kind(&e), Some(ErrorKind::IncorrectKeyMaterial), "{e}");
}
