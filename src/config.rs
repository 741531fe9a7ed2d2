//! Configuration: one typed [`Config`], composed of sub-configs, from defaults, a TOML file, `KMSD_*` environment
//! variables and flags, in rising precedence, validated as a whole before any port is bound or file opened.
//!
//! Every setting is one entry of [`SETTINGS`]: its file key, its variable (`KMSD_` and the key in capitals, unless
//! it names another), its flag (`--` and the key with dashes), its TOML type, how a value is parsed into the config
//! and how the effective value is shown. The file's keys, the variables and flags kmsd accepts, the validation and
//! `kmsd config check`'s output all come from that table, so a new setting is one entry (and a line in
//! `deploy/kmsd.toml.example`, which a test holds to the table).
//!
//! The file is `--config FILE` (or `KMSD_CONFIG`), else `<data-dir>/kmsd.toml` when it exists. Unknown keys in the
//! file, unknown `KMSD_*` variables and bad values are refused; every error names where the value came from (the
//! file, line and key, the variable, or the flag) and why it is wrong.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audit::space::SpaceLimits;
use crate::server::transport::TransportLimits;

/// Everything the daemon runs with, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub data: DataConfig,
    pub network: NetworkConfig,
    /// Connections, streams, calls in flight, timeouts and message size.
    pub transport: TransportLimits,
    pub audit: AuditConfig,
    /// How often to look for due rotations and ended deletion windows.
    pub maintenance_interval: Duration,
    pub log: LogConfig,
}

/// Where the daemon keeps its state.
#[derive(Debug, Clone)]
pub struct DataConfig {
    pub dir: PathBuf,
    /// Defaults to `<dir>/root.key`.
    pub root_key_file: Option<PathBuf>,
    /// PostgreSQL instead of the SQLite file in `dir`: what replicas share.
    pub database_url: Option<crate::storage::DatabaseUrl>,
}

/// What the daemon listens on, and how.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub listen: SocketAddr,
    /// Where to serve Prometheus metrics (`GET /metrics`); off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// Where to serve AWS KMS's JSON protocol (the AWS-compatible endpoint); off when `None`.
    pub aws_listen: Option<SocketAddr>,
    /// The region and account the AWS endpoint's ARNs and signatures are scoped to.
    pub aws_home: crate::aws::arn::Home,
    /// Serve TLS (and, with a client CA, authenticate callers by certificate); plaintext when `None`.
    pub tls: Option<TlsFiles>,
    /// Serve plaintext on a non-loopback address anyway.
    pub insecure_plaintext: bool,
    /// How long shutdown waits for in-flight calls.
    pub shutdown_grace: Duration,
}

/// PEM files for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Verify client certificates against this CA; a client without one may still use a bearer token.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// How often the audit writer signs a checkpoint of the chain head (also at shutdown).
    pub checkpoint_interval: Duration,
    /// Free space below which unauthenticated calls are only summarized, and below which every call fails closed.
    pub disk: SpaceLimits,
    /// How often the summary of unauthenticated calls refused below the soft floor is recorded (not a setting:
    /// tests shorten it).
    pub summary_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `kmsd=debug,info`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Where the first administrator's token is written on first start.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

impl Config {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:50051";
    pub const DEFAULT_DATA_DIR: &'static str = "./kmsd-data";

