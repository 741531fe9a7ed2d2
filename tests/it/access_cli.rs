//! The README's access-control walkthrough, run with kmsctl as a person would: an administrator's token from the
//! data directory, a service principal with a token file, and a policy that lets it make and open data keys for
//! one tenant only.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::*;

/// How a kmsctl run authenticates.
enum As<'a> {
    Nobody,
    Token(&'a str),
    TokenFile(&'a Path),
}

async fn kmsctl(server: &TestServer, who: As<'_>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kmsctl"));
    cmd.args(args)
        .env("KMSD_ENDPOINT", server.endpoint())
        .env_remove("KMSD_TOKEN")
        .env_remove("KMSD_TOKEN_FILE");
    match who {
        As::Nobody => {}
        As::Token(token) => {
            cmd.env("KMSD_TOKEN", token);
        }
        As::TokenFile(path) => {
            cmd.env("KMSD_TOKEN_FILE", path);
        }
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[track_caller]
fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn failed_with(out: &Output, fragments: &[&str]) {
    assert!(!out.status.success(), "should fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for f in fragments {
        assert!(stderr.contains(f), "{stderr:?} should mention {f:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_principal_limited_to_one_key_and_one_tenant() {
    let server = TestServer::start().await;
    let admin_file = server.data_dir().join("admin.token");
    let admin = As::TokenFile(&admin_file);

    // Health needs no credentials; everything else does.
    assert_eq!(
        succeeded(&kmsctl(&server, As::Nobody, &["health"]).await),
        "SERVING\n"
    );
    failed_with(
        &kmsctl(&server, As::Nobody, &["keys", "list"]).await,
        &["Unauthenticated", "no credentials"],
    );
    // Its details (the log and the disk under it) are an administrator's.
    let details = succeeded(
        &kmsctl(
            &server,
            As::TokenFile(&admin_file),
            &["health", "--details"],
        )
        .await,
    );
    assert!(
        details.starts_with("SERVING\n")
            && details.contains("Records held:")
            && details.contains("Disk:"),
        "{details}"
    );
    failed_with(
        &kmsctl(&server, As::Nobody, &["health", "--details"]).await,
        &["Unauthenticated"],
    );
    let who = succeeded(&kmsctl(&server, admin, &["whoami"]).await);
    assert!(who.starts_with("admin (administrator), by token "), "{who}");

    let admin = || As::TokenFile(&admin_file);
    succeeded(
        &kmsctl(
            &server,
            admin(),
            &["keys", "create", "--alias", "alias/billing"],
        )
        .await,
    );
    succeeded(
        &kmsctl(
            &server,
            admin(),
            &[
                "principals",
                "create",
                "billing",
                "--description",
                "billing service",
            ],
        )
        .await,
    );
    // The token alone on stdout, so it can go straight to a file.
    let token = succeeded(
        &kmsctl(
            &server,
            admin(),
            &["tokens", "create", "billing", "--ttl", "30d"],
        )
        .await,
    );
    let token = token.trim();
    assert!(token.starts_with("kmsd_"), "{token}");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("billing.token");
    std::fs::write(&token_file, token).unwrap();
    let policy_file = dir.path().join("billing-policy.json");
    std::fs::write(
        &policy_file,
        r#"{"statements": [{"sid": "billing-data-keys", "principals": ["billing"],
            "operations": ["GenerateDataKey", "Decrypt"], "context_equals": {"tenant": "acme"}}]}"#,
    )
    .unwrap();
    let shown = succeeded(
        &kmsctl(
            &server,
            admin(),
            &[
                "keys",
                "policy",
                "put",
                "alias/billing",
                "--file",
                policy_file.to_str().unwrap(),
            ],
        )
        .await,
    );
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["statements"][0]["context_equals"]["tenant"], "acme");

    // The service: data keys for tenant acme, and nothing else.
    let svc = || As::TokenFile(&token_file);
    let made: Value = serde_json::from_str(&succeeded(
        &kmsctl(
            &server,
            svc(),
            &[
                "--json",
                "datakey",
                "--key",
                "alias/billing",
                "--context",
                "tenant=acme",
            ],
        )
        .await,
    ))
    .unwrap();
    let blob = made["ciphertext_blob"].as_str().unwrap().to_owned();
    failed_with(
        &kmsctl(
            &server,
            svc(),
            &[
                "datakey",
                "--key",
                "alias/billing",
                "--context",
                "tenant=globex",
            ],
        )
        .await,
        &["PermissionDenied", "\"tenant\" is \"acme\""],
    );
    failed_with(
        &kmsctl(&server, svc(), &["keys", "create"]).await,
        &["PermissionDenied", "kms:CreateKey"],
    );
    let blob_file = dir.path().join("blob");
    std::fs::write(&blob_file, &blob).unwrap();
    succeeded(
        &kmsctl(
            &server,
            svc(),
            &[
                "decrypt",
                "--context",
                "tenant=acme",
                "--in",
                blob_file.to_str().unwrap(),
            ],
        )
        .await,
    );

    // The administrator sees who did what, and revokes the token; the service is locked out at once.
    let events: Value = serde_json::from_str(&succeeded(
        &kmsctl(
            &server,
            admin(),
            &["--json", "audit", "query", "--principal", "billing"],
        )
        .await,
    ))
    .unwrap();
    let names: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Decrypt", "CreateKey", "GenerateDataKey", "GenerateDataKey"],
        "newest first, refusals included"
    );
    let tokens: Value = serde_json::from_str(&succeeded(
        &kmsctl(
            &server,
            admin(),
            &["--json", "tokens", "list", "--principal", "billing"],
        )
        .await,
    ))
    .unwrap();
    let token_id = tokens["tokens"][0]["token_id"].as_str().unwrap().to_owned();
    assert!(token.contains(&token_id));
    assert!(
        !tokens.to_string().contains(&token[22..]),
        "listings never show the secret"
    );
    succeeded(&kmsctl(&server, admin(), &["tokens", "revoke", &token_id]).await);
    failed_with(
        &kmsctl(
            &server,
            svc(),
            &[
                "datakey",
                "--key",
                "alias/billing",
                "--context",
                "tenant=acme",
            ],
        )
        .await,
        &["Unauthenticated", "revoked"],
    );
    failed_with(
        &kmsctl(
            &server,
            As::Token("kmsd_0000000000000000_nope"),
            &["whoami"],
        )
        .await,
        &["Unauthenticated", "malformed"],
    );
    server.stop().await;
}

