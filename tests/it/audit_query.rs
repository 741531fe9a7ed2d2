//! QueryEvents filters and paging against a log of thousands of records.

use std::collections::BTreeSet;

use kmsd_proto::pb::*;
use tonic::Code;

use crate::support::*;

/// Runs `n` GenerateDataKey calls on `key` with `context`, 50 at a time; request ids are `{prefix}-{i}`.
async fn data_keys(
    server: &TestServer,
    key: &str,
    context: &[(&str, &str)],
    prefix: &str,
    n: usize,
) {
    let channel = server.channel().await;
    let context = ctx(context);
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let mut calls = Vec::new();
        for &i in chunk {
            let mut c = Client::new(channel.clone());
            let request = tagged(
                GenerateDataKeyRequest {
                    key_id: key.into(),
                    encryption_context: context.clone(),
                    ..Default::default()
                },
                &format!("{prefix}-{i}"),
            );
            calls.push(tokio::spawn(async move {
                c.generate_data_key(request).await.unwrap()
            }));
        }
        for call in calls {
            call.await.unwrap();
        }
    }
}

async fn query(server: &TestServer, request: QueryEventsRequest) -> Vec<AuditEvent> {
    let mut audit = server.audit_client().await;
    let mut all = Vec::new();
    let mut request = request;
    loop {
        let page = audit
            .query_events(request.clone())
            .await
            .unwrap()
            .into_inner();
        all.extend(page.events);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filters_and_paging_over_thousands_of_records() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let a = create_key(&mut c, "alias/a").await;
    let b = create_key(&mut c, "alias/b").await;
    data_keys(&server, "alias/a", &[("tenant", "t1")], "a", 1000).await;

    server.clock.advance_days(1);
    let t1 = {
        use kmsd::clock::Clock;
        server.clock.now().to_timestamp()
    };
    data_keys(
        &server,
        &b.key_id,
        &[("tenant", "t2"), ("env", "prod")],
        "b",
        1000,
    )
    .await;
    for i in 0..200 {
        c.decrypt(tagged(
            DecryptRequest {
                ciphertext_blob: vec![1, 2, 3],
                ..Default::default()
            },
            &format!("bad-{i}"),
        ))
        .await
        .unwrap_err();
    }

    let by_key = |key_id: &str| QueryEventsRequest {
        key_id: key_id.into(),
        event_name: "GenerateDataKey".into(),
        page_size: 1000,
        ..Default::default()
    };
    assert_eq!(query(&server, by_key(&a.key_id)).await.len(), 1000);
    assert_eq!(
        query(&server, by_key("alias/a")).await.len(),
        1000,
        "an alias finds its key's records"
    );
    assert_eq!(query(&server, by_key(&b.key_id)).await.len(), 1000);

    let t2 = query(
        &server,
        QueryEventsRequest {
            encryption_context: ctx(&[("tenant", "t2")]),
            page_size: 1000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(t2.len(), 1000);
    assert!(t2.iter().all(|e| e.key_id == b.key_id));
    let both = QueryEventsRequest {
        encryption_context: ctx(&[("tenant", "t2"), ("env", "prod")]),
        page_size: 1000,
        ..Default::default()
    };
    assert_eq!(query(&server, both).await.len(), 1000);
    let mismatch = QueryEventsRequest {
        encryption_context: ctx(&[("tenant", "t2"), ("env", "dev")]),
        ..Default::default()
    };
    assert!(query(&server, mismatch).await.is_empty());

    let errors = query(
        &server,
        QueryEventsRequest {
            outcome: Outcome::Error as i32,
            page_size: 1000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(errors.len(), 200);
    assert!(
        errors
            .iter()
            .all(|e| e.event_name == "Decrypt" && e.error_code == "INVALID_ARGUMENT")
    );
    assert!(
        query(
            &server,
            QueryEventsRequest {
                outcome: Outcome::Denied as i32,
                ..Default::default()
            }
        )
        .await
        .is_empty()
    );

    let since = query(
        &server,
        QueryEventsRequest {
            start_time: Some(t1),
            event_name: "GenerateDataKey".into(),
            page_size: 1000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(since.len(), 1000, "only the second day's data keys");
    let before = query(
        &server,
        QueryEventsRequest {
            end_time: Some(t1),
            page_size: 1000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        before.len() as u64,
        BOOTSTRAP_RECORDS + 1002,
        "the bootstrap's, two CreateKey and the first day's data keys"
    );

    let one = query(
        &server,
        QueryEventsRequest {
            request_id: "b-417".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].key_id, b.key_id);
    let principal = QueryEventsRequest {
        principal: "admin".into(),
        event_name: "CreateKey".into(),
        ..Default::default()
    };
    assert_eq!(query(&server, principal).await.len(), 2);

    // Paging: oldest first ascends, newest first descends, and every record comes exactly once.
    let mut audit = server.audit_client().await;
    for oldest_first in [true, false] {
        let mut request = QueryEventsRequest {
            key_id: b.key_id.clone(),
            event_name: "GenerateDataKey".into(),
            oldest_first,
            page_size: 300,
            ..Default::default()
        };
        let mut sizes = Vec::new();
        let mut sequences = Vec::new();
        loop {
            let page = audit
                .query_events(request.clone())
                .await
                .unwrap()
                .into_inner();
            sizes.push(page.events.len());
            sequences.extend(page.events.iter().map(|e| e.sequence));
            if page.next_page_token.is_empty() {
                break;
            }
            request.page_token = page.next_page_token;
        }
        assert_eq!(sizes, [300, 300, 300, 100]);
        let mut sorted = sequences.clone();
        sorted.sort();
        if !oldest_first {
            sorted.reverse();
        }
        assert_eq!(sequences, sorted);
        assert_eq!(sequences.iter().collect::<BTreeSet<_>>().len(), 1000);
    }
    let newest = audit
        .query_events(QueryEventsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let verified = verify_log(&server).await;
    assert!(verified.ok, "{}", verified.problem);
    assert!(newest.events[0].sequence >= 2202);

    for (request, fragment) in [
        (
            QueryEventsRequest {
                page_token: "nonsense".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            QueryEventsRequest {
                page_size: 5000,
                ..Default::default()
            },
            "page_size",
        ),
        (
            QueryEventsRequest {
                key_id: "bogus".into(),
                ..Default::default()
            },
            "key_id",
        ),
    ] {
        assert_status(
            audit.query_events(request).await,
            Code::InvalidArgument,
            &[fragment],
        );
    }
}