    /// The defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data: DataConfig {
                dir: data_dir.into(),
                root_key_file: None,
                database_url: None,
            },
            network: NetworkConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
                metrics_listen: None,
                aws_listen: None,
                aws_home: crate::aws::arn::Home::default(),
                tls: None,
                insecure_plaintext: false,
                shutdown_grace: Duration::from_secs(10),
            },
            transport: TransportLimits::default(),
            audit: AuditConfig {
                checkpoint_interval: Duration::from_secs(60),
                disk: SpaceLimits::default(),
                summary_interval: Duration::from_secs(10),
            },
            maintenance_interval: Duration::from_secs(60),
            log: LogConfig {
                format: LogFormat::Text,
                level: "info".to_owned(),
            },
        }
    }

    /// Refuses plaintext on an address other than loopback unless `insecure_plaintext` says so.
    pub fn check_transport(&self, addr: SocketAddr) -> Result<(), String> {
        let n = &self.network;
        if n.tls.is_none() && !n.insecure_plaintext && !addr.ip().is_loopback() {
            return Err(format!(
                "{addr} is not a loopback address and TLS is off: bearer tokens and data keys would cross the \
                 network in clear. Set tls_cert and tls_key (--tls-cert, --tls-key), or pass --insecure-plaintext \
                 if something else (a service mesh) encrypts the traffic"
            ));
        }
        Ok(())
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.data.dir.join(ADMIN_TOKEN_FILE)
    }

    pub fn root_key_path(&self) -> PathBuf {
        self.data
            .root_key_file
            .clone()
            .unwrap_or_else(|| self.data.dir.join("root.key"))
    }

    pub fn database_path(&self) -> PathBuf {
        self.data.dir.join("kmsd.db")
    }
}

/// The settings a start-up read, and the file they came from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
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

/// How a setting is written in the file, and whether its flag takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TOML string (addresses, paths, durations, sizes, names).
    Text,
    /// A TOML integer.
    Count,
    /// A TOML boolean; its flag is a switch, its variable `true`/`1` or `false`/`0`.
    Switch,
}

/// One setting (see the module documentation).
pub struct Setting {
    /// The file key; the flag is `--` and this with dashes.
    pub key: &'static str,
    /// The environment variable.
    pub var: &'static str,
    pub kind: Kind,
    /// What it does, for `--help`.
    pub help: &'static str,
    /// Parses a value into the draft, or says why it is wrong.
    apply: fn(&mut Draft, &str) -> Result<(), String>,
    /// The effective value as the file writes it; `None` when off.
    show: fn(&Config) -> Option<String>,
}

