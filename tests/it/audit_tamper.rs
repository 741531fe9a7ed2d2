//! Tampering with a copy of a real log: each kind of edit is caught and located by verification.

use std::path::{Path, PathBuf};
use std::process::Command;

use kmsd::audit::verify::{Trusted, VerifyReport, verify};
use kmsd::audit::{parse_public_key, public_key_of};
use kmsd::storage::AuditReader;
use kmsd_proto::pb::*;
use tempfile::TempDir;

use crate::support::*;

/// A real log of 24 records (the bootstrap's two, CreateKey and 21 data keys), closed with a final checkpoint, and its public key.
async fn real_log() -> (std::sync::Arc<TempDir>, String) {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    create_key(&mut c, "alias/t").await;
    for i in 0..21 {
        c.generate_data_key(tagged(
            GenerateDataKeyRequest {
                key_id: "alias/t".into(),
                ..Default::default()
            },
            &format!("t-{i}"),
        ))
        .await
        .unwrap();
    }
    let public_key = hex::encode(server.server.audit().public_key().as_bytes());
    (server.stop().await, public_key)
}

fn copy_of(dir: &Path) -> TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    copy
}

fn db(dir: &Path) -> PathBuf {
    dir.join("kmsd.db")
}

fn tamper(dir: &Path, sql: &str) {
    rusqlite::Connection::open(db(dir))
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

fn check(dir: &Path, public_key: &str, trusted: Option<&Trusted>) -> VerifyReport {
    let reader = AuditReader::open(&db(dir)).unwrap();
    verify(&reader, &parse_public_key(public_key).unwrap(), trusted).unwrap()
}

#[track_caller]
fn assert_problem(report: &VerifyReport, seq: u64, fragment: &str) {
    let problem = report.problem.as_ref().expect("verification must fail");
    assert_eq!(problem.seq, seq, "{}", problem.message);
    assert!(
        problem.message.contains(fragment),
        "{:?} should say {fragment:?}",
        problem.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untouched_log_verifies_and_triggers_refuse_edits() {
    let (dir, key) = real_log().await;
    let report = check(dir.path(), &key, None);
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!((report.records_checked, report.head_seq), (24, 24));
    assert!(
        report.checkpoints_checked >= 1,
        "shutdown writes a checkpoint"
    );
    assert_eq!(report.last_checkpoint.unwrap().head_seq, 24);

    let copy = copy_of(dir.path());
    let conn = rusqlite::Connection::open(db(copy.path())).unwrap();
    for sql in [
        "UPDATE audit_events SET outcome = 'denied' WHERE seq = 3",
        "DELETE FROM audit_events WHERE seq = 3",
        "UPDATE audit_checkpoints SET head_seq = 1",
        "DELETE FROM audit_checkpoints",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_tampering_is_reported_where_it_happened() {
    let (dir, key) = real_log().await;

    let edited = copy_of(dir.path());
    tamper(
        edited.path(),
        "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET principal = '10.0.0.66' WHERE seq = 7;",
    );
    assert_problem(&check(edited.path(), &key, None), 7, "record 7 was altered");

    let deleted = copy_of(dir.path());
    tamper(
        deleted.path(),
        "DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq = 9;",
    );
    assert_problem(&check(deleted.path(), &key, None), 9, "record 9 is missing");

    let truncated = copy_of(dir.path());
    tamper(
        truncated.path(),
        "DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq > 15;",
    );
    assert_problem(
        &check(truncated.path(), &key, None),
        16,
        "the log ends at sequence 15",
    );

    let reordered = copy_of(dir.path());
    tamper(
        reordered.path(),
        "DROP TRIGGER audit_events_no_update;
         UPDATE audit_events SET seq = -1 WHERE seq = 11;
         UPDATE audit_events SET seq = 11 WHERE seq = 12;
         UPDATE audit_events SET seq = 12 WHERE seq = -1;",
    );
    assert_problem(
        &check(reordered.path(), &key, None),
        11,
        "does not follow record 10",
    );

    let unreadable = copy_of(dir.path());
    tamper(
        unreadable.path(),
        "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET encryption_context = 'oops' WHERE seq = 4;",
    );
    assert_problem(
        &check(unreadable.path(), &key, None),
        4,
        "record 4 is unreadable",
    );

    let forged_checkpoint = copy_of(dir.path());
    tamper(
        forged_checkpoint.path(),
        "DROP TRIGGER audit_checkpoints_no_update; UPDATE audit_checkpoints SET head_seq = 5;",
    );
    assert_problem(
        &check(forged_checkpoint.path(), &key, None),
        5,
        "does not verify with this daemon's key",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swapped_database_is_caught_by_its_checkpoints() {
    let (dir, key) = real_log().await;
    let (other, _) = real_log().await;
    // Another daemon's perfectly valid log, checked with this daemon's key.
    let report = check(other.path(), &key, None);
    assert_problem(&report, 24, "does not verify with this daemon's key");

    // And through the command line, offline, with this daemon's root key beside the other database.
    let swapped = copy_of(dir.path());
    std::fs::copy(db(other.path()), db(swapped.path())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kmsctl"))
        .args(["audit", "verify", "--db"])
        .arg(db(swapped.path()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("TAMPERED"), "{stdout}");
    assert!(stdout.contains("made with another root key"), "{stdout}");

    let intact = Command::new(env!("CARGO_BIN_EXE_kmsctl"))
        .args(["audit", "verify", "--db"])
        .arg(db(dir.path()))
        .output()
        .unwrap();
    assert!(
        intact.status.success(),
        "{}",
        String::from_utf8_lossy(&intact.stderr)
    );
    assert!(
        String::from_utf8_lossy(&intact.stdout)
            .contains("OK: the chain and every checkpoint verify")
    );

    // The root key recovers the same public key the daemon reported.
    let root = kmsd::server::read_root_key(&dir.path().join("root.key")).unwrap();
    let reader = AuditReader::open(&db(dir.path())).unwrap();
    assert_eq!(
        hex::encode(public_key_of(&reader, &root).unwrap().as_bytes()),
        key
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tail_cut_with_its_checkpoints_is_caught_by_a_trusted_checkpoint() {
    let (dir, key) = real_log().await;
    let head = check(dir.path(), &key, None);
    let trusted = Trusted {
        seq: head.head_seq,
        hash: head.head_hash.clone(),
    };
    let cut = copy_of(dir.path());
    tamper(
        cut.path(),
        "DROP TRIGGER audit_events_no_delete; DROP TRIGGER audit_checkpoints_no_delete;
         DELETE FROM audit_events WHERE seq > 18; DELETE FROM audit_checkpoints;",
    );
    // Without anything kept outside the database, a clean cut of rows and checkpoints is a shorter valid log...
    assert!(check(cut.path(), &key, None).ok());
    // ...which is why the daemon logs every checkpoint: kept elsewhere, one exposes the cut.
    assert_problem(
        &check(cut.path(), &key, Some(&trusted)),
        19,
        "the trusted checkpoint",
    );
}
