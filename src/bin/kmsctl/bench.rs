//! `kmsctl bench`: a closed-loop gRPC load generator in the spirit of ghz.
//!
//! It opens `--connections` HTTP/2 connections and keeps `--concurrency` calls in flight in total (spread over the
//! connections), runs for `--warmup` unmeasured and then `--duration` measured, and reports calls/s and latency
//! percentiles from an HDR histogram. A call that returns an error status is an error, never a success. With
//! `--server-pid` it also reports the server's CPU time per call, read from /proc.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use kmsd_client::pb::*;
use kmsd_client::{Client, ClientBuilder};
use serde_json::json;

use super::Failure;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum BenchOp {
    /// The standard health check: the server's own gRPC ceiling.
    Health,
    GenerateDataKey,
    /// Decrypt of blobs made before the run.
    Decrypt,
    /// Encrypt of 32 bytes.
    Encrypt,
    /// GenerateDataKey, Decrypt and Encrypt in turn.
    Mix,
    /// Sign of a 32-byte message with a key of `--spec` (default ECC_NIST_P256), under its first algorithm.
    Sign,
    /// Verify of a signature made before the run.
    Verify,
    /// GenerateMac of a 32-byte message with a key of `--spec` (default HMAC_256).
    GenerateMac,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "health")]
    op: BenchOp,
    /// HTTP/2 connections to open.
    #[arg(long, short = 'c', default_value_t = 1)]
    connections: usize,
    /// Calls in flight in total.
    #[arg(long, short = 'n', default_value_t = 64)]
    concurrency: usize,
    /// Measured run time: 10s, 500ms, 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured time before it.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// The key for data keys and Encrypt; default alias/kmsctl-bench, created if missing.
    #[arg(long)]
    key: Option<String>,
    /// The key spec for sign, verify and generate-mac (the default key is then `alias/kmsctl-bench-SPEC`).
    #[arg(long)]
    spec: Option<String>,
    /// How many blobs to make before a decrypt run.
    #[arg(long, default_value_t = 1000)]
    blobs: usize,
    /// The server's process id, to report its CPU time per call (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 10s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{s:?}: the unit must be ms, s or m")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// What one worker, or the whole run, measured.