impl Setting {
    /// The command-line flag's name, without the dashes in front.
    pub fn flag(&self) -> String {
        self.key.replace('_', "-")
    }
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Setting")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A config being built, with the parts that are only whole together (TLS) held apart until the end.
pub struct Draft {
    config: Config,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
}

/// Every setting kmsd reads.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "listen",
        var: "KMSD_LISTEN",
        kind: Kind::Text,
        help: "Address and port of the gRPC API [default: 127.0.0.1:50051]",
        apply: |d, v| {
            d.config.network.listen = address(v, "127.0.0.1:50051 or [::]:50051")?;
            Ok(())
        },
        show: |c| Some(quoted(c.network.listen)),
    },
    Setting {
        key: "data_dir",
        var: "KMSD_DATA_DIR",
        kind: Kind::Text,
        help: "Directory for the database and, unless --root-key-file says otherwise, the root key [default: ./kmsd-data]",
        apply: |d, v| {
            d.config.data.dir = non_empty_path(v, "the data directory")?;
            Ok(())
        },
        show: |c| Some(quoted(c.data.dir.display())),
    },
    Setting {
        key: "root_key_file",
        var: "KMSD_ROOT_KEY_FILE",
        kind: Kind::Text,
        help: "The root key file (64 hex characters, mode 0600) [default: <data-dir>/root.key]",
        apply: |d, v| {
            d.config.data.root_key_file = Some(non_empty_path(v, "the root key file")?);
            Ok(())
        },
        show: |c| Some(quoted(c.root_key_path().display())),
    },
    Setting {
        key: "database_url",
        var: "KMSD_DATABASE_URL",
        kind: Kind::Text,
        help: "Keep keys, principals and the audit log in PostgreSQL (postgres://user:password@host1,host2/db?\
               target_session_attrs=read-write&sslmode=require&sslrootcert=ca.pem), shared by every replica \
               [default: SQLite, <data-dir>/kmsd.db]",
        apply: |d, v| {
            d.config.data.database_url = Some(crate::storage::DatabaseUrl::parse(v)?);
            Ok(())
        },
        // Shown without its password.
        show: |c| c.data.database_url.as_ref().map(quoted),
    },
    Setting {
        key: "log_format",
        var: "KMSD_LOG_FORMAT",
        kind: Kind::Text,
        help: "Log lines as `text` or `json` [default: text]",
        apply: |d, v| {
            d.config.log.format = match v {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(format!("{v:?} is not a log format: text or json")),
            };
            Ok(())
        },
        show: |c| {
            Some(quoted(match c.log.format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }))
        },
    },
    Setting {
        key: "log_level",
        var: "KMSD_LOG",
        kind: Kind::Text,
        help: "Log filter such as `info` or `kmsd=debug,info` [default: info]",
        apply: |d, v| {
            tracing_subscriber::EnvFilter::try_new(v).map_err(|e| {
                format!("{v:?} is not a log filter such as info or kmsd=debug,info: {e}")
            })?;
            d.config.log.level = v.to_owned();
            Ok(())
        },
        show: |c| Some(quoted(&c.log.level)),
    },
    Setting {
        key: "metrics_listen",
        var: "KMSD_METRICS_LISTEN",
        kind: Kind::Text,
        help: "Serve Prometheus metrics at http://ADDR/metrics [default: off]",
        apply: |d, v| {
            d.config.network.metrics_listen = Some(address(v, "127.0.0.1:9464")?);
            Ok(())
        },
        show: |c| c.network.metrics_listen.map(quoted),
    },
    Setting {
        key: "aws_listen",
        var: "KMSD_AWS_LISTEN",
        kind: Kind::Text,
        help: "Serve AWS KMS's JSON protocol (AWS SDKs, the AWS CLI, the AWS Encryption SDK; requests signed with an \
               access key) at ADDR, with the gRPC API's TLS settings [default: off]",
        apply: |d, v| {
            d.config.network.aws_listen = Some(address(v, "127.0.0.1:4599")?);
            Ok(())
        },
        show: |c| c.network.aws_listen.map(quoted),
    },
    Setting {
        key: "aws_region",
        var: "KMSD_AWS_REGION",
        kind: Kind::Text,
        help: "The region of the AWS endpoint's ARNs, and the region requests must be signed for [default: us-east-1]",
        apply: |d, v| {
            let account = d.config.network.aws_home.account().to_owned();
            d.config.network.aws_home = crate::aws::arn::Home::new(v, &account).map_err(|e| e.0)?;
            Ok(())
        },
        show: |c| Some(quoted(c.network.aws_home.region())),
    },
    Setting {
        key: "aws_account_id",
        var: "KMSD_AWS_ACCOUNT_ID",
        kind: Kind::Text,
        help: "The 12-digit account id of the AWS endpoint's ARNs [default: 000000000000]",
        apply: |d, v| {
            let region = d.config.network.aws_home.region().to_owned();
            d.config.network.aws_home = crate::aws::arn::Home::new(&region, v).map_err(|e| e.0)?;
            Ok(())
        },
        show: |c| Some(quoted(c.network.aws_home.account())),
    },
    Setting {
        key: "tls_cert",
        var: "KMSD_TLS_CERT",
        kind: Kind::Text,
        help: "Serve TLS with this certificate chain (PEM)",
        apply: |d, v| {
            d.tls_cert = Some(non_empty_path(v, "the certificate")?);
            Ok(())
        },
        show: |c| c.network.tls.as_ref().map(|t| quoted(t.cert.display())),
    },
    Setting {
        key: "tls_key",
        var: "KMSD_TLS_KEY",
        kind: Kind::Text,
        help: "The private key (PEM) of --tls-cert",
        apply: |d, v| {
            d.tls_key = Some(non_empty_path(v, "the private key")?);
            Ok(())
        },
        show: |c| c.network.tls.as_ref().map(|t| quoted(t.key.display())),
    },
    Setting {
        key: "tls_client_ca",
        var: "KMSD_TLS_CLIENT_CA",
        kind: Kind::Text,
        help: "Verify client certificates against this CA (PEM) and authenticate callers by them",
        apply: |d, v| {
            d.tls_client_ca = Some(non_empty_path(v, "the client CA")?);
            Ok(())
        },
        show: |c| {
            c.network
                .tls
                .as_ref()
                .and_then(|t| t.client_ca.as_ref())
                .map(|ca| quoted(ca.display()))
        },
    },
    Setting {
        key: "insecure_plaintext",
        var: "KMSD_INSECURE_PLAINTEXT",
        kind: Kind::Switch,
        help: "Allow serving without TLS on an address other than loopback (when something else, a service mesh \
               say, encrypts the traffic)",
        apply: |d, v| {
            d.config.network.insecure_plaintext = switch(v)?;
            Ok(())
        },
        show: |c| Some(c.network.insecure_plaintext.to_string()),
    },
    Setting {
        key: "maintenance_interval",
        var: "KMSD_MAINTENANCE_INTERVAL",
        kind: Kind::Text,
        help: "How often to rotate due keys and destroy keys whose deletion window ended [default: 60s]",
        apply: |d, v| {
            d.config.maintenance_interval = parse_duration(v)?;
            Ok(())
        },
        show: |c| Some(quoted(duration_text(c.maintenance_interval))),
    },
    Setting {
        key: "shutdown_grace",
        var: "KMSD_SHUTDOWN_GRACE",
        kind: Kind::Text,
        help: "How long shutdown waits for calls in flight [default: 10s]",
        apply: |d, v| {
            d.config.network.shutdown_grace = parse_duration(v)?;
            Ok(())
        },
        show: |c| Some(quoted(duration_text(c.network.shutdown_grace))),
    },
    Setting {
        key: "audit_checkpoint_interval",
        var: "KMSD_AUDIT_CHECKPOINT_INTERVAL",
        kind: Kind::Text,
        help: "How often the audit writer signs a checkpoint of the log's head [default: 60s]",
        apply: |d, v| {
            d.config.audit.checkpoint_interval = parse_duration(v)?;
            Ok(())
        },
        show: |c| Some(quoted(duration_text(c.audit.checkpoint_interval))),
    },
    Setting {
        key: "max_connections",
        var: "KMSD_MAX_CONNECTIONS",
        kind: Kind::Count,
        help: "Connections open at once; at the limit the quietest idle one makes room [default: 1024]",
        apply: |d, v| {
            d.config.transport.max_connections = count(v, usize::MAX as u64)? as usize;
            Ok(())
        },
        show: |c| Some(c.transport.max_connections.to_string()),
    },
    Setting {
        key: "max_concurrent_streams",
        var: "KMSD_MAX_CONCURRENT_STREAMS",
        kind: Kind::Count,
        help: "HTTP/2 streams one connection may open [default: 256]",
        apply: |d, v| {
            d.config.transport.max_concurrent_streams = count(v, u64::from(u32::MAX))? as u32;
            Ok(())
        },
        show: |c| Some(c.transport.max_concurrent_streams.to_string()),
    },
    Setting {
        key: "max_calls_in_flight",
        var: "KMSD_MAX_CALLS_IN_FLIGHT",
        kind: Kind::Count,
        help: "Calls served at once over all connections; beyond it RESOURCE_EXHAUSTED [default: 4096]",
        apply: |d, v| {
            d.config.transport.max_calls_in_flight = count(v, u64::from(u32::MAX))? as usize;
            Ok(())
        },
        show: |c| Some(c.transport.max_calls_in_flight.to_string()),
    },
    Setting {
        key: "max_message_bytes",
        var: "KMSD_MAX_MESSAGE_BYTES",
        kind: Kind::Count,
        help: "The largest request message, in bytes [default: 4194304]",
        apply: |d, v| {
            d.config.transport.max_message_bytes = count(v, u64::from(u32::MAX))? as usize;
            Ok(())
        },
        show: |c| Some(c.transport.max_message_bytes.to_string()),
    },
    Setting {
        key: "handshake_timeout",
        var: "KMSD_HANDSHAKE_TIMEOUT",
        kind: Kind::Text,
        help: "A new connection that sends nothing for this long is closed [default: 10s]",
        apply: |d, v| {
            d.config.transport.handshake_timeout = parse_duration(v)?;
            Ok(())
        },
        show: |c| Some(quoted(duration_text(c.transport.handshake_timeout))),
    },
    Setting {
        key: "request_timeout",
        var: "KMSD_REQUEST_TIMEOUT",
        kind: Kind::Text,
        help: "A request's headers and body must arrive within this [default: 10s]",
        apply: |d, v| {
            d.config.transport.request_timeout = parse_duration(v)?;
            Ok(())
        },
        show: |c| Some(quoted(duration_text(c.transport.request_timeout))),
    },
    Setting {
        key: "idle_timeout",
        var: "KMSD_IDLE_TIMEOUT",
        kind: Kind::Text,
        help: "A connection with no call for this long is closed [default: 300s]",
        apply: |d, v| {
            d.config.transport.idle_timeout = parse_duration(v)?;
            Ok(())
        },
        show: |c| Some(quoted(duration_text(c.transport.idle_timeout))),
    },
    Setting {
        key: "keepalive_interval",
        var: "KMSD_KEEPALIVE_INTERVAL",
        kind: Kind::Text,
        help: "HTTP/2 pings to idle connections at this interval, or `off` [default: off]",
        apply: |d, v| {
            d.config.transport.keepalive_interval = match v {
                "off" => None,
                _ => Some(parse_duration(v)?),
            };
            Ok(())
        },
        show: |c| {
            Some(quoted(
                c.transport
                    .keepalive_interval
                    .map_or_else(|| "off".to_owned(), duration_text),
            ))
        },
    },
    Setting {
        key: "keepalive_timeout",
        var: "KMSD_KEEPALIVE_TIMEOUT",
        kind: Kind::Text,
        help: "A ping unanswered for this long closes the connection [default: 20s]",
        apply: |d, v| {
            d.config.transport.keepalive_timeout = parse_duration(v)?;
            Ok(())
        },
        show: |c| Some(quoted(duration_text(c.transport.keepalive_timeout))),
    },
    Setting {
        key: "disk_soft_floor",
        var: "KMSD_DISK_SOFT_FLOOR",
        kind: Kind::Text,
        help: "Below this free space unauthenticated calls are recorded as summaries [default: 512MiB]",
        apply: |d, v| {
            d.config.audit.disk.soft_floor = parse_bytes(v)?;
            Ok(())
        },
        show: |c| Some(quoted(bytes_text(c.audit.disk.soft_floor))),
    },
    Setting {
        key: "disk_hard_floor",
        var: "KMSD_DISK_HARD_FLOOR",
        kind: Kind::Text,
        help: "Below this free space every call but archival fails closed [default: 64MiB]",
        apply: |d, v| {
            d.config.audit.disk.hard_floor = parse_bytes(v)?;
            Ok(())
        },
        show: |c| Some(quoted(bytes_text(c.audit.disk.hard_floor))),
    },
];

