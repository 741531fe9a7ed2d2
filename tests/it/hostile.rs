//! What anyone who can reach the port may send: each finding of the hostile-client review, reproduced against a
//! real daemon and shown to be bounded.

use kmsd_proto::pb::admin_service_client::AdminServiceClient;
use kmsd_proto::pb::key_management_service_client::KeyManagementServiceClient;
use kmsd_proto::pb::*;
use tonic::Code;

use crate::support::*;

/// The size of the database once the daemon has stopped (the WAL folded in).
fn stored_bytes(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join("kmsd.db")).unwrap().len()
}

/// Finding 1: an anonymous CreateKey with a 3.9 MB description was refused, but stored whole in its record. Now
/// its record keeps the first bytes, the length and a fingerprint, and the database grows by a few KiB a call.
#[tokio::test(flavor = "multi_thread")]
async fn an_anonymous_flood_of_huge_requests_grows_the_database_by_a_few_kib_a_call() {
    const CALLS: u64 = 16;
    let dir = TestServer::start().await.stop().await;
    let before = stored_bytes(dir.path());
    let server = TestServer::start_in(dir, kmsd::clock::ManualClock::new())
        .await
        .unwrap();
    let description = "d".repeat(3_900_000);
    let mut anonymous = KeyManagementServiceClient::new(server.channel_as(None).await)
        .max_decoding_message_size(1 << 20);
    for i in 0..CALLS {
        let mut request = tonic::Request::new(CreateKeyRequest {
            description: description.clone(),
            alias: format!("alias/{}", "a".repeat(20_000)),
            tags: (0..100)
                .map(|t| (format!("t{t}"), "v".repeat(2000)))
                .collect(),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("x-request-id", format!("flood-{i}").parse().unwrap());
        assert_status(
            anonymous.create_key(request).await,
            Code::Unauthenticated,
            &[],
        );
    }
    let record = one_event(&server, "flood-0").await;
    assert_eq!(record.principal, "anonymous");
    assert_eq!(outcome(&record), Outcome::Denied);
    let kept = &record.parameters["description"];
    assert!(
        kept.starts_with("dddd") && kept.contains("3900000 bytes"),
        "{kept}"
    );
    assert!(kept.len() < 200, "{kept}");
    assert!(record.key_alias.len() < 200, "{}", record.key_alias);
    let dir = server.stop().await;
    let growth = stored_bytes(dir.path()) - before;
    assert!(
        growth <= CALLS * 4096,
        "{CALLS} anonymous 3.9 MB calls grew the database by {growth} bytes"
    );
}

/// Finding 6: a 1 MB key_id came back as a 1 MB grpc-message and was stored again as the record's message.
#[tokio::test(flavor = "multi_thread")]
async fn error_messages_quote_input_only_up_to_a_small_limit() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let huge = "k".repeat(1 << 20);
    let status = assert_status(
        client
            .describe_key(tagged(
                DescribeKeyRequest {
                    key_id: huge.clone(),
                },
                "huge-id",
            ))
            .await,
        Code::InvalidArgument,
        &["key_id", "cut: "],
    );
    assert!(
        status.message().len() < 700,
        "{} bytes",
        status.message().len()
    );
    let record = one_event(&server, "huge-id").await;
    assert!(
        record.error_message.len() < 700,
        "{}",
        record.error_message.len()
    );
    assert!(record.parameters["key_id"].len() < 1200);
    server.stop().await;
}

/// Finding 4: `kmsctl tokens revoke "$(kmsctl tokens create svc)"` was refused, left the token valid, and stored
/// the whole token in the log. Now it revokes that token, and no token passed anywhere (as an id, a key name, a
/// reason, a context value, a user agent) reaches the database or the daemon's log.
#[tokio::test(flavor = "multi_thread")]
async fn a_whole_token_passed_anywhere_never_reaches_the_database_or_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[], &[]).unwrap();
    let admin = daemon.admin_token();
    let kmsctl = |args: &[&str]| {
        let out = kmsctl_as(&daemon.endpoint(), &admin, args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    kmsctl(&["principals", "create", "svc"]);
    let revoked = kmsctl(&["tokens", "create", "svc"]);
    let live = kmsctl(&["tokens", "create", "svc"]);
    kmsctl(&["tokens", "revoke", &revoked]);

    let mut as_revoked = daemon.client_as(Some(&revoked)).await;
    assert_status(
        as_revoked
            .describe_key(DescribeKeyRequest {
                key_id: "alias/x".into(),
            })
            .await,
        Code::Unauthenticated,
        &["revoked"],
    );

    let mut client = daemon.client_as(Some(&admin)).await;
    let mut admin_client = AdminServiceClient::new(kmsd_client::AuthChannel::new(
        kmsd_client::ClientBuilder::new(daemon.endpoint())
            .channel()
            .await
            .unwrap(),
        kmsd_client::BearerAuth::new(Some(&admin)).unwrap(),
    ));
    let cut = &live[..live.len() - 3];
    admin_client
        .revoke_token(RevokeTokenRequest {
            token_id: cut.into(),
        })
        .await
        .unwrap_err();
    let mut request = tonic::Request::new(DescribeKeyRequest {
        key_id: live.clone(),
    });
    request
        .metadata_mut()
        .insert("x-kms-reason", live.parse().unwrap());
    request
        .metadata_mut()
        .insert("user-agent", live.parse().unwrap());
    client.describe_key(request).await.unwrap_err();
    let key = create_key(&mut client, "alias/t").await;
    client
        .encrypt(EncryptRequest {
            key_id: key.key_id.clone(),
            plaintext: b"x".to_vec(),
            encryption_context: ctx(&[("owner", &live)]),
            encryption_algorithm: String::new(),
        })
        .await
        .unwrap();
    let mut anonymous = daemon.client_as(None).await;
    anonymous
        .describe_key(DescribeKeyRequest {
            key_id: live.clone(),
        })
        .await
        .unwrap_err();
    // Still valid: only the first was revoked.
    daemon
        .client_as(Some(&live))
        .await
        .generate_random(GenerateRandomRequest { number_of_bytes: 8 })
        .await
        .unwrap();

    let log = daemon.stop();
    let secret = |token: &str| token[token.len() - 30..].to_owned();
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name().unwrap() != "admin.token" {
            stored.extend(std::fs::read(path).unwrap());
        }
    }
    for token in [&revoked, &live] {
        let secret = secret(token);
        assert!(!log.contains(&secret), "a token's secret is in the log");
        assert!(
            !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a token's secret is in the data directory"
        );
    }
    assert!(log.contains("call"), "debug lines per call were logged");
}

