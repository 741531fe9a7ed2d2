//! kmsd on PostgreSQL: one daemon serving from a real server, and replicas (daemons with data directories of their
//! own and a copy of one root key) sharing one database and one audit chain.

use std::sync::Arc;

use kmsd_proto::pb::*;

use super::postgres::{self, Database};
use super::support::*;

/// A daemon on `db`, with its own data directory.
async fn replica(db: &Database, dir: Arc<tempfile::TempDir>) -> TestServer {
    let mut config = config(dir.path());
    config.data.database_url = Some(db.url());
    TestServer::start_with(dir, &config).await
}

/// A data directory holding a copy of `first`'s root key: what an operator gives each replica.
fn replica_dir(first: &TestServer) -> Arc<tempfile::TempDir> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        first.data_dir().join("root.key"),
        dir.path().join("root.key"),
    )
    .unwrap();
    Arc::new(dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_on_postgres_serves_and_keeps_everything_across_a_restart() {
    let Some(db) = postgres::database().await else {
        return;
    };
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let server = replica(&db, dir.clone()).await;
    // Nothing of the state is in the data directory but the root key and the admin token.
    assert!(!dir.path().join("kmsd.db").exists());
    let mut client = server.client().await;
    let key = create_key(&mut client, "alias/pg").await;
    let blob = encrypt(
        &mut client,
        "alias/pg",
        b"kept in postgres",
        &[("app", "pg")],
    )
    .await
    .ciphertext_blob;
    let token = server.admin_token();
    server.stop().await;

    let server = replica(&db, dir).await;
    let mut client = server.client().await;
    assert_eq!(server.admin_token(), token, "the bootstrap ran once");
    let plain = decrypt(&mut client, &blob, &[("app", "pg")]).await.unwrap();
    assert_eq!(plain.plaintext, b"kept in postgres");
    assert_eq!(describe(&mut client, &key.key_id).await.key_id, key.key_id);
    let report = verify_log(&server).await;
    assert!(report.ok, "{report:?}");
    // Bootstrap, CreateKey, Encrypt, then Decrypt and DescribeKey after the restart.
    assert_eq!(report.records_checked, BOOTSTRAP_RECORDS + 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_append_to_one_gap_free_audit_chain() {
    let Some(db) = postgres::database().await else {
        return;
    };
    let a = replica(&db, Arc::new(tempfile::tempdir().unwrap())).await;
    let b = replica(&db, replica_dir(&a)).await;
    // The bootstrap happened once, on the first replica; its administrator's token works on both.
    assert!(!b.data_dir().join("admin.token").exists());
    let token = a.admin_token();
    std::fs::write(b.data_dir().join("admin.token"), &token).unwrap();

    const CALLS: usize = 200;
    let mut tasks = Vec::new();
    for (name, server) in [("a", &a), ("b", &b)] {
        for t in 0..4 {
            let channel = server.channel_as(Some(&token)).await;
            tasks.push(tokio::spawn(async move {
                let mut client =
                    kmsd_proto::pb::key_management_service_client::KeyManagementServiceClient::new(
                        channel,
                    );
                for n in 0..CALLS / 4 {
                    client
                        .generate_random(tagged(
                            GenerateRandomRequest { number_of_bytes: 8 },
                            &format!("{name}-{t}-{n}"),
                        ))
                        .await
                        .expect("GenerateRandom on a replica");
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }

    // One chain, verified from either replica: every call of both, once, and nothing else (the second
    // verification also sees the first one's record).
    for (i, server) in [&a, &b].into_iter().enumerate() {
        let report = verify_log(server).await;
        assert!(report.ok, "{report:?}");
        assert_eq!(
            report.records_checked,
            BOOTSTRAP_RECORDS + 2 * CALLS as u64 + i as u64
        );
    }
    let pg = db.connect().await;
    let row = pg
        .query_one(
            "SELECT count(*), count(DISTINCT request_id), min(seq), max(seq) FROM audit_events
             WHERE event_name = 'GenerateRandom'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2 * CALLS as i64);
    assert_eq!(row.get::<_, i64>(1), 2 * CALLS as i64, "no record twice");
    let gaps = pg
        .query_one(
            "SELECT count(*) FROM audit_events e
             WHERE e.seq > 1 AND NOT EXISTS (SELECT 1 FROM audit_events p WHERE p.seq = e.seq - 1)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(gaps.get::<_, i64>(0), 0, "the chain has no gap");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_with_another_root_key_refuses_to_start() {
    let Some(db) = postgres::database().await else {
        return;
    };
    let _a = replica(&db, Arc::new(tempfile::tempdir().unwrap())).await;
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("root.key"), "ab".repeat(32)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            other.path().join("root.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let mut config = config(other.path());
    config.data.database_url = Some(db.url());
    let refused = try_start(&config, kmsd::clock::ManualClock::new())
        .await
        .err()
        .expect("a replica with another root key is refused");
    assert!(
        refused.to_string().contains("root key"),
        "the refusal names the root key: {refused}"
    );

    // And a replica without any root key does not make one for a database that already has keys' state.
    let bare = tempfile::tempdir().unwrap();
    let mut config = super::support::config(bare.path());
    config.data.database_url = Some(db.url());
    let refused = try_start(&config, kmsd::clock::ManualClock::new())
        .await
        .err()
        .expect("a replica without the root key is refused");
    assert!(refused.to_string().contains("root key"), "{refused}");
    assert!(!bare.path().join("root.key").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_audit_tables_refuse_update_delete_and_truncate() {
    let Some(db) = postgres::database().await else {
        return;
    };
    let server = replica(&db, Arc::new(tempfile::tempdir().unwrap())).await;
    let pg = db.connect().await;
    for sql in [
        "UPDATE audit_events SET principal = 'mallory'",
        "UPDATE audit_events SET principal = 'mallory' WHERE seq < 0",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "UPDATE audit_checkpoints SET signature = ''",
        "DELETE FROM audit_prunes",
        "TRUNCATE audit_checkpoints",
    ] {
        let refused = pg.batch_execute(sql).await.unwrap_err();
        let db_error = refused.as_db_error().expect("the server refuses it");
        assert!(
            db_error.message().contains("append-only"),
            "{sql}: {}",
            db_error.message()
        );
    }
    let report = verify_log(&server).await;
    assert!(
        report.ok && report.records_checked == BOOTSTRAP_RECORDS,
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_newer_than_kmsd_is_refused() {
    let Some(db) = postgres::database().await else {
        return;
    };
    kmsd::storage::Storage::open_postgres(&db.url())
        .await
        .unwrap();
    db.connect()
        .await
        .batch_execute(
            "INSERT INTO kmsd_migrations (version, name) VALUES (999, 'from the future')",
        )
        .await
        .unwrap();
    let refused = kmsd::storage::Storage::open_postgres(&db.url())
        .await
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("newer"), "{refused}");
}