/// The variable naming the settings file.
pub const CONFIG_VARIABLE: &str = "KMSD_CONFIG";

/// Variables kmsd does not read itself but accepts in its environment: kmsctl's (a probe in the same container,
/// say), and the test hook that aborts first start at a named step (see `server::bootstrap`).
const OTHER_VARIABLES: &[&str] = &[
    "KMSD_CRASH_AT",
    "KMSD_ENDPOINT",
    "KMSD_TOKEN",
    "KMSD_TOKEN_FILE",
    "KMSD_CA_CERT",
    "KMSD_CLIENT_CERT",
    "KMSD_CLIENT_KEY",
];

fn setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// Settings given on the command line: the settings file, and values by setting key.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub config: Option<PathBuf>,
    values: Vec<(String, String)>,
}

impl Flags {
    /// A settings file to read (`--config`).
    pub fn config(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = Some(path.into());
        self
    }

    /// A setting's value, by its file key (`--listen 127.0.0.1:1` is `set("listen", "127.0.0.1:1")`; a switch is
    /// `"true"`). A key no setting has is refused by [`load`].
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.values.push((key.into(), value.into()));
        self
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Where a value came from, for messages.
enum Origin<'a> {
    Flag(String),
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

/// Builds the config from `flags`, the environment `env` (all variables; only `KMSD_*` are read) and the
/// settings file they point to.
pub fn load(flags: &Flags, env: &HashMap<String, String>) -> Result<Settings, ConfigError> {
    let known = |name: &str| {
        name == CONFIG_VARIABLE
            || OTHER_VARIABLES.contains(&name)
            || SETTINGS.iter().any(|s| s.var == name)
    };
    if let Some(unknown) = env
        .keys()
        .filter(|k| k.starts_with("KMSD_") && !known(k))
        .min()
    {
        let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.var).collect();
        names.push(CONFIG_VARIABLE);
        return Err(ConfigError::Value {
            origin: format!("environment variable {unknown}"),
            reason: format!(
                "kmsd reads no such variable; known ones are {}",
                names.join(", ")
            ),
        });
    }
    if let Some((key, _)) = flags.values.iter().find(|(k, _)| setting(k).is_none()) {
        return Err(ConfigError::Value {
            origin: format!("flag --{}", key.replace('_', "-")),
            reason: "kmsd has no such setting".into(),
        });
    }

