//! Health, both reflection protocols, and graceful shutdown.

use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn health_reports_the_kms_service() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.raw_channel().await);
    for service in [
        "",
        "kms.v1.KeyManagementService",
        "kms.v1.AuditService",
        "kms.v1.AdminService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_v1_and_v1alpha_list_the_services() {
    let server = TestServer::start().await;
    let expected = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "kms.v1.AdminService",
        "kms.v1.AuditService",
        "kms.v1.KeyManagementService",
    ];

    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(server.raw_channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::once(request))
            .await
            .unwrap()
            .into_inner();
        let response = responses.next().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection response");
        };
        let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        assert_eq!(names, expected);
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(server.raw_channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "kms.v1.KeyManagementService".into(),
            )),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::once(request))
            .await
            .unwrap()
            .into_inner();
        let response = responses.next().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
            panic!("unexpected reflection response");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_serving_and_releases_the_database() {
    let server = TestServer::start().await;
    let endpoint = server.endpoint();
    let dir = server.stop().await;
    let refused =
        kmsd_proto::pb::key_management_service_client::KeyManagementServiceClient::connect(
            endpoint,
        )
        .await;
    assert!(refused.is_err(), "the port no longer accepts connections");
    // The same directory opens again at once: nothing holds it.
    TestServer::start_in(dir, kmsd::clock::ManualClock::new())
        .await
        .unwrap()
        .stop()
        .await;
}

/// The daemon binary itself: starts on its own, refuses core dumps, and stops cleanly on SIGTERM.
#[test]
fn the_daemon_process_hardens_itself_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env_remove("KMSD_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let serving = line.contains("kmsd is serving");
        log.push(line);
        if serving {
            break;
        }
    }
    assert!(
        log.last().is_some_and(|l| l.contains("kmsd is serving")),
        "{log:#?}"
    );
    for line in &log {
        let parsed: serde_json::Value =
            serde_json::from_str(line).expect("--log-format json logs JSON lines");
        assert!(
            parsed.get("timestamp").is_some() && parsed.get("level").is_some(),
            "{line}"
        );
    }

    #[cfg(target_os = "linux")]
    {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap();
        assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
        assert_eq!(core.split_whitespace().nth(5), Some("0"), "{core}");
    }

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?} {rest:#?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("audit checkpoint") || l.contains("kmsd stopped")),
        "{rest:#?}"
    );
    assert!(
        rest.last().is_some_and(|l| l.contains("kmsd stopped")),
        "{rest:#?}"
    );
}
