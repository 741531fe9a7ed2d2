//! The audit log from the command line (kmsctl audit ...) and from the auditor's own script.

use std::process::Command;

use kmsd_proto::pb::*;
use serde_json::Value;

use crate::support::*;

/// Runs kmsctl against `server` off the async workers, which keep serving meanwhile.
async fn kmsctl(server: &TestServer, args: &[&str]) -> std::process::Output {
    let endpoint = server.endpoint();
    let token = server.admin_token();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kmsctl"))
            .args(&args)
            .env("KMSD_ENDPOINT", endpoint)
            .env("KMSD_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

async fn run(server: &TestServer, args: &[&str]) -> String {
    let out = kmsctl(server, args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn query_export_and_verify_from_the_command_line() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let key = create_key(&mut c, "alias/cli-audit").await;
    c.generate_data_key(tagged(
        GenerateDataKeyRequest {
            key_id: "alias/cli-audit".into(),
            encryption_context: ctx(&[("bucket", "photos")]),
            ..Default::default()
        },
        "cli-1",
    ))
    .await
    .unwrap();
    c.describe_key(DescribeKeyRequest {
        key_id: "alias/missing".into(),
    })
    .await
    .unwrap_err();

    let table = run(&server, &["audit", "query", "--key", "alias/cli-audit"]).await;
    assert!(table.starts_with("SEQ"), "{table}");
    assert!(
        table.contains("GenerateDataKey") && table.contains("because cli-1"),
        "{table}"
    );

    let json: Value = serde_json::from_str(
        &run(
            &server,
            &[
                "--json",
                "audit",
                "query",
                "--context",
                "bucket=photos",
                "--event",
                "GenerateDataKey",
            ],
        )
        .await,
    )
    .unwrap();
    let events = json["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["key_id"], key.key_id.as_str());
    assert_eq!(events[0]["request_id"], "cli-1");
    assert_eq!(events[0]["encryption_context"]["bucket"], "photos");

    let errors: Value = serde_json::from_str(
        &run(
            &server,
            &[
                "--json",
                "audit",
                "query",
                "--outcome",
                "error",
                "--since",
                "1h",
            ],
        )
        .await,
    )
    .unwrap();
    assert_eq!(errors["events"].as_array().unwrap().len(), 1);
    assert_eq!(errors["events"][0]["error_code"], "NOT_FOUND");

    let export: Value =
        serde_json::from_str(&run(&server, &["audit", "export", "--format", "cloudtrail"]).await)
            .unwrap();
    let records = export["Records"].as_array().unwrap();
    assert!(records.len() >= 3);
    assert_eq!(records[0]["eventName"], "CreatePrincipal", "oldest first");
    assert_eq!(
        records[0]["userIdentity"]["principalId"], "kmsd",
        "the bootstrap"
    );
    let gdk = records.iter().find(|r| r["requestID"] == "cli-1").unwrap();
    assert_eq!(gdk["eventName"], "GenerateDataKey");
    assert_eq!(gdk["requestParameters"]["keyId"], "alias/cli-audit");
    assert_eq!(
        gdk["requestParameters"]["encryptionContext"]["bucket"],
        "photos"
    );
    // The key as CloudTrail names one: by ARN, in this kmsd's region and account (the defaults here).
    assert_eq!(
        gdk["resources"],
        serde_json::json!([{
            "ARN": format!("arn:aws:kms:us-east-1:000000000000:key/{}", key.key_id),
            "accountId": "000000000000",
            "type": "AWS::KMS::Key",
        }])
    );
    assert_eq!(gdk["awsRegion"], "us-east-1");
    assert_eq!(gdk["userIdentity"]["principalId"], "admin");
    assert!(
        gdk["userIdentity"].get("accessKeyId").is_none(),
        "a token, not an access key"
    );
    assert_eq!(gdk["additionalEventData"]["reason"], "because cli-1");
    assert!(gdk["eventTime"].as_str().unwrap().ends_with('Z'));

    let verified = run(&server, &["audit", "verify"]).await;
    assert!(
        verified.contains("OK: the chain and every checkpoint verify"),
        "{verified}"
    );
    let bad_filter = kmsctl(&server, &["audit", "query", "--since", "yesterday"]).await;
    assert!(!bad_filter.status.success());
    assert!(String::from_utf8_lossy(&bad_filter.stderr).contains("RFC 3339"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_auditors_python_script_agrees_with_kmsd() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    create_key(&mut c, "alias/py").await;
    // Contexts that exercise JSON escaping: quotes, backslashes, newlines, control and non-ASCII characters.
    for (i, value) in [
        "plain",
        "quote \" and \\ backslash",
        "line\nbreak\ttab\u{1}",
        "ünïcødé ✓ 𝄞",
    ]
    .into_iter()
    .enumerate()
    {
        c.encrypt(tagged(
            EncryptRequest {
                key_id: "alias/py".into(),
                plaintext: b"x".to_vec(),
                encryption_context: ctx(&[("value", value), ("n", &i.to_string())]),
                encryption_algorithm: String::new(),
            },
            &format!("py-{i}"),
        ))
        .await
        .unwrap();
    }
    let public_key = hex::encode(server.server.audit().public_key().as_bytes());
    let dir = server.stop().await;
    let db = dir.path().join("kmsd.db");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/verify-audit-log.py");

    let out = Command::new("python3")
        .arg(script)
        .arg(&db)
        .args(["--public-key", &public_key])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("OK: 7 records chain from 1 to 7; 1 checkpoint(s) match; signatures"),
        "{stdout}"
    );

    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET reason = 'edited' WHERE seq = 3;",
    )
    .unwrap();
    drop(conn);
    let out = Command::new("python3")
        .arg(script)
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "TAMPERED at sequence 3: record 3 was altered"
    );
}