/// Access keys for the AWS endpoint: issued for a principal with the secret shown once (as JSON for scripts, as
/// `export` lines otherwise), listed and revoked without it, and recorded by id only.
#[tokio::test(flavor = "multi_thread")]
async fn access_keys_are_issued_once_listed_without_secrets_and_revoked() {
    let server = TestServer::start().await;
    let admin_file = server.data_dir().join("admin.token");
    let admin = || As::TokenFile(&admin_file);
    succeeded(&kmsctl(&server, admin(), &["principals", "create", "ci"]).await);

    let issued: Value = serde_json::from_str(&succeeded(
        &kmsctl(
            &server,
            admin(),
            &[
                "--json",
                "access-keys",
                "create",
                "ci",
                "--description",
                "boto3",
            ],
        )
        .await,
    ))
    .unwrap();
    let id = issued["access_key_id"].as_str().unwrap().to_owned();
    let secret = issued["secret_access_key"].as_str().unwrap().to_owned();
    assert_eq!((id.len(), secret.len()), (20, 40), "{issued}");
    assert!(id.starts_with("KMSD"), "{id}");
    assert_eq!(issued["principal"], "ci");

    let shell = succeeded(&kmsctl(&server, admin(), &["access-keys", "create", "ci"]).await);
    let lines: Vec<&str> = shell.lines().collect();
    assert_eq!(lines.len(), 2, "{shell}");
    assert!(
        lines[0].starts_with("export AWS_ACCESS_KEY_ID=KMSD"),
        "{shell}"
    );
    assert!(
        lines[1].starts_with("export AWS_SECRET_ACCESS_KEY="),
        "{shell}"
    );

    let listed = succeeded(
        &kmsctl(
            &server,
            admin(),
            &["--json", "access-keys", "list", "--principal", "ci"],
        )
        .await,
    );
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let keys = listed["access_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{listed}");
    assert!(
        keys.iter().any(|k| k["access_key_id"] == id.as_str()),
        "{listed}"
    );
    assert!(
        !listed.to_string().contains(&secret),
        "listings never show the secret"
    );

    succeeded(&kmsctl(&server, admin(), &["access-keys", "revoke", &id]).await);
    let listed: Value = serde_json::from_str(&succeeded(
        &kmsctl(&server, admin(), &["--json", "access-keys", "list"]).await,
    ))
    .unwrap();
    let revoked = listed["access_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["access_key_id"] == id.as_str())
        .unwrap();
    assert!(
        !revoked["revocation_time"].as_str().unwrap().is_empty(),
        "{revoked}"
    );
    failed_with(
        &kmsctl(
            &server,
            admin(),
            &["access-keys", "revoke", "AKIAIOSFODNN7EXAMPLE"],
        )
        .await,
        &["InvalidArgument", "not an access key id"],
    );
    failed_with(
        &kmsctl(&server, admin(), &["access-keys", "create", "nobody"]).await,
        &["NotFound", "nobody"],
    );

    // The log names the keys issued and revoked, never a secret.
    let events = succeeded(&kmsctl(&server, admin(), &["--json", "audit", "query"]).await);
    assert!(!events.contains(&secret));
    let events: Value = serde_json::from_str(&events).unwrap();
    let of = |name: &str| -> Vec<Value> {
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event_name"] == name)
            .cloned()
            .collect()
    };
    assert_eq!(of("CreateAccessKey").len(), 3, "{events}");
    assert!(
        of("CreateAccessKey")
            .iter()
            .any(|e| e["parameters"]["issued_access_key_id"] == id.as_str()),
        "{events}"
    );
    let revocations = of("RevokeAccessKey");
    assert_eq!(revocations.len(), 2, "the refused one too: {events}");
    assert!(
        revocations.iter().any(|e| e["outcome"] == "success"
            && e["parameters"]["revoked_access_key_id"] == id.as_str()),
        "{events}"
    );
    server.stop().await;
}

/// The management calls AWS has and kmsctl now has too: tags, description, rotation schedule, moving an alias.
#[tokio::test(flavor = "multi_thread")]
async fn kmsctl_changes_a_keys_details_and_moves_aliases() {
    let server = TestServer::start().await;
    let admin_file = server.data_dir().join("admin.token");
    let admin = || As::TokenFile(&admin_file);
    let run = async |args: &[&str]| succeeded(&kmsctl(&server, admin(), args).await);
    let created: Value =
        serde_json::from_str(&run(&["--json", "keys", "create", "--alias", "alias/app"]).await)
            .unwrap();
    let id = created["key_id"].as_str().unwrap().to_owned();
    let other: Value = serde_json::from_str(&run(&["--json", "keys", "create"]).await).unwrap();
    let other_id = other["key_id"].as_str().unwrap().to_owned();

    run(&["keys", "tag", &id, "team=payments", "env=prod"]).await;
    run(&["keys", "untag", &id, "env"]).await;
    let tags: Value = serde_json::from_str(&run(&["--json", "keys", "tags", &id]).await).unwrap();
    assert_eq!(tags["tags"], serde_json::json!({ "team": "payments" }));
    run(&["keys", "update-description", &id, "the app's key"]).await;
    run(&["keys", "rotation", "enable", &id, "--days", "30"]).await;
    let status = run(&["keys", "rotation", "status", &id]).await;
    assert!(status.contains("rotates every 30 days"), "{status}");
    run(&["keys", "rotation", "disable", &id]).await;
    let status: Value =
        serde_json::from_str(&run(&["--json", "keys", "rotation", "status", &id]).await).unwrap();
    assert_eq!(status["rotation_enabled"], false);
    let described: Value =
        serde_json::from_str(&run(&["--json", "keys", "describe", &id]).await).unwrap();
    assert_eq!(described["description"], "the app's key");

    run(&["aliases", "update", "alias/app", &other_id]).await;
    let moved: Value =
        serde_json::from_str(&run(&["--json", "keys", "describe", "alias/app"]).await).unwrap();
    assert_eq!(moved["key_id"], other_id.as_str());
    failed_with(
        &kmsctl(&server, admin(), &["keys", "tag", &id]).await,
        &["required"],
    );
    server.stop().await;
}
