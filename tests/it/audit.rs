//! The audit log as users meet it: one record per call with the right fields, before the answer.

use std::collections::BTreeSet;

use kmsd_proto::pb::*;
use tonic::Code;

use crate::support::*;

/// Checks the fields every record has.
fn assert_common(e: &AuditEvent, event_name: &str, request_id: &str) {
    assert_eq!(e.event_name, event_name);
    assert_eq!(e.request_id, request_id);
    assert_eq!(e.reason, format!("because {request_id}"));
    assert_eq!(e.principal, "admin", "the bootstrap administrator's token");
    assert_eq!(
        e.parameters.get("token_id").map(String::len),
        Some(16),
        "the token's public id, never the token"
    );
    assert!(
        e.source_address.starts_with("127.0.0.1:"),
        "{}",
        e.source_address
    );
    assert!(e.user_agent.contains("tonic"), "{}", e.user_agent);
    assert_eq!(e.event_id.len(), 36);
    assert!(e.event_time.is_some());
    assert_eq!(e.hash.len(), 64);
    assert_eq!(e.prev_hash.len(), 64);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_yields_exactly_one_record_with_its_fields() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let context = ctx(&[("tenant", "acme")]);

    let created = c
        .create_key(tagged(
            CreateKeyRequest {
                description: "audited".into(),
                alias: "alias/audited".into(),
                ..Default::default()
            },
            "create",
        ))
        .await
        .unwrap();
    assert_eq!(
        created.metadata().get("x-request-id").unwrap(),
        "create",
        "the request id comes back"
    );
    let key_id = created.into_inner().key_metadata.unwrap().key_id;
    let e = one_event(&server, "create").await;
    assert_common(&e, "CreateKey", "create");
    assert_eq!(
        (e.key_id.as_str(), e.key_version, e.key_alias.as_str()),
        (key_id.as_str(), 1, "alias/audited")
    );
    assert_eq!(outcome(&e), Outcome::Success);
    assert_eq!(
        e.parameters.get("description").map(String::as_str),
        Some("audited")
    );

    let dk = c
        .generate_data_key(tagged(
            GenerateDataKeyRequest {
                key_id: "alias/audited".into(),
                encryption_context: context.clone(),
                ..Default::default()
            },
            "gdk",
        ))
        .await
        .unwrap()
        .into_inner();
    let e = one_event(&server, "gdk").await;
    assert_common(&e, "GenerateDataKey", "gdk");
    assert_eq!(
        (e.key_id.as_str(), e.key_version, e.key_alias.as_str()),
        (key_id.as_str(), 1, "alias/audited")
    );
    assert_eq!(e.encryption_context, context);
    assert_eq!(
        e.parameters.get("key_spec").map(String::as_str),
        Some("DATA_KEY_SPEC_UNSPECIFIED")
    );

    c.generate_data_key_without_plaintext(tagged(
        GenerateDataKeyWithoutPlaintextRequest {
            key_id: key_id.clone(),
            number_of_bytes: Some(64),
            encryption_context: context.clone(),
            ..Default::default()
        },
        "gdkwp",
    ))
    .await
    .unwrap();
    let e = one_event(&server, "gdkwp").await;
    assert_common(&e, "GenerateDataKeyWithoutPlaintext", "gdkwp");
    assert_eq!(
        e.parameters.get("number_of_bytes").map(String::as_str),
        Some("64")
    );
    assert_eq!(e.key_alias, "", "no alias was named");

    let sealed = c
        .encrypt(tagged(
            EncryptRequest {
                key_id: key_id.clone(),
                plaintext: b"top secret".to_vec(),
                encryption_context: context.clone(),
                encryption_algorithm: String::new(),
            },
            "encrypt",
        ))
        .await
        .unwrap()
        .into_inner();
    let e = one_event(&server, "encrypt").await;
    assert_common(&e, "Encrypt", "encrypt");
    assert_eq!(
        e.parameters.get("plaintext_bytes").map(String::as_str),
        Some("10")
    );

    c.decrypt(tagged(
        DecryptRequest {
            ciphertext_blob: dk.ciphertext_blob.clone(),
            key_id: String::new(),
            encryption_context: context.clone(),
            encryption_algorithm: String::new(),
        },
        "decrypt",
    ))
    .await
    .unwrap();
    let e = one_event(&server, "decrypt").await;
    assert_common(&e, "Decrypt", "decrypt");
    assert_eq!((e.key_id.as_str(), e.key_version), (key_id.as_str(), 1));
    assert_eq!(e.encryption_context, context);
    assert_eq!(
        e.parameters.get("ciphertext_fingerprint").map(String::len),
        Some(16)
    );

    let other = create_key(&mut c, "alias/other").await;
    c.re_encrypt(tagged(
        ReEncryptRequest {
            ciphertext_blob: sealed.ciphertext_blob.clone(),
            source_encryption_context: context.clone(),
            destination_key_id: "alias/other".into(),
            destination_encryption_context: ctx(&[("tenant", "globex")]),
            ..Default::default()
        },
        "reencrypt",
    ))
    .await
    .unwrap();
    let e = one_event(&server, "reencrypt").await;
    assert_common(&e, "ReEncrypt", "reencrypt");
    assert_eq!(
        (e.key_id.as_str(), e.key_version),
        (other.key_id.as_str(), 1)
    );
    assert_eq!(e.parameters.get("source_key_id"), Some(&key_id));
    assert_eq!(
        e.parameters.get("source_key_version").map(String::as_str),
        Some("1")
    );
    assert_eq!(e.encryption_context, ctx(&[("tenant", "globex")]));

    c.generate_random(tagged(
        GenerateRandomRequest {
            number_of_bytes: 16,
        },
        "random",
    ))
    .await
    .unwrap();
    assert_common(
        &one_event(&server, "random").await,
        "GenerateRandom",
        "random",
    );

    c.describe_key(tagged(
        DescribeKeyRequest {
            key_id: key_id.clone(),
        },
        "describe",
    ))
    .await
    .unwrap();
    assert_eq!(one_event(&server, "describe").await.key_id, key_id);
    c.list_keys(tagged(ListKeysRequest::default(), "list-keys"))
        .await
        .unwrap();
    assert_common(
        &one_event(&server, "list-keys").await,
        "ListKeys",
        "list-keys",
    );
    c.create_alias(tagged(
        CreateAliasRequest {
            alias_name: "alias/second".into(),
            key_id: key_id.clone(),
        },
        "create-alias",
    ))
    .await
    .unwrap();
    let e = one_event(&server, "create-alias").await;
    assert_eq!(
        (e.key_id.as_str(), e.key_alias.as_str()),
        (key_id.as_str(), "alias/second")
    );
    c.list_aliases(tagged(ListAliasesRequest::default(), "list-aliases"))
        .await
        .unwrap();
    assert_common(
        &one_event(&server, "list-aliases").await,
        "ListAliases",
        "list-aliases",
    );
    c.delete_alias(tagged(
        DeleteAliasRequest {
            alias_name: "alias/second".into(),
        },
        "delete-alias",
    ))
    .await
    .unwrap();
    assert_eq!(
        one_event(&server, "delete-alias").await.key_alias,
        "alias/second"
    );

    c.rotate_key(tagged(
        RotateKeyRequest {
            key_id: key_id.clone(),
        },
        "rotate",
    ))
    .await
    .unwrap();
    let e = one_event(&server, "rotate").await;
    assert_eq!(
        (e.event_name.as_str(), e.key_version),
        ("RotateKey", 2),
        "the new version"
    );
    c.list_key_versions(tagged(
        ListKeyVersionsRequest {
            key_id: key_id.clone(),
        },
        "versions",
    ))
    .await
    .unwrap();
    assert_eq!(
        one_event(&server, "versions").await.event_name,
        "ListKeyVersions"
    );
    c.disable_key(tagged(
        DisableKeyRequest {
            key_id: key_id.clone(),
        },
        "disable",
    ))
    .await
    .unwrap();
    assert_eq!(one_event(&server, "disable").await.event_name, "DisableKey");
    c.enable_key(tagged(
        EnableKeyRequest {
            key_id: key_id.clone(),
        },
        "enable",
    ))
    .await
    .unwrap();
    assert_eq!(one_event(&server, "enable").await.event_name, "EnableKey");
    c.schedule_key_deletion(tagged(
        ScheduleKeyDeletionRequest {
            key_id: key_id.clone(),
            pending_window_days: 9,
        },
        "schedule",
    ))
    .await
    .unwrap();
    let e = one_event(&server, "schedule").await;
    assert_eq!(
        e.parameters.get("pending_window_days").map(String::as_str),
        Some("9")
    );
    c.cancel_key_deletion(tagged(
        CancelKeyDeletionRequest {
            key_id: key_id.clone(),
        },
        "cancel",
    ))
    .await
    .unwrap();
    assert_eq!(
        one_event(&server, "cancel").await.event_name,
        "CancelKeyDeletion"
    );

    // The audit service's own calls are audited too.
    let mut audit = server.audit_client().await;
    audit
        .query_events(tagged(QueryEventsRequest::default(), "query"))
        .await
        .unwrap();
    assert_eq!(one_event(&server, "query").await.event_name, "QueryEvents");
    let verified = audit
        .verify_log(tagged(VerifyLogRequest::default(), "verify"))
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{}", verified.problem);
    assert_eq!(
        verified.records_checked, verified.head_sequence,
        "gap-free from 1"
    );
    assert_eq!(one_event(&server, "verify").await.event_name, "VerifyLog");
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_recorded_with_their_code_and_message() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let key = create_key(&mut c, "alias/f").await;
    let blob = encrypt(&mut c, "alias/f", b"x", &[]).await.ciphertext_blob;

    let missing = "1234abcd-12ab-34cd-56ef-1234567890ab";
    let err = c
        .describe_key(tagged(
            DescribeKeyRequest {
                key_id: missing.into(),
            },
            "missing",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.metadata().get("x-request-id").unwrap(), "missing");
    let e = one_event(&server, "missing").await;
    assert_eq!(outcome(&e), Outcome::Error);
    assert_eq!(e.error_code, "NOT_FOUND");
    assert!(e.error_message.contains(missing));
    assert_eq!(e.key_id, missing);

    c.create_alias(tagged(
        CreateAliasRequest {
            alias_name: "bad alias".into(),
            key_id: key.key_id.clone(),
        },
        "bad-alias",
    ))
    .await
    .unwrap_err();
    let e = one_event(&server, "bad-alias").await;
    assert_eq!(
        (e.error_code.as_str(), e.key_alias.as_str()),
        ("INVALID_ARGUMENT", "bad alias")
    );

    c.disable_key(DisableKeyRequest {
        key_id: key.key_id.clone(),
    })
    .await
    .unwrap();
    c.decrypt(tagged(
        DecryptRequest {
            ciphertext_blob: blob.clone(),
            ..Default::default()
        },
        "disabled",
    ))
    .await
    .unwrap_err();
    let e = one_event(&server, "disabled").await;
    assert_eq!(e.error_code, "FAILED_PRECONDITION");
    assert_eq!(
        (e.key_id.as_str(), e.key_version),
        (key.key_id.as_str(), 1),
        "named by the blob"
    );

    c.decrypt(tagged(
        DecryptRequest {
            ciphertext_blob: b"garbage".to_vec(),
            ..Default::default()
        },
        "garbage",
    ))
    .await
    .unwrap_err();
    let e = one_event(&server, "garbage").await;
    assert_eq!(e.error_code, "INVALID_ARGUMENT");
    assert_eq!(
        e.parameters.get("ciphertext_bytes").map(String::as_str),
        Some("7")
    );

    // An oversized reason is refused, and the refusal is recorded.
    let mut request = tonic::Request::new(GenerateRandomRequest { number_of_bytes: 8 });
    request
        .metadata_mut()
        .insert("x-request-id", "long-reason".parse().unwrap());
    request
        .metadata_mut()
        .insert("x-kms-reason", "r".repeat(2000).parse().unwrap());
    let status = c.generate_random(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("x-kms-reason"));
    assert_eq!(
        one_event(&server, "long-reason").await.error_code,
        "INVALID_ARGUMENT"
    );

    let errors = server
        .audit_client()
        .await
        .query_events(QueryEventsRequest {
            outcome: Outcome::Error as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(errors.len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_id_is_generated_when_the_caller_sends_none() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let response = c
        .generate_random(GenerateRandomRequest { number_of_bytes: 4 })
        .await
        .unwrap();
    let id = response
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let e = one_event(&server, &id).await;
    assert_eq!(e.reason, "");
    let failed = c
        .generate_random(GenerateRandomRequest { number_of_bytes: 0 })
        .await
        .unwrap_err();
    let id = failed
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(one_event(&server, &id).await.error_code, "INVALID_ARGUMENT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_are_all_recorded_in_a_gap_free_valid_chain() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    create_key(&mut c, "alias/many").await;
    let channel = server.channel().await;
    let mut calls = Vec::new();
    for i in 0..300 {
        let mut c = Client::new(channel.clone());
        calls.push(tokio::spawn(async move {
            c.generate_data_key(tagged(
                GenerateDataKeyRequest {
                    key_id: "alias/many".into(),
                    ..Default::default()
                },
                &format!("c-{i}"),
            ))
            .await
            .unwrap();
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
    let mut seen = BTreeSet::new();
    let mut token = String::new();
    let mut audit = server.audit_client().await;
    loop {
        let page = audit
            .query_events(QueryEventsRequest {
                event_name: "GenerateDataKey".into(),
                page_size: 64,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for e in page.events {
            assert!(
                seen.insert(e.request_id.clone()),
                "{} recorded twice",
                e.request_id
            );
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: BTreeSet<String> = (0..300).map(|i| format!("c-{i}")).collect();
    assert_eq!(seen, expected);
    let verified = verify_log(&server).await;
    assert!(verified.ok, "{}", verified.problem);
    assert_eq!(verified.records_checked, verified.head_sequence);
    assert!(verified.head_sequence >= 301);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_holds_no_plaintext_data_key_or_key_material() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let key = create_key(&mut c, "alias/scan").await;
    // A key of each kind of material: HMAC bytes and a private key (PKCS#8) are held as symmetric material is.
    let mut kinds = Vec::new();
    for spec in ["HMAC_256", "ECC_NIST_P256", "RSA_2048"] {
        let made = c
            .create_key(CreateKeyRequest {
                key_spec: spec.into(),
                key_usage: if spec == "RSA_2048" {
                    "SIGN_VERIFY".into()
                } else {
                    String::new()
                },
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .key_metadata
            .unwrap();
        kinds.push((spec, made));
    }
    let dk = c
        .generate_data_key(GenerateDataKeyRequest {
            key_id: "alias/scan".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let secret = b"the plaintext of an Encrypt call".to_vec();
    let sealed = encrypt(&mut c, "alias/scan", &secret, &[]).await;
    decrypt(&mut c, &sealed.ciphertext_blob, &[]).await.unwrap();
    let random = c
        .generate_random(GenerateRandomRequest {
            number_of_bytes: 32,
        })
        .await
        .unwrap()
        .into_inner()
        .plaintext;
    let stored_versions = server
        .server
        .kms()
        .storage()
        .versions_of(kmsd::keys::KeyId::parse(&key.key_id).unwrap())
        .await
        .unwrap();
    let mut kinds_stored = Vec::new();
    for (spec, made) in &kinds {
        let id = kmsd::keys::KeyId::parse(&made.key_id).unwrap();
        let stored = server.server.kms().storage().versions_of(id).await.unwrap();
        kinds_stored.push((*spec, id, stored[0].wrapped_material.clone().unwrap()));
    }
    let root_text = std::fs::read_to_string(server.data_dir().join("root.key")).unwrap();
    let dir = server.stop().await;

    let root_bytes: [u8; 32] = hex::decode(root_text.trim()).unwrap().try_into().unwrap();
    let mut root_copy = root_bytes;
    let root = kmsd::crypto::RootKey::new(kmsd::crypto::KeyMaterial::from_bytes(&mut root_copy));
    let key_id = kmsd::keys::KeyId::parse(&key.key_id).unwrap();
    let version_material = root
        .unwrap(
            key_id,
            1,
            kmsd::keys::KeySpec::SymmetricDefault,
            stored_versions[0].wrapped_material.as_ref().unwrap(),
        )
        .unwrap();

    let files = database_files(dir.path());
    assert!(files.len() > 4096);
    let found = |needle: &[u8]| files.windows(needle.len()).any(|w| w == needle);
    assert!(!found(&dk.plaintext), "a data key's plaintext");
    assert!(!found(&secret), "an Encrypt plaintext");
    assert!(!found(&random), "GenerateRandom output");
    assert!(!found(&root_bytes), "the root key");
    assert!(
        !found(version_material.expose_secret()),
        "a key version's material"
    );
    assert!(!found(&sealed.ciphertext_blob[49..]), "a ciphertext body");
    for (spec, id, wrapped) in kinds_stored {
        let spec = kmsd::keys::KeySpec::parse(spec).unwrap();
        let material = root.unwrap(id, 1, spec, &wrapped).unwrap();
        // A private key's PKCS#8 holds public parts too: look for 32 bytes that are secret.
        let bytes = material.expose_secret();
        let secret = match spec.as_str() {
            "HMAC_256" => bytes,
            // ECPrivateKey (RFC 5915): version 1, then the private scalar as a 32-byte OCTET STRING.
            "ECC_NIST_P256" => {
                let at = bytes
                    .windows(5)
                    .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
                    .unwrap();
                &bytes[at + 5..at + 37]
            }
            // The middle of an RSA private key is inside its private exponent or its primes.
            _ => &bytes[bytes.len() / 2..bytes.len() / 2 + 32],
        };
        assert!(!found(secret), "{spec} material");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_are_signed_at_the_interval_and_at_shutdown() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = config(dir.path());
    config.audit.checkpoint_interval = std::time::Duration::from_millis(100);
    let server = try_start(&config, kmsd::clock::ManualClock::new())
        .await
        .unwrap();
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.local_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = Client::new(AuthChannel::new(
        channel,
        kmsd_client::BearerAuth::new(Some(&token)).unwrap(),
    ));
    c.generate_random(GenerateRandomRequest { number_of_bytes: 1 })
        .await
        .unwrap();

    // Bounded wait for the writer's timer; the bound only keeps a broken build from hanging.
    let reader = server.audit().reader().unwrap();
    let mut checkpoints = Vec::new();
    for _ in 0..100 {
        checkpoints = reader.checkpoints().unwrap();
        if !checkpoints.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        checkpoints.len(),
        1,
        "one checkpoint for the one record and the bootstrap's"
    );
    assert_eq!(checkpoints[0].1.head_seq, BOOTSTRAP_RECORDS + 1);
    assert!(checkpoints[0].1.verify(server.audit().public_key()));

    // Nothing new, no new checkpoint; a new record, and shutdown signs it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(reader.checkpoints().unwrap().len(), 1);
    c.generate_random(GenerateRandomRequest { number_of_bytes: 1 })
        .await
        .unwrap();
    server.shutdown().await;
    let last = reader.checkpoints().unwrap().pop().unwrap().1;
    assert_eq!(last.head_seq, BOOTSTRAP_RECORDS + 2);
}