    // The data directory is needed to find the default settings file, so it is resolved first from flags and
    // the environment; the file may then set it too.
    let explicit_file = flags
        .config
        .clone()
        .or_else(|| env.get(CONFIG_VARIABLE).map(PathBuf::from));
    let early_data_dir = flags
        .get("data_dir")
        .or_else(|| env.get("KMSD_DATA_DIR").map(String::as_str))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(Config::DEFAULT_DATA_DIR));
    let file_path = match explicit_file {
        Some(path) => Some(path),
        None => Some(early_data_dir.join("kmsd.toml")).filter(|p| p.is_file()),
    };
    let file_values = match &file_path {
        Some(path) => read_file(path)?,
        None => HashMap::new(),
    };

    let mut draft = Draft {
        config: Config::new(Config::DEFAULT_DATA_DIR),
        tls_cert: None,
        tls_key: None,
        tls_client_ca: None,
    };
    // Where each setting's value came from, for the checks of the whole below.
    let mut origins: HashMap<&str, Origin<'_>> = HashMap::new();
    for s in SETTINGS {
        let given = flags
            .get(s.key)
            .map(|v| (v.to_owned(), Origin::Flag(s.flag())))
            .or_else(|| env.get(s.var).map(|v| (v.clone(), Origin::Env(s.var))))
            .or_else(|| {
                let path = file_path.as_deref()?;
                file_values
                    .get(s.key)
                    .map(|v| (v.clone(), Origin::File(path, s.key)))
            });
        if let Some((value, origin)) = given {
            (s.apply)(&mut draft, &value).map_err(|reason| invalid(&origin, reason))?;
            origins.insert(s.key, origin);
        }
    }

    let Draft {
        mut config,
        tls_cert,
        tls_key,
        tls_client_ca,
    } = draft;
    let origin_of = |key: &str| {
        origins
            .get(key)
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    config.network.tls = match (tls_cert, tls_key, tls_client_ca) {
        (None, None, None) => None,
        (Some(cert), Some(key), client_ca) => Some(TlsFiles {
            cert,
            key,
            client_ca,
        }),
        (Some(_), None, _) | (None, Some(_), _) => {
            let given = if origins.contains_key("tls_cert") {
                "tls_cert"
            } else {
                "tls_key"
            };
            return Err(ConfigError::Value {
                origin: origin_of(given),
                reason: "TLS needs both a certificate (tls_cert) and its private key (tls_key)"
                    .into(),
            });
        }
        (None, None, Some(_)) => {
            return Err(ConfigError::Value {
                origin: origin_of("tls_client_ca"),
                reason: "a client CA (mutual TLS) needs the server's own tls_cert and tls_key"
                    .into(),
            });
        }
    };
    config
        .check_transport(config.network.listen)
        .map_err(|reason| ConfigError::Value {
            origin: format!("listen = {}", config.network.listen),
            reason,
        })?;
    if let Some(aws) = config.network.aws_listen {
        // The AWS endpoint carries data keys and plaintexts too (its signatures keep secrets off the wire, not
        // answers).
        config
            .check_transport(aws)
            .map_err(|reason| ConfigError::Value {
                origin: format!("aws_listen = {aws}"),
                reason,
            })?;
    }
    config
        .audit
        .disk
        .check()
        .map_err(|reason| ConfigError::Value {
            origin: "disk floors".into(),
            reason,
        })?;
    config
        .transport
        .check()
        .map_err(|reason| ConfigError::Value {
            origin: "transport limits".into(),
            reason,
        })?;
    Ok(Settings {
        config,
        file: file_path,
    })
}