#[derive(Clone)]
pub struct Stats {
    /// Latency of successful calls, in microseconds.
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    /// Error statuses by gRPC code name.
    pub errors: BTreeMap<String, u64>,
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            // 1 µs to 1 minute at 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
            ok: 0,
            errors: BTreeMap::new(),
        }
    }

    pub fn record(&mut self, result: Result<(), tonic::Code>, latency: Duration) {
        match result {
            Ok(()) => {
                self.ok += 1;
                let us = (latency.as_micros() as u64).clamp(1, 60_000_000);
                // Within bounds by the clamp above.
                let _ = self.latency_us.record(us);
            }
            Err(code) => *self.errors.entry(kmsd_code_name(code)).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        let _ = self.latency_us.add(&other.latency_us);
        self.ok += other.ok;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The latency at quantile `q` (0-1), in milliseconds.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

fn kmsd_code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// What one worker calls, over its connection's client.
struct Work {
    kms: Client,
    key: String,
    blobs: Arc<Vec<Vec<u8>>>,
    /// Sign, Verify, GenerateMac: the key's first algorithm, and the signature Verify checks.
    algorithm: String,
    signature: Arc<Vec<u8>>,
}

/// What Sign, Verify and GenerateMac are given.
const MESSAGE: [u8; 32] = [0x6b; 32];

async fn call(work: &Work, op: BenchOp, i: usize) -> Result<(), tonic::Code> {
    let op = match op {
        BenchOp::Mix => [BenchOp::GenerateDataKey, BenchOp::Decrypt, BenchOp::Encrypt][i % 3],
        other => other,
    };
    let kms = &work.kms;
    let result = match op {
        BenchOp::Health => kms.health("").await.map(drop),
        BenchOp::GenerateDataKey => kms.generate_data_key(&work.key, &[]).await.map(drop),
        BenchOp::Decrypt => kms
            .decrypt(&work.blobs[i % work.blobs.len()], &[], None)
            .await
            .map(drop),
        BenchOp::Sign => kms
            .sign(&work.key, &MESSAGE, &work.algorithm)
            .await
            .map(drop),
        BenchOp::Verify => match kms
            .verify(&work.key, &MESSAGE, &work.signature, &work.algorithm)
            .await
        {
            Ok(true) => Ok(()),
            // A signature that does not verify is an error here: it was made to verify.
            Ok(false) => return Err(tonic::Code::InvalidArgument),
            Err(e) => Err(e),
        },
        BenchOp::GenerateMac => kms
            .generate_mac(&work.key, &MESSAGE, &work.algorithm)
            .await
            .map(drop),
        _ => kms.encrypt(&work.key, &[7u8; 32], &[]).await.map(drop),
    };
    result.map_err(|e| e.code())
}

/// The server's user+system CPU time, from /proc/PID/stat (in USER_HZ = 100 ticks per second on Linux).
fn server_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

pub async fn run(
    builder: &ClientBuilder,
    endpoint: &str,
    json_output: bool,
    args: BenchArgs,
) -> Result<(), Failure> {
    if args.connections == 0 || args.concurrency == 0 {
        return Err(Failure(
            "--connections and --concurrency must be at least 1".into(),
        ));
    }
    // It calls like any client, through the client library: every call carries the token (or the connection a
    // client certificate). A failed call is counted, never retried; no deadline is set, so the daemon is measured
    // without a timer per call (and as the load generator did before it used the library).
    // With several replicas (--endpoint a,b,c), connection i goes to replica i mod n.
    let builder = builder
        .clone()
        .retries(0, Duration::ZERO)
        .no_timeout()
        .spread();
    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        // Each client opens its own HTTP/2 connection.
        let kms = builder.clone().connect().await.map_err(|e| {
            Failure(format!(
                "cannot connect to {endpoint} ({e}); is kmsd running?"
            ))
        })?;
        clients.push(kms);
    }

    let keyed = matches!(
        args.op,
        BenchOp::Sign | BenchOp::Verify | BenchOp::GenerateMac
    );
    let spec = match (&args.spec, args.op) {
        (Some(spec), _) => spec.clone(),
        (None, BenchOp::GenerateMac) => "HMAC_256".to_owned(),
        (None, BenchOp::Sign | BenchOp::Verify) => "ECC_NIST_P256".to_owned(),
        (None, _) => String::new(),
    };
    let key = args.key.clone().unwrap_or_else(|| {
        if spec.is_empty() {
            "alias/kmsctl-bench".to_owned()
        } else {
            format!(
                "alias/kmsctl-bench-{}",
                spec.to_lowercase().replace('_', "-")
            )
        }
    });
    let mut blobs = Vec::new();
    let (mut algorithm, mut signature) = (String::new(), Vec::new());
    if args.op != BenchOp::Health {
        let kms = &clients[0];
        let exists = kms.describe_key(&key).await;
        if matches!(&exists, Err(kmsd_client::Error::NotFound(_))) && args.key.is_none() {
            kms.create_key(CreateKeyRequest {
                description: "kmsctl bench".into(),
                alias: key.clone(),
                key_spec: spec.clone(),
                key_usage: if spec.starts_with("RSA") {
                    "SIGN_VERIFY".into()
                } else {
                    String::new()
                },
                ..Default::default()
            })
            .await?;
        }
        if keyed {
            let meta = kms.describe_key(&key).await?;
            algorithm = match args.op {
                BenchOp::GenerateMac => meta.mac_algorithms.first(),
                _ => meta.signing_algorithms.first(),
            }
            .cloned()
            .ok_or_else(|| {
                Failure(format!(
                    "{key} ({}, usage {}) cannot {:?}",
                    meta.key_spec, meta.key_usage, args.op
                ))
            })?;
            if args.op == BenchOp::Verify {
                signature = kms.sign(&key, &MESSAGE, &algorithm).await?.signature;
            }
        }
        if matches!(args.op, BenchOp::Decrypt | BenchOp::Mix) {
            for _ in 0..args.blobs.max(1) {
                blobs.push(
                    kms.generate_data_key(&key, &[])
                        .await?
                        .ciphertext_blob
                        .clone(),
                );
            }
        }
    }
    let blobs = Arc::new(blobs);
    let signature = Arc::new(signature);

    let phase = Arc::new(AtomicU8::new(WARMUP));
    let mut workers = Vec::with_capacity(args.concurrency);
    for w in 0..args.concurrency {
        let work = Work {
            kms: clients[w % clients.len()].clone(),
            key: key.clone(),
            blobs: blobs.clone(),
            algorithm: algorithm.clone(),
            signature: signature.clone(),
        };
        let phase = phase.clone();
        let op = args.op;
        workers.push(tokio::spawn(async move {
            let mut stats = Stats::new();
            let mut i = w;
            loop {
                let started = Instant::now();
                let result = call(&work, op, i).await;
                let latency = started.elapsed();
                match phase.load(Ordering::Relaxed) {
                    MEASURE => stats.record(result, latency),
                    STOP => return stats,
                    _ => {}
                }
                i += args.concurrency;
            }
        }));
    }

    tokio::time::sleep(args.warmup).await;
    let cpu_before = args.server_pid.and_then(server_cpu);
    phase.store(MEASURE, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    phase.store(STOP, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu_after = args.server_pid.and_then(server_cpu);

    let mut total = Stats::new();
    for worker in workers {
        let stats = worker
            .await
            .map_err(|e| Failure(format!("a bench worker failed: {e}")))?;
        total.merge(&stats);
    }
    let calls = total.ok + total.error_count();
    let rate = total.ok as f64 / elapsed.as_secs_f64();
    let cpu_per_call_us = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) if calls > 0 => Some((a - b).as_secs_f64() * 1e6 / calls as f64),
        _ => None,
    };
    if json_output {
        let doc = json!({
            "op": format!("{:?}", args.op),
            "connections": args.connections,
            "concurrency": args.concurrency,
            "duration_s": elapsed.as_secs_f64(),
            "ok": total.ok,
            "errors": total.errors,
            "calls_per_s": rate,
            "latency_ms": {
                "p50": total.percentile_ms(0.50),
                "p90": total.percentile_ms(0.90),
                "p99": total.percentile_ms(0.99),
                "p99.9": total.percentile_ms(0.999),
                "max": total.latency_us.max() as f64 / 1000.0,
            },
            "server_cpu_us_per_call": cpu_per_call_us,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        println!(
            "{:?}: {} connections, {} in flight, {:.1}s measured after {:.1}s warm-up",
            args.op,
            args.connections,
            args.concurrency,
            elapsed.as_secs_f64(),
            args.warmup.as_secs_f64()
        );
        println!("  calls/s     {rate:.0}");
        println!("  ok          {}", total.ok);
        println!(
            "  errors      {}{}",
            total.error_count(),
            format_errors(&total.errors)
        );
        println!(
            "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            total.percentile_ms(0.50),
            total.percentile_ms(0.90),
            total.percentile_ms(0.99),
            total.percentile_ms(0.999),
            total.latency_us.max() as f64 / 1000.0
        );
        if let Some(cpu) = cpu_per_call_us {
            println!("  server CPU  {cpu:.1} µs per call");
        }
    }
    Ok(())
}

fn format_errors(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = errors.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    format!(" ({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_right_on_a_uniform_distribution() {
        let mut stats = Stats::new();
        // 1..=10_000 µs, once each: the q-quantile is q * 10 ms.
        for us in 1..=10_000u64 {
            stats.record(Ok(()), Duration::from_micros(us));
        }
        for (q, expected_ms) in [(0.5, 5.0), (0.9, 9.0), (0.99, 9.9), (0.999, 9.99)] {
            let got = stats.percentile_ms(q);
            // HDR histograms at 3 significant digits are within 0.1%.
            assert!(
                (got - expected_ms).abs() <= expected_ms * 0.001 + 0.001,
                "p{q}: {got} vs {expected_ms}"
            );
        }
        assert_eq!(stats.ok, 10_000);
    }

    #[test]
    fn percentiles_see_the_slow_tail() {
        let mut stats = Stats::new();
        for _ in 0..990 {
            stats.record(Ok(()), Duration::from_micros(100));
        }
        for _ in 0..10 {
            stats.record(Ok(()), Duration::from_millis(50));
        }
        assert!((stats.percentile_ms(0.5) - 0.1).abs() < 0.001);
        assert!((stats.percentile_ms(0.99) - 0.1).abs() < 0.001);
        assert!((stats.percentile_ms(0.999) - 50.0).abs() < 0.05);
    }

    #[test]
    fn errors_are_counted_apart_from_successes() {
        let mut a = Stats::new();
        a.record(Ok(()), Duration::from_micros(10));
        a.record(Err(tonic::Code::Unavailable), Duration::from_micros(10));
        let mut b = Stats::new();
        b.record(Err(tonic::Code::Unavailable), Duration::from_micros(10));
        b.record(Err(tonic::Code::NotFound), Duration::from_micros(10));
        a.merge(&b);
        assert_eq!(a.ok, 1);
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.errors.get("Unavailable"), Some(&2));
        assert_eq!(
            a.latency_us.len(),
            1,
            "errors are not latencies of successful calls"
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
