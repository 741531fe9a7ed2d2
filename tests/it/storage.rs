//! The storage conformance suite: every operation of the seam, the same assertions on SQLite (a real file) and on
//! PostgreSQL (a real server, [`super::postgres`]), so the two backends cannot drift apart.

use std::collections::BTreeMap;

use kmsd::audit::{AuditRecord, CheckpointSigner, Encoded, GENESIS_HASH, Outcome};
use kmsd::clock::UnixMillis;
use kmsd::keys::{AliasName, KeyId, KmsKey, State};
use kmsd::storage::{
    AccessKeyRow, AccessRows, AliasRow, AuditQuery, ChangeKind, PrincipalRow, Storage, TokenRow,
    VersionRow, is_constraint_violation,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_trimmed_change_log_makes_a_replica_behind_it_reload_everything() {
    let Some(db) = super::postgres::database().await else {
        return;
    };
    let storage = Storage::open_postgres(&db.url()).await.unwrap();
    for n in 0..3 {
        storage
            .insert_key(key("logged", n), version(1, n), None, None)
            .await
            .unwrap();
    }
    let changes = storage
        .changes_after(0, ChangeKind::Key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (changes.head, changes.subjects.len(), changes.gap),
        (3, 3, false)
    );
    // Nothing is old enough yet; then everything is.
    assert_eq!(
        storage
            .trim_changes(std::time::Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        storage
            .trim_changes(std::time::Duration::ZERO)
            .await
            .unwrap(),
        3
    );
    let behind = storage
        .changes_after(1, ChangeKind::Key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (behind.head, behind.gap),
        (3, true),
        "a replica at 1 must reload"
    );
    let current = storage
        .changes_after(3, ChangeKind::Key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (current.head, current.gap, current.subjects.len()),
        (3, false, 0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open_sqlite(&dir.path().join("kmsd.db")).unwrap();
    conformance(storage).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_conforms() {
    let Some(db) = super::postgres::database().await else {
        return;
    };
    let storage = Storage::open_postgres(&db.url()).await.unwrap();
    conformance(storage.clone()).await;
    // Opening again finds the schema in place and applies nothing twice.
    Storage::open_postgres(&db.url()).await.unwrap();
}

async fn conformance(storage: Storage) {
    meta(&storage).await;
    keys(&storage).await;
    imported(&storage).await;
    access(&storage).await;
    audit(&storage).await;
}

async fn meta(storage: &Storage) {
    assert_eq!(storage.meta("conformance").await.unwrap(), None);
    storage.set_meta("conformance", vec![1, 2]).await.unwrap();
    storage.set_meta("conformance", vec![3]).await.unwrap();
    assert_eq!(storage.meta("conformance").await.unwrap(), Some(vec![3]));
    // The first value stays; the caller learns which one that is.
    let first = storage
        .insert_meta_if_absent("first", vec![7])
        .await
        .unwrap();
    let second = storage
        .insert_meta_if_absent("first", vec![8])
        .await
        .unwrap();
    assert_eq!((first, second), (vec![7], vec![7]));
}

fn key(description: &str, at: i64) -> KmsKey {
    KmsKey {
        id: KeyId::new_random(),
        description: description.into(),
        state: State::Enabled,
        created_at: UnixMillis(at),
        primary_version: 1,
        rotation_period_days: Some(90),
        next_rotation_at: Some(UnixMillis(at + 90 * 86_400_000)),
        deletion_at: None,
        tags: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
        kind: kmsd::keys::KeyKind::SYMMETRIC,
        origin: kmsd::keys::Origin::Kmsd,
        valid_to: None,
        import_fingerprint: None,
    }
}

fn version(n: u32, at: i64) -> VersionRow {
    VersionRow {
        version: n,
        created_at: UnixMillis(at),
        wrapped_material: Some(vec![n as u8; 60]),
    }
}

/// A key of another kind and origin: its kind and origin come back as stored, and its material is set and erased
/// with its record, in one transaction.
async fn imported(storage: &Storage) {
    use kmsd::keys::{KeyKind, KeySpec, KeyUsage, Origin};
    let pending = KmsKey {
        state: State::PendingImport,
        rotation_period_days: None,
        next_rotation_at: None,
        kind: KeyKind::new(KeySpec::EccNistP384, KeyUsage::SignVerify).unwrap(),
        origin: Origin::External,
        ..key("imported", 10_000)
    };
    let empty = VersionRow {
        wrapped_material: None,
        ..version(1, 10_000)
    };
    storage
        .insert_key(pending.clone(), empty.clone(), None, None)
        .await
        .unwrap();
    let loaded = storage.load_key(pending.id).await.unwrap().unwrap();
    assert_eq!(
        (loaded.record, loaded.versions),
        (pending.clone(), vec![empty.clone()])
    );

    let imported = KmsKey {
        state: State::Enabled,
        valid_to: Some(UnixMillis(99_000)),
        import_fingerprint: Some("ab".repeat(32)),
        ..pending.clone()
    };
    storage
        .set_material(imported.clone(), 1, Some(vec![7; 200]))
        .await
        .unwrap();
    let loaded = storage.load_key(pending.id).await.unwrap().unwrap();
    assert_eq!(loaded.record, imported);
    assert_eq!(loaded.versions[0].wrapped_material, Some(vec![7; 200]));

    let deleted = KmsKey {
        state: State::PendingImport,
        valid_to: None,
        ..imported.clone()
    };
    storage
        .set_material(deleted.clone(), 1, None)
        .await
        .unwrap();
    let loaded = storage.load_key(pending.id).await.unwrap().unwrap();
    assert_eq!(loaded.record, deleted, "the fingerprint stays");
    assert_eq!(loaded.versions, vec![empty]);
    // A version that does not exist is not silently skipped.
    assert!(storage.set_material(deleted, 2, None).await.is_err());
}

async fn keys(storage: &Storage) {
    let a = key("first", 1_000);
    let alias = AliasRow {
        name: AliasName::parse("alias/first").unwrap(),
        key_id: a.id,
        created_at: UnixMillis(1_000),
    };
    storage
        .insert_key(
            a.clone(),
            version(1, 1_000),
            Some(alias.clone()),
            Some(r#"{"statements":[]}"#.into()),
        )
        .await
        .unwrap();
    let b = key("second", 2_000);
    storage
        .insert_key(b.clone(), version(1, 2_000), None, None)
        .await
        .unwrap();

    let mut loaded = storage.load_keys().await.unwrap();
    loaded.sort_by_key(|k| k.record.created_at.0);
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].record, a);
    assert_eq!(loaded[0].versions, vec![version(1, 1_000)]);
    assert_eq!(loaded[0].aliases, vec![alias.clone()]);
    assert_eq!(loaded[0].policy.as_deref(), Some(r#"{"statements":[]}"#));
    assert_eq!(loaded[1].record, b);
    assert!(loaded[1].aliases.is_empty() && loaded[1].policy.is_none());

    // An alias is unique, and the error says so in a way the caller can tell apart.
    let taken = storage
        .insert_alias(AliasRow {
            key_id: b.id,
            ..alias.clone()
        })
        .await
        .unwrap_err();
    assert!(is_constraint_violation(&taken), "{taken}");
    assert!(storage.delete_alias("alias/first".into()).await.unwrap());
    assert!(!storage.delete_alias("alias/first".into()).await.unwrap());
    storage.insert_alias(alias.clone()).await.unwrap();

    // Rotation adds a version and moves the primary in one transaction.
    let rotated = KmsKey {
        primary_version: 2,
        next_rotation_at: Some(UnixMillis(5_000)),
        ..a.clone()
    };
    storage
        .add_version(rotated.clone(), version(2, 3_000))
        .await
        .unwrap();
    assert_eq!(
        storage.versions_of(a.id).await.unwrap(),
        vec![version(1, 1_000), version(2, 3_000)]
    );
    // An update writes every mutable field: state, description, rotation schedule and tags (replaced whole).
    let disabled = KmsKey {
        state: State::Disabled,
        description: "renamed".into(),
        rotation_period_days: Some(90),
        tags: [("env".to_owned(), "prod".to_owned())].into(),
        ..rotated.clone()
    };
    storage.update_key(disabled.clone()).await.unwrap();
    assert_eq!(
        storage.load_key(a.id).await.unwrap().unwrap().record,
        disabled
    );

    // An alias moves between keys only from the key it names.
    assert!(
        !storage
            .move_alias("alias/first".into(), b.id, a.id)
            .await
            .unwrap()
    );
    assert!(
        storage
            .move_alias("alias/first".into(), a.id, b.id)
            .await
            .unwrap()
    );
    assert_eq!(
        storage.load_key(b.id).await.unwrap().unwrap().aliases,
        vec![AliasRow {
            key_id: b.id,
            ..alias.clone()
        }]
    );
    assert!(
        storage
            .move_alias("alias/first".into(), b.id, a.id)
            .await
            .unwrap()
    );
    assert!(
        !storage
            .move_alias("alias/none".into(), a.id, b.id)
            .await
            .unwrap()
    );
    storage
        .set_key_policy(a.id, r#"{"statements":[1]}"#.into(), UnixMillis(4_000))
        .await
        .unwrap();

    // Destruction erases every version's material and the aliases, and keeps the rest.
    let destroyed = KmsKey {
        state: State::Destroyed,
        deletion_at: Some(UnixMillis(6_000)),
        next_rotation_at: None,
        ..disabled.clone()
    };
    storage.destroy_key(destroyed.clone()).await.unwrap();
    let loaded = storage.load_keys().await.unwrap();
    let a_now = loaded.iter().find(|k| k.record.id == a.id).unwrap();
    assert_eq!(a_now.record, destroyed);
    assert!(a_now.aliases.is_empty());
    assert_eq!(a_now.policy.as_deref(), Some(r#"{"statements":[1]}"#));
    assert_eq!(a_now.versions.len(), 2);
    assert!(a_now.versions.iter().all(|v| v.wrapped_material.is_none()));

    // One key alone reads back as it does among all, with its aliases and no other key's.
    let second = AliasRow {
        name: AliasName::parse("alias/second").unwrap(),
        key_id: b.id,
        created_at: UnixMillis(7_000),
    };
    storage.insert_alias(second.clone()).await.unwrap();
    let b_alone = storage.load_key(b.id).await.unwrap().unwrap();
    assert_eq!((b_alone.record, b_alone.aliases), (b.clone(), vec![second]));
    assert!(
        storage
            .load_key(KeyId::new_random())
            .await
            .unwrap()
            .is_none()
    );
    let a_alone = storage.load_key(a.id).await.unwrap().unwrap();
    assert_eq!((a_alone.record, a_alone.versions.len()), (destroyed, 2));
    assert!(a_alone.aliases.is_empty());

    // A key that is not stored cannot be updated.
    assert!(storage.update_key(key("ghost", 1)).await.is_err());
}

async fn access(storage: &Storage) {
    let alice = PrincipalRow {
        name: "alice".into(),
        description: "payments".into(),
        admin: false,
        create_keys: true,
        created_at: UnixMillis(10),
        disabled_at: None,
        certificate_subjects: vec!["spiffe://example.org/alice".into(), "alice.example".into()],
    };
    storage.insert_principal(alice.clone()).await.unwrap();
    let again = storage.insert_principal(alice.clone()).await.unwrap_err();
    assert!(is_constraint_violation(&again), "{again}");
    let token = TokenRow {
        id: "00112233aabbccdd".into(),
        principal: "alice".into(),
        description: "ci".into(),
        secret_hash: [9; 32],
        created_at: UnixMillis(11),
        expires_at: Some(UnixMillis(1_000_000)),
        revoked_at: None,
    };
    storage.insert_token(token.clone()).await.unwrap();
    storage
        .revoke_token(token.id.clone(), UnixMillis(12))
        .await
        .unwrap();
    storage
        .disable_principal("alice".into(), UnixMillis(13))
        .await
        .unwrap();
    assert!(
        storage
            .revoke_token("ffffffffffffffff".into(), UnixMillis(14))
            .await
            .is_err()
    );
    let access_key = AccessKeyRow {
        id: "KMSDAAAABBBBCCCCDDDD".into(),
        principal: "alice".into(),
        description: "boto3".into(),
        wrapped_secret: vec![7; 60],
        created_at: UnixMillis(15),
        revoked_at: None,
    };
    storage.insert_access_key(access_key.clone()).await.unwrap();
    let again = storage
        .insert_access_key(access_key.clone())
        .await
        .unwrap_err();
    assert!(is_constraint_violation(&again), "{again}");
    let orphan = AccessKeyRow {
        id: "KMSDEEEEFFFFGGGGHHHH".into(),
        principal: "nobody".into(),
        ..access_key.clone()
    };
    // Every access key belongs to a principal that exists.
    assert!(storage.insert_access_key(orphan).await.is_err());
    storage
        .revoke_access_key(access_key.id.clone(), UnixMillis(16))
        .await
        .unwrap();
    assert!(
        storage
            .revoke_access_key("KMSDZZZZZZZZZZZZZZZZ".into(), UnixMillis(17))
            .await
            .is_err()
    );

    let AccessRows {
        principals,
        tokens,
        access_keys,
    } = storage.load_access().await.unwrap();
    let mut subjects = alice.certificate_subjects.clone();
    subjects.sort();
    assert_eq!(
        principals,
        vec![PrincipalRow {
            disabled_at: Some(UnixMillis(13)),
            certificate_subjects: subjects,
            ..alice
        }]
    );
    assert_eq!(
        tokens,
        vec![TokenRow {
            revoked_at: Some(UnixMillis(12)),
            ..token
        }]
    );
    assert_eq!(
        access_keys,
        vec![AccessKeyRow {
            revoked_at: Some(UnixMillis(16)),
            ..access_key
        }]
    );
}

fn record(n: u64) -> AuditRecord {
    AuditRecord {
        event_id: format!("event-{n}"),
        event_time: format!("2026-11-30T10:00:{:02}.000Z", n % 60),
        event_name: if n.is_multiple_of(2) {
            "Encrypt"
        } else {
            "Decrypt"
        }
        .into(),
        principal: "alice".into(),
        source_address: "127.0.0.1:1".into(),
        user_agent: "conformance".into(),
        request_id: format!("req-{n}"),
        key_id: (!n.is_multiple_of(3)).then(|| format!("key-{}", n % 3)),
        key_version: (!n.is_multiple_of(3)).then_some(1),
        key_alias: (n % 3 == 1).then(|| "alias/one".into()),
        parameters: BTreeMap::from([("n".to_owned(), n.to_string())]),
        encryption_context: BTreeMap::from([("tenant".to_owned(), format!("t{}", n % 4))]),
        reason: n.is_multiple_of(5).then(|| format!("ticket {n}")),
        outcome: if n.is_multiple_of(7) {
            Outcome::Denied
        } else {
            Outcome::Success
        },
        error_code: n.is_multiple_of(7).then(|| "PermissionDenied".into()),
        error_message: n.is_multiple_of(7).then(|| "no statement allows it".into()),
    }
}

async fn audit(storage: &Storage) {
    let storage = storage.clone();
    tokio::task::spawn_blocking(move || audit_blocking(&storage))
        .await
        .unwrap();
}

fn audit_blocking(storage: &Storage) {
    let mut writer = storage.audit_writer().unwrap();
    let log_id = writer.log_id().unwrap();
    assert_eq!(writer.log_id().unwrap(), log_id, "the log id is made once");
    assert_eq!(writer.head().unwrap(), None);
    writer.probe(1).unwrap();

    let first = writer
        .append(
            (0, GENESIS_HASH),
            (1..=40).map(|n| Encoded::new(record(n))).collect(),
        )
        .unwrap();
    assert_eq!(first.len(), 40);
    assert_eq!(
        (first[0].seq, first[0].prev_hash.as_str()),
        (1, GENESIS_HASH)
    );
    let last = first.last().unwrap().clone_head();
    let second = writer
        .append(
            (last.0, &last.1),
            (41..=50).map(|n| Encoded::new(record(n))).collect(),
        )
        .unwrap();
    assert_eq!(second[0].seq, 41);
    assert_eq!(second[0].prev_hash, last.1);
    let head = second.last().unwrap().clone_head();
    assert_eq!(writer.head().unwrap(), Some(head.clone()));

    let reader = storage.audit_reader().unwrap();
    assert_eq!(reader.log_id().unwrap(), Some(log_id.clone()));
    let mut all = Vec::new();
    reader
        .for_each_record(|r| {
            all.push(r.expect("readable"));
            true
        })
        .unwrap();
    assert_eq!(all.len(), 50);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(
            r.record,
            record(r.seq),
            "record {} reads back as written",
            r.seq
        );
        assert!(r.hash_matches(), "record {} hashes as stored", r.seq);
    }
    assert_eq!(reader.extent().unwrap(), Some((1, 50)));
    assert_eq!(
        reader
            .range(10, 20, 5)
            .unwrap()
            .iter()
            .map(|r| r.as_ref().unwrap().seq)
            .collect::<Vec<_>>(),
        vec![11, 12, 13, 14, 15]
    );

    // Queries: each filter, newest first by default, paging after a sequence number.
    let seqs = |q: AuditQuery| -> Vec<u64> {
        reader
            .query(&q)
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap().seq)
            .collect()
    };
    let all_query = AuditQuery {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(seqs(all_query.clone()), (1..=50).rev().collect::<Vec<_>>());
    let by_key = seqs(AuditQuery {
        key_id: Some("key-2".into()),
        ..all_query.clone()
    });
    assert_eq!(
        by_key,
        (1..=50).rev().filter(|n| n % 3 == 2).collect::<Vec<_>>()
    );
    let by_key_or_alias = seqs(AuditQuery {
        key_id: Some("key-2".into()),
        key_alias: Some("alias/one".into()),
        ..all_query.clone()
    });
    assert_eq!(
        by_key_or_alias,
        (1..=50).rev().filter(|n| n % 3 != 0).collect::<Vec<_>>()
    );
    let by_context = seqs(AuditQuery {
        encryption_context: vec![("tenant".into(), "t3".into())],
        oldest_first: true,
        ..all_query.clone()
    });
    assert_eq!(
        by_context,
        (1..=50).filter(|n| n % 4 == 3).collect::<Vec<_>>()
    );
    let denied = seqs(AuditQuery {
        outcome: Some(Outcome::Denied),
        event_name: Some("Decrypt".into()),
        ..all_query.clone()
    });
    assert_eq!(denied, vec![49, 35, 21, 7]);
    let by_request = seqs(AuditQuery {
        request_id: Some("req-17".into()),
        principal: Some("alice".into()),
        ..all_query.clone()
    });
    assert_eq!(by_request, vec![17]);
    let page = seqs(AuditQuery {
        after_seq: Some(30),
        limit: 3,
        ..all_query.clone()
    });
    assert_eq!(page, vec![29, 28, 27]);
    let in_time = seqs(AuditQuery {
        start_time: Some("2026-11-30T10:00:10.000Z".into()),
        end_time: Some("2026-11-30T10:00:12.000Z".into()),
        ..all_query.clone()
    });
    assert_eq!(in_time, vec![11, 10]);
    assert_eq!(
        reader.last_before("2026-11-30T10:00:05.000Z").unwrap(),
        Some(4)
    );

    // Checkpoints and prune marks are kept in order; a prune removes exactly the range it covers.
    let signer = CheckpointSigner::generate().unwrap();
    let cp = signer.sign(head.0, &head.1, "2026-11-30T10:01:00.000Z", &log_id);
    writer.insert_checkpoint(&cp).unwrap();
    assert_eq!(writer.last_checkpoint_seq().unwrap(), Some(50));
    assert_eq!(reader.checkpoints().unwrap().len(), 1);
    assert_eq!(reader.checkpoints().unwrap()[0].1, cp);
    let through = &all[19];
    let mark = signer.sign_prune(20, &through.hash, "2026-11-30T10:02:00.000Z", &log_id);
    assert_eq!(writer.prune(&mark, 7).unwrap(), 20);
    assert_eq!(reader.extent().unwrap(), Some((21, 50)));
    assert_eq!(reader.prunes().unwrap()[0].1, mark);
    // The head is unchanged by pruning, and the chain goes on from it.
    let third = writer
        .append((head.0, &head.1), vec![Encoded::new(record(51))])
        .unwrap();
    assert_eq!(
        (third[0].seq, third[0].prev_hash.as_str()),
        (51, head.1.as_str())
    );
}

/// The head a link leaves: its sequence number and hash.
trait Head {
    fn clone_head(&self) -> (u64, String);
}

impl Head for kmsd::audit::ChainLink {
    fn clone_head(&self) -> (u64, String) {
        (self.seq, self.hash.clone())
    }
}

/// A database made before keys had kinds (migration 6) is carried over whole: the keys table is rebuilt (SQLite
/// cannot change its CHECK), its rows, and the rows that refer to them, stay; references are still enforced.
#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_database_from_before_key_kinds_migrates_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kmsd.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for (_, sql) in &kmsd::storage::MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 6).unwrap();
        conn.execute_batch(
            "INSERT INTO keys VALUES ('0b9a4e02-3a2c-4a53-8c6e-5b2f2f8d3c11', 'old', 'DISABLED', 1000, 2, 30, 9000, NULL);
             INSERT INTO keys VALUES ('6f0f3a4b-8a51-4f0e-9a55-0d1f1e2b3c44', 'gone', 'DESTROYED', 2000, 1, NULL, NULL, 5000);
             INSERT INTO key_versions VALUES ('0b9a4e02-3a2c-4a53-8c6e-5b2f2f8d3c11', 1, 1000, x'0101');
             INSERT INTO key_versions VALUES ('0b9a4e02-3a2c-4a53-8c6e-5b2f2f8d3c11', 2, 3000, x'0202');
             INSERT INTO key_versions VALUES ('6f0f3a4b-8a51-4f0e-9a55-0d1f1e2b3c44', 1, 2000, NULL);
             INSERT INTO key_tags VALUES ('0b9a4e02-3a2c-4a53-8c6e-5b2f2f8d3c11', 'team', 'payments');
             INSERT INTO aliases VALUES ('alias/old', '0b9a4e02-3a2c-4a53-8c6e-5b2f2f8d3c11', 1500);
             INSERT INTO key_policies VALUES ('0b9a4e02-3a2c-4a53-8c6e-5b2f2f8d3c11', '{\"statements\":[]}', 1600);",
        )
        .unwrap();
    }
    let storage = Storage::open_sqlite(&path).unwrap();
    let mut keys = storage.load_keys().await.unwrap();
    keys.sort_by_key(|k| k.record.created_at.0);
    assert_eq!(keys.len(), 2);
    let old = &keys[0];
    assert_eq!(
        (
            old.record.description.as_str(),
            old.record.state,
            old.record.primary_version
        ),
        ("old", State::Disabled, 2)
    );
    assert_eq!(
        (
            old.record.kind,
            old.record.origin,
            old.record.rotation_period_days
        ),
        (
            kmsd::keys::KeyKind::SYMMETRIC,
            kmsd::keys::Origin::Kmsd,
            Some(30)
        )
    );
    assert_eq!(old.record.tags["team"], "payments");
    assert_eq!(old.versions.len(), 2);
    assert_eq!(old.versions[1].wrapped_material, Some(vec![2, 2]));
    assert_eq!(old.aliases[0].name.to_string(), "alias/old");
    assert_eq!(old.policy.as_deref(), Some("{\"statements\":[]}"));
    assert_eq!(keys[1].record.state, State::Destroyed);
    storage.close().await;

    // The tables that referred to the old keys table refer to the new one, and still refuse orphans.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    let orphan = conn.execute(
        "INSERT INTO key_tags VALUES ('00000000-0000-4000-8000-000000000000', 'k', 'v')",
        [],
    );
    assert!(orphan.is_err(), "a tag of no key was accepted");
    let dangling: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(dangling, 0);
    let schema: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'key_tags'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(schema.contains("REFERENCES keys"), "{schema}");
}
