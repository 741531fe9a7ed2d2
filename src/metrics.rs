//! Prometheus metrics: calls by RPC and status, call latency, audit batch sizes and commit latency, audit failures,
//! keys by state and build information, served as text on `--metrics-listen` (off by default).
//!
//! Invariants: recording is lock-free (atomics in fixed tables), so the hot path pays a few increments; metrics
//! carry no key material, key ids or request contents.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::rpc::{Event, Rpc};

/// gRPC codes 0-16, as the `code` label.
const CODES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// A Prometheus histogram of fixed buckets.
struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// In millionths of the unit, to stay integral.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

pub struct Metrics {
    calls: Vec<AtomicU64>,
    latency: Vec<Histogram>,
    audit_batch: Histogram,
    audit_commit: Histogram,
    audit_failures: AtomicU64,
    summarized_calls: AtomicU64,
    unknown_method_calls: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            calls: (0..Rpc::ALL.len() * CODES.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: Rpc::ALL
                .iter()
                .map(|_| Histogram::new(LATENCY_BUCKETS))
                .collect(),
            audit_batch: Histogram::new(BATCH_BUCKETS),
            audit_commit: Histogram::new(LATENCY_BUCKETS),
            audit_failures: AtomicU64::new(0),
            summarized_calls: AtomicU64::new(0),
            unknown_method_calls: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// One finished call: its RPC, its gRPC code and how long it took.
    pub fn call(&self, event: Event, code: tonic::Code, took: Duration) {
        let m = match event {
            Event::Call(rpc) => rpc.index(),
            Event::UnknownMethod => {
                self.unknown_method_calls.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Event::Daemon(_) => return,
        };
        let c = (code as usize).min(CODES.len() - 1);
        self.calls[m * CODES.len() + c].fetch_add(1, Ordering::Relaxed);
        self.latency[m].observe(took.as_secs_f64());
    }

    /// One committed audit batch.
    pub fn audit_commit(&self, records: usize, took: Duration) {
        self.audit_batch.observe(records as f64);
        self.audit_commit.observe(took.as_secs_f64());
    }

    /// Records that could not be made durable (their calls were refused).
    pub fn audit_failure(&self, records: usize) {
        self.audit_failures
            .fetch_add(records as u64, Ordering::Relaxed);
    }

    /// An unauthenticated call recorded only in a summary (the disk is below its soft floor).
    pub fn summarized_call(&self) {
        self.summarized_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text; `keys_by_state` and `disk` are read at scrape time.
    pub fn render(&self, keys_by_state: &[(&str, usize)], disk: &DiskGauges) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("# HELP kmsd_build_info Build information.\n# TYPE kmsd_build_info gauge\n");
        let _ = writeln!(
            out,
            "kmsd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out.push_str("# HELP kmsd_calls_total Calls by RPC and gRPC status code.\n# TYPE kmsd_calls_total counter\n");
        for (m, method) in Rpc::ALL.iter().enumerate() {
            for (c, code) in CODES.iter().enumerate() {
                let n = self.calls[m * CODES.len() + c].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "kmsd_calls_total{{method=\"{method}\",code=\"{code}\"}} {n}"
                    );
                }
            }
        }
        out.push_str(
            "# HELP kmsd_call_duration_seconds Call latency, audit record included.\n\
             # TYPE kmsd_call_duration_seconds histogram\n",
        );
        for (m, method) in Rpc::ALL.iter().enumerate() {
            if self.latency[m].count.load(Ordering::Relaxed) > 0 {
                self.latency[m].render(
                    &mut out,
                    "kmsd_call_duration_seconds",
                    &format!("method=\"{method}\""),
                );
            }
        }
        out.push_str(
            "# HELP kmsd_audit_batch_records Records per audit commit.\n# TYPE kmsd_audit_batch_records histogram\n",
        );
        self.audit_batch
            .render(&mut out, "kmsd_audit_batch_records", "");
        out.push_str(
            "# HELP kmsd_audit_commit_seconds Time to commit one audit batch.\n\
             # TYPE kmsd_audit_commit_seconds histogram\n",
        );
        self.audit_commit
            .render(&mut out, "kmsd_audit_commit_seconds", "");
        out.push_str(
            "# HELP kmsd_audit_failures_total Audit records that could not be made durable.\n\
             # TYPE kmsd_audit_failures_total counter\n",
        );
        let _ = writeln!(
            out,
            "kmsd_audit_failures_total {}",
            self.audit_failures.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP kmsd_audit_summarized_calls_total Unauthenticated calls recorded only in a summary record, \
             below the disk's soft floor.\n# TYPE kmsd_audit_summarized_calls_total counter\n",
        );
        let _ = writeln!(
            out,
            "kmsd_audit_summarized_calls_total {}",
            self.summarized_calls.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP kmsd_unknown_method_calls_total Calls naming a method kmsd does not serve.\n\
             # TYPE kmsd_unknown_method_calls_total counter\n",
        );
        let _ = writeln!(
            out,
            "kmsd_unknown_method_calls_total {}",
            self.unknown_method_calls.load(Ordering::Relaxed)
        );
        for (name, help, value) in [
            (
                "kmsd_disk_free_bytes",
                "Free bytes on the database's filesystem.",
                disk.free_bytes,
            ),
            (
                "kmsd_disk_reusable_bytes",
                "The database's free pages, reused before the file grows.",
                disk.reusable_bytes,
            ),
            (
                "kmsd_database_bytes",
                "The database file and its write-ahead log.",
                disk.database_bytes,
            ),
            (
                "kmsd_disk_soft_floor_bytes",
                "Below this (free plus reusable), unauthenticated calls are summarized.",
                disk.soft_floor,
            ),
            (
                "kmsd_disk_hard_floor_bytes",
                "Below this (free plus reusable), every call but archival fails closed.",
                disk.hard_floor,
            ),
            (
                "kmsd_disk_level",
                "0 ample, 1 below the soft floor, 2 below the hard floor.",
                disk.level,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out.push_str("# HELP kmsd_keys Keys by state.\n# TYPE kmsd_keys gauge\n");
        for (state, n) in keys_by_state {
            let _ = writeln!(out, "kmsd_keys{{state=\"{state}\"}} {n}");
        }
        out
    }
}

/// The disk under the audit log, as the gauges report it.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskGauges {
    pub free_bytes: u64,
    pub reusable_bytes: u64,
    pub database_bytes: u64,
    pub soft_floor: u64,
    pub hard_floor: u64,
    pub level: u64,
}

/// Serves `GET /metrics` over plain HTTP/1.1 on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: impl Fn() -> String + Send + Sync + 'static,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let render = std::sync::Arc::new(render);
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            // Read the request head, bounded; the body of a GET is ignored.
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let request_line = head.split(|b| *b == b'\r').next().unwrap_or_default();
            let (status, body) = if request_line.starts_with(b"GET /metrics ") {
                ("200 OK", render())
            } else {
                (
                    "404 Not Found",
                    "only GET /metrics is served here\n".to_owned(),
                )
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}
