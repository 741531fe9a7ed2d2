//! Configuration: precedence of flags over environment over file over defaults, and every refusal.

use crate::support::write;
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use kmsd::config::{ConfigError, Flags, LogFormat, load};

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn flags_beat_environment_beats_file_beats_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "kmsd.toml",
        "listen = \"127.0.0.1:1111\"\nlog_format = \"json\"\nshutdown_grace = \"3s\"\nlog_level = \"warn\"\n",
    );
    let with_file = Flags::default().config(file.clone());

    let defaults = load(&Flags::default(), &env(&[])).unwrap();
    assert_eq!(
        defaults.config.network.listen.to_string(),
        "127.0.0.1:50051"
    );
    assert_eq!(defaults.config.log.format, LogFormat::Text);
    assert!(defaults.file.is_none());

    let from_file = load(&with_file, &env(&[])).unwrap();
    assert_eq!(
        from_file.config.network.listen.to_string(),
        "127.0.0.1:1111"
    );
    assert_eq!(from_file.config.log.format, LogFormat::Json);
    assert_eq!(
        from_file.config.network.shutdown_grace,
        Duration::from_secs(3)
    );
    assert_eq!(from_file.file.as_deref(), Some(file.as_path()));

    let from_env = load(
        &with_file,
        &env(&[("KMSD_LISTEN", "127.0.0.1:2222"), ("KMSD_LOG", "debug")]),
    )
    .unwrap();
    assert_eq!(from_env.config.network.listen.to_string(), "127.0.0.1:2222");
    assert_eq!(from_env.config.log.level, "debug");
    assert_eq!(
        from_env.config.log.format,
        LogFormat::Json,
        "what the environment does not set, the file still does"
    );

    let from_flag = load(
        &with_file
            .clone()
            .set("listen", "127.0.0.1:3333")
            .set("log_format", "text"),
        &env(&[("KMSD_LISTEN", "127.0.0.1:2222")]),
    )
    .unwrap();
    assert_eq!(
        from_flag.config.network.listen.to_string(),
        "127.0.0.1:3333"
    );
    assert_eq!(from_flag.config.log.format, LogFormat::Text);
}

#[test]
fn the_data_directorys_own_file_is_read_when_present() {
    let dir = tempfile::tempdir().unwrap();
    let flags = Flags::default().set("data_dir", dir.path().to_str().unwrap());
    assert!(load(&flags, &env(&[])).unwrap().file.is_none());
    write(
        dir.path(),
        "kmsd.toml",
        "audit_checkpoint_interval = \"500ms\"\n",
    );
    let settings = load(&flags, &env(&[])).unwrap();
    assert_eq!(
        settings.config.audit.checkpoint_interval,
        Duration::from_millis(500)
    );
    assert_eq!(settings.config.root_key_path(), dir.path().join("root.key"));
    assert!(
        settings
            .to_string()
            .contains("audit_checkpoint_interval = \"500ms\"")
    );
}

