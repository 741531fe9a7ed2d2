//! Rotation (manual and automatic) and scheduled deletion, with an injected clock instead of sleeps.

use kmsd_proto::pb::*;
use tonic::Code;

use crate::support::*;

async fn versions(client: &mut Client, key_id: &str) -> Vec<KeyVersion> {
    client
        .list_key_versions(ListKeyVersionsRequest {
            key_id: key_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_keeps_old_versions_decrypting() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create_key(&mut client, "alias/r").await;
    let v1 = encrypt(&mut client, "alias/r", b"one", &[]).await;
    assert_eq!(v1.key_version, 1);

    let rotated = client
        .rotate_key(RotateKeyRequest {
            key_id: "alias/r".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(rotated.primary_version, 2);
    let v2 = encrypt(&mut client, "alias/r", b"two", &[]).await;
    assert_eq!(v2.key_version, 2);

    let opened = decrypt(&mut client, &v1.ciphertext_blob, &[])
        .await
        .unwrap();
    assert_eq!(
        (opened.key_version, opened.plaintext.as_slice()),
        (1, &b"one"[..])
    );
    let opened = decrypt(&mut client, &v2.ciphertext_blob, &[])
        .await
        .unwrap();
    assert_eq!(
        (opened.key_version, opened.plaintext.as_slice()),
        (2, &b"two"[..])
    );

    let listed = versions(&mut client, &key.key_id).await;
    let summary: Vec<_> = listed
        .iter()
        .map(|v| (v.version, v.primary, v.destroyed))
        .collect();
    assert_eq!(summary, [(1, false, false), (2, true, false)]);

    // A blob naming a version that does not exist is an invalid ciphertext, not a missing key.
    let mut forged = v2.ciphertext_blob.clone();
    forged[17..21].copy_from_slice(&9u32.to_be_bytes());
    assert_status(
        decrypt(&mut client, &forged, &[]).await,
        Code::InvalidArgument,
        &["ciphertext is invalid"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn automatic_rotation_follows_the_clock() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create_key_with(
        &mut client,
        CreateKeyRequest {
            rotation_period_days: 30,
            ..Default::default()
        },
    )
    .await;
    let old = encrypt(&mut client, &key.key_id, b"before", &[]).await;

    server.clock.advance_days(29);
    assert_eq!(server.server.run_maintenance().await.unwrap(), (0, 0));
    assert_eq!(describe(&mut client, &key.key_id).await.primary_version, 1);

    server.clock.advance_days(1);
    assert_eq!(server.server.run_maintenance().await.unwrap(), (0, 1));
    let after = describe(&mut client, &key.key_id).await;
    assert_eq!(after.primary_version, 2);
    assert_eq!(
        after.next_rotation_time.unwrap().seconds,
        key.next_rotation_time.unwrap().seconds + 30 * 86_400
    );
    assert_eq!(
        encrypt(&mut client, &key.key_id, b"after", &[])
            .await
            .key_version,
        2
    );
    assert_eq!(
        decrypt(&mut client, &old.ciphertext_blob, &[])
            .await
            .unwrap()
            .plaintext,
        b"before"
    );
    // The daemon's own change is in the audit log, as the daemon's.
    let rotations = server.events_named("AutomaticRotation").await;
    assert_eq!(rotations.len(), 1);
    assert_eq!(
        (rotations[0].key_id.as_str(), rotations[0].key_version),
        (key.key_id.as_str(), 2)
    );
    assert_eq!(rotations[0].principal, "kmsd");
    assert!(rotations[0].reason.contains("rotation period elapsed"));

    // A disabled key is not rotated; it catches up once enabled.
    client
        .disable_key(DisableKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap();
    server.clock.advance_days(31);
    assert_eq!(server.server.run_maintenance().await.unwrap(), (0, 0));
    client
        .enable_key(EnableKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(server.server.run_maintenance().await.unwrap(), (0, 1));
    assert_eq!(describe(&mut client, &key.key_id).await.primary_version, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_deletion_destroys_material_when_the_window_ends() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create_key(&mut client, "alias/doomed").await;
    client
        .rotate_key(RotateKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap();
    let blob = encrypt(&mut client, "alias/doomed", b"gone soon", &[])
        .await
        .ciphertext_blob;

    let scheduled = client
        .schedule_key_deletion(ScheduleKeyDeletionRequest {
            key_id: "alias/doomed".into(),
            pending_window_days: 7,
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(state(&scheduled), KeyState::PendingDeletion);
    let now = server.clock_now_seconds();
    assert_eq!(scheduled.deletion_time.unwrap().seconds, now + 7 * 86_400);

    assert_status(
        decrypt(&mut client, &blob, &[]).await,
        Code::FailedPrecondition,
        &["PENDING_DELETION", "CancelKeyDeletion"],
    );
    assert_status(
        client
            .enable_key(EnableKeyRequest {
                key_id: key.key_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        &["PENDING_DELETION"],
    );
    assert_status(
        client
            .schedule_key_deletion(ScheduleKeyDeletionRequest {
                key_id: key.key_id.clone(),
                pending_window_days: 7,
            })
            .await,
        Code::FailedPrecondition,
        &["PENDING_DELETION"],
    );

    server.clock.advance_days(6);
    assert_eq!(server.server.run_maintenance().await.unwrap(), (0, 0));
    assert_eq!(
        state(&describe(&mut client, &key.key_id).await),
        KeyState::PendingDeletion
    );

    server.clock.advance_days(1);
    assert_eq!(server.server.run_maintenance().await.unwrap(), (1, 0));

    let destroyed_events = server.events_named("KeyDestroyed").await;
    assert_eq!(destroyed_events.len(), 1);
    assert_eq!(destroyed_events[0].key_id, key.key_id);

    // Metadata stays; material and aliases are gone.
    let destroyed = describe(&mut client, &key.key_id).await;
    assert_eq!(state(&destroyed), KeyState::Destroyed);
    assert_eq!(destroyed.description, "test key");
    assert!(destroyed.aliases.is_empty());
    assert_eq!(destroyed.deletion_time, scheduled.deletion_time);
    assert!(
        versions(&mut client, &key.key_id)
            .await
            .iter()
            .all(|v| v.destroyed)
    );
    assert_status(
        client
            .describe_key(DescribeKeyRequest {
                key_id: "alias/doomed".into(),
            })
            .await,
        Code::NotFound,
        &[],
    );
    assert_status(
        decrypt(&mut client, &blob, &[]).await,
        Code::FailedPrecondition,
        &["DESTROYED", "cannot be recovered"],
    );
    for result in [
        client
            .enable_key(EnableKeyRequest {
                key_id: key.key_id.clone(),
            })
            .await
            .map(drop),
        client
            .cancel_key_deletion(CancelKeyDeletionRequest {
                key_id: key.key_id.clone(),
            })
            .await
            .map(drop),
        client
            .rotate_key(RotateKeyRequest {
                key_id: key.key_id.clone(),
            })
            .await
            .map(drop),
    ] {
        assert_status(result, Code::FailedPrecondition, &["DESTROYED"]);
    }

    // Crypto-shredding: no version's wrapped material remains in the database.
    let stored = server
        .server
        .kms()
        .storage()
        .versions_of(parse_id(&key.key_id))
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|v| v.wrapped_material.is_none()));

    // And it stays destroyed across a restart.
    let server = server.restart().await;
    let mut client = server.client().await;
    assert_eq!(
        state(&describe(&mut client, &key.key_id).await),
        KeyState::Destroyed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelled_deletion_returns_the_key_disabled() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create_key(&mut client, "").await;
    let blob = encrypt(&mut client, &key.key_id, b"kept", &[])
        .await
        .ciphertext_blob;
    let scheduled = client
        .schedule_key_deletion(ScheduleKeyDeletionRequest {
            key_id: key.key_id.clone(),
            pending_window_days: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(
        scheduled.deletion_time.unwrap().seconds,
        server.clock_now_seconds() + 30 * 86_400,
        "the default window is 30 days"
    );
    let cancelled = client
        .cancel_key_deletion(CancelKeyDeletionRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(state(&cancelled), KeyState::Disabled);
    assert!(cancelled.deletion_time.is_none());

    server.clock.advance_days(31);
    assert_eq!(server.server.run_maintenance().await.unwrap(), (0, 0));
    client
        .enable_key(EnableKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        decrypt(&mut client, &blob, &[]).await.unwrap().plaintext,
        b"kept"
    );

    assert_status(
        client
            .cancel_key_deletion(CancelKeyDeletionRequest {
                key_id: key.key_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        &["ENABLED", "only a key pending deletion"],
    );
    for days in [1, 6, 31] {
        assert_status(
            client
                .schedule_key_deletion(ScheduleKeyDeletionRequest {
                    key_id: key.key_id.clone(),
                    pending_window_days: days,
                })
                .await,
            Code::InvalidArgument,
            &["pending_window_days must be 7-30"],
        );
    }
}

fn parse_id(s: &str) -> kmsd::keys::KeyId {
    kmsd::keys::KeyId::parse(s).unwrap()
}

impl TestServer {
    async fn events_named(&self, event_name: &str) -> Vec<AuditEvent> {
        self.audit_client()
            .await
            .query_events(QueryEventsRequest {
                event_name: event_name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events
    }

    fn clock_now_seconds(&self) -> i64 {
        use kmsd::clock::Clock;
        self.clock.now().0.div_euclid(1000)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_changes_nothing_it_cannot_record() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create_key_with(
        &mut client,
        CreateKeyRequest {
            rotation_period_days: 1,
            ..Default::default()
        },
    )
    .await;
    let sql = rusqlite::Connection::open(server.data_dir().join("kmsd.db")).unwrap();
    sql.execute_batch(
        "CREATE TRIGGER full BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();
    server.clock.advance_days(2);
    assert!(
        server.server.run_maintenance().await.is_err(),
        "refused: its record could not be written"
    );
    sql.execute_batch("DROP TRIGGER full;").unwrap();
    assert_eq!(
        describe(&mut client, &key.key_id).await.primary_version,
        1,
        "not rotated without a record"
    );
    assert_eq!(server.server.run_maintenance().await.unwrap(), (0, 1));
    assert_eq!(describe(&mut client, &key.key_id).await.primary_version, 2);
}

/// A key's details change after creation: description, tags, and its rotation schedule (which the maintenance pass
/// then follows); each change is refused in states AWS refuses it in, recorded, and kept across a restart.
#[tokio::test(flavor = "multi_thread")]
async fn descriptions_tags_and_rotation_schedules_change_after_creation() {
    let server = TestServer::start().await;
    let kms = server.kms_client().await;
    let key = kms
        .create_key(CreateKeyRequest {
            description: "first".into(),
            tags: ctx(&[("team", "payments")]),
            ..Default::default()
        })
        .await
        .unwrap();
    let id = key.key_id.as_str();

    assert_eq!(
        kms.update_key_description(id, "second")
            .await
            .unwrap()
            .description,
        "second"
    );
    let tagged = kms
        .tag_key(
            id,
            [
                ("env".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "billing".to_owned()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(tagged.tags, ctx(&[("env", "prod"), ("team", "billing")]));
    kms.untag_key(id, vec!["team".into(), "absent".into()])
        .await
        .unwrap();
    assert_eq!(
        kms.list_key_tags(id).await.unwrap(),
        ctx(&[("env", "prod")])
    );
    let too_many: Vec<(String, String)> =
        (0..50).map(|i| (format!("t{i}"), String::new())).collect();
    let refused = kms.tag_key(id, too_many).await.unwrap_err();
    assert!(refused.to_string().contains("at most 50 tags"), "{refused}");

    // Rotation: off, then every 10 days from now, then a new period restarts the schedule, then off again.
    let status = kms.get_key_rotation_status(id).await.unwrap();
    assert!(!status.rotation_enabled && status.next_rotation_time.is_none());
    kms.enable_key_rotation(id, 10).await.unwrap();
    let status = kms.get_key_rotation_status(id).await.unwrap();
    assert!(status.rotation_enabled);
    assert_eq!(status.rotation_period_days, 10);
    server.clock.advance_days(9);
    assert_eq!(server.server.run_maintenance().await.unwrap(), (0, 0));
    server.clock.advance_days(1);
    assert_eq!(server.server.run_maintenance().await.unwrap(), (0, 1));
    assert_eq!(kms.describe_key(id).await.unwrap().primary_version, 2);
    kms.enable_key_rotation(id, 0).await.unwrap();
    assert_eq!(
        kms.get_key_rotation_status(id)
            .await
            .unwrap()
            .rotation_period_days,
        365
    );
    kms.disable_key_rotation(id).await.unwrap();
    server.clock.advance_days(400);
    assert_eq!(server.server.run_maintenance().await.unwrap(), (0, 0));
    let refused = kms.enable_key_rotation(id, 2561).await.unwrap_err();
    assert!(refused.to_string().contains("1-2560"), "{refused}");

    // A disabled key keeps its details changeable, but not its rotation (as AWS: DisabledException).
    kms.disable_key(id).await.unwrap();
    kms.update_key_description(id, "third").await.unwrap();
    let refused = kms.enable_key_rotation(id, 30).await.unwrap_err();
    assert!(refused.to_string().contains("DISABLED"), "{refused}");

    let events = {
        let mut audit = server.audit_client().await;
        audit
            .query_events(QueryEventsRequest {
                key_id: id.to_owned(),
                oldest_first: true,
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events
    };
    let names: Vec<(&str, Outcome)> = events
        .iter()
        .map(|e| (e.event_name.as_str(), outcome(e)))
        .filter(|(n, _)| !matches!(*n, "CreateKey" | "DescribeKey" | "AutomaticRotation"))
        .collect();
    assert_eq!(
        names,
        [
            ("UpdateKeyDescription", Outcome::Success),
            ("TagResource", Outcome::Success),
            ("UntagResource", Outcome::Success),
            ("ListResourceTags", Outcome::Success),
            ("TagResource", Outcome::Error),
            ("GetKeyRotationStatus", Outcome::Success),
            ("EnableKeyRotation", Outcome::Success),
            ("GetKeyRotationStatus", Outcome::Success),
            ("EnableKeyRotation", Outcome::Success),
            ("GetKeyRotationStatus", Outcome::Success),
            ("DisableKeyRotation", Outcome::Success),
            ("EnableKeyRotation", Outcome::Error),
            ("DisableKey", Outcome::Success),
            ("UpdateKeyDescription", Outcome::Success),
            ("EnableKeyRotation", Outcome::Error),
        ]
    );

    // All of it is stored, not only cached.
    let server = server.restart().await;
    let kept = describe(&mut server.client().await, id).await;
    assert_eq!(kept.description, "third");
    assert_eq!(kept.tags, ctx(&[("env", "prod")]));
    assert_eq!(kept.rotation_period_days, 0);
    server.stop().await;
}

/// UpdateAlias moves an alias to another key: calls through the alias reach the new key, the record names both.
#[tokio::test(flavor = "multi_thread")]
async fn update_alias_moves_an_alias_between_keys() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let kms = server.kms_client().await;
    let a = create_key(&mut client, "alias/moving").await;
    let b = create_key(&mut client, "alias/other").await;
    let moved = kms.update_alias("alias/moving", &b.key_id).await.unwrap();
    assert_eq!(moved.key_id, b.key_id);
    assert_eq!(
        encrypt(&mut client, "alias/moving", b"x", &[]).await.key_id,
        b.key_id
    );
    assert!(describe(&mut client, &a.key_id).await.aliases.is_empty());
    let mut on_b = describe(&mut client, &b.key_id).await.aliases;
    on_b.sort();
    assert_eq!(on_b, ["alias/moving", "alias/other"]);
    let missing = kms.update_alias("alias/none", &b.key_id).await.unwrap_err();
    assert!(missing.to_string().contains("does not exist"), "{missing}");

    let server = server.restart().await;
    let mut client = server.client().await;
    assert_eq!(describe(&mut client, "alias/moving").await.key_id, b.key_id);
    server.stop().await;
}
