//! Root-key rotation: every version re-wrapped in one transaction, no ciphertext changed, the old key shut out.

use std::process::Command;
use std::sync::Arc;

use kmsd::clock::ManualClock;
use kmsd_proto::pb::*;

use crate::support::*;

fn rotate(data_dir: &std::path::Path, new_key: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["rotate-root-key", "--data-dir"])
        .arg(data_dir)
        .arg("--new-root-key-file")
        .arg(new_key)
        .env_remove("KMSD_LOG")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_root_key_rotation_old_ciphertexts_decrypt_and_the_old_key_is_refused() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let a = create_key(&mut c, "alias/a").await;
    create_key(&mut c, "alias/b").await;
    let a_v1 = encrypt(&mut c, "alias/a", b"a under version 1", &[("n", "1")]).await;
    c.rotate_key(RotateKeyRequest {
        key_id: a.key_id.clone(),
    })
    .await
    .unwrap();
    let a_v2 = encrypt(&mut c, "alias/a", b"a under version 2", &[]).await;
    let b_v1 = encrypt(&mut c, "alias/b", b"b", &[]).await;
    // An access key's secret is wrapped under the root key too, and must still sign afterwards.
    let (secret, access_key) = server
        .kms_client()
        .await
        .create_access_key("admin", "rotation")
        .await
        .unwrap();
    // A key pair's private key and an HMAC key are wrapped with their spec bound: they must open afterwards too.
    let kms = server.kms_client().await;
    let signer = kms
        .create_key(CreateKeyRequest {
            key_spec: "ECC_NIST_P256".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .key_id;
    let signer_public = kms.get_public_key(&signer).await.unwrap().public_key;
    let mac_key = kms
        .create_key(CreateKeyRequest {
            key_spec: "HMAC_512".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .key_id;
    let mac = kms
        .generate_mac(&mac_key, b"before", "HMAC_SHA_512")
        .await
        .unwrap()
        .mac;
    let public_key = hex::encode(server.server.audit().public_key().as_bytes());
    let data_dir = server.data_dir().to_owned();
    let keys_dir = tempfile::tempdir().unwrap();
    let new_key = keys_dir.path().join("root-2.key");

    // Not while a daemon serves this data directory.
    let refused = rotate(&data_dir, &new_key);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("another kmsd process"),
        "{refused:?}"
    );
    assert!(!new_key.exists(), "nothing was made");

    let dir = server.stop().await;
    let rotated = rotate(&data_dir, &new_key);
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(
        String::from_utf8_lossy(&rotated.stdout).contains("re-wrapped 8 secrets"),
        "{rotated:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&new_key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // The old key no longer opens the database.
    let err = TestServer::start_in(dir.clone(), ManualClock::new())
        .await
        .err()
        .expect("old key refused");
    assert!(err.to_string().contains("root key does not match"), "{err}");
    // A second rotation from the old key is refused too, and changes nothing.
    let again = rotate(&data_dir, &keys_dir.path().join("root-3.key"));
    assert!(!again.status.success());

    // With the new key, every ciphertext made before decrypts, and the audit log (checkpoints included) verifies
    // with the same public key as before.
    let mut config = config(dir.path());
    config.data.root_key_file = Some(new_key.clone());
    config.network.aws_listen = Some("127.0.0.1:0".parse().unwrap());
    let running = try_start(&config, ManualClock::new()).await.unwrap();
    let server = TestServer {
        dir: Arc::clone(&dir),
        clock: ManualClock::new(),
        server: running,
        tls_ca: None,
    };
    let mut c = server.client().await;
    for (blob, context, plaintext) in [
        (
            &a_v1.ciphertext_blob,
            vec![("n", "1")],
            &b"a under version 1"[..],
        ),
        (&a_v2.ciphertext_blob, vec![], &b"a under version 2"[..]),
        (&b_v1.ciphertext_blob, vec![], &b"b"[..]),
    ] {
        assert_eq!(
            decrypt(&mut c, blob, &context).await.unwrap().plaintext,
            plaintext
        );
    }
    assert_eq!(
        hex::encode(server.server.audit().public_key().as_bytes()),
        public_key
    );
    let verified = verify_log(&server).await;
    assert!(verified.ok, "{}", verified.problem);
    assert!(verified.checkpoints_checked >= 1);
    assert_eq!(encrypt(&mut c, "alias/a", b"new", &[]).await.key_version, 2);
    let kms = server.kms_client().await;
    assert_eq!(
        kms.get_public_key(&signer).await.unwrap().public_key,
        signer_public
    );
    let signed = kms.sign(&signer, b"after", "ECDSA_SHA_256").await.unwrap();
    assert!(
        kms.verify(&signer, b"after", &signed.signature, "ECDSA_SHA_256")
            .await
            .unwrap()
    );
    assert!(
        kms.verify_mac(&mac_key, b"before", &mac, "HMAC_SHA_512")
            .await
            .unwrap()
    );
    let (status, answer) = crate::aws_signer::call(
        server.server.aws_addr().unwrap(),
        (&access_key.access_key_id, &secret),
        "GenerateRandom",
        r#"{"NumberOfBytes": 8}"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    server.stop().await;

    let offline = Command::new(env!("CARGO_BIN_EXE_kmsctl"))
        .args(["audit", "verify", "--db"])
        .arg(dir.path().join("kmsd.db"))
        .arg("--root-key-file")
        .arg(&new_key)
        .output()
        .unwrap();
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_cannot_share_a_data_directory() {
    let server = TestServer::start().await;
    let err = TestServer::start_in(server.dir.clone(), ManualClock::new())
        .await
        .err()
        .expect("second refused");
    assert!(err.to_string().contains("another kmsd process"), "{err}");
    server.stop().await;
}
