//! First start killed at every step, and the offline recovery of a lost administrator token: each ends with one
//! usable administrator token and an audit log that verifies.

use kmsd_proto::pb::admin_service_client::AdminServiceClient;
use kmsd_proto::pb::*;
use tonic::Code;

use crate::support::*;

/// The live tokens of `admin`, as an administrator lists them.
async fn live_admin_tokens(daemon: &Daemon) -> Vec<Token> {
    let mut admin = AdminServiceClient::new(daemon.channel_as(Some(&daemon.admin_token())).await);
    admin
        .list_tokens(ListTokensRequest {
            principal: "admin".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .into_iter()
        .filter(|t| t.revocation_time.is_none())
        .collect()
}

async fn log_verifies(daemon: &Daemon) -> VerifyLogResponse {
    let report = daemon
        .audit_client()
        .await
        .verify_log(VerifyLogRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(report.ok, "{report:?}");
    report
}

/// Finding 5: a kill between storing the `admin` principal and renaming the token file left a daemon serving with
/// no administrator token and no way to issue one. Now a kill at every step ends, after a restart, in a usable
/// administrator, and any token the interrupted start issued is revoked.
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_at_every_step_of_first_start_ends_with_a_usable_administrator() {
    for step in ["principal", "token", "file", "renamed"] {
        let dir = tempfile::tempdir().unwrap();
        let crash = format!("bootstrap:{step}");
        let log = Daemon::start(dir.path(), &[], &[("KMSD_CRASH_AT", &crash)])
            .err()
            .unwrap_or_else(|| panic!("kmsd should have died at {crash}"));
        assert!(!log.contains("kmsd is serving"), "{step}: {log}");
        let token_file = dir.path().join("admin.token");
        assert_eq!(token_file.exists(), step == "renamed", "{step}");
        let interrupted = std::fs::read_to_string(&token_file).ok();

        let daemon = Daemon::start(dir.path(), &[], &[]).unwrap();
        let token = daemon.admin_token();
        let mut client = daemon.client_as(Some(&token)).await;
        create_key(&mut client, "alias/after-the-crash").await;
        if let Some(old) = interrupted {
            let mut old = daemon.client_as(Some(old.trim())).await;
            assert_status(
                old.describe_key(DescribeKeyRequest {
                    key_id: "alias/after-the-crash".into(),
                })
                .await,
                Code::Unauthenticated,
                &["revoked"],
            );
        }
        assert_eq!(live_admin_tokens(&daemon).await.len(), 1, "{step}");
        log_verifies(&daemon).await;
        // Complete now: the next start leaves the administrator alone.
        let log = daemon.stop();
        assert!(log.contains("created the administrator"), "{step}");
        let again = Daemon::start(dir.path(), &[], &[]).unwrap();
        assert_eq!(again.admin_token(), token, "{step}");
        assert_eq!(live_admin_tokens(&again).await.len(), 1, "{step}");
        again.stop();
    }
}

fn recover(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .arg("recover-admin")
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env_remove("KMSD_LOG")
        .output()
        .unwrap()
}

/// A lost administrator token is recovered offline, with the root key, and the recovery is in the audit log.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_administrator_token_is_recovered_offline_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[], &[]).unwrap();
    let lost = daemon.admin_token();

    // Not while the daemon serves.
    let out = recover(dir.path(), &["--out", "/dev/null/none"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another kmsd process"));
    daemon.stop();
    std::fs::remove_file(dir.path().join("admin.token")).unwrap();

    // Not with another root key, and nothing is written.
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, format!("{}\n", "ab".repeat(32))).unwrap();
    let out = recover(
        dir.path(),
        &["--root-key-file", other_key.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(!dir.path().join("admin.token").exists());

    let out = recover(dir.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("admin.token"));
    // Not over an existing file.
    let out = recover(dir.path(), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));

    let daemon = Daemon::start(dir.path(), &[], &[]).unwrap();
    let recovered = daemon.admin_token();
    assert_ne!(recovered, lost);
    let mut client = daemon.client_as(Some(&recovered)).await;
    create_key(&mut client, "alias/recovered").await;
    let events = daemon
        .audit_client()
        .await
        .query_events(QueryEventsRequest {
            principal: "kmsd".into(),
            event_name: "CreateToken".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(
        events.len(),
        2,
        "the bootstrap's and the recovery's: {events:?}"
    );
    assert!(
        events[0].reason.starts_with("recovery: kmsd recover-admin"),
        "{events:?}"
    );
    log_verifies(&daemon).await;
    daemon.stop();
}
