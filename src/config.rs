//! Configuration: one typed [`Settings`] from defaults, a TOML file, `KMSD_*` environment variables and flags, in
//! rising precedence, validated as a whole before any port is bound or file opened.
//!
//! The file is `--config FILE` (or `KMSD_CONFIG`), else `<data-dir>/kmsd.toml` when it exists. Unknown keys in the
//! file and unknown `KMSD_*` variables are refused, as are bad values; every error names where the value came from
//! (the file and key, the variable, or the flag) and why it is wrong. `deploy/kmsd.toml.example` documents every
//! setting.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::server::Config;

/// Settings given as command-line flags; `None` where a flag was not given.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub root_key_file: Option<PathBuf>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub metrics_listen: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    /// `--insecure-plaintext`: serve without TLS on a non-loopback address.
    pub insecure_plaintext: bool,
}

/// The settings file: every key optional, no others allowed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    root_key_file: Option<PathBuf>,
    log_format: Option<String>,
    log_level: Option<String>,
    maintenance_interval: Option<String>,
    shutdown_grace: Option<String>,
    audit_checkpoint_interval: Option<String>,
    metrics_listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    insecure_plaintext: Option<bool>,
    max_connections: Option<u64>,
    max_concurrent_streams: Option<u64>,
    max_calls_in_flight: Option<u64>,
    max_message_bytes: Option<u64>,
    handshake_timeout: Option<String>,
    request_timeout: Option<String>,
    idle_timeout: Option<String>,
    keepalive_interval: Option<String>,
    keepalive_timeout: Option<String>,
    disk_soft_floor: Option<String>,
    disk_hard_floor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Everything the daemon runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: Config,
    pub log_format: LogFormat,
    /// A `tracing` filter directive such as `info` or `kmsd=debug,info`.
    pub log_level: String,
    /// The settings file that was read, if any.
    pub file: Option<PathBuf>,
}

/// A setting that was refused, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {reason}")]
    File { file: PathBuf, reason: String },
    #[error("{origin}: {reason}")]
    Value { origin: String, reason: String },
}

/// Variables kmsd reads; others named `KMSD_*` are refused as probable typos. The last six belong to kmsctl, which
/// may share the daemon's environment (a probe in the same container, say).
const KNOWN_VARIABLES: &[&str] = &[
    "KMSD_CONFIG",
    "KMSD_LISTEN",
    "KMSD_DATA_DIR",
    "KMSD_ROOT_KEY_FILE",
    "KMSD_LOG_FORMAT",
    "KMSD_LOG",
    "KMSD_MAINTENANCE_INTERVAL",
    "KMSD_SHUTDOWN_GRACE",
    "KMSD_AUDIT_CHECKPOINT_INTERVAL",
    "KMSD_METRICS_LISTEN",
    "KMSD_TLS_CERT",
    "KMSD_TLS_KEY",
    "KMSD_TLS_CLIENT_CA",
    "KMSD_INSECURE_PLAINTEXT",
    "KMSD_MAX_CONNECTIONS",
    "KMSD_MAX_CONCURRENT_STREAMS",
    "KMSD_MAX_CALLS_IN_FLIGHT",
    "KMSD_MAX_MESSAGE_BYTES",
    "KMSD_HANDSHAKE_TIMEOUT",
    "KMSD_REQUEST_TIMEOUT",
    "KMSD_IDLE_TIMEOUT",
    "KMSD_KEEPALIVE_INTERVAL",
    "KMSD_KEEPALIVE_TIMEOUT",
    "KMSD_DISK_SOFT_FLOOR",
    "KMSD_DISK_HARD_FLOOR",
    // Tests only: abort at a named step of first start (see server::bootstrap).
    "KMSD_CRASH_AT",
    "KMSD_ENDPOINT",
    "KMSD_TOKEN",
    "KMSD_TOKEN_FILE",
    "KMSD_CA_CERT",
    "KMSD_CLIENT_CERT",
    "KMSD_CLIENT_KEY",
];

