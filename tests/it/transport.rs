//! The transport's limits against what an attacker without credentials sends: half-open HTTP/2 streams, silent
//! connections beyond the limit, more calls than the daemon serves at once. Each against the real binary.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::support::*;

/// HTTP/2 frames written by hand, as an attacker writes them: nothing makes it respect the server's settings.
mod frames {
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    pub fn settings() -> Vec<u8> {
        frame(0x4, 0, 0, &[])
    }

    /// HEADERS with END_HEADERS and without END_STREAM: a call whose body never comes.
    pub fn open_call(stream: u32, path: &str) -> Vec<u8> {
        let mut block = Vec::new();
        for (name, value) in [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "127.0.0.1"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ] {
            // Literal header field without indexing, new name, no Huffman coding (RFC 7541, 6.2.2).
            block.push(0);
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(value.len() as u8);
            block.extend_from_slice(value.as_bytes());
        }
        frame(0x1, 0x4, stream, &block)
    }
}

async fn healthy(endpoint: String) -> bool {
    let check = async {
        let channel = kmsd_client::ClientBuilder::new(endpoint)
            .channel()
            .await
            .ok()?;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(5), check)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// Finding 2: HEADERS without a body and without a token, 40,000 streams over 8 connections, took the daemon from
/// 29 to 545 MB, and the memory stayed. Now each connection holds at most `max_concurrent_streams` (the rest are
/// refused), a stream whose body does not come is answered within `request_timeout`, and the daemon keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn forty_thousand_half_open_streams_leave_memory_bounded_and_the_daemon_serving() {
    const CONNECTIONS: usize = 8;
    const STREAMS: u32 = 5000;
    /// What the daemon may grow by while the streams are open (it stays far below the 500 MB before).
    const BOUND_KIB: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[], &[("KMSD_REQUEST_TIMEOUT", "2s")]).unwrap();
    assert!(healthy(daemon.endpoint()).await);
    let baseline = daemon.rss_kib();

    let addr = daemon.addr;
    let attackers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(addr).unwrap();
                let mut reader = conn.try_clone().unwrap();
                // Read and discard what the daemon answers, as a client would.
                std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
                let mut out = frames::PREFACE.to_vec();
                out.extend(frames::settings());
                for i in 0..STREAMS {
                    out.extend(frames::open_call(
                        2 * i + 1,
                        "/kms.v1.KeyManagementService/CreateKey",
                    ));
                }
                // The daemon may reset the connection part-way: what it took counts all the same.
                let _ = conn.write_all(&out);
                conn
            })
        })
        .collect();
    let conns: Vec<TcpStream> = attackers.into_iter().map(|t| t.join().unwrap()).collect();

    let mut peak = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(daemon.rss_kib());
    }
    assert!(
        healthy(daemon.endpoint()).await,
        "serving while the streams are open"
    );
    let mut client = daemon.client_as(Some(&daemon.admin_token())).await;
    create_key(&mut client, "alias/after-the-flood").await;
    drop(conns);
    tokio::time::sleep(Duration::from_millis(500)).await;
    peak = peak.max(daemon.rss_kib());
    eprintln!(
        "resident memory: {baseline} KiB before, {peak} KiB at the peak of {} half-open streams",
        CONNECTIONS as u32 * STREAMS
    );
    assert!(
        peak - baseline <= BOUND_KIB,
        "resident memory grew from {baseline} to {peak} KiB"
    );
    daemon.stop();
}

/// Finding 3: 1,124 silent TCP connections under a 1024 descriptor limit made new clients time out while the
/// accept loop spun. Now silent connections beyond `max_connections` make room for new ones (the oldest silent one
/// is closed), descriptors stay within the limit, and health checks keep working; silent ones are closed after the
/// handshake timeout.
#[tokio::test(flavor = "multi_thread")]
async fn silent_connections_beyond_the_limit_do_not_stop_health_checks() {
    const MAX_CONNECTIONS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let max = MAX_CONNECTIONS.to_string();
    let daemon = Daemon::start_with_open_files(
        dir.path(),
        &[],
        &[
            ("KMSD_MAX_CONNECTIONS", &max),
            ("KMSD_HANDSHAKE_TIMEOUT", "3s"),
        ],
        // Far fewer descriptors than the silent connections below: before, accept failed with EMFILE and spun.
        Some(256),
    )
    .unwrap();
    let silent: Vec<TcpStream> = (0..3 * MAX_CONNECTIONS + 24)
        .map(|_| TcpStream::connect(daemon.addr).unwrap())
        .collect();
    for _ in 0..3 {
        assert!(
            healthy(daemon.endpoint()).await,
            "a health check gets through"
        );
    }
    let open = daemon.open_files();
    assert!(
        open <= MAX_CONNECTIONS + 64,
        "{open} descriptors open with {} silent connections",
        silent.len()
    );
    // The silent ones still open are closed once the handshake timeout passes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut closed = 0;
    for mut conn in silent {
        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        // The daemon speaks first (its HTTP/2 SETTINGS); closed means end of file or a reset after that.
        let mut buf = [0u8; 256];
        loop {
            match std::io::Read::read(&mut conn, &mut buf) {
                Ok(0) => break closed += 1,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break closed += 1,
            }
        }
    }
    assert_eq!(
        closed,
        3 * MAX_CONNECTIONS + 24,
        "every silent connection was closed"
    );
    assert!(healthy(daemon.endpoint()).await);
    let log = daemon.stop();
    assert!(
        !log.contains("cannot accept connections"),
        "no accept failures: {log}"
    );
}