/// A message with one bytes field numbered as `DescribeKeyRequest.key_id`: invalid UTF-8 there fails to decode.
#[derive(Clone, PartialEq, prost::Message)]
struct NotUtf8 {
    #[prost(bytes = "vec", tag = "1")]
    key_id: Vec<u8>,
}

/// Sends `message` to `path` as gRPC, with a request id and, when given, a token.
async fn raw_call(
    server: &TestServer,
    path: &'static str,
    message: NotUtf8,
    token: Option<&str>,
    request_id: &str,
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(server.raw_channel().await);
    grpc.ready().await.unwrap();
    let mut request = tagged(message, request_id);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<NotUtf8, DescribeKeyResponse>::default();
    grpc.unary(
        request,
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        codec,
    )
    .await
    .expect_err("the call fails")
}

/// Finding 8: requests that failed protobuf decoding, exceeded the message size or named no method left no
/// record, with or without a token, so anonymous probing was invisible. Now each leaves exactly one, bounded.
#[tokio::test(flavor = "multi_thread")]
async fn undecodable_oversized_and_unknown_calls_leave_one_bounded_record_each() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = config(dir.path());
    config.transport.max_message_bytes = 64 * 1024;
    let server = TestServer::start_with(dir, &config).await;
    let admin = server.admin_token();
    let before = verify_log(&server).await.head_sequence;
    let garbage = NotUtf8 {
        key_id: vec![0xff; 300],
    };
    let describe = "/kms.v1.KeyManagementService/DescribeKey";
    let cases = [
        (describe, garbage.clone(), None, "bad-anon", Code::Internal),
        (
            describe,
            garbage.clone(),
            Some(admin.as_str()),
            "bad-admin",
            Code::Internal,
        ),
        (
            describe,
            NotUtf8 {
                key_id: vec![b'k'; 100_000],
            },
            None,
            "big-anon",
            Code::OutOfRange,
        ),
        (
            describe,
            NotUtf8 {
                key_id: vec![b'k'; 100_000],
            },
            Some(admin.as_str()),
            "big-admin",
            Code::OutOfRange,
        ),
        (
            "/kms.v1.KeyManagementService/NoSuchThing",
            garbage.clone(),
            None,
            "unknown",
            Code::Unimplemented,
        ),
        (
            "/kms.v1.Nope/DescribeKey",
            garbage,
            Some(admin.as_str()),
            "unknown-service",
            Code::Unimplemented,
        ),
    ];
    for (path, message, token, request_id, code) in cases {
        let status = raw_call(&server, path, message, token, request_id).await;
        assert_eq!(status.code(), code, "{request_id}: {status:?}");
        assert_eq!(
            status
                .metadata()
                .get("x-request-id")
                .unwrap()
                .to_str()
                .unwrap(),
            request_id,
            "the answer names the record"
        );
        let record = one_event(&server, request_id).await;
        let principal = if token.is_some() {
            "admin"
        } else {
            "anonymous"
        };
        assert_eq!(record.principal, principal, "{record:?}");
        assert_eq!(
            record.error_code,
            kmsd::service::code_name(code),
            "{record:?}"
        );
        assert_eq!(record.reason, format!("because {request_id}"));
        if code == Code::Unimplemented {
            assert_eq!(record.event_name, "UnknownMethod");
            assert_eq!(record.parameters["path"], path);
        } else {
            assert_eq!(record.event_name, "DescribeKey");
        }
    }
    // Exactly one record each: the six calls and the six queries that read them back.
    let after = verify_log(&server).await;
    assert!(after.ok, "{after:?}");
    assert_eq!(after.head_sequence, before + 1 + 2 * 6, "{after:?}");
    server.stop().await;
}

