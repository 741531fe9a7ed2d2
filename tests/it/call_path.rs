//! The one call path, seen from outside: every method of every kmsd service refuses an anonymous caller before any
//! handler code runs, with exactly one record and one metrics count per call; a change whose storage fails after
//! its record was made durable still leaves exactly one record.

use kmsd_proto::pb::*;
use prost::Message;
use tonic::Code;

use crate::support::*;

/// Every method of every service in the API's descriptor set, as its gRPC path.
fn described_methods() -> Vec<(String, String)> {
    let set = prost_types::FileDescriptorSet::decode(kmsd_proto::pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                methods.push((
                    format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                    method.name().to_owned(),
                ));
            }
        }
    }
    methods
}

#[tokio::test(flavor = "multi_thread")]
async fn every_method_refuses_an_anonymous_empty_call_with_exactly_one_record() {
    let server = TestServer::start_with_metrics().await;
    let methods = described_methods();
    assert!(methods.len() >= 33, "{methods:?}");

    let channel = server.raw_channel().await;
    for (path, method) in &methods {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let mut request = tonic::Request::new(());
        request.metadata_mut().insert(
            "x-request-id",
            format!("anonymous-{method}").parse().unwrap(),
        );
        let answer = grpc
            .unary::<(), (), _>(
                request,
                path.parse().unwrap(),
                tonic_prost::ProstCodec::default(),
            )
            .await;
        let status = answer.expect_err(path);
        assert_eq!(status.code(), Code::Unauthenticated, "{path}: {status:?}");
    }

    for (path, method) in &methods {
        let events = events_for(&server, &format!("anonymous-{method}")).await;
        assert_eq!(events.len(), 1, "{path}: {events:?}");
        let event = &events[0];
        assert_eq!(event.event_name, *method, "{path}");
        assert_eq!(event.principal, "anonymous", "{path}");
        assert_eq!(outcome(event), Outcome::Denied, "{path}");
        assert_eq!(event.error_code, "UNAUTHENTICATED", "{path}");
    }

    let addr = server.server.metrics_addr().unwrap();
    let text = tokio::task::spawn_blocking(move || scrape(addr, "/metrics"))
        .await
        .unwrap();
    for (_, method) in &methods {
        let series =
            format!("kmsd_calls_total{{method=\"{method}\",code=\"UNAUTHENTICATED\"}} 1\n");
        assert!(text.contains(&series), "missing {series:?} in\n{text}");
        let latency = format!("kmsd_call_duration_seconds_count{{method=\"{method}\"}} ");
        assert!(text.contains(&latency), "missing {latency:?} in\n{text}");
    }
    assert!(
        text.contains("kmsd_unknown_method_calls_total 0\n"),
        "{text}"
    );
    assert_eq!(verify_log(&server).await.problem, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_whose_storage_fails_after_its_gate_leaves_exactly_one_record() {
    let server = TestServer::start().await;
    // The keys table refuses every new row, as a failing disk or a bug in storage would: the call's record is made
    // durable at its gate, then storing the key fails.
    let db = server.data_dir().join("kmsd.db");
    let sql = rusqlite::Connection::open(&db).unwrap();
    sql.execute_batch(
        "CREATE TRIGGER refuse_keys BEFORE INSERT ON keys BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .unwrap();
    drop(sql);

    let mut c = server.client().await;
    let status = c
        .create_key(tagged(CreateKeyRequest::default(), "gated-then-failed"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("gated-then-failed")
    );

    let event = one_event(&server, "gated-then-failed").await;
    assert_eq!(event.event_name, "CreateKey");
    // The record over-reports (a key that was not stored), never under-reports.
    assert_eq!(outcome(&event), Outcome::Success);
    assert!(!event.key_id.is_empty());

    // A gated change that fails before its gate is recorded once too, as the failure it is.
    let status = c
        .create_alias(tagged(
            CreateAliasRequest {
                alias_name: "alias/nowhere".into(),
                key_id: "00000000-0000-4000-8000-000000000000".into(),
            },
            "gate-never-reached",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let event = one_event(&server, "gate-never-reached").await;
    assert_eq!(outcome(&event), Outcome::Error);
    assert_eq!(event.error_code, "NOT_FOUND");
    assert_eq!(verify_log(&server).await.problem, "");
}
