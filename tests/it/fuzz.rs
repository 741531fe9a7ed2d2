//! Arbitrary and mutated bytes thrown at Decrypt through gRPC: never a panic, always INVALID_ARGUMENT.

use proptest::prelude::*;
use tonic::Code;

use crate::support::*;

#[test]
fn decrypt_refuses_arbitrary_and_mutated_blobs() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, client, blob) = runtime.block_on(async {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        create_key(&mut client, "alias/fuzz").await;
        let blob = encrypt(&mut client, "alias/fuzz", b"fuzz me", &[("k", "v")])
            .await
            .ciphertext_blob;
        (server, client, blob)
    });

    let check = |bytes: Vec<u8>| -> Result<(), TestCaseError> {
        let mut client = client.clone();
        let result = runtime.block_on(decrypt(&mut client, &bytes, &[("k", "v")]));
        match result {
            Err(status) => prop_assert_eq!(status.code(), Code::InvalidArgument, "{:?}", status),
            Ok(_) => prop_assert!(bytes == blob, "a changed blob decrypted"),
        }
        Ok(())
    };

    let config = ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config.clone());
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..300), check)
        .unwrap();

    let len = blob.len();
    let mutation = (
        proptest::collection::vec((0..len, 1u8..=255), 1..4),
        0..len + 8,
        proptest::collection::vec(any::<u8>(), 0..8),
    );
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(&mutation, |(flips, cut, extra)| {
            let mut bytes = blob.clone();
            for (i, x) in flips {
                bytes[i] ^= x;
            }
            bytes.truncate(cut);
            bytes.extend(extra);
            check(bytes)
        })
        .unwrap();

    // The original still decrypts: the server survived all of it.
    let mut client = client.clone();
    let opened = runtime
        .block_on(decrypt(&mut client, &blob, &[("k", "v")]))
        .unwrap();
    assert_eq!(opened.plaintext, b"fuzz me");
    runtime.block_on(server.stop());
}

/// For every signing spec: a random message (RAW, 1-4096 bytes) signed through the daemon verifies through it, and
/// the same signature over the message with one byte changed does not.
#[test]
fn sign_and_verify_round_trip_random_messages_on_every_spec() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let specs = [
        ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256"),
        ("RSA_3072", "RSASSA_PSS_SHA_384"),
        ("RSA_4096", "RSASSA_PSS_SHA_512"),
        ("ECC_NIST_P256", "ECDSA_SHA_256"),
        ("ECC_NIST_P384", "ECDSA_SHA_384"),
        ("ECC_NIST_P521", "ECDSA_SHA_512"),
        ("ECC_SECG_P256K1", "ECDSA_SHA_256"),
        ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512"),
        ("ML_DSA_44", "ML_DSA_SHAKE_256"),
        ("ML_DSA_65", "ML_DSA_SHAKE_256"),
        ("ML_DSA_87", "ML_DSA_SHAKE_256"),
    ];
    let (_server, client, keys) = runtime.block_on(async {
        let server = TestServer::start().await;
        let client = server.kms_client().await;
        let mut keys = Vec::new();
        for (spec, algorithm) in specs {
            let key = client
                .create_key(kmsd_proto::pb::CreateKeyRequest {
                    key_spec: spec.into(),
                    key_usage: "SIGN_VERIFY".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .key_id;
            keys.push((key, algorithm));
        }
        (server, client, keys)
    });
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    for (key, algorithm) in keys {
        let mut runner = proptest::test_runner::TestRunner::new(config.clone());
        let strategy = (
            proptest::collection::vec(any::<u8>(), 1..=4096),
            any::<usize>(),
            1u8..=255,
        );
        runner
            .run(&strategy, |(message, at, flip)| {
                let (valid, changed) = runtime.block_on(async {
                    let signed = client.sign(&key, &message, algorithm).await.unwrap();
                    let valid = client
                        .verify(&key, &message, &signed.signature, algorithm)
                        .await
                        .unwrap();
                    let mut other = message.clone();
                    let i = at % other.len();
                    other[i] ^= flip;
                    let changed = client
                        .verify(&key, &other, &signed.signature, algorithm)
                        .await
                        .unwrap();
                    (valid, changed)
                });
                prop_assert!(valid, "{algorithm}: a signature did not verify");
                prop_assert!(!changed, "{algorithm}: a changed message verified");
                Ok(())
            })
            .unwrap();
    }
}
