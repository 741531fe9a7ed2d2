//! The audit log alone, without gRPC: how fast it makes records durable, and what each record costs the threads that
//! do it. `cargo bench --bench audit -- [TASKS] [SECONDS]` (defaults 256 and 5): TASKS tasks on the usual runtime
//! each append GenerateDataKey-shaped records one after another, as calls do, to a log in a temporary directory
//! with the daemon's settings (`synchronous=FULL` durability, group commit). Prints records per second and the CPU
//! time per record of the appending workers, the writer and the syncer, from `/proc/self/task` (Linux). With
//! `BENCH_DATABASE_URL=postgres://...` the log is in that (empty) PostgreSQL database instead.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kmsd::audit::{AuditLog, AuditRecord, CheckpointSigner, Outcome};
use kmsd::clock::{Clock, SystemClock};
use kmsd::metrics::Metrics;
use kmsd::storage::Storage;

// The daemon's allocator: the writer frees records that the workers allocated, and what that costs depends on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn record(n: u64) -> AuditRecord {
    let now = SystemClock.now();
    AuditRecord {
        event_id: format!("019ad0c3-61a2-7c1e-8f2b-{n:012x}"),
        event_time: now.rfc3339_millis(),
        event_name: "GenerateDataKey".into(),
        principal: "admin".into(),
        source_address: "127.0.0.1:50312".into(),
        user_agent: "kmsctl/0.1 tonic/0.14".into(),
        request_id: format!("019ad0c3-61a2-7c1e-9a3c-{n:012x}"),
        key_id: Some("d28fb4e7-f07b-4cb0-9448-bcc05fc9f3f6".into()),
        key_version: Some(1),
        key_alias: Some("alias/kmsctl-bench".into()),
        parameters: BTreeMap::from([
            ("number_of_bytes".into(), "32".into()),
            ("token_id".into(), "5f0c2b9d41e7a3c8".into()),
        ]),
        encryption_context: BTreeMap::new(),
        reason: None,
        outcome: Outcome::Success,
        error_code: None,
        error_message: None,
    }
}

/// CPU time (user + system) of this process's threads, summed by thread name.
fn thread_cpu() -> HashMap<String, Duration> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields
            .get(11)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        // USER_HZ is 100 on Linux.
        *out.entry(name.trim().to_owned()).or_default() += Duration::from_millis(ticks * 10);
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tasks: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(256);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join("kmsd.db");
        let storage = match std::env::var("BENCH_DATABASE_URL") {
            Ok(url) => Storage::open_postgres(
                &kmsd::storage::DatabaseUrl::parse(&url).expect("a PostgreSQL URL"),
            )
            .await
            .expect("the database opens and migrates"),
            Err(_) => Storage::open_sqlite(&db).expect("the database opens and migrates"),
        };
        let log = Arc::new(
            AuditLog::open(
                &storage,
                CheckpointSigner::generate().expect("OS randomness"),
                Arc::new(SystemClock),
                Duration::from_secs(60),
                kmsd::audit::space::SpaceLimits::default(),
                Arc::new(Metrics::default()),
            )
            .await
            .expect("the audit log opens"),
        );
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let appended = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for t in 0..tasks {
            let (log, measuring, stop, appended) = (
                log.clone(),
                measuring.clone(),
                stop.clone(),
                appended.clone(),
            );
            workers.push(tokio::spawn(async move {
                let mut n = t as u64;
                while !stop.load(Ordering::Relaxed) {
                    log.append(record(n)).await.expect("the record is durable");
                    if measuring.load(Ordering::Relaxed) {
                        appended.fetch_add(1, Ordering::Relaxed);
                    }
                    n += tasks as u64;
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = thread_cpu();
        let started = Instant::now();
        measuring.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        measuring.store(false, Ordering::Relaxed);
        let elapsed = started.elapsed();
        let after = thread_cpu();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.expect("an appending task");
        }
        log.close().await;
        let records = appended.load(Ordering::Relaxed);
        println!(
            "audit log: {tasks} appending tasks, {:.1}s: {:.0} durable records/s",
            elapsed.as_secs_f64(),
            records as f64 / elapsed.as_secs_f64()
        );
        let mut names: Vec<_> = after.keys().collect();
        names.sort();
        for name in names {
            let used = after[name].saturating_sub(before.get(name).copied().unwrap_or_default());
            if !used.is_zero() {
                println!(
                    "  {name:18} {:6.2} µs CPU per record",
                    used.as_secs_f64() * 1e6 / records.max(1) as f64
                );
            }
        }
    });
}
