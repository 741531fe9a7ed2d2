//! Fail closed: when audit records cannot be written, crypto calls return UNAVAILABLE with no key material,
//! health says NOT_SERVING, and both recover by themselves once writes succeed again.

use std::time::Duration;

use kmsd_proto::pb::*;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::*;

/// Makes every audit insert fail, as a full disk would (a trigger is visible to the daemon's own connection,
/// where a `max_page_count` set here would not be).
const FILL_DISK: &str = "CREATE TRIGGER simulated_full_disk BEFORE INSERT ON audit_events
     BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;";
const FREE_DISK: &str = "DROP TRIGGER simulated_full_disk;";

async fn kms_health(server: &TestServer) -> i32 {
    HealthClient::new(server.raw_channel().await)
        .check(HealthCheckRequest {
            service: "kms.v1.KeyManagementService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// Waits, within a generous bound, for health to reach `want`; the bound only stops a broken build from hanging.
async fn wait_for_health(server: &TestServer, want: ServingStatus) {
    for _ in 0..200 {
        if kms_health(server).await == want as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("health never became {want:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unwritable_audit_log_fails_closed_and_recovers() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let key_id = create_key(&mut c, "alias/fc").await.key_id;
    let good = c
        .generate_data_key(tagged(
            GenerateDataKeyRequest {
                key_id: "alias/fc".into(),
                ..Default::default()
            },
            "before",
        ))
        .await
        .unwrap()
        .into_inner();

    let sql = rusqlite::Connection::open(server.data_dir().join("kmsd.db")).unwrap();
    sql.execute_batch(FILL_DISK).unwrap();

    let refused = c
        .generate_data_key(tagged(
            GenerateDataKeyRequest {
                key_id: "alias/fc".into(),
                ..Default::default()
            },
            "during-gdk",
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("fail closed"),
        "{}",
        refused.message()
    );
    // Even refused, the answer names the call, so the caller can report it.
    assert_eq!(
        refused
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("during-gdk")
    );
    let refused = c
        .decrypt(tagged(
            DecryptRequest {
                ciphertext_blob: good.ciphertext_blob.clone(),
                ..Default::default()
            },
            "during-decrypt",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::Unavailable,
        "no plaintext without a record"
    );
    wait_for_health(&server, ServingStatus::NotServing).await;

    // Management calls are refused before they change anything: a change is stored only after its record.
    for refused in [
        c.disable_key(DisableKeyRequest {
            key_id: key_id.clone(),
        })
        .await
        .map(drop),
        c.rotate_key(RotateKeyRequest {
            key_id: key_id.clone(),
        })
        .await
        .map(drop),
        c.create_key(CreateKeyRequest::default()).await.map(drop),
        c.create_alias(CreateAliasRequest {
            alias_name: "alias/during".into(),
            key_id: key_id.clone(),
        })
        .await
        .map(drop),
        c.delete_alias(DeleteAliasRequest {
            alias_name: "alias/fc".into(),
        })
        .await
        .map(drop),
    ] {
        assert_status(refused, Code::Unavailable, &["audit log"]);
    }

    sql.execute_batch(FREE_DISK).unwrap();
    wait_for_health(&server, ServingStatus::Serving).await;
    let opened = c
        .decrypt(tagged(
            DecryptRequest {
                ciphertext_blob: good.ciphertext_blob.clone(),
                ..Default::default()
            },
            "after",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.plaintext, good.plaintext);

    // Nothing lost, nothing duplicated: the refused calls left no record, the others exactly one, in one chain.
    assert!(events_for(&server, "during-gdk").await.is_empty());
    assert!(events_for(&server, "during-decrypt").await.is_empty());
    one_event(&server, "before").await;
    one_event(&server, "after").await;
    let after = describe(&mut c, "alias/fc").await;
    assert_eq!(
        (state(&after), after.primary_version),
        (KeyState::Enabled, 1),
        "nothing changed"
    );
    assert_eq!(after.aliases, vec!["alias/fc".to_string()]);
    let keys = c
        .list_keys(ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 1, "no key was created");
    let verified = verify_log(&server).await;
    assert!(verified.ok, "{}", verified.problem);
    assert_eq!(verified.records_checked, verified.head_sequence);
    assert_eq!(
        verified.head_sequence,
        BOOTSTRAP_RECORDS + 9,
        "the bootstrap's, CreateKey, before, after, one DescribeKey, ListKeys and the four queries above; the \
         refused calls are not"
    );
}

/// Finding 9: after a restart on a still-full disk, health said SERVING until the first failed write. Now it is
/// NOT_SERVING from the start, both when a write fails and when the disk is below its hard floor.
#[tokio::test(flavor = "multi_thread")]
async fn health_is_not_serving_from_the_start_when_the_log_cannot_take_a_write() {
    let dir = TestServer::start().await.stop().await;
    let sql = rusqlite::Connection::open(dir.path().join("kmsd.db")).unwrap();
    sql.execute_batch(FILL_DISK).unwrap();
    let server = TestServer::start_in(dir, kmsd::clock::ManualClock::new())
        .await
        .unwrap();
    assert_eq!(kms_health(&server).await, ServingStatus::NotServing as i32);
    sql.execute_batch(FREE_DISK).unwrap();
    wait_for_health(&server, ServingStatus::Serving).await;
    let dir = server.stop().await;

    // A disk below the hard floor (a floor larger than any disk here).
    let mut config = config(dir.path());
    config.audit.disk.hard_floor = 1 << 50;
    config.audit.disk.soft_floor = 1 << 50;
    let server = TestServer::start_with(dir, &config).await;
    assert_eq!(kms_health(&server).await, ServingStatus::NotServing as i32);
    let mut client = server.client().await;
    assert_status(
        client
            .generate_random(GenerateRandomRequest { number_of_bytes: 8 })
            .await,
        Code::Unavailable,
        &["hard floor"],
    );
    server.stop().await;
}
