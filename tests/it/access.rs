//! Identity and access control as callers meet it: tokens, principals, key policies, mutual TLS, and what the audit
//! log says about each.

use std::time::Duration;

use kmsd_proto::pb::admin_service_client::AdminServiceClient;
use kmsd_proto::pb::*;
use tonic::Code;

use crate::support::*;

type Admin = AdminServiceClient<AuthChannel>;

async fn admin(server: &TestServer) -> Admin {
    AdminServiceClient::new(server.channel().await)
}

/// Creates a principal and returns a token for it.
async fn principal_with_token(server: &TestServer, name: &str, ttl_seconds: u64) -> String {
    let mut admin = admin(server).await;
    admin
        .create_principal(CreatePrincipalRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .create_token(CreateTokenRequest {
            principal: name.into(),
            ttl_seconds,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

async fn client_as(server: &TestServer, token: Option<&str>) -> Client {
    Client::new(server.channel_as(token).await)
}

fn statement(principals: &[&str], operations: &[&str]) -> PolicyStatement {
    PolicyStatement {
        principals: principals.iter().map(|s| s.to_string()).collect(),
        operations: operations.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn put_policy(server: &TestServer, key: &str, statements: Vec<PolicyStatement>) {
    server
        .client()
        .await
        .put_key_policy(PutKeyPolicyRequest {
            key_id: key.into(),
            policy: Some(KeyPolicy { statements }),
        })
        .await
        .unwrap();
}

fn gdk(
    key: &str,
    context: &[(&str, &str)],
    request_id: &str,
) -> tonic::Request<GenerateDataKeyRequest> {
    tagged(
        GenerateDataKeyRequest {
            key_id: key.into(),
            encryption_context: ctx(context),
            ..Default::default()
        },
        request_id,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_without_valid_credentials_are_unauthenticated_and_audited() {
    let server = TestServer::start().await;
    create_key(&mut server.client().await, "alias/locked").await;
    let token = principal_with_token(&server, "short-lived", 3600).await;
    let doomed = principal_with_token(&server, "doomed", 0).await;
    let (token_id, secret) = {
        let rest = token.strip_prefix("kmsd_").unwrap();
        (&rest[..16], &rest[17..])
    };
    // Same id, another secret of the same shape: the id exists, the proof does not.
    let wrong_secret = format!(
        "kmsd_{token_id}_{}",
        secret.chars().rev().collect::<String>()
    );
    let revoked = admin(&server)
        .await
        .list_tokens(ListTokensRequest {
            principal: "doomed".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens[0]
        .token_id
        .clone();
    admin(&server)
        .await
        .revoke_token(RevokeTokenRequest {
            token_id: revoked.clone(),
        })
        .await
        .unwrap();

    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("none", None, "no credentials"),
        ("garbage", Some("not-a-token".into()), "malformed"),
        ("wrong", Some(wrong_secret), "not valid"),
        ("revoked", Some(doomed), "was revoked"),
    ];
    for (request_id, presented, message) in cases {
        let mut c = client_as(&server, presented.as_deref()).await;
        assert_status(
            c.generate_data_key(gdk("alias/locked", &[], request_id))
                .await,
            Code::Unauthenticated,
            &[message],
        );
        let e = one_event(&server, request_id).await;
        assert_eq!(e.event_name, "GenerateDataKey");
        assert_eq!(e.principal, "anonymous");
        assert_eq!(outcome(&e), Outcome::Denied);
        assert_eq!(e.error_code, "UNAUTHENTICATED");
        assert!(
            e.source_address.starts_with("127.0.0.1:"),
            "{}",
            e.source_address
        );
    }
    // The records of presented tokens name the token's public id, for the investigation.
    assert_eq!(
        one_event(&server, "wrong").await.parameters["token_id"],
        token_id
    );
    assert_eq!(
        one_event(&server, "revoked").await.parameters["token_id"],
        revoked
    );

    // The short-lived token works until its hour is up, then not.
    let mut c = client_as(&server, Some(&token)).await;
    let admin_call = c
        .list_keys(tagged(ListKeysRequest::default(), "before-expiry"))
        .await;
    assert_status(
        admin_call,
        Code::PermissionDenied,
        &["ListKeys requires an administrator"],
    );
    assert_eq!(
        one_event(&server, "before-expiry").await.principal,
        "short-lived"
    );
    server.clock.advance(Duration::from_secs(3601));
    assert_status(
        c.generate_data_key(gdk("alias/locked", &[], "expired"))
            .await,
        Code::Unauthenticated,
        &["expired"],
    );
    let e = one_event(&server, "expired").await;
    assert_eq!(
        (e.principal.as_str(), outcome(&e)),
        ("anonymous", Outcome::Denied)
    );

    // The audit service and the admin service refuse anonymous callers too; health needs nothing.
    let mut audit = AuditClient::new(server.channel_as(None).await);
    assert_status(
        audit.verify_log(VerifyLogRequest::default()).await,
        Code::Unauthenticated,
        &[],
    );
    let mut anonymous_admin = AdminServiceClient::new(server.channel_as(None).await);
    assert_status(
        anonymous_admin.who_am_i(WhoAmIRequest {}).await,
        Code::Unauthenticated,
        &[],
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn key_policies_grant_operations_under_context_conditions() {
    let server = TestServer::start().await;
    let key = create_key(&mut server.client().await, "alias/billing").await;
    let billing = principal_with_token(&server, "billing", 0).await;
    let reader = principal_with_token(&server, "reader", 0).await;
    let stranger = principal_with_token(&server, "stranger", 0).await;
    let mut only_acme = statement(&["billing"], &["GenerateDataKey", "Decrypt"]);
    only_acme.context_equals = ctx(&[("tenant", "acme")]);
    put_policy(
        &server,
        "alias/billing",
        vec![only_acme, statement(&["reader"], &["Decrypt"])],
    )
    .await;

    // billing: data keys and decryption, for tenant acme only.
    let mut b = client_as(&server, Some(&billing)).await;
    let dk = b
        .generate_data_key(gdk("alias/billing", &[("tenant", "acme")], "b-ok"))
        .await
        .unwrap()
        .into_inner();
    let e = one_event(&server, "b-ok").await;
    assert_eq!(
        (e.principal.as_str(), outcome(&e)),
        ("billing", Outcome::Success)
    );
    assert_eq!(e.key_id, key.key_id);
    assert_eq!(
        decrypt(&mut b, &dk.ciphertext_blob, &[("tenant", "acme")])
            .await
            .unwrap()
            .plaintext,
        dk.plaintext
    );
    assert_status(
        b.generate_data_key(gdk("alias/billing", &[("tenant", "globex")], "b-globex"))
            .await,
        Code::PermissionDenied,
        &["\"billing\"", "GenerateDataKey", "\"tenant\" is \"acme\""],
    );
    let e = one_event(&server, "b-globex").await;
    assert_eq!(
        (e.principal.as_str(), outcome(&e)),
        ("billing", Outcome::Denied)
    );
    assert_eq!(e.error_code, "PERMISSION_DENIED");
    assert_eq!(
        e.key_id, key.key_id,
        "a refusal still names the key it was for"
    );
    assert_status(
        b.encrypt(tagged(
            EncryptRequest {
                key_id: key.key_id.clone(),
                plaintext: b"x".to_vec(),
                encryption_context: ctx(&[("tenant", "acme")]),
                encryption_algorithm: String::new(),
            },
            "b-encrypt",
        ))
        .await,
        Code::PermissionDenied,
        &["lacks permission kms:Encrypt"],
    );

    // reader: may decrypt what billing made, but not make data keys.
    let mut r = client_as(&server, Some(&reader)).await;
    let opened = r
        .decrypt(tagged(
            DecryptRequest {
                ciphertext_blob: dk.ciphertext_blob.clone(),
                encryption_context: ctx(&[("tenant", "acme")]),
                ..Default::default()
            },
            "r-decrypt",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.plaintext, dk.plaintext);
    assert_eq!(one_event(&server, "r-decrypt").await.principal, "reader");
    assert_status(
        r.generate_data_key(gdk("alias/billing", &[("tenant", "acme")], "r-gdk"))
            .await,
        Code::PermissionDenied,
        &["\"reader\" lacks permission kms:GenerateDataKey"],
    );
    let e = one_event(&server, "r-gdk").await;
    assert_eq!(
        (e.principal.as_str(), outcome(&e)),
        ("reader", Outcome::Denied)
    );

    // stranger: nothing, and not even whether the key is enabled.
    let mut s = client_as(&server, Some(&stranger)).await;
    assert_status(
        s.describe_key(DescribeKeyRequest {
            key_id: "alias/billing".into(),
        })
        .await,
        Code::PermissionDenied,
        &["kms:DescribeKey"],
    );
    assert_status(
        decrypt(&mut s, &dk.ciphertext_blob, &[("tenant", "acme")]).await,
        Code::PermissionDenied,
        &["\"stranger\" lacks permission kms:Decrypt"],
    );
    // ... nor may it change the policy.
    assert_status(
        s.put_key_policy(PutKeyPolicyRequest {
            key_id: key.key_id.clone(),
            policy: Some(KeyPolicy {
                statements: vec![statement(&["stranger"], &["*"])],
            }),
        })
        .await,
        Code::PermissionDenied,
        &["PutKeyPolicy requires an administrator"],
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reasons_creators_and_disabled_principals() {
    let server = TestServer::start().await;
    let mut admin = admin(&server).await;
    admin
        .create_principal(CreatePrincipalRequest {
            name: "maker".into(),
            create_keys: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let maker = admin
        .create_token(CreateTokenRequest {
            principal: "maker".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let mut m = client_as(&server, Some(&maker)).await;
    let who = AdminServiceClient::new(server.channel_as(Some(&maker)).await)
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (who.principal.as_str(), who.admin, who.method.as_str()),
        ("maker", false, "token")
    );

    // A principal allowed to create keys grants itself what it needs, with a reason required.
    let mut needs_reason = statement(&["maker"], &["Decrypt"]);
    needs_reason.require_reason = true;
    let key = create_key_with(
        &mut m,
        CreateKeyRequest {
            policy: Some(KeyPolicy {
                statements: vec![needs_reason],
            }),
            grant_creator: vec!["Encrypt".into(), "DescribeKey".into()],
            ..Default::default()
        },
    )
    .await;
    let sealed = encrypt(&mut m, &key.key_id, b"secret", &[]).await;
    assert_status(
        decrypt(&mut m, &sealed.ciphertext_blob, &[]).await,
        Code::PermissionDenied,
        &["only with a stated reason"],
    );
    let opened = m
        .decrypt(tagged(
            DecryptRequest {
                ciphertext_blob: sealed.ciphertext_blob.clone(),
                ..Default::default()
            },
            "with-reason",
        ))
        .await
        .unwrap();
    assert_eq!(opened.into_inner().plaintext, b"secret");
    let policy = m
        .get_key_policy(GetKeyPolicyRequest {
            key_id: key.key_id.clone(),
        })
        .await;
    assert_status(policy, Code::PermissionDenied, &["kms:GetKeyPolicy"]);

    // Without create_keys: refused, naming the permission.
    let plain = principal_with_token(&server, "plain", 0).await;
    assert_status(
        client_as(&server, Some(&plain))
            .await
            .create_key(CreateKeyRequest::default())
            .await,
        Code::PermissionDenied,
        &["lacks permission kms:CreateKey"],
    );
    // A policy naming a principal that does not exist is refused, not silently useless.
    let mut c = server.client().await;
    assert_status(
        c.put_key_policy(PutKeyPolicyRequest {
            key_id: key.key_id.clone(),
            policy: Some(KeyPolicy {
                statements: vec![statement(&["nobody"], &["Decrypt"])],
            }),
        })
        .await,
        Code::InvalidArgument,
        &["\"nobody\", which does not exist"],
    );

    // Disabling a principal stops its tokens at once; the last administrator cannot be disabled.
    admin
        .disable_principal(DisablePrincipalRequest {
            name: "maker".into(),
        })
        .await
        .unwrap();
    assert_status(
        encrypt_result(&mut m, &key.key_id).await,
        Code::Unauthenticated,
        &["principal \"maker\" is disabled"],
    );
    assert_status(
        admin
            .disable_principal(DisablePrincipalRequest {
                name: "admin".into(),
            })
            .await,
        Code::FailedPrecondition,
        &["last enabled administrator"],
    );
    server.stop().await;
}

async fn encrypt_result(c: &mut Client, key: &str) -> Result<EncryptResponse, tonic::Status> {
    c.encrypt(EncryptRequest {
        key_id: key.into(),
        plaintext: b"x".to_vec(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_never_stored_or_recorded_in_clear() {
    let server = TestServer::start().await;
    let admin_token = server.admin_token();
    let issued = principal_with_token(&server, "svc", 0).await;
    let mut c = client_as(&server, Some(&issued)).await;
    let _ = c
        .generate_random(GenerateRandomRequest { number_of_bytes: 8 })
        .await;
    let events = server
        .audit_client()
        .await
        .query_events(QueryEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .events;
    let dir = server.stop().await;
    let files = database_files(dir.path());
    let log = format!("{events:?}");
    for token in [&admin_token, &issued] {
        let secret = &token[22..];
        assert_eq!(secret.len(), 43);
        for haystack in [&files[..], log.as_bytes()] {
            assert!(
                !haystack
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "a token's secret is stored or recorded"
            );
        }
    }
}

/// The daemon's own log, at debug level, through a token's whole life: the token never appears in it.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_log_never_shows_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let daemon = std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["serve", "--log-level", "debug", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("KMSD_LOG")
        .env_remove("KMSD_TOKEN")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let token_file = dir.path().join("admin.token");
    for _ in 0..200 {
        if token_file.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let admin_token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    let client = kmsd_client::ClientBuilder::new(format!("http://127.0.0.1:{port}"))
        .token(admin_token.clone())
        .connect()
        .await
        .unwrap();
    client.describe_key("alias/none").await.unwrap_err();
    let wrong = format!("{}x", &admin_token[..admin_token.len() - 1]);
    let stranger = kmsd_client::ClientBuilder::new(format!("http://127.0.0.1:{port}"))
        .token(wrong.clone())
        .connect()
        .await
        .unwrap();
    stranger.describe_key("alias/none").await.unwrap_err();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&daemon),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let out = daemon.wait_with_output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("created the administrator"), "{log}");
    assert!(log.contains("call"), "debug lines per call: {log}");
    for token in [&admin_token, &wrong] {
        assert!(
            !log.contains(&token[22..]),
            "a token's secret is in the log"
        );
    }
}
