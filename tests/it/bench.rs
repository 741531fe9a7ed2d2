//! kmsctl bench against a real daemon: it measures successes, and counts error statuses as errors.

use std::process::Command;

use kmsd_proto::pb::*;
use serde_json::Value;

use crate::support::*;

async fn bench(server: &TestServer, args: &[&str]) -> Value {
    let endpoint = server.endpoint();
    let token = server.admin_token();
    let mut all: Vec<String> = [
        "--json",
        "bench",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "-n",
        "8",
        "-c",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.extend(args.iter().map(|s| s.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kmsctl"))
            .args(&all)
            .env("KMSD_ENDPOINT", endpoint)
            .env("KMSD_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_reports_successes_and_counts_errors_as_errors() {
    let server = TestServer::start().await;
    let health = bench(&server, &["--op", "health"]).await;
    assert!(health["ok"].as_u64().unwrap() > 0);
    assert_eq!(health["errors"], serde_json::json!({}));
    assert!(health["latency_ms"]["p50"].as_f64().unwrap() > 0.0);

    let decrypts = bench(&server, &["--op", "decrypt", "--blobs", "10"]).await;
    assert!(decrypts["ok"].as_u64().unwrap() > 0, "{decrypts}");
    assert_eq!(decrypts["errors"], serde_json::json!({}));

    // Every call against a disabled key fails: none may count as a success.
    let mut client = server.client().await;
    create_key(&mut client, "alias/off").await;
    client
        .disable_key(DisableKeyRequest {
            key_id: "alias/off".into(),
        })
        .await
        .unwrap();
    let refused = bench(
        &server,
        &["--op", "generate-data-key", "--key", "alias/off"],
    )
    .await;
    assert_eq!(refused["ok"], 0, "{refused}");
    assert!(
        refused["errors"]["FailedPrecondition"].as_u64().unwrap() > 0,
        "{refused}"
    );
    assert_eq!(refused["calls_per_s"], 0.0);
}