#[test]
fn every_bad_setting_is_refused_with_where_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Flags, HashMap<String, String>, Vec<&str>)> = vec![
        (
            Flags::default().config(write(
                dir.path(),
                "unknown.toml",
                "listen = \"127.0.0.1:1\"\nlisten_port = 5\n",
            )),
            env(&[]),
            vec!["unknown.toml", "line 2", "unknown field `listen_port`"],
        ),
        (
            Flags::default().config(write(dir.path(), "listen.toml", "listen = \"localhost\"\n")),
            env(&[]),
            vec!["listen.toml: key `listen`", "not an address and port"],
        ),
        (
            Flags::default().config(write(
                dir.path(),
                "duration.toml",
                "maintenance_interval = \"60\"\n",
            )),
            env(&[]),
            vec!["key `maintenance_interval`", "needs a unit"],
        ),
        (
            Flags::default().config(write(dir.path(), "zero.toml", "shutdown_grace = \"0s\"\n")),
            env(&[]),
            vec!["key `shutdown_grace`", "more than zero"],
        ),
        (
            Flags::default().config(write(dir.path(), "type.toml", "listen = 50051\n")),
            env(&[]),
            vec!["type.toml", "line 1"],
        ),
        (
            Flags::default().config(write(dir.path(), "syntax.toml", "listen = \n")),
            env(&[]),
            vec!["syntax.toml", "line 1"],
        ),
        (
            Flags::default().config(dir.path().join("missing.toml")),
            env(&[]),
            vec!["missing.toml", "cannot read"],
        ),
        (
            Flags::default(),
            env(&[("KMSD_LISTN", "x")]),
            vec!["KMSD_LISTN", "no such variable"],
        ),
        (
            Flags::default(),
            env(&[("KMSD_LOG_FORMAT", "yaml")]),
            vec!["environment variable KMSD_LOG_FORMAT", "text or json"],
        ),
        (
            Flags::default().set("log_level", "info,=["),
            env(&[]),
            vec!["flag --log-level", "not a log filter"],
        ),
        (
            Flags::default().set("listen", "0.0.0.0"),
            env(&[]),
            vec!["flag --listen"],
        ),
        (
            Flags::default(),
            env(&[("KMSD_DATA_DIR", "")]),
            vec!["KMSD_DATA_DIR", "must not be empty"],
        ),
        (
            Flags::default(),
            env(&[("KMSD_MAX_CONNECTIONS", "0")]),
            vec!["KMSD_MAX_CONNECTIONS", "not between 1"],
        ),
        (
            Flags::default(),
            env(&[("KMSD_MAX_CONCURRENT_STREAMS", "many")]),
            vec!["KMSD_MAX_CONCURRENT_STREAMS", "not a whole number"],
        ),
        (
            Flags::default().config(write(dir.path(), "idle.toml", "idle_timeout = \"5s\"\n")),
            env(&[]),
            vec!["idle_timeout", "longer than request_timeout"],
        ),
    ];
    for (flags, env, fragments) in cases {
        let err = load(&flags, &env).expect_err("must be refused").to_string();
        for f in fragments {
            assert!(err.contains(f), "{err:?} should mention {f:?}");
        }
    }
    assert!(matches!(
        load(
            &Flags::default().config(dir.path().join("missing.toml")),
            &env(&[])
        ),
        Err(ConfigError::File { .. })
    ));
}

#[test]
fn the_documented_example_is_valid_and_says_the_defaults() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kmsd.toml.example");
    let settings = load(&Flags::default().config(example), &env(&[])).unwrap();
    let defaults = load(&Flags::default(), &env(&[])).unwrap();
    assert_eq!(settings.to_string(), defaults.to_string());
}

#[test]
fn kmsd_config_check_exits_64_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.toml", "log_format = \"xml\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["config", "check", "--config"])
        .arg(&bad)
        .env_remove("KMSD_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml: key `log_format`") && stderr.contains("text or json"),
        "{stderr}"
    );

    let good = write(dir.path(), "good.toml", "listen = \"127.0.0.1:7000\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["config", "check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen = \"127.0.0.1:7000\""));
}

/// The deployment files set variables for kmsd and for kmsctl (its probes) in one environment: kmsd must accept
/// every one of them, and the TLS settings must take.
#[test]
fn the_kubernetes_manifests_environment_is_accepted() {
    let manifest = include_str!("../../deploy/kubernetes.yaml");
    let mut vars = Vec::new();
    for line in manifest.lines() {
        let line = line.trim_start();
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("- {name: KMSD_") {
            let (name, value) = rest.split_once(", value: ").unwrap();
            let value = value.trim_end_matches('}').trim_matches('"');
            vars.push((format!("KMSD_{name}"), value.to_owned()));
        }
    }
    assert!(vars.len() >= 8, "{vars:?}");
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let settings = load(&Flags::default(), &env(&pairs)).unwrap();
    assert_eq!(settings.config.network.listen.to_string(), "0.0.0.0:50051");
    assert!(
        settings.config.network.tls.is_some(),
        "non-loopback, so TLS"
    );
    assert_eq!(
        settings.config.network.aws_listen.map(|a| a.to_string()),
        Some("0.0.0.0:4599".to_owned()),
        "the AWS endpoint, under the same TLS"
    );
}

