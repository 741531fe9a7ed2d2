//! What survives a restart, and what start-up refuses: a wrong or missing root key, a newer database.

use kmsd::clock::ManualClock;
use kmsd::server::StartError;
use kmsd_proto::pb::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn keys_aliases_and_ciphertexts_survive_a_restart() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let key = create_key(&mut client, "alias/persist").await;
    let v1 = encrypt(&mut client, "alias/persist", b"first", &[("a", "b")]).await;
    client
        .rotate_key(RotateKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap();
    let dk = client
        .generate_data_key(GenerateDataKeyRequest {
            key_id: "alias/persist".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let disabled = create_key(&mut client, "").await;
    client
        .disable_key(DisableKeyRequest {
            key_id: disabled.key_id.clone(),
        })
        .await
        .unwrap();
    let before = describe(&mut client, &key.key_id).await;

    let server = server.restart().await;
    let mut client = server.client().await;
    assert_eq!(describe(&mut client, &key.key_id).await, before);
    assert_eq!(
        describe(&mut client, "alias/persist").await.key_id,
        key.key_id
    );
    assert_eq!(
        state(&describe(&mut client, &disabled.key_id).await),
        KeyState::Disabled
    );
    assert_eq!(
        decrypt(&mut client, &v1.ciphertext_blob, &[("a", "b")])
            .await
            .unwrap()
            .plaintext,
        b"first"
    );
    assert_eq!(
        decrypt(&mut client, &dk.ciphertext_blob, &[])
            .await
            .unwrap()
            .plaintext,
        dk.plaintext
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_root_key_is_refused_at_start() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_key(&mut client, "").await;
    let dir = server.stop().await;

    let root = dir.path().join("root.key");
    write_private(&root, format!("{}\n", "ab".repeat(32)).as_bytes());
    let err = TestServer::start_in(dir.clone(), ManualClock::new())
        .await
        .err()
        .expect("start must fail");
    assert!(matches!(err, StartError::Open(_)), "{err:?}");
    assert!(err.to_string().contains("root key does not match"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_malformed_root_key_is_refused_and_never_replaced() {
    let server = TestServer::start().await;
    let dir = server.stop().await;
    let root = dir.path().join("root.key");
    let original = std::fs::read(&root).unwrap();

    std::fs::remove_file(&root).unwrap();
    let err = TestServer::start_in(dir.clone(), ManualClock::new())
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("restore the root key file"),
        "{err}"
    );
    assert!(
        !root.exists(),
        "a new root key must not be made beside an existing database"
    );

    write_private(&root, b"not hex");
    let err = TestServer::start_in(dir.clone(), ManualClock::new())
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("64 hexadecimal characters"),
        "{err}"
    );

    write_private(&root, &original);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = TestServer::start_in(dir.clone(), ManualClock::new())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    TestServer::start_in(dir, ManualClock::new())
        .await
        .expect("starts with its own key")
        .stop()
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn first_start_creates_private_files() {
    let parent = tempfile::tempdir().unwrap();
    let data_dir = parent.path().join("nested").join("data");
    let server = try_start(&config(&data_dir), ManualClock::new())
        .await
        .unwrap();
    server.shutdown().await;
    assert!(data_dir.join("kmsd.db").is_file());
    let key = std::fs::read_to_string(data_dir.join("root.key")).unwrap();
    assert_eq!(key.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data_dir), 0o700);
        assert_eq!(mode(&data_dir.join("root.key")), 0o600);
        assert_eq!(mode(&data_dir.join("kmsd.db")), 0o600);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_newer_than_the_binary_is_refused() {
    let server = TestServer::start().await;
    let dir = server.stop().await;
    let conn = rusqlite::Connection::open(dir.path().join("kmsd.db")).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    let err = TestServer::start_in(dir, ManualClock::new())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("newer than this kmsd"), "{err}");
}

fn write_private(path: &std::path::Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}
