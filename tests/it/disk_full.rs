//! The disk filled up: on a small filesystem of its own (tmpfs), kmsd summarizes unauthenticated calls below the
//! soft floor while authenticated calls go on, fails closed below the hard floor, and is brought back by archiving
//! its log, with every acknowledged call in the log or the archive, once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kmsd::clock::Clock;
use kmsd_proto::pb::audit_service_client::AuditServiceClient;
use kmsd_proto::pb::*;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::*;

const MIB: u64 = 1 << 20;
const SOFT: u64 = 24 * MIB;
const HARD: u64 = 12 * MIB;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    /// `None` (and a message) where this machine does not let the test mount one.
    fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs { _dir: dir, path }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs here (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn free(&self) -> u64 {
        let s = rustix::fs::statvfs(&self.path).unwrap();
        s.f_bavail * s.f_frsize
    }

    /// Writes a file taking the free space down to about `left` bytes.
    fn fill_to(&self, name: &str, left: u64) {
        let size = self.free().saturating_sub(left);
        let file = std::fs::File::create(self.path.join(name)).unwrap();
        let mut w = std::io::BufWriter::new(file);
        let chunk = vec![0x5a; MIB as usize];
        let mut written = 0;
        while written < size {
            let n = (size - written).min(MIB) as usize;
            std::io::Write::write_all(&mut w, &chunk[..n]).unwrap();
            written += n as u64;
        }
        std::io::Write::flush(&mut w).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

async fn disk_level(audit: &mut AuditServiceClient<AuthChannel>) -> DescribeLogResponse {
    audit
        .describe_log(DescribeLogRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Waits (within a bound that only stops a broken build from hanging) until the daemon reports `level`.
async fn wait_for_level(
    audit: &mut AuditServiceClient<AuthChannel>,
    level: &str,
) -> DescribeLogResponse {
    for _ in 0..100 {
        let described = disk_level(audit).await;
        if described.disk_level == level {
            return described;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the disk never became {level}: {:?}",
        disk_level(audit).await
    );
}

async fn health(daemon: &Daemon) -> i32 {
    let channel = kmsd_client::ClientBuilder::new(daemon.endpoint())
        .channel()
        .await
        .unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status
}

/// A data key whose record is large (an 8000-byte context), tagged with `request_id`.
async fn big_data_key(client: &mut Client, request_id: &str) -> Result<(), tonic::Status> {
    let blob = "c".repeat(8000);
    client
        .generate_data_key(tagged(
            GenerateDataKeyRequest {
                key_id: "alias/disk".into(),
                encryption_context: ctx(&[("blob", &blob)]),
                ..Default::default()
            },
            request_id,
        ))
        .await
        .map(drop)
}

/// Every record's request id in a database.
fn request_ids_in_db(db: &Path) -> Vec<String> {
    let reader = kmsd::storage::AuditReader::open(db).unwrap();
    let mut ids = Vec::new();
    reader
        .for_each_record(|r| {
            ids.push(r.unwrap().record.request_id);
            true
        })
        .unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn the_disk_filled_up_and_archiving_brought_kmsd_back() {
    let Some(disk) = Tmpfs::mount(64) else {
        return;
    };
    let data = disk.path.join("data");
    let (soft, hard) = (SOFT.to_string(), HARD.to_string());
    let daemon = Daemon::start(
        &data,
        &[],
        &[
            ("KMSD_DISK_SOFT_FLOOR", &soft),
            ("KMSD_DISK_HARD_FLOOR", &hard),
        ],
    )
    .unwrap();
    let mut client = daemon.client_as(Some(&daemon.admin_token())).await;
    let mut audit = daemon.audit_client().await;
    create_key(&mut client, "alias/disk").await;
    let mut acknowledged = Vec::new();

    // Ample: about 7 MiB of records.
    for i in 0..800 {
        let id = format!("ample-{i}");
        big_data_key(&mut client, &id).await.unwrap();
        acknowledged.push(id);
    }
    assert_eq!(disk_level(&mut audit).await.disk_level, "ample");

    // Below the soft floor: anonymous calls leave no record each; authenticated calls go on.
    disk.fill_to("filler-1", SOFT - 2 * MIB);
    let low = wait_for_level(&mut audit, "low").await;
    let mut anonymous = daemon.client_as(None).await;
    for _ in 0..300 {
        assert_status(
            anonymous
                .describe_key(DescribeKeyRequest {
                    key_id: "k".repeat(100_000),
                })
                .await,
            Code::Unauthenticated,
            &[],
        );
    }
    let after_flood = disk_level(&mut audit).await;
    assert!(
        after_flood.head_sequence <= low.head_sequence + 3,
        "300 anonymous calls below the soft floor: head {} -> {}",
        low.head_sequence,
        after_flood.head_sequence
    );
    for i in 0..20 {
        let id = format!("low-{i}");
        big_data_key(&mut client, &id).await.unwrap();
        acknowledged.push(id);
    }
    assert_eq!(health(&daemon).await, ServingStatus::Serving as i32);

    // Below the hard floor: every call fails closed, and health says so.
    disk.fill_to("filler-2", HARD - 2 * MIB);
    wait_for_level(&mut audit, "critical").await;
    let refused = big_data_key(&mut client, "critical-0").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("hard floor"), "{refused:?}");
    assert_eq!(health(&daemon).await, ServingStatus::NotServing as i32);

    // The way out: archive the log elsewhere and prune it; the freed pages take new records.
    let elsewhere = tempfile::tempdir().unwrap();
    let archive = elsewhere.path().join("audit-archive.jsonl");
    let before = kmsd::clock::UnixMillis(kmsd::clock::SystemClock.now().0 + 1000).rfc3339_millis();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = kmsctl_as(
        &daemon.endpoint(),
        &daemon.admin_token(),
        &[
            "audit",
            "archive",
            "--before",
            &before,
            "--out",
            archive.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = wait_for_level(&mut audit, "low").await;
    assert!(back.reusable_bytes > 2 * MIB, "{back:?}");
    assert_eq!(health(&daemon).await, ServingStatus::Serving as i32);
    for i in 0..20 {
        let id = format!("recovered-{i}");
        big_data_key(&mut client, &id).await.unwrap();
        acknowledged.push(id);
    }
    let public_key = audit
        .verify_log(VerifyLogRequest::default())
        .await
        .unwrap()
        .into_inner()
        .public_key;

    // Every acknowledged call is in the archive or the database, exactly once, and both verify.
    daemon.stop();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let db = data.join("kmsd.db");
    let in_db = request_ids_in_db(&db);
    let text = std::fs::read_to_string(&archive).unwrap();
    let in_archive = text.lines().skip(1).filter_map(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .ok()?
            .get("request_id")?
            .as_str()
            .map(str::to_owned)
    });
    for id in in_db.iter().cloned().chain(in_archive) {
        *seen.entry(id).or_default() += 1;
    }
    for id in &acknowledged {
        assert_eq!(seen.get(id), Some(&1), "acknowledged call {id}");
    }
    assert!(
        !seen.contains_key("critical-0"),
        "a refused call has no record"
    );
    // The 300 anonymous calls, each counted once in the summaries (in the database, or archived).
    let reader = kmsd::storage::AuditReader::open(&db).unwrap();
    let mut summarized = 0u64;
    reader
        .for_each_record(|r| {
            let r = r.unwrap().record;
            if r.event_name == "UnauthenticatedCallsSummary" {
                summarized += r.parameters["calls"].parse::<u64>().unwrap();
            }
            true
        })
        .unwrap();
    for line in text.lines().skip(1) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["event_name"] == "UnauthenticatedCallsSummary" {
            summarized += v["parameters"]["calls"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
    }
    assert_eq!(summarized, 300);
    let verify = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kmsctl"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    verify(&["audit", "verify", "--db", db.to_str().unwrap()]);
    verify(&[
        "audit",
        "verify",
        "--archive",
        archive.to_str().unwrap(),
        "--public-key",
        &public_key,
    ]);
}
