//! Archival: `kmsctl audit archive` writes a sealed range to a file that verifies on its own (kmsctl and the
//! Python verifier), then prunes it through one audited, signed operation; the remaining chain verifies from the
//! mark, archives chain to one another, and a deletion behind kmsd's back is still found.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use kmsd::clock::Clock;
use kmsd_proto::pb::*;
use serde_json::Value;

use crate::support::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/verify-audit-log.py");

fn kmsctl(endpoint: &str, token: &str, args: &[&str]) -> Output {
    kmsctl_as(endpoint, token, args)
}

/// `kmsctl --json audit archive --before BEFORE --out PATH`, its report.
fn archive(endpoint: &str, token: &str, before: &str, path: &Path) -> Value {
    let args = [
        "--json",
        "audit",
        "archive",
        "--before",
        before,
        "--out",
        path.to_str().unwrap(),
    ];
    serde_json::from_str(&ok(&kmsctl(endpoint, token, &args))).unwrap()
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn python(args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("python3 runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn encrypt_tagged(client: &mut Client, n: usize, prefix: &str) {
    for i in 0..n {
        client
            .encrypt(tagged(
                EncryptRequest {
                    key_id: "alias/arch".into(),
                    plaintext: b"x".to_vec(),
                    encryption_context: ctx(&[("n", &i.to_string())]),
                    encryption_algorithm: String::new(),
                },
                &format!("{prefix}-{i}"),
            ))
            .await
            .unwrap();
    }
}

/// The request ids of an archive's records.
fn archived_request_ids(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            v.get("request_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn archive_verify_prune_verify_and_archives_chain() {
    let server = TestServer::start().await;
    let token = server.admin_token();
    let endpoint = server.endpoint();
    let mut client = server.client().await;
    create_key(&mut client, "alias/arch").await;
    encrypt_tagged(&mut client, 30, "old").await;
    server.server.audit().checkpoint().await.unwrap();
    let cut = server.clock.now();
    server.clock.advance(Duration::from_secs(3600));
    encrypt_tagged(&mut client, 10, "new").await;
    let public_key = hex::encode(server.server.audit().public_key().as_bytes());
    let scratch = tempfile::tempdir().unwrap();
    let first = scratch.path().join("first.jsonl");

    // The manual clock stands still between calls: every old record carries `cut` exactly.
    let before = kmsd::clock::UnixMillis(cut.0 + 1).rfc3339_millis();
    let report = archive(&endpoint, &token, &before, &first);
    let last = report["last_sequence"].as_u64().unwrap();
    assert_eq!(report["first_sequence"], 1);
    assert_eq!(report["records_removed"].as_u64(), Some(last));
    let ids = archived_request_ids(&first);
    assert!(
        ids.contains(&"old-29".to_owned()) && !ids.iter().any(|i| i.starts_with("new-")),
        "{ids:?}"
    );

    // The archive verifies on its own, with kmsctl and with the Python verifier, under the log's key.
    let out = ok(&kmsctl(
        &endpoint,
        &token,
        &[
            "audit",
            "verify",
            "--archive",
            first.to_str().unwrap(),
            "--public-key",
            &public_key,
        ],
    ));
    assert!(out.contains("OK"), "{out}");
    let (passed, out) = python(&[
        "--archive",
        first.to_str().unwrap(),
        "--public-key",
        &public_key,
    ]);
    assert!(passed, "{out}");

    // The database no longer holds the range; what remains verifies from the mark, and the pruning is recorded.
    let verified = verify_log(&server).await;
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.archived_through, last);
    assert!(events_for(&server, "old-0").await.is_empty());
    assert_eq!(events_for(&server, "new-0").await.len(), 1);
    let pruned = server
        .audit_client()
        .await
        .query_events(QueryEventsRequest {
            event_name: "PruneEvents".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(pruned.len(), 1, "{pruned:?}");
    assert_eq!(pruned[0].principal, "admin");
    assert_eq!(pruned[0].parameters["through_sequence"], last.to_string());
    assert_eq!(
        pruned[0].parameters["through_hash"],
        report["last_hash"].as_str().unwrap()
    );
    assert_eq!(pruned[0].parameters["records_removed"], last.to_string());

    // A second archive follows the first: its first record chains from the first archive's last hash.
    server.clock.advance(Duration::from_secs(3600));
    encrypt_tagged(&mut client, 5, "newer").await;
    let second = scratch.path().join("second.jsonl");
    let before = server.clock.now().rfc3339_millis();
    server.clock.advance(Duration::from_secs(60));
    let report2 = archive(&endpoint, &token, &before, &second);
    assert_eq!(report2["first_sequence"].as_u64(), Some(last + 1));
    let header: Value = serde_json::from_str(
        std::fs::read_to_string(&second)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["prev_hash"], report["last_hash"]);
    let (passed, out) = python(&[
        "--archive",
        second.to_str().unwrap(),
        "--public-key",
        &public_key,
    ]);
    assert!(passed, "{out}");
    assert!(verify_log(&server).await.ok);

    // Offline, after shutdown: kmsctl with the root key and the Python verifier with the public key.
    let dir = server.stop().await;
    let db = dir.path().join("kmsd.db");
    let out = ok(&kmsctl(
        "http://unused.invalid",
        "",
        &["audit", "verify", "--db", db.to_str().unwrap()],
    ));
    assert!(out.contains("OK"), "{out}");
    let (passed, out) = python(&[db.to_str().unwrap(), "--public-key", &public_key]);
    assert!(passed, "{out}");
    assert!(out.contains("archived"), "{out}");

    // A changed or shortened archive does not verify.
    let text = std::fs::read_to_string(&first).unwrap();
    let edited = scratch.path().join("edited.jsonl");
    std::fs::write(
        &edited,
        text.replacen("\"principal\":\"admin\"", "\"principal\":\"mallory\"", 1),
    )
    .unwrap();
    let cut_short = scratch.path().join("short.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&cut_short, lines[..lines.len() - 1].join("\n")).unwrap();
    for bad in [&edited, &cut_short] {
        let out = kmsctl(
            "http://unused.invalid",
            "",
            &["audit", "verify", "--archive", bad.to_str().unwrap()],
        );
        assert!(
            !out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let (passed, out) = python(&["--archive", bad.to_str().unwrap()]);
        assert!(!passed, "{out}");
    }
}

/// Rows removed without kmsd, by a raw DELETE or behind a forged prune mark, are found by every verifier.
#[tokio::test(flavor = "multi_thread")]
async fn a_prune_behind_kmsds_back_is_detected() {
    for forged_mark in [false, true] {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        create_key(&mut client, "alias/arch").await;
        encrypt_tagged(&mut client, 10, "r").await;
        server.server.audit().checkpoint().await.unwrap();
        let public_key = hex::encode(server.server.audit().public_key().as_bytes());
        let log_id = server.server.audit().log_id().to_owned();
        let dir = server.stop().await;
        let db = dir.path().join("kmsd.db");

        let sql = rusqlite::Connection::open(&db).unwrap();
        let refused = sql.execute("DELETE FROM audit_events WHERE seq <= 5", []);
        assert!(refused.unwrap_err().to_string().contains("append-only"));
        if forged_mark {
            let hash: String = sql
                .query_row("SELECT hash FROM audit_events WHERE seq = 5", [], |r| {
                    r.get(0)
                })
                .unwrap();
            sql.execute(
                "INSERT INTO audit_prunes (through_seq, through_hash, time, log_id, signature) VALUES (5, ?1, '', ?2, ?3)",
                rusqlite::params![hash, log_id, "00".repeat(64)],
            )
            .unwrap();
            sql.execute("DELETE FROM audit_events WHERE seq <= 5", [])
                .unwrap();
        } else {
            sql.execute_batch(
                "DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq <= 5;",
            )
            .unwrap();
        }
        drop(sql);

        let out = kmsctl(
            "http://unused.invalid",
            "",
            &["audit", "verify", "--db", db.to_str().unwrap()],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{text}");
        // The first problem by sequence: records 1-5 gone, which no valid mark explains (a forged one is
        // reported too, at its own sequence, and is what the Python verifier stops at).
        assert!(
            text.contains("record 1 is missing")
                && text.contains("not through kmsd's archive path"),
            "{text}"
        );
        let (passed, out) = python(&[db.to_str().unwrap(), "--public-key", &public_key]);
        if forged_mark && out.contains("signatures not checked") {
            // A forged mark is caught by its signature, which the Python verifier checks only with `cryptography`
            // (.ci/run installs it).
            eprintln!("SKIPPED the Python verifier on a forged prune mark: {out}");
        } else {
            assert!(!passed, "{out}");
            let expected = if forged_mark {
                "prune mark #1 does not verify"
            } else {
                "record 1 is missing"
            };
            assert!(out.contains(expected), "{out}");
        }

        let server = TestServer::start_in(dir, kmsd::clock::ManualClock::new())
            .await
            .unwrap();
        let verified = verify_log(&server).await;
        assert!(!verified.ok, "{verified:?}");
        server.stop().await;
    }
}