/// Finding 7: 10,000 context filter pairs gave INTERNAL ("Expression tree is too large"), and an end_time in
/// year 10000 or later returned nothing instead of everything.
#[tokio::test(flavor = "multi_thread")]
async fn query_filters_have_documented_limits_and_far_times_are_open_ended() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_key(&mut client, "alias/q").await;
    let mut audit = server.audit_client().await;
    let many = (0..10_000).map(|i| (format!("k{i}"), "v".into())).collect();
    assert_status(
        audit
            .query_events(QueryEventsRequest {
                encryption_context: many,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["at most 16"],
    );
    assert_status(
        audit
            .query_events(QueryEventsRequest {
                principal: "p".repeat(5000),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["principal is longer than 1024"],
    );
    let at = |seconds: i64| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let year_10000 = 253_402_300_800;
    let count = |request: QueryEventsRequest| {
        let mut audit = audit.clone();
        async move {
            audit
                .query_events(request)
                .await
                .map(|r| r.into_inner().events.len())
        }
    };
    let all = count(QueryEventsRequest::default()).await.unwrap();
    assert!(all >= 3, "{all}");
    for (start_time, end_time) in [
        (None, at(year_10000)),
        (None, at(i64::MAX / 1000)),
        (at(-year_10000), None),
        (at(i64::MIN / 1000), at(i64::MAX / 1000)),
    ] {
        let found = count(QueryEventsRequest {
            start_time,
            end_time,
            ..Default::default()
        })
        .await
        .unwrap();
        // The queries themselves are recorded as they go: at least everything before the first.
        assert!(
            found >= all,
            "{start_time:?}..{end_time:?}: {found} of {all}"
        );
    }
    for (start_time, end_time) in [(at(year_10000), None), (None, at(-year_10000))] {
        assert_status(
            audit
                .query_events(QueryEventsRequest {
                    start_time,
                    end_time,
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            &["years 1 to 9999"],
        );
    }
    server.stop().await;
}

/// A client that gives up on a management call (a timeout, a reset stream) must not stop it halfway: before, a
/// DisableKey cancelled after its change was stored but before the cache was updated left the key usable until a
/// restart. Now every state-changing call runs to its end; what the daemon serves matches what it stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_management_call_never_leaves_the_served_state_behind_the_stored_one() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create_key(&mut client, "alias/cancelled").await.key_id;
    for i in 0..300u64 {
        let mut c = client.clone();
        let request = DisableKeyRequest {
            key_id: key.clone(),
        };
        let enable = EnableKeyRequest {
            key_id: key.clone(),
        };
        // Give up after 0-3 ms: sometimes before the record, sometimes between storing and serving.
        let patience = std::time::Duration::from_micros((i * 7919) % 3000);
        let _ = if i % 2 == 0 {
            tokio::time::timeout(
                patience,
                async move { c.disable_key(request).await.map(drop) },
            )
            .await
        } else {
            tokio::time::timeout(
                patience,
                async move { c.enable_key(enable).await.map(drop) },
            )
            .await
        };
    }
    // Let calls the clients gave up on finish.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let served = describe(&mut client, &key).await.state;
    let server = server.restart().await;
    let stored = describe(&mut server.client().await, &key).await.state;
    assert_eq!(served, stored, "served {served:?}, stored {stored:?}");
    assert!(verify_log(&server).await.ok);
    server.stop().await;
}