/// The settings file's values, as text, by key: only known keys, each of its setting's TOML type.
fn read_file(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let refuse = |reason: String| ConfigError::File {
        file: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| refuse(format!("cannot read: {e}")))?;
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let table = toml::de::DeTable::parse(&text).map_err(|e| {
        refuse(match e.span() {
            Some(span) => format!("line {}: {}", line_of(span.start), e.message()),
            None => e.message().to_owned(),
        })
    })?;
    let mut values = HashMap::new();
    for (key, value) in table.get_ref() {
        let line = line_of(key.span().start);
        let Some(s) = setting(key.get_ref()) else {
            let keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
            return Err(refuse(format!(
                "line {line}: unknown field `{}`, expected one of {}",
                key.get_ref(),
                keys.join(", ")
            )));
        };
        let value = value.get_ref();
        let text = match (s.kind, value) {
            (Kind::Text, toml::de::DeValue::String(v)) => v.to_string(),
            (Kind::Count, toml::de::DeValue::Integer(n)) => {
                let n = n.as_str().replace('_', "");
                if n.starts_with('-') {
                    return Err(refuse(format!(
                        "line {line}: key `{}` must be a positive integer",
                        s.key
                    )));
                }
                n
            }
            (Kind::Switch, toml::de::DeValue::Boolean(b)) => b.to_string(),
            (kind, other) => {
                let wanted = match kind {
                    Kind::Text => "a string",
                    Kind::Count => "an integer",
                    Kind::Switch => "true or false",
                };
                return Err(refuse(format!(
                    "line {line}: key `{}` must be {wanted}, not {}",
                    s.key,
                    other.type_str()
                )));
            }
        };
        values.insert(s.key.to_owned(), text);
    }
    Ok(values)
}