/// Where a value came from, for messages.
enum Origin<'a> {
    Flag(&'a str),
    Env(&'a str),
    File(&'a Path, &'a str),
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(name) => write!(f, "flag --{name}"),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::File(file, key) => write!(f, "{}: key `{key}`", file.display()),
        }
    }
}

fn invalid(origin: &Origin<'_>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        origin: origin.to_string(),
        reason: reason.into(),
    }
}

/// Parses `500ms`, `60s`, `2m` or `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 500ms, 60s, 2m or 1h"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{s:?} needs a unit: ms, s, m or h")),
    };
    if d.is_zero() {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok(d)
}

/// Parses a size: `1048576`, `64KiB`, `512MiB` or `2GiB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 64MiB, 1GiB or 1048576"))?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(format!("{s:?}: the unit must be B, KiB, MiB, GiB or TiB")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Builds the settings from `flags`, the environment `env` (all variables; only `KMSD_*` are read) and the
/// settings file they point to.
pub fn load(flags: &Flags, env: &HashMap<String, String>) -> Result<Settings, ConfigError> {
    if let Some(unknown) = env
        .keys()
        .filter(|k| k.starts_with("KMSD_") && !KNOWN_VARIABLES.contains(&k.as_str()))
        .min()
    {
        return Err(ConfigError::Value {
            origin: format!("environment variable {unknown}"),
            reason: format!(
                "kmsd reads no such variable; known ones are {}",
                KNOWN_VARIABLES.join(", ")
            ),
        });
    }
    let var = |name: &'static str| env.get(name).map(|v| (v.clone(), Origin::Env(name)));

    // The data directory is needed to find the default settings file, so it is resolved first from flags and
    // the environment; the file may then set it too.
    let explicit_file = flags
        .config
        .clone()
        .or_else(|| env.get("KMSD_CONFIG").map(PathBuf::from));
    let early_data_dir = flags
        .data_dir
        .clone()
        .or_else(|| env.get("KMSD_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(Config::DEFAULT_DATA_DIR));
    let file_path = match explicit_file {
        Some(path) => Some(path),
        None => Some(early_data_dir.join("kmsd.toml")).filter(|p| p.is_file()),
    };
    let file = match &file_path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                file: path.clone(),
                reason: format!("cannot read: {e}"),
            })?;
            toml::from_str::<File>(&text).map_err(|e| {
                let line = e
                    .span()
                    .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
                ConfigError::File {
                    file: path.clone(),
                    reason: match line {
                        Some(n) => format!("line {n}: {}", e.message()),
                        None => e.message().to_owned(),
                    },
                }
            })?
        }
        None => File::default(),
    };
    let fp = file_path.as_deref().unwrap_or(Path::new("kmsd.toml"));
    let from_file = |value: &Option<String>, key: &'static str| {
        value.clone().map(|v| (v, Origin::File(fp, key)))
    };

    let mut server = Config::new(Config::DEFAULT_DATA_DIR);

    let listen = flags
        .listen
        .clone()
        .map(|v| (v, Origin::Flag("listen")))
        .or_else(|| var("KMSD_LISTEN"))
        .or_else(|| from_file(&file.listen, "listen"));
    if let Some((value, origin)) = listen {
        server.listen = value.parse::<SocketAddr>().map_err(|_| {
            invalid(
                &origin,
                format!(
                    "{value:?} is not an address and port such as 127.0.0.1:50051 or [::]:50051"
                ),
            )
        })?;
    }

    if let Some((value, origin)) = flags
        .metrics_listen
        .clone()
        .map(|v| (v, Origin::Flag("metrics-listen")))
        .or_else(|| var("KMSD_METRICS_LISTEN"))
        .or_else(|| from_file(&file.metrics_listen, "metrics_listen"))
    {
        server.metrics_listen = Some(value.parse::<SocketAddr>().map_err(|_| {
            invalid(
                &origin,
                format!("{value:?} is not an address and port such as 127.0.0.1:9464"),
            )
        })?);
    }

    let path_setting = |flag: &Option<PathBuf>,
                        name: &'static str,
                        var_name: &'static str,
                        file_value: &Option<PathBuf>,
                        key: &'static str| {
        flag.clone()
            .map(|v| (v, Origin::Flag(name)))
            .or_else(|| {
                env.get(var_name)
                    .map(|v| (PathBuf::from(v), Origin::Env(var_name)))
            })
            .or_else(|| file_value.clone().map(|v| (v, Origin::File(fp, key))))
    };
    if let Some((dir, origin)) = path_setting(
        &flags.data_dir,
        "data-dir",
        "KMSD_DATA_DIR",
        &file.data_dir,
        "data_dir",
    ) {
        if dir.as_os_str().is_empty() {
            return Err(invalid(&origin, "the data directory must not be empty"));
        }
        server.data_dir = dir;
    }
    if let Some((path, origin)) = path_setting(
        &flags.root_key_file,
        "root-key-file",
        "KMSD_ROOT_KEY_FILE",
        &file.root_key_file,
        "root_key_file",
    ) {
        if path.as_os_str().is_empty() {
            return Err(invalid(&origin, "the root key file must not be empty"));
        }
        server.root_key_file = Some(path);
    }

    let tls_cert = path_setting(
        &flags.tls_cert,
        "tls-cert",
        "KMSD_TLS_CERT",
        &file.tls_cert,
        "tls_cert",
    );
    let tls_key = path_setting(
        &flags.tls_key,
        "tls-key",
        "KMSD_TLS_KEY",
        &file.tls_key,
        "tls_key",
    );
    let tls_client_ca = path_setting(
        &flags.tls_client_ca,
        "tls-client-ca",
        "KMSD_TLS_CLIENT_CA",
        &file.tls_client_ca,
        "tls_client_ca",
    );
    server.tls = match (tls_cert, tls_key, tls_client_ca) {
        (None, None, None) => None,
        (Some((cert, _)), Some((key, _)), ca) => Some(crate::server::TlsFiles {
            cert,
            key,
            client_ca: ca.map(|(path, _)| path),
        }),
        (Some((_, origin)), None, _) | (None, Some((_, origin)), _) => {
            return Err(invalid(
                &origin,
                "TLS needs both a certificate (tls_cert) and its private key (tls_key)",
            ));
        }
        (None, None, Some((_, origin))) => {
            return Err(invalid(
                &origin,
                "a client CA (mutual TLS) needs the server's own tls_cert and tls_key",
            ));
        }
    };
    server.insecure_plaintext = if flags.insecure_plaintext {
        true
    } else if let Some(v) = env.get("KMSD_INSECURE_PLAINTEXT") {
        match v.as_str() {
            "true" | "1" => true,
            "false" | "0" | "" => false,
            _ => {
                return Err(invalid(
                    &Origin::Env("KMSD_INSECURE_PLAINTEXT"),
                    format!("{v:?} is not true or false"),
                ));
            }
        }
    } else {
        file.insecure_plaintext.unwrap_or(false)
    };
    server
        .check_transport(server.listen)
        .map_err(|reason| ConfigError::Value {
            origin: format!("listen = {}", server.listen),
            reason,
        })?;

    let log_format = match flags
        .log_format
        .clone()
        .map(|v| (v, Origin::Flag("log-format")))
        .or_else(|| var("KMSD_LOG_FORMAT"))
        .or_else(|| from_file(&file.log_format, "log_format"))
    {
        None => LogFormat::Text,
        Some((v, _)) if v == "text" => LogFormat::Text,
        Some((v, _)) if v == "json" => LogFormat::Json,
        Some((v, origin)) => {
            return Err(invalid(
                &origin,
                format!("{v:?} is not a log format: text or json"),
            ));
        }
    };
    let log_level = match flags
        .log_level
        .clone()
        .map(|v| (v, Origin::Flag("log-level")))
        .or_else(|| var("KMSD_LOG"))
        .or_else(|| from_file(&file.log_level, "log_level"))
    {
        None => "info".to_owned(),
        Some((v, origin)) => {
            tracing_subscriber::EnvFilter::try_new(&v).map_err(|e| {
                invalid(
                    &origin,
                    format!("{v:?} is not a log filter such as info or kmsd=debug,info: {e}"),
                )
            })?;
            v
        }
    };

    for (var_name, key, file_value, target) in [
        (
            "KMSD_MAINTENANCE_INTERVAL",
            "maintenance_interval",
            &file.maintenance_interval,
            &mut server.maintenance_interval,
        ),
        (
            "KMSD_SHUTDOWN_GRACE",
            "shutdown_grace",
            &file.shutdown_grace,
            &mut server.shutdown_grace,
        ),
        (
            "KMSD_AUDIT_CHECKPOINT_INTERVAL",
            "audit_checkpoint_interval",
            &file.audit_checkpoint_interval,
            &mut server.audit_checkpoint_interval,
        ),
    ] {
        if let Some((value, origin)) = var(var_name).or_else(|| from_file(file_value, key)) {
            *target = parse_duration(&value).map_err(|reason| invalid(&origin, reason))?;
        }
    }
    let t = &mut server.transport;
    for (var_name, key, file_value, target) in [
        (
            "KMSD_HANDSHAKE_TIMEOUT",
            "handshake_timeout",
            &file.handshake_timeout,
            &mut t.handshake_timeout,
        ),
        (
            "KMSD_REQUEST_TIMEOUT",
            "request_timeout",
            &file.request_timeout,
            &mut t.request_timeout,
        ),
        (
            "KMSD_IDLE_TIMEOUT",
            "idle_timeout",
            &file.idle_timeout,
            &mut t.idle_timeout,
        ),
        (
            "KMSD_KEEPALIVE_TIMEOUT",
            "keepalive_timeout",
            &file.keepalive_timeout,
            &mut t.keepalive_timeout,
        ),
    ] {
        if let Some((value, origin)) = var(var_name).or_else(|| from_file(file_value, key)) {
            *target = parse_duration(&value).map_err(|reason| invalid(&origin, reason))?;
        }
    }
    if let Some((value, origin)) = var("KMSD_KEEPALIVE_INTERVAL")
        .or_else(|| from_file(&file.keepalive_interval, "keepalive_interval"))
    {
        t.keepalive_interval = match value.as_str() {
            "off" => None,
            _ => Some(parse_duration(&value).map_err(|reason| invalid(&origin, reason))?),
        };
    }
    let mut streams = u64::from(t.max_concurrent_streams);
    for (var_name, key, file_value, target) in [
        (
            "KMSD_MAX_CONNECTIONS",
            "max_connections",
            file.max_connections,
            &mut t.max_connections as &mut dyn Count,
        ),
        (
            "KMSD_MAX_CONCURRENT_STREAMS",
            "max_concurrent_streams",
            file.max_concurrent_streams,
            &mut streams,
        ),
        (
            "KMSD_MAX_CALLS_IN_FLIGHT",
            "max_calls_in_flight",
            file.max_calls_in_flight,
            &mut t.max_calls_in_flight,
        ),
        (
            "KMSD_MAX_MESSAGE_BYTES",
            "max_message_bytes",
            file.max_message_bytes,
            &mut t.max_message_bytes,
        ),
    ] {
        let given = match var(var_name) {
            Some((value, origin)) => Some((
                value
                    .parse::<u64>()
                    .map_err(|_| invalid(&origin, format!("{value:?} is not a whole number")))?,
                origin,
            )),
            None => file_value.map(|n| (n, Origin::File(fp, key))),
        };
        if let Some((n, origin)) = given {
            target.set(n).map_err(|reason| invalid(&origin, reason))?;
        }
    }
    t.max_concurrent_streams = streams as u32;
    for (var_name, key, file_value, target) in [
        (
            "KMSD_DISK_SOFT_FLOOR",
            "disk_soft_floor",
            &file.disk_soft_floor,
            &mut server.disk.soft_floor,
        ),
        (
            "KMSD_DISK_HARD_FLOOR",
            "disk_hard_floor",
            &file.disk_hard_floor,
            &mut server.disk.hard_floor,
        ),
    ] {
        if let Some((value, origin)) = var(var_name).or_else(|| from_file(file_value, key)) {
            *target = parse_bytes(&value).map_err(|reason| invalid(&origin, reason))?;
        }
    }
    server.disk.check().map_err(|reason| ConfigError::Value {
        origin: "disk floors".into(),
        reason,
    })?;
    t.check().map_err(|reason| ConfigError::Value {
        origin: "transport limits".into(),
        reason,
    })?;

    Ok(Settings {
        server,
        log_format,
        log_level,
        file: file_path,
    })
}

