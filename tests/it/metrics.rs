//! The Prometheus endpoint, scraped the way Prometheus does.

use kmsd_proto::pb::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_endpoint_has_every_series() {
    let server = TestServer::start_with_metrics().await;
    let mut c = server.client().await;
    let key = create_key(&mut c, "alias/m").await;
    create_key(&mut c, "").await;
    for _ in 0..3 {
        c.generate_data_key(GenerateDataKeyRequest {
            key_id: "alias/m".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    c.describe_key(DescribeKeyRequest {
        key_id: "alias/none".into(),
    })
    .await
    .unwrap_err();
    c.disable_key(DisableKeyRequest { key_id: key.key_id })
        .await
        .unwrap();

    let addr = server.server.metrics_addr().unwrap();
    let text = tokio::task::spawn_blocking(move || scrape(addr, "/metrics"))
        .await
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    for series in [
        "kmsd_build_info{version=\"",
        "kmsd_calls_total{method=\"GenerateDataKey\",code=\"OK\"} 3",
        "kmsd_calls_total{method=\"DescribeKey\",code=\"NOT_FOUND\"} 1",
        "kmsd_calls_total{method=\"CreateKey\",code=\"OK\"} 2",
        "kmsd_call_duration_seconds_bucket{method=\"GenerateDataKey\",le=\"+Inf\"} 3",
        "kmsd_call_duration_seconds_count{method=\"GenerateDataKey\"} 3",
        "kmsd_audit_batch_records_bucket{le=\"+Inf\"}",
        "kmsd_audit_commit_seconds_count",
        "kmsd_audit_failures_total 0",
        "kmsd_keys{state=\"ENABLED\"} 1",
        "kmsd_keys{state=\"DISABLED\"} 1",
        "# TYPE kmsd_calls_total counter",
        "# TYPE kmsd_call_duration_seconds histogram",
        "kmsd_audit_summarized_calls_total 0",
        "kmsd_disk_level 0",
        &format!("kmsd_disk_soft_floor_bytes {}", TEST_DISK.soft_floor),
        &format!("kmsd_disk_hard_floor_bytes {}", TEST_DISK.hard_floor),
    ] {
        assert!(text.contains(series), "missing {series:?} in\n{text}");
    }
    // Measured, not made up: the database has a size and its disk some free space.
    for gauge in ["kmsd_database_bytes ", "kmsd_disk_free_bytes "] {
        let value: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(gauge))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {gauge} in\n{text}"));
        assert!(value > 0, "{gauge}{value}");
    }
    assert!(!text.contains("alias/m"), "no key names or ids in metrics");
    let other = tokio::task::spawn_blocking(move || scrape(addr, "/"))
        .await
        .unwrap();
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    server.stop().await;
}