#[test]
fn tls_settings_come_in_pairs_and_guard_non_loopback_addresses() {
    let refused = load(
        &Flags::default(),
        &env(&[("KMSD_TLS_CERT", "/tls/server.crt")]),
    );
    assert!(
        matches!(&refused, Err(ConfigError::Value { reason, .. }) if reason.contains("tls_key")),
        "{refused:?}"
    );
    let refused = load(&Flags::default().set("listen", "0.0.0.0:50051"), &env(&[]));
    assert!(
        matches!(&refused, Err(ConfigError::Value { reason, .. }) if reason.contains("--insecure-plaintext")),
        "{refused:?}"
    );
    let allowed = load(
        &Flags::default().set("listen", "0.0.0.0:50051"),
        &env(&[("KMSD_INSECURE_PLAINTEXT", "true")]),
    )
    .unwrap();
    assert!(allowed.config.network.insecure_plaintext);
    // The AWS endpoint follows the same rule.
    let refused = load(
        &Flags::default(),
        &env(&[("KMSD_AWS_LISTEN", "0.0.0.0:4599")]),
    );
    assert!(
        matches!(&refused, Err(ConfigError::Value { origin, reason }) if origin.contains("aws_listen")
            && reason.contains("--insecure-plaintext")),
        "{refused:?}"
    );
    let loopback = load(
        &Flags::default(),
        &env(&[
            ("KMSD_AWS_LISTEN", "127.0.0.1:4599"),
            ("KMSD_AWS_REGION", "eu-west-1"),
        ]),
    )
    .unwrap();
    assert_eq!(loopback.config.network.aws_home.region(), "eu-west-1");
    let bad_account = load(&Flags::default(), &env(&[("KMSD_AWS_ACCOUNT_ID", "12345")]));
    assert!(
        matches!(&bad_account, Err(ConfigError::Value { reason, .. }) if reason.contains("twelve digits")),
        "{bad_account:?}"
    );
}

#[test]
fn keepalive_is_off_unless_given_an_interval() {
    let off = load(&Flags::default(), &env(&[])).unwrap();
    assert_eq!(off.config.transport.keepalive_interval, None);
    let on = load(
        &Flags::default(),
        &env(&[("KMSD_KEEPALIVE_INTERVAL", "30s")]),
    )
    .unwrap();
    assert_eq!(
        on.config.transport.keepalive_interval,
        Some(std::time::Duration::from_secs(30))
    );
    assert!(on.to_string().contains("keepalive_interval = \"30s\""));
    let err = load(
        &Flags::default(),
        &env(&[("KMSD_KEEPALIVE_INTERVAL", "sometimes")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("KMSD_KEEPALIVE_INTERVAL"), "{err}");
}

/// One entry of the settings table is all a setting needs: the documented example, the variables and the flags
/// follow it (`kmsd config check` prints it; see `the_documented_example_is_valid_and_says_the_defaults`).
#[test]
fn every_setting_is_documented_and_is_a_flag() {
    let example = include_str!("../../deploy/kmsd.toml.example");
    let help = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for s in kmsd::config::SETTINGS {
        let line = format!("{} = ", s.key);
        assert!(
            example
                .lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&line)),
            "deploy/kmsd.toml.example does not show {}",
            s.key
        );
        assert!(
            example.contains(s.var),
            "the example does not name {}",
            s.var
        );
        assert!(
            help.contains(&format!("--{} ", s.flag()))
                || help.contains(&format!("--{}\n", s.flag())),
            "kmsd serve --help has no --{}",
            s.flag()
        );
        let flagged = load(
            &Flags::default().set(
                s.key,
                match s.kind {
                    kmsd::config::Kind::Switch => "true",
                    _ => "info,=[ no setting takes this",
                },
            ),
            &env(&[]),
        );
        if s.kind != kmsd::config::Kind::Switch
            && s.key != "data_dir"
            && !s.key.starts_with("tls_")
            && s.key != "root_key_file"
        {
            let err = flagged.expect_err(s.key).to_string();
            assert!(err.contains(&format!("flag --{}", s.flag())), "{err}");
        }
    }
}

#[test]
fn the_postgres_example_is_valid_and_config_check_hides_its_password() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kmsd-postgres.toml.example"
    );
    let settings = load(&Flags::default().config(example), &env(&[])).unwrap();
    let url = settings
        .config
        .data
        .database_url
        .as_ref()
        .expect("a database URL");
    assert_eq!(
        url.to_string(),
        "postgres://kmsd_app@db1.internal:5432,db2.internal:5432/kmsd?target_session_attrs=read-write&\
         sslmode=require&sslrootcert=/etc/kmsd/db-ca.pem"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["config", "check", "--config", example])
        .env_remove("KMSD_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("database_url = \"postgres://kmsd_app@db1.internal"),
        "{shown}"
    );
    assert!(!shown.contains("change-me"), "{shown}");
}