/// More calls at once than `max_calls_in_flight`: the excess is refused at once with RESOURCE_EXHAUSTED, not queued,
/// and calls succeed again as soon as the load is gone.
#[tokio::test(flavor = "multi_thread")]
async fn calls_beyond_the_in_flight_limit_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &[],
        &[
            ("KMSD_MAX_CALLS_IN_FLIGHT", "4"),
            ("KMSD_REQUEST_TIMEOUT", "3s"),
        ],
    )
    .unwrap();
    // Four calls held open by streams whose bodies never come.
    let mut conn = TcpStream::connect(daemon.addr).unwrap();
    let mut out = frames::PREFACE.to_vec();
    out.extend(frames::settings());
    for i in 0..4 {
        out.extend(frames::open_call(
            2 * i + 1,
            "/kms.v1.KeyManagementService/GenerateRandom",
        ));
    }
    conn.write_all(&out).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut client = daemon.client_as(Some(&daemon.admin_token())).await;
    let random = kmsd_proto::pb::GenerateRandomRequest { number_of_bytes: 8 };
    assert_status(
        client
            .generate_random(tagged(random, "over-the-limit"))
            .await,
        tonic::Code::ResourceExhausted,
        &["limit of 4 calls"],
    );
    // The four held calls are answered when their bodies are overdue, and the slots come back.
    tokio::time::sleep(Duration::from_secs(4)).await;
    client.generate_random(random).await.unwrap();
    drop(conn);

    // Each was recorded: the refused call under its caller, the overdue ones as anonymous.
    let mut audit = daemon.audit_client().await;
    let refused = audit
        .query_events(kmsd_proto::pb::QueryEventsRequest {
            request_id: "over-the-limit".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].principal, "admin");
    assert_eq!(refused[0].error_code, "RESOURCE_EXHAUSTED");
    let overdue = audit
        .query_events(kmsd_proto::pb::QueryEventsRequest {
            event_name: "GenerateRandom".into(),
            principal: "anonymous".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(overdue.len(), 4, "{overdue:?}");
    assert!(
        overdue.iter().all(|e| e.error_code == "DEADLINE_EXCEEDED"),
        "{overdue:?}"
    );
    daemon.stop();
}

/// The AWS endpoint's calls count against the same in-flight limit as gRPC's: with the one slot held by an AWS
/// request whose body never comes, a signed AWS call and a gRPC call are both refused at once, and recorded.
#[tokio::test(flavor = "multi_thread")]
async fn the_aws_endpoint_shares_the_in_flight_limit() {
    use tokio::io::AsyncWriteExt;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = config(dir.path());
    config.network.aws_listen = Some("127.0.0.1:0".parse().unwrap());
    config.transport.max_calls_in_flight = 1;
    config.transport.request_timeout = Duration::from_secs(2);
    let server = TestServer::start_with(dir, &config).await;
    let aws = server.server.aws_addr().unwrap();
    let (secret, key) = server
        .kms_client()
        .await
        .create_access_key("admin", "limits")
        .await
        .unwrap();

    let mut held = tokio::net::TcpStream::connect(aws).await.unwrap();
    held.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: TrentService.GenerateRandom\r\n\
          Content-Type: application/x-amz-json-1.1\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, refused) = crate::aws_signer::call(
        aws,
        (&key.access_key_id, &secret),
        "GenerateRandom",
        r#"{"NumberOfBytes": 8}"#,
    )
    .await;
    assert_eq!(
        (status, refused["__type"].as_str()),
        (400, Some("LimitExceededException")),
        "{refused}"
    );
    let mut client = server.client().await;
    let random = kmsd_proto::pb::GenerateRandomRequest { number_of_bytes: 8 };
    assert_status(
        client.generate_random(random).await,
        tonic::Code::ResourceExhausted,
        &["limit of 1 calls"],
    );

    // The held call is answered when its body is overdue, and the slot comes back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, answer) = crate::aws_signer::call(
        aws,
        (&key.access_key_id, &secret),
        "GenerateRandom",
        r#"{"NumberOfBytes": 8}"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let mut audit = server.audit_client().await;
    let exhausted = audit
        .query_events(kmsd_proto::pb::QueryEventsRequest {
            event_name: "GenerateRandom".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let codes: Vec<&str> = exhausted.iter().map(|e| e.error_code.as_str()).collect();
    assert_eq!(
        codes.iter().filter(|c| **c == "RESOURCE_EXHAUSTED").count(),
        2,
        "{codes:?}"
    );
    assert!(
        codes.contains(&"DEADLINE_EXCEEDED"),
        "the overdue body: {codes:?}"
    );
    server.stop().await;
}