impl fmt::Display for Settings {
    /// The effective settings, in the settings file's own format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.server;
        writeln!(f, "listen = {:?}", s.listen.to_string())?;
        writeln!(f, "data_dir = {:?}", s.data_dir.display().to_string())?;
        writeln!(
            f,
            "root_key_file = {:?}",
            s.root_key_path().display().to_string()
        )?;
        let format = match self.log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        writeln!(f, "log_format = {format:?}")?;
        writeln!(f, "log_level = {:?}", self.log_level)?;
        match s.metrics_listen {
            Some(addr) => writeln!(f, "metrics_listen = {:?}", addr.to_string())?,
            None => writeln!(f, "# metrics_listen: off")?,
        }
        match &s.tls {
            Some(tls) => {
                writeln!(f, "tls_cert = {:?}", tls.cert.display().to_string())?;
                writeln!(f, "tls_key = {:?}", tls.key.display().to_string())?;
                match &tls.client_ca {
                    Some(ca) => writeln!(f, "tls_client_ca = {:?}", ca.display().to_string())?,
                    None => writeln!(f, "# tls_client_ca: off")?,
                }
            }
            None => writeln!(f, "# tls_cert, tls_key, tls_client_ca: off (plaintext)")?,
        }
        writeln!(f, "insecure_plaintext = {}", s.insecure_plaintext)?;
        writeln!(
            f,
            "maintenance_interval = {:?}",
            duration_text(s.maintenance_interval)
        )?;
        writeln!(f, "shutdown_grace = {:?}", duration_text(s.shutdown_grace))?;
        writeln!(
            f,
            "audit_checkpoint_interval = {:?}",
            duration_text(s.audit_checkpoint_interval)
        )?;
        let t = &s.transport;
        writeln!(f, "max_connections = {}", t.max_connections)?;
        writeln!(f, "max_concurrent_streams = {}", t.max_concurrent_streams)?;
        writeln!(f, "max_calls_in_flight = {}", t.max_calls_in_flight)?;
        writeln!(f, "max_message_bytes = {}", t.max_message_bytes)?;
        writeln!(
            f,
            "handshake_timeout = {:?}",
            duration_text(t.handshake_timeout)
        )?;
        writeln!(
            f,
            "request_timeout = {:?}",
            duration_text(t.request_timeout)
        )?;
        writeln!(f, "idle_timeout = {:?}", duration_text(t.idle_timeout))?;
        writeln!(
            f,
            "keepalive_interval = {:?}",
            t.keepalive_interval
                .map_or_else(|| "off".to_owned(), duration_text)
        )?;
        writeln!(
            f,
            "keepalive_timeout = {:?}",
            duration_text(t.keepalive_timeout)
        )?;
        writeln!(f, "disk_soft_floor = {:?}", bytes_text(s.disk.soft_floor))?;
        write!(f, "disk_hard_floor = {:?}", bytes_text(s.disk.hard_floor))
    }
}

/// A count setting, between 1 and what its type holds.
trait Count {
    fn set(&mut self, n: u64) -> Result<(), String>;
}

impl Count for usize {
    fn set(&mut self, n: u64) -> Result<(), String> {
        *self = usize::try_from(n)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| format!("{n} is not between 1 and {}", usize::MAX))?;
        Ok(())
    }
}

impl Count for u64 {
    fn set(&mut self, n: u64) -> Result<(), String> {
        if !(1..=u64::from(u32::MAX)).contains(&n) {
            return Err(format!("{n} is not between 1 and {}", u32::MAX));
        }
        *self = n;
        Ok(())
    }
}

/// A size as the settings file writes it.
fn bytes_text(n: u64) -> String {
    for (unit, scale) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if n >= scale && n.is_multiple_of(scale) {
            return format!("{}{unit}", n / scale);
        }
    }
    n.to_string()
}

/// A duration as the settings file writes it.
fn duration_text(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
