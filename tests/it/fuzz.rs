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
