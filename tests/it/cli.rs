//! kmsctl against a real daemon, as a person or a script would run it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::support::*;

/// Runs kmsctl with `args` against `server`, feeding `stdin`, off the async workers.
async fn kmsctl(server: &TestServer, args: &[&str], stdin: &[u8]) -> Output {
    let endpoint = server.endpoint();
    let token = server.admin_token();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kmsctl"))
            .args(&args)
            .env("KMSD_ENDPOINT", endpoint)
            .env("KMSD_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kmsctl runs");
        child.stdin.take().unwrap().write_all(&stdin).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

async fn ok(server: &TestServer, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = kmsctl(server, args, stdin).await;
    assert!(
        out.status.success(),
        "kmsctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

async fn json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_slice(&ok(server, &all, b"").await).expect("kmsctl --json prints JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_and_aliases_from_the_command_line() {
    let server = TestServer::start().await;
    let created = json(
        &server,
        &[
            "keys",
            "create",
            "--description",
            "orders",
            "--alias",
            "alias/orders",
            "--tag",
            "team=pay",
            "--rotation-days",
            "90",
        ],
    )
    .await;
    let key_id = created["key_id"].as_str().unwrap().to_string();
    assert_eq!(created["state"], "ENABLED");
    assert_eq!(created["tags"]["team"], "pay");
    assert_eq!(created["rotation_period_days"], 90);
    assert!(created["deletion_time"].is_null());

    let table = String::from_utf8(ok(&server, &["keys", "list"], b"").await).unwrap();
    assert!(table.starts_with("KEY ID"), "{table}");
    assert!(
        table.contains(&key_id) && table.contains("alias/orders"),
        "{table}"
    );

    let rotated = json(&server, &["keys", "rotate", "alias/orders"]).await;
    assert_eq!(rotated["primary_version"], 2);
    let versions = json(&server, &["keys", "versions", &key_id]).await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);

    ok(
        &server,
        &["aliases", "create", "alias/orders-2", &key_id],
        b"",
    )
    .await;
    let aliases = json(&server, &["aliases", "list", "--key", &key_id]).await;
    assert_eq!(aliases["aliases"].as_array().unwrap().len(), 2);
    ok(&server, &["aliases", "delete", "alias/orders-2"], b"").await;

    assert_eq!(
        json(&server, &["keys", "disable", &key_id]).await["state"],
        "DISABLED"
    );
    assert_eq!(
        json(&server, &["keys", "enable", &key_id]).await["state"],
        "ENABLED"
    );
    let scheduled = json(
        &server,
        &["keys", "schedule-deletion", &key_id, "--days", "7"],
    )
    .await;
    assert_eq!(scheduled["state"], "PENDING_DELETION");
    assert!(scheduled["deletion_time"].is_string());
    assert_eq!(
        json(&server, &["keys", "cancel-deletion", &key_id]).await["state"],
        "DISABLED"
    );

    let describe =
        String::from_utf8(ok(&server, &["keys", "describe", "alias/orders"], b"").await).unwrap();
    assert!(describe.contains("State:           DISABLED"), "{describe}");
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypt_decrypt_and_data_keys_from_the_command_line() {
    let server = TestServer::start().await;
    ok(&server, &["keys", "create", "--alias", "alias/cli"], b"").await;

    let blob = ok(
        &server,
        &["encrypt", "--key", "alias/cli", "--context", "app=web"],
        b"hello\x00world",
    )
    .await;
    let plaintext = ok(&server, &["decrypt", "--context", "app=web"], &blob).await;
    assert_eq!(plaintext, b"hello\x00world");

    let wrong = kmsctl(&server, &["decrypt", "--context", "app=api"], &blob).await;
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("ciphertext is invalid"),
        "{stderr}"
    );
    // The finer kind the daemon named, and the request id that finds the call's audit record.
    assert!(stderr.contains("(InvalidCiphertext)"), "{stderr}");
    let request_id = stderr
        .split("[request id ")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("no request id in {stderr}"));
    let event = one_event(&server, request_id).await;
    assert_eq!(event.event_name, "Decrypt");
    assert_eq!(event.error_code, "INVALID_ARGUMENT");

    let not_base64 = kmsctl(&server, &["decrypt"], b"%%%").await;
    assert!(String::from_utf8_lossy(&not_base64.stderr).contains("must be base64"));

    let dk = json(
        &server,
        &["datakey", "--key", "alias/cli", "--context", "obj=1"],
    )
    .await;
    let dk_plain = BASE64.decode(dk["plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(dk_plain.len(), 32);
    let dk_blob = dk["ciphertext_blob"].as_str().unwrap();
    let decrypted: Value = serde_json::from_slice(
        &ok(
            &server,
            &["--json", "decrypt", "--context", "obj=1"],
            dk_blob.as_bytes(),
        )
        .await,
    )
    .unwrap();
    assert_eq!(
        BASE64
            .decode(decrypted["plaintext"].as_str().unwrap())
            .unwrap(),
        dk_plain
    );

    let without = json(
        &server,
        &[
            "datakey",
            "--key",
            "alias/cli",
            "--bytes",
            "64",
            "--no-plaintext",
        ],
    )
    .await;
    assert!(without.get("plaintext").is_none());

    ok(&server, &["keys", "create", "--alias", "alias/cli-2"], b"").await;
    let moved = ok(
        &server,
        &[
            "reencrypt",
            "--to",
            "alias/cli-2",
            "--source-context",
            "app=web",
            "--context",
            "app=web",
        ],
        &blob,
    )
    .await;
    let moved_plain = ok(
        &server,
        &["decrypt", "--key", "alias/cli-2", "--context", "app=web"],
        &moved,
    )
    .await;
    assert_eq!(moved_plain, b"hello\x00world");

    let random = String::from_utf8(ok(&server, &["random", "--bytes", "24"], b"").await).unwrap();
    assert_eq!(BASE64.decode(random.trim()).unwrap().len(), 24);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_reported_with_a_nonzero_exit() {
    let server = TestServer::start().await;
    let missing = kmsctl(&server, &["keys", "describe", "alias/none"], b"").await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("NotFound: alias alias/none does not exist")
    );

    let unreachable = Command::new(env!("CARGO_BIN_EXE_kmsctl"))
        .args(["--endpoint", "http://127.0.0.1:1", "keys", "list"])
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("is kmsd running?"));
}
