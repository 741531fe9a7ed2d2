//! The client library (`kmsd_client`) against a real daemon.

use std::time::Duration;

use kmsd_client::{ClientBuilder, Error};
use kmsd_proto::pb::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_service_round_trips_data_keys_and_sees_typed_errors() {
    let server = TestServer::start().await;
    let client = server.kms_client().await;
    let key = client
        .create_key(CreateKeyRequest {
            alias: "alias/svc".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let dk = client
        .generate_data_key("alias/svc", &[("object", "a")])
        .await
        .unwrap();
    assert_eq!(dk.plaintext.len(), 32);
    assert!(
        !format!("{dk:?}").contains(&format!("{:?}", &dk.plaintext[..4])),
        "Debug hides the plaintext"
    );
    let opened = client
        .decrypt(&dk.ciphertext_blob, &[("object", "a")], Some("alias/svc"))
        .await
        .unwrap();
    assert_eq!(*opened.plaintext, *dk.plaintext);
    assert_eq!(
        (opened.key_id.as_str(), opened.key_version),
        (key.key_id.as_str(), 1)
    );

    let sealed = client
        .encrypt("alias/svc", b"small secret", &[])
        .await
        .unwrap();
    let opened = client
        .decrypt(&sealed.ciphertext_blob, &[], None)
        .await
        .unwrap();
    assert_eq!(opened.plaintext.as_slice(), b"small secret");

    let err = client
        .decrypt(&dk.ciphertext_blob, &[("object", "b")], None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidCiphertext(_)), "{err:?}");
    let other = client
        .create_key(CreateKeyRequest {
            alias: "alias/other".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = client
        .decrypt(&dk.ciphertext_blob, &[("object", "a")], Some(&other.key_id))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IncorrectKey(_)), "{err:?}");
    let err = client.describe_key("alias/none").await.unwrap_err();
    let Error::NotFound(details) = &err else {
        panic!("{err:?}")
    };
    assert!(details.request_id.is_some(), "errors carry the request id");
    let err = client.generate_random(0).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = client
        .create_alias("alias/svc", &other.key_id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err:?}");
    client.disable_key("alias/svc").await.unwrap();
    let err = client
        .generate_data_key("alias/svc", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::KeyState(_)), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread")]
async fn reason_and_request_id_reach_the_audit_log() {
    let server = TestServer::start().await;
    let client = server.kms_client().await;
    client
        .create_key(CreateKeyRequest {
            alias: "alias/why".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .with_reason("invoice 42 export")
        .with_request_id("req-42")
        .generate_data_key("alias/why", &[("invoice", "42")])
        .await
        .unwrap();
    let e = one_event(&server, "req-42").await;
    assert_eq!(e.reason, "invoice 42 export");
    assert_eq!(e.event_name, "GenerateDataKey");
    // The options belong to the copy: the original sends neither.
    client.generate_random(1).await.unwrap();
    let events = client
        .query_events(QueryEventsRequest {
            event_name: "GenerateRandom".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .events;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, "");
    assert_ne!(events[0].request_id, "req-42");
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_calls_ride_out_unavailability_and_others_do_not() {
    let server = TestServer::start().await;
    let client = ClientBuilder::new(server.endpoint())
        .token(server.admin_token())
        .retries(12, Duration::from_millis(20))
        .connect()
        .await
        .unwrap();
    client
        .create_key(CreateKeyRequest {
            alias: "alias/retry".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let sql = rusqlite::Connection::open(server.data_dir().join("kmsd.db")).unwrap();
    sql.execute_batch(
        "CREATE TRIGGER outage BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();

    // A call that changes state is never sent twice: it fails at once.
    let err = client.rotate_key("alias/retry").await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());

    // A data key request keeps trying, and succeeds once the log is writable again. The sleep only orders the
    // outage's end after the first attempts; the retry budget (about 20 s) is far longer.
    let retrying = {
        let client = client.clone();
        tokio::spawn(async move { client.generate_data_key("alias/retry", &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    sql.execute_batch("DROP TRIGGER outage;").unwrap();
    let dk = retrying
        .await
        .unwrap()
        .expect("retried until the daemon could serve again");
    assert_eq!(dk.plaintext.len(), 32);
    // The refused rotation changed nothing (its record comes before its change) and was not sent again.
    assert_eq!(
        client
            .describe_key("alias/retry")
            .await
            .unwrap()
            .primary_version,
        1,
        "never rotated"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadline_bounds_a_call_to_a_daemon_that_does_not_answer() {
    // A listener that accepts connections and never speaks: the call must end by its deadline, not hang.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let client = ClientBuilder::new(format!("http://{addr}"))
        .timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(300))
        .retries(0, Duration::ZERO)
        .connect_lazy()
        .unwrap();
    let err = client.describe_key("alias/x").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::DeadlineExceeded(_) | Error::Transport(_) | Error::Unavailable(_)
        ),
        "{err:?}"
    );
    hold.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_health_and_error_details_through_the_client() {
    let server = TestServer::start().await;
    let kms = server.kms_client().await;
    for i in 0..3 {
        kms.create_key(CreateKeyRequest {
            alias: format!("alias/page-{i}"),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    assert_eq!(kms.list_all_keys().await.unwrap().len(), 3);
    assert_eq!(kms.list_all_aliases(None).await.unwrap().len(), 3);

    // One record a page: the helper follows next-page tokens and stops at its limit.
    let one_a_page = QueryEventsRequest {
        event_name: "CreateKey".into(),
        oldest_first: true,
        page_size: 1,
        ..Default::default()
    };
    let events = kms.query_all_events(one_a_page.clone(), 100).await.unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert_eq!(kms.query_all_events(one_a_page, 2).await.unwrap().len(), 2);

    assert_eq!(kms.health("").await.unwrap(), kmsd_client::Serving::Serving);
    assert_eq!(
        kms.health("kms.v1.KeyManagementService").await.unwrap(),
        kmsd_client::Serving::Serving
    );

    let refused = kms
        .with_request_id("details-1")
        .decrypt(b"not a blob", &[], None)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::InvalidCiphertext(_)),
        "{refused:?}"
    );
    let details = refused.details().unwrap();
    assert_eq!(
        details.kind,
        Some(kmsd_client::ErrorKind::InvalidCiphertext)
    );
    assert_eq!(details.request_id.as_deref(), Some("details-1"));
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}
