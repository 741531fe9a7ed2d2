//! Data keys, Encrypt, Decrypt, ReEncrypt and GenerateRandom, with their error paths.

use kmsd_proto::pb::*;
use tonic::Code;

use crate::support::*;

const INVALID_CIPHERTEXT: &str = "the ciphertext is invalid";

#[tokio::test(flavor = "multi_thread")]
async fn generate_data_key_specs_and_round_trip() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create_key(&mut client, "alias/dk").await;
    let cases = [
        (DataKeySpec::Unspecified, None, 32),
        (DataKeySpec::Aes256, None, 32),
        (DataKeySpec::Aes128, None, 16),
        (DataKeySpec::Unspecified, Some(1), 1),
        (DataKeySpec::Unspecified, Some(1024), 1024),
    ];
    for (spec, number_of_bytes, expected_len) in cases {
        let dk = client
            .generate_data_key(GenerateDataKeyRequest {
                key_id: "alias/dk".into(),
                key_spec: spec as i32,
                number_of_bytes,
                encryption_context: ctx(&[("tenant", "t1")]),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(dk.key_id, key.key_id);
        assert_eq!(dk.key_version, 1);
        assert_eq!(
            dk.plaintext.len(),
            expected_len,
            "{spec:?} {number_of_bytes:?}"
        );
        let opened = decrypt(&mut client, &dk.ciphertext_blob, &[("tenant", "t1")])
            .await
            .unwrap();
        assert_eq!(opened.plaintext, dk.plaintext);
        assert_eq!(opened.key_id, key.key_id);
    }

    let without = client
        .generate_data_key_without_plaintext(GenerateDataKeyWithoutPlaintextRequest {
            key_id: key.key_id.clone(),
            key_spec: DataKeySpec::Aes128 as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(without.key_id, key.key_id);
    let opened = decrypt(&mut client, &without.ciphertext_blob, &[])
        .await
        .unwrap();
    assert_eq!(opened.plaintext.len(), 16);

    let two_keys = client
        .generate_data_key(GenerateDataKeyRequest {
            key_id: key.key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(two_keys.plaintext, without.ciphertext_blob);
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_data_key_rejects_bad_sizes() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_key(&mut client, "alias/dk").await;
    let bad = [
        (DataKeySpec::Aes256 as i32, Some(16), "not both"),
        (0, Some(0), "number_of_bytes must be 1-1024"),
        (0, Some(1025), "number_of_bytes must be 1-1024"),
        (99, None, "not a known DataKeySpec"),
    ];
    for (key_spec, number_of_bytes, fragment) in bad {
        assert_status(
            client
                .generate_data_key(GenerateDataKeyRequest {
                    key_id: "alias/dk".into(),
                    key_spec,
                    number_of_bytes,
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            &[fragment],
        );
        assert_status(
            client
                .generate_data_key_without_plaintext(GenerateDataKeyWithoutPlaintextRequest {
                    key_id: "alias/dk".into(),
                    key_spec,
                    number_of_bytes,
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            &[fragment],
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypt_decrypt_binds_the_encryption_context() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create_key(&mut client, "alias/ed").await;
    let context = [("bucket", "photos"), ("object", "cat.jpg")];
    let sealed = encrypt(&mut client, "alias/ed", b"attack at dawn", &context).await;
    assert_eq!(sealed.key_id, key.key_id);
    assert_eq!(sealed.key_version, 1);

    // Map order does not matter; content does.
    let reordered = [("object", "cat.jpg"), ("bucket", "photos")];
    let opened = decrypt(&mut client, &sealed.ciphertext_blob, &reordered)
        .await
        .unwrap();
    assert_eq!(opened.plaintext, b"attack at dawn");
    assert_eq!(
        (opened.key_id.as_str(), opened.key_version),
        (key.key_id.as_str(), 1)
    );

    let wrong_context = assert_status(
        decrypt(
            &mut client,
            &sealed.ciphertext_blob,
            &[("bucket", "photos")],
        )
        .await,
        Code::InvalidArgument,
        &[INVALID_CIPHERTEXT],
    );
    let mut tampered = sealed.ciphertext_blob.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered_status = assert_status(
        decrypt(&mut client, &tampered, &context).await,
        Code::InvalidArgument,
        &[INVALID_CIPHERTEXT],
    );
    assert_eq!(
        wrong_context.message(),
        tampered_status.message(),
        "a wrong context and a tampered blob must be indistinguishable"
    );

    // The optional key_id must match the blob's key, by id or alias.
    let other = create_key(&mut client, "alias/other").await;
    for key_id in [key.key_id.as_str(), "alias/ed"] {
        let ok = client
            .decrypt(DecryptRequest {
                ciphertext_blob: sealed.ciphertext_blob.clone(),
                key_id: key_id.into(),
                encryption_context: ctx(&context),
                encryption_algorithm: String::new(),
            })
            .await;
        assert!(ok.is_ok(), "{key_id}");
    }
    assert_status(
        client
            .decrypt(DecryptRequest {
                ciphertext_blob: sealed.ciphertext_blob.clone(),
                key_id: "alias/other".into(),
                encryption_context: ctx(&context),
                encryption_algorithm: String::new(),
            })
            .await,
        Code::InvalidArgument,
        &[&key.key_id, "alias/other"],
    );
    let _ = other;
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypt_rejects_empty_and_oversized_plaintext() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_key(&mut client, "alias/e").await;
    for (len, fragment) in [(0, "plaintext is empty"), (4097, "at most 4096")] {
        assert_status(
            client
                .encrypt(EncryptRequest {
                    key_id: "alias/e".into(),
                    plaintext: vec![7; len],
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            &[fragment],
        );
    }
    let max = encrypt(&mut client, "alias/e", &[9; 4096], &[]).await;
    let opened = decrypt(&mut client, &max.ciphertext_blob, &[])
        .await
        .unwrap();
    assert_eq!(opened.plaintext, vec![9; 4096]);
}

#[tokio::test(flavor = "multi_thread")]
async fn re_encrypt_across_keys_and_to_the_primary_version() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let source = create_key(&mut client, "alias/src").await;
    let destination = create_key(&mut client, "alias/dst").await;
    let sealed = encrypt(&mut client, "alias/src", b"payload", &[("app", "a")]).await;

    let moved = client
        .re_encrypt(ReEncryptRequest {
            ciphertext_blob: sealed.ciphertext_blob.clone(),
            source_key_id: "alias/src".into(),
            source_encryption_context: ctx(&[("app", "a")]),
            destination_key_id: "alias/dst".into(),
            destination_encryption_context: ctx(&[("app", "b")]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.source_key_id, source.key_id);
    assert_eq!(moved.source_key_version, 1);
    assert_eq!(moved.key_id, destination.key_id);
    let opened = decrypt(&mut client, &moved.ciphertext_blob, &[("app", "b")])
        .await
        .unwrap();
    assert_eq!(opened.key_id, destination.key_id);
    assert_eq!(opened.plaintext, b"payload");
    assert_status(
        decrypt(&mut client, &moved.ciphertext_blob, &[("app", "a")]).await,
        Code::InvalidArgument,
        &[INVALID_CIPHERTEXT],
    );

    // Without a destination: the primary version of the source key, after a rotation.
    client
        .rotate_key(RotateKeyRequest {
            key_id: source.key_id.clone(),
        })
        .await
        .unwrap();
    let refreshed = client
        .re_encrypt(ReEncryptRequest {
            ciphertext_blob: sealed.ciphertext_blob.clone(),
            source_encryption_context: ctx(&[("app", "a")]),
            destination_encryption_context: ctx(&[("app", "a")]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (refreshed.source_key_version, refreshed.key_version),
        (1, 2)
    );
    assert_eq!(refreshed.key_id, source.key_id);
    let opened = decrypt(&mut client, &refreshed.ciphertext_blob, &[("app", "a")])
        .await
        .unwrap();
    assert_eq!(
        (opened.key_version, opened.plaintext.as_slice()),
        (2, &b"payload"[..])
    );

    // The source context is checked; a wrong source key is refused; a disabled destination is refused.
    assert_status(
        client
            .re_encrypt(ReEncryptRequest {
                ciphertext_blob: sealed.ciphertext_blob.clone(),
                destination_key_id: "alias/dst".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &[INVALID_CIPHERTEXT],
    );
    assert_status(
        client
            .re_encrypt(ReEncryptRequest {
                ciphertext_blob: sealed.ciphertext_blob.clone(),
                source_key_id: "alias/dst".into(),
                source_encryption_context: ctx(&[("app", "a")]),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["not under the requested alias/dst"],
    );
    client
        .disable_key(DisableKeyRequest {
            key_id: "alias/dst".into(),
        })
        .await
        .unwrap();
    assert_status(
        client
            .re_encrypt(ReEncryptRequest {
                ciphertext_blob: sealed.ciphertext_blob.clone(),
                source_encryption_context: ctx(&[("app", "a")]),
                destination_key_id: "alias/dst".into(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        &["DISABLED"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_random_bounds() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for n in [1, 32, 1024] {
        let random = client
            .generate_random(GenerateRandomRequest { number_of_bytes: n })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(random.plaintext.len(), n as usize);
    }
    let a = client
        .generate_random(GenerateRandomRequest {
            number_of_bytes: 32,
        })
        .await
        .unwrap()
        .into_inner();
    let b = client
        .generate_random(GenerateRandomRequest {
            number_of_bytes: 32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(a.plaintext, b.plaintext);
    for n in [0, 1025] {
        assert_status(
            client
                .generate_random(GenerateRandomRequest { number_of_bytes: n })
                .await,
            Code::InvalidArgument,
            &["number_of_bytes must be 1-1024"],
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn encryption_context_limits() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_key(&mut client, "alias/c").await;
    let big = "v".repeat(9000);
    assert_status(
        client
            .encrypt(EncryptRequest {
                key_id: "alias/c".into(),
                plaintext: b"x".to_vec(),
                encryption_context: ctx(&[("k", &big)]),
                encryption_algorithm: String::new(),
            })
            .await,
        Code::InvalidArgument,
        &["encryption_context is too large"],
    );
    assert_status(
        client
            .encrypt(EncryptRequest {
                key_id: "alias/c".into(),
                plaintext: b"x".to_vec(),
                encryption_context: ctx(&[("", "v")]),
                encryption_algorithm: String::new(),
            })
            .await,
        Code::InvalidArgument,
        &["encryption_context has an empty key"],
    );
}
