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

/// A daemon on `db` that also serves the AWS endpoint, on an ephemeral loopback port.
async fn aws_replica(db: &Database, dir: Arc<tempfile::TempDir>) -> TestServer {
    let mut config = config(dir.path());
    config.data.database_url = Some(db.url());
    config.network.aws_listen = Some("127.0.0.1:0".parse().unwrap());
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

/// `n` replicas on `db`: the first makes the root key and the administrator; the others get copies of both, as
/// an operator would give them.
async fn cluster(db: &Database, n: usize) -> Vec<TestServer> {
    let first = replica(db, Arc::new(tempfile::tempdir().unwrap())).await;
    let mut replicas = vec![];
    for _ in 1..n {
        let dir = replica_dir(&first);
        std::fs::write(dir.path().join("admin.token"), first.admin_token()).unwrap();
        replicas.push(replica(db, dir).await);
    }
    replicas.insert(0, first);
    replicas
}

/// Waits (bounded) until `done` holds, and says how long that took: propagation between replicas, reported for
/// the record, never asserted on.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) -> std::time::Duration {
    let started = std::time::Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{what} never happened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    eprintln!("{what}: {took:?}");
    took
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_on_one_replica_is_in_force_on_the_others_within_the_bound() {
    let Some(db) = postgres::database().await else {
        return;
    };
    let replicas = cluster(&db, 3).await;
    let (a, c) = (
        replicas[0].kms_client().await,
        replicas[2].kms_client().await,
    );
    let key = a
        .create_key(CreateKeyRequest {
            alias: "alias/shared".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    until("a key created on A usable on C", async || {
        c.generate_data_key("alias/shared", &[]).await.is_ok()
    })
    .await;

    a.disable_key(&key.key_id).await.unwrap();
    // Past the bound, C refuses whatever happened in between: had it not applied the change, it would refuse
    // to answer at all.
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;
    let refused = c.generate_data_key("alias/shared", &[]).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
    assert_eq!(
        refused.details().and_then(|d| d.kind),
        Some(kmsd_client::ErrorKind::KeyState)
    );

    // A narrowed policy and a disabled principal, changed on A, are in force on C.
    a.enable_key(&key.key_id).await.unwrap();
    a.create_principal(CreatePrincipalRequest {
        name: "svc".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let allow = |operations: &[&str]| KeyPolicy {
        statements: vec![PolicyStatement {
            principals: vec!["svc".into()],
            operations: operations.iter().map(|o| o.to_string()).collect(),
            ..Default::default()
        }],
    };
    a.put_key_policy(&key.key_id, allow(&["GenerateDataKey", "Decrypt"]))
        .await
        .unwrap();
    let (svc_secret, _) = a.create_token("svc", "service", None).await.unwrap();
    let svc_on_c = kmsd_client::ClientBuilder::new(replicas[2].endpoint())
        .token(svc_secret.to_string())
        .connect()
        .await
        .unwrap();
    until("the service's access made on A works on C", async || {
        svc_on_c.generate_data_key(&key.key_id, &[]).await.is_ok()
    })
    .await;
    a.put_key_policy(&key.key_id, allow(&["Decrypt"]))
        .await
        .unwrap();
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;
    let refused = svc_on_c
        .generate_data_key(&key.key_id, &[])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    a.disable_principal("svc").await.unwrap();
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;
    let refused = svc_on_c.who_am_i().await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");

    // An alias moved on A names its new key on C, and the old key loses it there.
    let moved_to = a.create_key(CreateKeyRequest::default()).await.unwrap();
    until("a key created on A described on C", async || {
        c.describe_key(&moved_to.key_id).await.is_ok()
    })
    .await;
    a.update_alias("alias/shared", &moved_to.key_id)
        .await
        .unwrap();
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;
    assert_eq!(
        c.describe_key("alias/shared").await.unwrap().key_id,
        moved_to.key_id
    );
    assert!(
        c.describe_key(&key.key_id)
            .await
            .unwrap()
            .aliases
            .is_empty()
    );

    // An alias deleted on A no longer names the key on C.
    let other = a
        .create_key(CreateKeyRequest {
            alias: "alias/gone".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    until("an alias made on A resolves on C", async || {
        c.describe_key("alias/gone").await.is_ok()
    })
    .await;
    a.delete_alias("alias/gone").await.unwrap();
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;
    let gone = c.describe_key("alias/gone").await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone}");
    assert!(c.describe_key(&other.key_id).await.is_ok());

    // A token revoked on A stops working on B and C.
    let (secret, token) = a
        .create_token(kmsd::auth::BOOTSTRAP_ADMIN, "short-lived", None)
        .await
        .unwrap();
    let on = |server: &TestServer| {
        kmsd_client::ClientBuilder::new(server.endpoint())
            .token(secret.to_string())
            .connect()
    };
    let (b_with, c_with) = (
        on(&replicas[1]).await.unwrap(),
        on(&replicas[2]).await.unwrap(),
    );
    until("a token made on A accepted on B and C", async || {
        b_with.who_am_i().await.is_ok() && c_with.who_am_i().await.is_ok()
    })
    .await;
    a.revoke_token(&token.token_id).await.unwrap();
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;
    for client in [&b_with, &c_with] {
        let refused = client.who_am_i().await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
    }
}

/// An access key issued on one replica signs requests to another's AWS endpoint (its secret unwraps there with the
/// shared root key), and once revoked on the first it is refused on the other within the bound.
#[tokio::test(flavor = "multi_thread")]
async fn an_access_key_revoked_on_one_replica_is_refused_by_another_within_the_bound() {
    let Some(db) = postgres::database().await else {
        return;
    };
    let a = replica(&db, Arc::new(tempfile::tempdir().unwrap())).await;
    let dir = replica_dir(&a);
    std::fs::write(dir.path().join("admin.token"), a.admin_token()).unwrap();
    let b = aws_replica(&db, dir).await;
    let b_aws = b.server.aws_addr().expect("B serves the AWS endpoint");
    let admin = a.kms_client().await;
    let (secret, issued) = admin.create_access_key("admin", "replicas").await.unwrap();
    let credentials = (issued.access_key_id.as_str(), secret.as_str());
    until("an access key made on A signs for B", async || {
        super::aws_signer::call(
            b_aws,
            credentials,
            "GenerateRandom",
            r#"{"NumberOfBytes": 8}"#,
        )
        .await
        .0 == 200
    })
    .await;

    admin
        .revoke_access_key(&issued.access_key_id)
        .await
        .unwrap();
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;
    let (status, refused) = super::aws_signer::call(
        b_aws,
        credentials,
        "GenerateRandom",
        r#"{"NumberOfBytes": 8}"#,
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["__type"], "UnrecognizedClientException",
        "{refused}"
    );
    assert!(
        refused["message"].as_str().unwrap().contains("revoked"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_changes_on_three_replicas_leave_one_chain_and_one_view() {
    let Some(db) = postgres::database().await else {
        return;
    };
    let replicas = cluster(&db, 3).await;
    let mut clients = Vec::new();
    for r in &replicas {
        clients.push(Arc::new(r.kms_client().await));
    }
    // Keys made on every replica, then, all at once on all three: rotations, data keys, alias moves and policy
    // changes of the same keys.
    let mut keys = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        keys.push(
            c.create_key(CreateKeyRequest {
                alias: format!("alias/k{i}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .key_id,
        );
    }
    let keys = Arc::new(keys);
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let (client, keys) = (client.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..6 {
                for key in keys.iter() {
                    // A key made on another replica a moment ago may not be here yet (bounded wait).
                    let mut tries = 0;
                    while let Err(e) = client.rotate_key(key).await {
                        assert_eq!(e.code(), tonic::Code::NotFound, "RotateKey: {e}");
                        tries += 1;
                        assert!(tries < 1000, "key {key} never reached this replica");
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    client
                        .generate_data_key(key, &[])
                        .await
                        .expect("GenerateDataKey");
                }
                // Every replica moves the same alias: each move is a delete and a create, which may meet
                // another replica's in between; either way the alias ends on one key.
                let alias = "alias/moving";
                let _ = client.delete_alias(alias).await;
                let _ = client
                    .create_alias(alias, &keys[(i + round) % keys.len()])
                    .await;
                client
                    .put_key_policy(&keys[round % keys.len()], KeyPolicy::default())
                    .await
                    .expect("PutKeyPolicy");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let describe = async |c: &kmsd_client::Client| {
        let mut view = Vec::new();
        for key in keys.iter() {
            let meta = c.describe_key(key).await.unwrap();
            let versions = c.list_key_versions(key).await.unwrap().len();
            view.push((meta.key_id, meta.state, meta.primary_version, versions));
        }
        let aliases: Vec<(String, String)> = c
            .list_all_aliases(None)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.alias_name, a.key_id))
            .collect();
        (view, aliases)
    };
    // Every key was rotated 6 times by each of the three replicas, and no rotation was lost or doubled.
    let expected = describe(&clients[0]).await;
    for (_, _, _, versions) in &expected.0 {
        assert_eq!(*versions, 1 + 3 * 6);
    }
    for c in &clients[1..] {
        let mut seen = describe(c).await;
        until(
            "every replica shows the same keys and aliases",
            async || {
                seen = describe(c).await;
                seen == expected
            },
        )
        .await;
    }
    for r in &replicas {
        let report = verify_log(r).await;
        assert!(report.ok, "{report:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_on_every_replica_acts_once() {
    let Some(db) = postgres::database().await else {
        return;
    };
    let replicas = cluster(&db, 3).await;
    let a = replicas[0].kms_client().await;
    let mut keys = Vec::new();
    for _ in 0..4 {
        keys.push(
            a.create_key(CreateKeyRequest {
                rotation_period_days: 90,
                ..Default::default()
            })
            .await
            .unwrap()
            .key_id,
        );
    }
    let doomed = a
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .key_id;
    a.schedule_key_deletion(&doomed, 7).await.unwrap();
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;
    for r in &replicas {
        r.clock.advance_days(91);
    }
    let results = tokio::join!(
        replicas[0].server.run_maintenance(),
        replicas[1].server.run_maintenance(),
        replicas[2].server.run_maintenance(),
    );
    let (mut destroyed, mut rotated) = (0, 0);
    for r in [results.0, results.1, results.2] {
        let (d, n) = r.expect("a maintenance pass");
        destroyed += d;
        rotated += n;
    }
    assert_eq!(
        (destroyed, rotated),
        (1, 4),
        "each due change happened once"
    );
    let pg = db.connect().await;
    let counts = pg
        .query_one(
            "SELECT count(*) FILTER (WHERE event_name = 'AutomaticRotation'),
                    count(*) FILTER (WHERE event_name = 'KeyDestroyed')
             FROM audit_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((counts.get::<_, i64>(0), counts.get::<_, i64>(1)), (4, 1));
    for key in &keys {
        assert_eq!(a.list_key_versions(key).await.unwrap().len(), 2);
    }
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

#[tokio::test(flavor = "multi_thread")]
async fn without_its_database_a_replica_fails_closed_and_recovers_when_it_returns() {
    let Some(pg) = postgres::private_server() else {
        return;
    };
    let db = pg.database().await;
    let server = replica(&db, Arc::new(tempfile::tempdir().unwrap())).await;
    let client = kmsd_client::ClientBuilder::new(server.endpoint())
        .token(server.admin_token())
        .retries(0, std::time::Duration::ZERO)
        .connect()
        .await
        .unwrap();
    let key = client
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .key_id;
    let mut answered = vec![client.generate_data_key(&key, &[]).await.unwrap().key_id];

    pg.stop();
    // Every call is refused while the database is gone, and health says so.
    for _ in 0..5 {
        let refused = client.generate_data_key(&key, &[]).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");
    }
    let refused = client
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");
    until("health reports NOT_SERVING", async || {
        client.health("").await.ok() == Some(kmsd_client::Serving::NotServing)
    })
    .await;

    pg.start();
    until("calls are answered again", async || {
        client.generate_data_key(&key, &[]).await.is_ok()
    })
    .await;
    until("health reports SERVING", async || {
        client.health("").await.ok() == Some(kmsd_client::Serving::Serving)
    })
    .await;
    for _ in 0..5 {
        answered.push(client.generate_data_key(&key, &[]).await.unwrap().key_id);
    }
    let report = verify_log(&server).await;
    assert!(report.ok, "{report:?}");
    // Only answered calls left records: the refused ones could not, and none is there twice.
    let rows = db
        .connect()
        .await
        .query_one(
            "SELECT count(*), count(DISTINCT request_id) FROM audit_events
             WHERE event_name = 'GenerateDataKey' AND outcome = 'success'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.get::<_, i64>(0), rows.get::<_, i64>(1));
    // (A call whose commit reached the server just as it stopped may be recorded and refused: over-recorded,
    // never under-recorded.)
    assert!(rows.get::<_, i64>(0) > answered.len() as i64);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_least_privilege_role_serves_and_cannot_rewrite_the_audit_log() {
    let Some(db) = postgres::database().await else {
        return;
    };
    // The owner migrates; kmsd says its role could rewrite the log.
    let owner = kmsd::storage::Storage::open_postgres(&db.url())
        .await
        .unwrap();
    assert!(owner.postgres_setup().unwrap().can_rewrite_audit);
    owner.close().await;
    let role = format!("{}_app", db.name);
    let pg = db.connect().await;
    pg.batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .unwrap();
    let grants = include_str!("../../deploy/postgres-roles.sql").replace(":\"app\"", &role);
    pg.batch_execute(&grants).await.unwrap();

    // Replicas serve as the role deploy/postgres-roles.sql describes: everything works, nothing warns.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = config(dir.path());
    config.data.database_url =
        Some(kmsd::storage::DatabaseUrl::parse(&db.config_as(&role)).unwrap());
    let server = TestServer::start_with(dir, &config).await;
    let as_app = kmsd::storage::Storage::open_postgres(config.data.database_url.as_ref().unwrap())
        .await
        .unwrap();
    assert!(!as_app.postgres_setup().unwrap().can_rewrite_audit);
    let client = server.kms_client().await;
    let key = client
        .create_key(CreateKeyRequest {
            alias: "alias/least".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    client.generate_data_key(&key.key_id, &[]).await.unwrap();
    client.rotate_key(&key.key_id).await.unwrap();
    client.disable_key(&key.key_id).await.unwrap();
    let report = verify_log(&server).await;
    assert!(report.ok, "{report:?}");

    // The role itself cannot change a record or switch off the triggers that refuse it.
    let app = postgres::connect(&db.config_as(&role)).await;
    for sql in [
        "UPDATE audit_events SET principal = 'mallory'",
        "TRUNCATE audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_events_no_delete ON audit_events",
        "UPDATE audit_checkpoints SET signature = ''",
    ] {
        let refused = app.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            refused.as_db_error().map(|e| e.code().code()),
            Some("42501"),
            "{sql}: {refused:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_given_several_replicas_move_on_when_one_is_gone() {
    let Some(db) = postgres::database().await else {
        return;
    };
    let mut replicas = cluster(&db, 2).await;
    let b = replicas.pop().unwrap();
    let a = replicas.pop().unwrap();
    let token = a.admin_token();
    let endpoints = format!("{},{}", a.endpoint(), b.endpoint());
    let client = kmsd_client::ClientBuilder::new(&endpoints)
        .token(token.clone())
        .connect()
        .await
        .unwrap();
    let key = client
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .key_id;
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;

    // With A gone, calls that change nothing go on to B within the same call...
    a.stop().await;
    let data_key = client.generate_data_key(&key, &[]).await.unwrap();
    assert_eq!(data_key.key_id, key);
    // ...and so does everything after it; a change is never sent twice, but the next one goes to B.
    client.rotate_key(&key).await.expect("RotateKey on B");
    assert_eq!(client.list_key_versions(&key).await.unwrap().len(), 2);

    // kmsctl takes the same list: the first replica is down, the listing comes from the second.
    let out = kmsctl_as(&endpoints, &token, &["--json", "keys", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&key));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_sent_to_a_gone_replica_is_not_repeated_elsewhere() {
    let Some(db) = postgres::database().await else {
        return;
    };
    let mut replicas = cluster(&db, 2).await;
    let b = replicas.pop().unwrap();
    let a = replicas.pop().unwrap();
    let client = kmsd_client::ClientBuilder::new(format!("{},{}", a.endpoint(), b.endpoint()))
        .token(a.admin_token())
        .connect()
        .await
        .unwrap();
    a.stop().await;
    let refused = client
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap_err();
    assert!(refused.is_retryable(), "{refused}");
    // It was not sent to B: B holds no key. The next change goes to B.
    let b_client = b.kms_client().await;
    assert!(b_client.list_all_keys().await.unwrap().is_empty());
    client
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap();
    assert_eq!(b_client.list_all_keys().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_data_directory_moves_to_postgres_with_its_chain_intact() {
    let Some(db) = postgres::database().await else {
        return;
    };
    // A single node on SQLite, with a little of everything.
    let server = TestServer::start().await;
    let client = server.kms_client().await;
    let key = client
        .create_key(CreateKeyRequest {
            alias: "alias/moving".into(),
            tags: [("team".to_owned(), "payments".to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    client.rotate_key(&key.key_id).await.unwrap();
    let blob = client
        .encrypt(&key.key_id, b"moved with the keys", &[("app", "move")])
        .await
        .unwrap()
        .ciphertext_blob;
    let (secret, _) = client
        .create_token(kmsd::auth::BOOTSTRAP_ADMIN, "carried over", None)
        .await
        .unwrap();
    // A signing key moves with its kind and its private key.
    let signer = client
        .create_key(CreateKeyRequest {
            key_spec: "ECC_NIST_P384".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .key_id;
    let signature = client
        .sign(&signer, b"signed on SQLite", "ECDSA_SHA_384")
        .await
        .unwrap()
        .signature;
    let records_before = verify_log(&server).await.records_checked;
    let dir = server.stop().await;

    let moved = kmsctl_as(
        "http://127.0.0.1:1",
        "",
        &[
            "--json",
            "migrate-to-postgres",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--database-url",
            &db.config(),
        ],
    );
    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&moved.stdout).unwrap();
    assert_eq!(report["keys"], 2);
    assert_eq!(report["verified"], true);
    // Bootstrap and every call, VerifyLog's own record included.
    assert_eq!(report["audit_records"], records_before + 1);
    // The checkpoint signed at shutdown moved too, and still verifies (the copy was checked with it).
    assert!(report["checkpoints"].as_u64().unwrap() >= 1, "{report}");

    // The same data directory (root key, admin token) now serves from PostgreSQL.
    let mut config = config(dir.path());
    config.data.database_url = Some(db.url());
    let server = TestServer::start_with(dir.clone(), &config).await;
    let client = server.kms_client().await;
    let plain = client
        .decrypt(&blob, &[("app", "move")], None)
        .await
        .unwrap();
    assert_eq!(&plain.plaintext[..], b"moved with the keys");
    let moved_signer = client.describe_key(&signer).await.unwrap();
    assert_eq!(
        (
            moved_signer.key_spec.as_str(),
            moved_signer.key_usage.as_str()
        ),
        ("ECC_NIST_P384", "SIGN_VERIFY")
    );
    assert!(
        client
            .verify(&signer, b"signed on SQLite", &signature, "ECDSA_SHA_384")
            .await
            .unwrap()
    );
    assert_eq!(
        client.describe_key("alias/moving").await.unwrap().tags["team"],
        "payments"
    );
    let carried = kmsd_client::ClientBuilder::new(server.endpoint())
        .token(secret.to_string())
        .connect()
        .await
        .unwrap();
    carried.who_am_i().await.unwrap();
    let report = verify_log(&server).await;
    assert!(report.ok, "{report:?}");
    assert!(report.records_checked > records_before + 1);
    server.stop().await;

    // A database that already holds kmsd data is refused, and left as it was.
    let again = kmsctl_as(
        "http://127.0.0.1:1",
        "",
        &[
            "migrate-to-postgres",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--database-url",
            &db.config(),
        ],
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds kmsd data"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// Three `kmsd` processes on `db`: the first makes the root key and the administrator, the others get copies.
fn daemons(db: &Database, dirs: &[tempfile::TempDir]) -> Vec<Daemon> {
    let url = db.config();
    let args = ["--database-url", url.as_str()];
    let first = Daemon::start(dirs[0].path(), &args, &[]).expect("the first replica starts");
    let mut all = vec![first];
    for dir in &dirs[1..] {
        for file in ["root.key", "admin.token"] {
            std::fs::copy(dirs[0].path().join(file), dir.path().join(file)).unwrap();
        }
        all.push(Daemon::start(dir.path(), &args, &[]).expect("a replica starts"));
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_under_load_loses_no_answered_call_and_rejoins() {
    let Some(db) = postgres::database().await else {
        return;
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas = daemons(&db, &dirs);
    let token = replicas[0].admin_token();
    let connect = async |endpoint: String| {
        kmsd_client::ClientBuilder::new(endpoint)
            .token(token.clone())
            .retries(0, std::time::Duration::ZERO)
            .connect()
            .await
            .unwrap()
    };
    let key = connect(replicas[0].endpoint())
        .await
        .create_key(CreateKeyRequest {
            alias: "alias/load".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .key_id;
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;

    // Load on every replica: each answered call's request id is kept.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let counted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        for t in 0..8 {
            tasks.push(
                load(
                    replica.endpoint(),
                    &token,
                    key.clone(),
                    format!("load-{r}-{t}"),
                    stop.clone(),
                    counted.clone(),
                )
                .await,
            );
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    replicas[1].child.kill().unwrap();
    replicas[1].child.wait().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // The others kept serving; the killed one comes back on the same data directory.
    let url = db.config();
    let back = Daemon::start(dirs[1].path(), &["--database-url", url.as_str()], &[])
        .expect("the killed replica restarts");
    let rejoined = connect(back.endpoint()).await;
    for n in 0..20 {
        let id = format!("rejoined-{n}");
        rejoined
            .with_request_id(&id)
            .generate_data_key(&key, &[])
            .await
            .expect("the restarted replica serves");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered: Vec<String> = (0..20).map(|n| format!("rejoined-{n}")).collect();
    let mut by_replica = [0usize; 3];
    for (i, task) in tasks.into_iter().enumerate() {
        let ids = task.await.unwrap();
        by_replica[i / 8] += ids.len();
        answered.extend(ids);
    }
    eprintln!("answered per replica (1 killed): {by_replica:?}");
    assert!(by_replica[0] > 0 && by_replica[2] > 0, "{by_replica:?}");

    // Every answered call has exactly one record, in one chain that verifies.
    let pg = db.connect().await;
    assert_recorded_once(&pg, &answered).await;
    let verified = kmsctl_as(&back.endpoint(), &token, &["--json", "audit", "verify"]);
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    // And the chain as an archive file verifies on its own with the independent script.
    let archive = dirs[0].path().join("all.jsonl");
    let archived = kmsctl_as(
        &replicas[0].endpoint(),
        &token,
        &[
            "audit",
            "archive",
            "--before",
            "2999-01-01T00:00:00Z",
            "--out",
            archive.to_str().unwrap(),
            "--keep",
        ],
    );
    assert!(
        archived.status.success(),
        "{}",
        String::from_utf8_lossy(&archived.stderr)
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/verify-audit-log.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg("--archive")
        .arg(&archive)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("OK"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(back);
    replicas.clear();
}

/// A replica on `url` (several hosts, say), with its own data directory, a copy of `first`'s root key and token
/// (or the first of all, when `first` is `None`).
async fn replica_on(url: &str, first: Option<&TestServer>) -> TestServer {
    let dir = match first {
        Some(first) => {
            let dir = replica_dir(first);
            std::fs::write(dir.path().join("admin.token"), first.admin_token()).unwrap();
            dir
        }
        None => Arc::new(tempfile::tempdir().unwrap()),
    };
    let mut config = config(dir.path());
    config.data.database_url = Some(kmsd::storage::DatabaseUrl::parse(url).unwrap());
    TestServer::start_with(dir, &config).await
}

/// Calls GenerateDataKey at `endpoint` with fresh request ids (`tag-0`, `tag-1`, ...) until `stop`; returns the
/// ids of the answered ones.
async fn load(
    endpoint: String,
    token: &str,
    key: String,
    tag: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    answered: Arc<std::sync::atomic::AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let client = kmsd_client::ClientBuilder::new(endpoint)
        .token(token)
        .retries(0, std::time::Duration::ZERO)
        .timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut ids = Vec::new();
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let id = format!("{tag}-{n}");
            n += 1;
            match client
                .with_request_id(&id)
                .generate_data_key(&key, &[])
                .await
            {
                Ok(_) => {
                    ids.push(id);
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        ids
    })
}

/// Every call of `ids` has exactly one audit record in `pg`'s database.
async fn assert_recorded_once(pg: &tokio_postgres::Client, ids: &[String]) {
    let rows = pg
        .query(
            "SELECT request_id, count(*) FROM audit_events WHERE request_id = ANY($1) GROUP BY request_id",
            &[&ids],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), ids.len(), "every answered call is recorded");
    assert!(
        rows.iter().all(|r| r.get::<_, i64>(1) == 1),
        "no call is recorded twice"
    );
}

/// A primary with a database, its streaming standby (synchronous when asked), and a URL naming both with
/// `target_session_attrs=read-write`.
async fn primary_and_standby(
    synchronous: bool,
) -> Option<(postgres::Server, postgres::Server, Database, String)> {
    let primary = postgres::private_server()?;
    let db = primary.database().await;
    let standby = primary.standby();
    if synchronous {
        primary
            .execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            .await;
        primary.execute("SELECT pg_reload_conf()").await;
        let watch = db.connect().await;
        until("the standby is synchronous", async || {
            watch
                .query_opt(
                    "SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'",
                    &[],
                )
                .await
                .unwrap()
                .is_some()
        })
        .await;
    }
    let url = format!(
        "host={},{} user=kmsd dbname={} target_session_attrs=read-write",
        primary.host().display(),
        standby.host().display(),
        db.name
    );
    Some((primary, standby, db, url))
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_to_a_synchronous_standby_loses_no_answered_call() {
    let Some((primary, standby, db, url)) = primary_and_standby(true).await else {
        return;
    };
    let a = replica_on(&url, None).await;
    assert_eq!(
        a.server
            .kms()
            .storage()
            .postgres_setup()
            .map(|s| s.synchronous),
        Some(true),
        "kmsd sees the synchronous standby"
    );
    let b = replica_on(&url, Some(&a)).await;
    let key = a
        .kms_client()
        .await
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .key_id;
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (server, tags) in [
        (&a, ["a0", "a1", "a2", "a3"]),
        (&b, ["b0", "b1", "b2", "b3"]),
    ] {
        for tag in tags {
            tasks.push(
                load(
                    server.endpoint(),
                    &server.admin_token(),
                    key.clone(),
                    tag.to_owned(),
                    stop.clone(),
                    answered.clone(),
                )
                .await,
            );
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The primary goes away at once, mid-load; the standby takes over.
    primary.stop();
    standby.promote();
    let at_failover = answered.load(std::sync::atomic::Ordering::Relaxed);
    until("both replicas answer through the new primary", async || {
        answered.load(std::sync::atomic::Ordering::Relaxed) > at_failover + 100
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    eprintln!(
        "answered {} calls, {at_failover} before the failover",
        ids.len()
    );

    let new_primary = postgres::connect(&format!(
        "host={} user=kmsd dbname={}",
        standby.host().display(),
        db.name
    ))
    .await;
    assert_recorded_once(&new_primary, &ids).await;
    for server in [&a, &b] {
        let report = verify_log(server).await;
        assert!(report.ok, "{report:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_asynchronous_replication_a_lost_tail_is_found_by_a_checkpoint_kept_outside() {
    let Some((primary, standby, db, url)) = primary_and_standby(false).await else {
        return;
    };
    let server = replica_on(&url, None).await;
    assert_eq!(
        server
            .server
            .kms()
            .storage()
            .postgres_setup()
            .map(|s| s.synchronous),
        Some(false),
        "kmsd sees asynchronous replication"
    );
    let client = server.kms_client().await;
    let key = client
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .key_id;
    let watch = db.connect().await;
    until("the standby has replayed everything", async || {
        watch
            .query_opt(
                "SELECT 1 FROM pg_stat_replication WHERE replay_lsn = pg_current_wal_lsn()",
                &[],
            )
            .await
            .unwrap()
            .is_some()
    })
    .await;
    drop(watch);
    // The standby falls behind (here: it stops); the primary goes on answering, as asynchronous replication lets it.
    standby.stop();
    for _ in 0..10 {
        client.generate_data_key(&key, &[]).await.unwrap();
    }
    // An operator keeps the head outside the database.
    let trusted = verify_log(&server).await;
    assert!(trusted.ok);
    primary.stop();
    standby.start();
    standby.promote();
    until(
        "the replica answers through the promoted standby",
        async || client.generate_data_key(&key, &[]).await.is_ok(),
    )
    .await;
    // The answered calls' records are gone, and the checkpoint kept outside says so.
    let report = server
        .audit_client()
        .await
        .verify_log(VerifyLogRequest {
            trusted_sequence: trusted.head_sequence,
            trusted_hash: trusted.head_hash.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!report.ok, "the lost tail went unnoticed: {report:?}");
    eprintln!("after the failover: {}", report.problem);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_reaches_postgres_over_tls_and_checks_its_certificate() {
    let Some(mut pg) = postgres::private_server() else {
        return;
    };
    let db = pg.database().await;
    let ca = crate::tls::Ca::new("database CA");
    let certificate = ca.server();
    let port = pg.serve_tls(&certificate.cert, &certificate.key);
    let files = tempfile::tempdir().unwrap();
    let url_with = |ca_pem: &str, name: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, ca_pem).unwrap();
        format!(
            "postgres://kmsd@127.0.0.1:{port}/{}?sslmode=require&sslrootcert={}",
            db.name,
            path.display()
        )
    };
    let server = replica_on(&url_with(&ca.pem(), "ca.pem"), None).await;
    let client = server.kms_client().await;
    let key = client
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .key_id;
    client.generate_data_key(&key, &[]).await.unwrap();
    // Every connection kmsd holds is encrypted.
    let tcp = postgres::connect(&format!(
        "host=127.0.0.1 port={port} user=kmsd dbname={} sslmode=disable",
        db.name
    ))
    .await;
    let row = tcp
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.application_name = 'kmsd'",
            &[],
        )
        .await
        .unwrap();
    let (connections, encrypted): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        connections > 0 && connections == encrypted,
        "{encrypted} of {connections}"
    );

    // A server whose certificate another CA signed is not trusted.
    let other = crate::tls::Ca::new("someone else");
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.data.database_url =
        Some(kmsd::storage::DatabaseUrl::parse(&url_with(&other.pem(), "other.pem")).unwrap());
    let refused = try_start(&config, kmsd::clock::ManualClock::new())
        .await
        .err()
        .expect("an untrusted database server is refused");
    assert!(
        refused.to_string().to_lowercase().contains("certificate"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_starting_together_on_an_empty_database_make_one_administrator() {
    let Some(db) = postgres::database().await else {
        return;
    };
    // The operator gives every replica the same root key before the first start.
    let root = "5e".repeat(32);
    let dirs: Vec<Arc<tempfile::TempDir>> = (0..3)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("root.key");
            std::fs::write(&path, &root).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            Arc::new(dir)
        })
        .collect();
    let (a, b, c) = tokio::join!(
        replica(&db, dirs[0].clone()),
        replica(&db, dirs[1].clone()),
        replica(&db, dirs[2].clone())
    );
    let written: Vec<&TestServer> = [&a, &b, &c]
        .into_iter()
        .filter(|r| r.data_dir().join("admin.token").exists())
        .collect();
    assert_eq!(written.len(), 1, "one replica bootstrapped");
    let token = written[0].admin_token();
    let pg = db.connect().await;
    let row = pg
        .query_one(
            "SELECT (SELECT count(*) FROM principals), (SELECT count(*) FROM tokens),
                    (SELECT count(*) FROM tokens WHERE revoked_at_ms IS NOT NULL)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (1, 1, 0),
        "one administrator, one token, none revoked"
    );
    for r in [&a, &b, &c] {
        let client = kmsd_client::ClientBuilder::new(r.endpoint())
            .token(token.clone())
            .connect()
            .await
            .unwrap();
        assert_eq!(client.who_am_i().await.unwrap().principal, "admin");
    }
}

/// Key kinds across replicas: a key pair and an HMAC key made on A serve from B; an import token A issued imports on
/// B (every replica shares the root key that seals it), and the imported and then deleted material is in force on
/// A within the bound.
#[tokio::test(flavor = "multi_thread")]
async fn key_pairs_hmac_keys_and_imports_serve_from_every_replica() {
    let Some(db) = postgres::database().await else {
        return;
    };
    let nodes = cluster(&db, 2).await;
    let (a, b) = (nodes[0].kms_client().await, nodes[1].kms_client().await);
    let signer = a
        .create_key(CreateKeyRequest {
            key_spec: "ECC_NIST_P384".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .key_id;
    let mac_key = a
        .create_key(CreateKeyRequest {
            key_spec: "HMAC_512".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .key_id;
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;
    let signed = b.sign(&signer, b"from B", "ECDSA_SHA_384").await.unwrap();
    assert!(
        a.verify(&signer, b"from B", &signed.signature, "ECDSA_SHA_384")
            .await
            .unwrap()
    );
    assert_eq!(
        a.get_public_key(&signer).await.unwrap().public_key,
        b.get_public_key(&signer).await.unwrap().public_key
    );
    assert_eq!(
        a.generate_mac(&mac_key, b"m", "HMAC_SHA_512")
            .await
            .unwrap()
            .mac,
        b.generate_mac(&mac_key, b"m", "HMAC_SHA_512")
            .await
            .unwrap()
            .mac
    );

    let imported = a
        .create_key(CreateKeyRequest {
            origin: "EXTERNAL".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .key_id;
    let params = a
        .get_parameters_for_import(&imported, "", "")
        .await
        .unwrap();
    let public = aws_lc_rs::rsa::OaepPublicEncryptingKey::new(
        aws_lc_rs::rsa::PublicEncryptingKey::from_der(&params.public_key).unwrap(),
    )
    .unwrap();
    let mut wrapped = vec![0; public.ciphertext_size()];
    let wrapped = public
        .encrypt(
            &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
            &[0x42; 32],
            &mut wrapped,
            None,
        )
        .unwrap()
        .to_vec();
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;
    b.import_key_material(&imported, &params.import_token, &wrapped, None)
        .await
        .unwrap();
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;
    let blob = a.encrypt(&imported, b"imported on B", &[]).await.unwrap();
    a.delete_imported_key_material(&imported).await.unwrap();
    tokio::time::sleep(kmsd::replica::STALE_AFTER).await;
    let e = b
        .decrypt(&blob.ciphertext_blob, &[], None)
        .await
        .unwrap_err();
    assert!(matches!(e, kmsd_client::Error::KeyState(_)), "{e}");
    let stored = nodes[1]
        .server
        .kms()
        .storage()
        .versions_of(kmsd::keys::KeyId::parse(&imported).unwrap())
        .await
        .unwrap();
    assert!(stored[0].wrapped_material.is_none());
}
