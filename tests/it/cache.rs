//! Data-key caching with single flight, observed through the daemon's own audit log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kmsd_client::{CacheLimits, DataKeyCache};
use kmsd_proto::pb::*;

use crate::support::*;

async fn count(server: &TestServer, event: &str) -> usize {
    server
        .audit_client()
        .await
        .query_events(QueryEventsRequest {
            event_name: event.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_misses_make_one_kms_call() {
    let server = TestServer::start().await;
    let client = server.kms_client().await;
    client
        .create_key(CreateKeyRequest {
            alias: "alias/cache".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let cache = Arc::new(DataKeyCache::new(
        client,
        CacheLimits {
            max_age: Duration::from_secs(600),
            max_messages: 150,
            max_bytes: 1 << 30,
        },
    ));
    let context: BTreeMap<String, String> = [("bucket".to_string(), "b".to_string())].into();

    let mut puts = Vec::new();
    for _ in 0..100 {
        let cache = cache.clone();
        let context = context.clone();
        puts.push(tokio::spawn(async move {
            cache
                .for_encryption("alias/cache", &context, 1000)
                .await
                .unwrap()
                .ciphertext_blob
                .clone()
        }));
    }
    let mut blobs = Vec::new();
    for put in puts {
        blobs.push(put.await.unwrap());
    }
    assert!(
        blobs.windows(2).all(|w| w[0] == w[1]),
        "all shared one data key"
    );
    assert_eq!(
        count(&server, "GenerateDataKey").await,
        1,
        "one KMS call for 100 concurrent misses"
    );

    // The 151st message passes max_messages: a fresh key, one more call.
    for _ in 0..50 {
        cache
            .for_encryption("alias/cache", &context, 1000)
            .await
            .unwrap();
    }
    assert_eq!(count(&server, "GenerateDataKey").await, 1);
    let fresh = cache
        .for_encryption("alias/cache", &context, 1000)
        .await
        .unwrap();
    assert_ne!(fresh.ciphertext_blob, blobs[0]);
    assert_eq!(count(&server, "GenerateDataKey").await, 2);

    // Another context is another key.
    let other: BTreeMap<String, String> = [("bucket".to_string(), "c".to_string())].into();
    cache
        .for_encryption("alias/cache", &other, 1)
        .await
        .unwrap();
    assert_eq!(count(&server, "GenerateDataKey").await, 3);

    // Decryption: 50 concurrent reads of one blob make one Decrypt.
    let mut reads = Vec::new();
    for _ in 0..50 {
        let cache = cache.clone();
        let context = context.clone();
        let blob = blobs[0].clone();
        reads.push(tokio::spawn(async move {
            cache
                .for_decryption(&blob, &context, None, 10)
                .await
                .unwrap()
                .plaintext
                .to_vec()
        }));
    }
    let mut keys = Vec::new();
    for r in reads {
        keys.push(r.await.unwrap());
    }
    assert!(keys.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(count(&server, "Decrypt").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_not_cached_and_age_retires_keys() {
    let server = TestServer::start().await;
    let client = server.kms_client().await;
    let cache = DataKeyCache::new(
        client.clone(),
        CacheLimits {
            max_age: Duration::from_millis(1),
            max_messages: 1000,
            max_bytes: 1 << 30,
        },
    );
    let context = BTreeMap::new();
    assert!(
        cache
            .for_encryption("alias/later", &context, 1)
            .await
            .is_err()
    );
    client
        .create_key(CreateKeyRequest {
            alias: "alias/later".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let first = cache
        .for_encryption("alias/later", &context, 1)
        .await
        .expect("the failure was not cached");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = cache
        .for_encryption("alias/later", &context, 1)
        .await
        .unwrap();
    assert_ne!(
        first.ciphertext_blob, second.ciphertext_blob,
        "an expired key is replaced"
    );
}