impl fmt::Display for Settings {
    /// The effective settings, in the settings file's own format: one line per setting, a comment where it is off.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in SETTINGS.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match (s.show)(&self.config) {
                Some(value) => write!(f, "{} = {value}", s.key)?,
                None => write!(f, "# {}: off", s.key)?,
            }
        }
        Ok(())
    }
}

/// A value in the file's quoted form.
fn quoted(value: impl fmt::Display) -> String {
    format!("{:?}", value.to_string())
}

fn address(v: &str, example: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("{v:?} is not an address and port such as {example}"))
}

fn non_empty_path(v: &str, what: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    Ok(PathBuf::from(v))
}

fn switch(v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(format!("{v:?} is not true or false")),
    }
}

/// A whole number between 1 and `max`.
fn count(v: &str, max: u64) -> Result<u64, String> {
    let n: u64 = v
        .parse()
        .map_err(|_| format!("{v:?} is not a whole number"))?;
    if !(1..=max).contains(&n) {
        return Err(format!("{n} is not between 1 and {max}"));
    }
    Ok(n)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_its_own_key_variable_and_flag() {
        for (i, a) in SETTINGS.iter().enumerate() {
            assert!(a.var.starts_with("KMSD_"), "{}", a.key);
            for b in &SETTINGS[i + 1..] {
                assert_ne!(a.key, b.key);
                assert_ne!(a.var, b.var);
            }
        }
    }

    #[test]
    fn the_defaults_show_every_setting_and_load_back() {
        let defaults = Settings {
            config: Config::new(Config::DEFAULT_DATA_DIR),
            file: None,
        };
        let text = defaults.to_string();
        assert_eq!(text.lines().count(), SETTINGS.len());
        let dir = std::env::temp_dir().join(format!("kmsd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("defaults.toml");
        std::fs::write(&path, &text).expect("write");
        let loaded = load(&Flags::default().config(&path), &HashMap::new()).expect("loads");
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(loaded.to_string(), text);
    }
}
