//! Key management RPCs: create, describe, list, aliases, enable/disable and their errors.

use kmsd_proto::pb::*;
use tonic::Code;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn create_and_describe_by_id_and_alias() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create_key_with(
        &mut client,
        CreateKeyRequest {
            description: "payments".into(),
            tags: ctx(&[("team", "billing")]),
            alias: "alias/payments".into(),
            rotation_period_days: 90,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(created.description, "payments");
    assert_eq!(state(&created), KeyState::Enabled);
    assert_eq!(created.primary_version, 1);
    assert_eq!(created.aliases, vec!["alias/payments".to_string()]);
    assert_eq!(
        created.tags.get("team").map(String::as_str),
        Some("billing")
    );
    assert_eq!(created.rotation_period_days, 90);
    let created_at = created.creation_time.unwrap().seconds;
    assert_eq!(
        created.next_rotation_time.unwrap().seconds,
        created_at + 90 * 86_400,
        "next rotation is one period after creation"
    );
    assert!(created.deletion_time.is_none());

    assert_eq!(describe(&mut client, &created.key_id).await, created);
    assert_eq!(describe(&mut client, "alias/payments").await, created);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_key_rejects_bad_input() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let bad = [
        (
            CreateKeyRequest {
                alias: "payments".into(),
                ..Default::default()
            },
            "must start with \"alias/\"",
        ),
        (
            CreateKeyRequest {
                alias: "alias/has space".into(),
                ..Default::default()
            },
            "contains ' '",
        ),
        (
            CreateKeyRequest {
                rotation_period_days: 5000,
                ..Default::default()
            },
            "rotation_period_days must be 1-2560",
        ),
        (
            CreateKeyRequest {
                tags: ctx(&[("", "x")]),
                ..Default::default()
            },
            "tag key",
        ),
        (
            CreateKeyRequest {
                description: "d".repeat(8193),
                ..Default::default()
            },
            "description is longer",
        ),
    ];
    for (request, fragment) in bad {
        assert_status(
            client.create_key(request).await,
            Code::InvalidArgument,
            &[fragment],
        );
    }
    let listed = client
        .list_keys(ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.keys.is_empty(),
        "no key was created by a refused request"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_malformed_key_ids() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let missing = "1234abcd-12ab-34cd-56ef-1234567890ab";
    assert_status(
        client
            .describe_key(DescribeKeyRequest {
                key_id: missing.into(),
            })
            .await,
        Code::NotFound,
        &[missing],
    );
    assert_status(
        client
            .describe_key(DescribeKeyRequest {
                key_id: "alias/nope".into(),
            })
            .await,
        Code::NotFound,
        &["alias alias/nope does not exist"],
    );
    assert_status(
        client
            .describe_key(DescribeKeyRequest {
                key_id: "not-a-key".into(),
            })
            .await,
        Code::InvalidArgument,
        &["neither a key id", "alias"],
    );
    assert_status(
        client
            .describe_key(DescribeKeyRequest {
                key_id: String::new(),
            })
            .await,
        Code::InvalidArgument,
        &["key_id is required"],
    );
    assert_status(
        client
            .generate_data_key(GenerateDataKeyRequest {
                key_id: missing.into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &[missing],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_keys_pages_through_every_key_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut created = Vec::new();
    for _ in 0..25 {
        created.push(create_key(&mut client, "").await.key_id);
    }
    created.sort();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_keys(ListKeysRequest {
                page_size: 10,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.keys.len() <= 10);
        seen.extend(page.keys.into_iter().map(|k| k.key_id));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every key once, in id order");

    let all = client
        .list_keys(ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.keys.len(), 25);
    assert!(all.next_page_token.is_empty());

    assert_status(
        client
            .list_keys(ListKeysRequest {
                page_size: 0,
                page_token: "garbage!".into(),
            })
            .await,
        Code::InvalidArgument,
        &["page_token"],
    );
    assert_status(
        client
            .list_keys(ListKeysRequest {
                page_size: 1001,
                page_token: String::new(),
            })
            .await,
        Code::InvalidArgument,
        &["page_size must be 1-1000"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn aliases_create_list_delete() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let a = create_key(&mut client, "alias/a-1").await;
    let b = create_key(&mut client, "").await;

    let alias = client
        .create_alias(CreateAliasRequest {
            alias_name: "alias/b-1".into(),
            key_id: b.key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .alias
        .unwrap();
    assert_eq!(alias.key_id, b.key_id);
    client
        .create_alias(CreateAliasRequest {
            alias_name: "alias/b-2".into(),
            key_id: "alias/b-1".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        describe(&mut client, &b.key_id).await.aliases,
        vec!["alias/b-1", "alias/b-2"]
    );

    assert_status(
        client
            .create_alias(CreateAliasRequest {
                alias_name: "alias/a-1".into(),
                key_id: b.key_id.clone(),
            })
            .await,
        Code::AlreadyExists,
        &["alias/a-1 already exists"],
    );
    assert_status(
        client
            .create_alias(CreateAliasRequest {
                alias_name: "a-1".into(),
                key_id: b.key_id.clone(),
            })
            .await,
        Code::InvalidArgument,
        &["alias/"],
    );

    let all = client
        .list_aliases(ListAliasesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = all.aliases.iter().map(|a| a.alias_name.as_str()).collect();
    assert_eq!(names, ["alias/a-1", "alias/b-1", "alias/b-2"]);

    let only_b = client
        .list_aliases(ListAliasesRequest {
            key_id: b.key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only_b.aliases.len(), 2);

    let first = client
        .list_aliases(ListAliasesRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.aliases.len(), 2);
    let second = client
        .list_aliases(ListAliasesRequest {
            page_size: 2,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.aliases.len(), 1);
    assert_eq!(second.aliases[0].alias_name, "alias/b-2");
    assert!(second.next_page_token.is_empty());

    client
        .delete_alias(DeleteAliasRequest {
            alias_name: "alias/b-1".into(),
        })
        .await
        .unwrap();
    assert_status(
        client
            .delete_alias(DeleteAliasRequest {
                alias_name: "alias/b-1".into(),
            })
            .await,
        Code::NotFound,
        &["alias/b-1"],
    );
    assert_status(
        client
            .describe_key(DescribeKeyRequest {
                key_id: "alias/b-1".into(),
            })
            .await,
        Code::NotFound,
        &[],
    );
    assert_eq!(
        describe(&mut client, &b.key_id).await.aliases,
        vec!["alias/b-2"]
    );
    assert_eq!(
        describe(&mut client, &a.key_id).await.aliases,
        vec!["alias/a-1"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn disable_blocks_crypto_and_enable_restores_it() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create_key(&mut client, "alias/k").await;
    let blob = encrypt(&mut client, "alias/k", b"secret", &[])
        .await
        .ciphertext_blob;

    let disabled = client
        .disable_key(DisableKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(state(&disabled), KeyState::Disabled);

    assert_status(
        client
            .generate_data_key(GenerateDataKeyRequest {
                key_id: "alias/k".into(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        &["DISABLED", "EnableKey"],
    );
    assert_status(
        decrypt(&mut client, &blob, &[]).await,
        Code::FailedPrecondition,
        &["DISABLED"],
    );
    assert_status(
        client
            .encrypt(EncryptRequest {
                key_id: key.key_id.clone(),
                plaintext: b"x".to_vec(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        &["DISABLED"],
    );
    assert_status(
        client
            .rotate_key(RotateKeyRequest {
                key_id: key.key_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        &["DISABLED"],
    );

    client
        .enable_key(EnableKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        decrypt(&mut client, &blob, &[]).await.unwrap().plaintext,
        b"secret"
    );
}
