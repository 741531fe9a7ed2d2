//! Online backup under load, restored to a working daemon whose audit chain verifies.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kmsd::clock::ManualClock;
use kmsd_proto::pb::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_load_restores_to_a_working_daemon() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    create_key(&mut c, "alias/backup").await;
    let before = encrypt(
        &mut c,
        "alias/backup",
        b"made before the backup",
        &[("k", "v")],
    )
    .await;

    // Data keys keep coming while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..8 {
        let mut c = Client::new(server.channel().await);
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut made = 0u32;
            while !stop.load(Ordering::Relaxed) {
                c.generate_data_key(GenerateDataKeyRequest {
                    key_id: "alias/backup".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
                made += 1;
            }
            made
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let out_dir = tempfile::tempdir().unwrap();
    let copy = out_dir.path().join("kmsd.db");
    let data_dir = server.data_dir().to_owned();
    let copy_path = copy.clone();
    let backup = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kmsd"))
            .args(["backup", "--data-dir"])
            .arg(&data_dir)
            .arg(&copy_path)
            .env_remove("KMSD_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut made = 0;
    for task in load {
        made += task.await.unwrap();
    }
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    assert!(made > 0, "the load ran");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // Restore: the copy as the database of a new data directory, with the same root key. The principals and
    // token hashes come back with it, so the administrator's token (kept apart, like the root key) still works.
    for file in ["root.key", "admin.token"] {
        std::fs::copy(server.data_dir().join(file), out_dir.path().join(file)).unwrap();
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            out_dir.path().join("root.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    server.stop().await;
    let restored = TestServer::start_in(Arc::new(out_dir), ManualClock::new())
        .await
        .unwrap();
    let mut c = restored.client().await;
    let opened = decrypt(&mut c, &before.ciphertext_blob, &[("k", "v")])
        .await
        .unwrap();
    assert_eq!(opened.plaintext, b"made before the backup");
    let verified = verify_log(&restored).await;
    assert!(verified.ok, "{}", verified.problem);
    assert!(
        verified.records_checked > 2,
        "the copy holds the log up to the backup"
    );

    // A second backup to the same file is refused rather than overwriting it.
    let again = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["backup", "--data-dir"])
        .arg(restored.data_dir())
        .arg(restored.data_dir().join("kmsd.db"))
        .env_remove("KMSD_LOG")
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("cannot create"));
}
