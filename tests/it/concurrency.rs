//! Hundreds of parallel GenerateDataKey calls while the key rotates: every blob decrypts afterwards.

use kmsd_proto::pb::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_keys_made_during_rotation_all_decrypt() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create_key(&mut client, "alias/busy").await;
    let channel = server.channel().await;

    let mut calls = Vec::new();
    for i in 0..400 {
        let mut c = Client::new(channel.clone());
        calls.push(tokio::spawn(async move {
            let context = ctx(&[("call", &i.to_string())]);
            let dk = c
                .generate_data_key(GenerateDataKeyRequest {
                    key_id: "alias/busy".into(),
                    encryption_context: context.clone(),
                    ..Default::default()
                })
                .await
                .expect("GenerateDataKey")
                .into_inner();
            (context, dk)
        }));
    }
    let mut rotations = Vec::new();
    for _ in 0..5 {
        let mut c = Client::new(channel.clone());
        let key_id = key.key_id.clone();
        rotations.push(tokio::spawn(async move {
            c.rotate_key(RotateKeyRequest { key_id })
                .await
                .expect("RotateKey");
        }));
    }
    for r in rotations {
        r.await.unwrap();
    }
    let mut versions_seen = std::collections::BTreeSet::new();
    for call in calls {
        let (context, dk) = call.await.unwrap();
        versions_seen.insert(dk.key_version);
        let opened = client
            .decrypt(DecryptRequest {
                ciphertext_blob: dk.ciphertext_blob,
                key_id: String::new(),
                encryption_context: context,
                encryption_algorithm: String::new(),
            })
            .await
            .expect("every blob decrypts")
            .into_inner();
        assert_eq!(opened.plaintext, dk.plaintext);
        assert_eq!(opened.key_version, dk.key_version);
    }
    assert_eq!(describe(&mut client, &key.key_id).await.primary_version, 6);
    assert!(
        versions_seen.iter().all(|v| (1..=6).contains(v)),
        "{versions_seen:?}"
    );
}
