use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kmsd::clock::ManualClock;
use kmsd::config::Config;
use kmsd::server::{self, RunningServer, StartError};
use kmsd_proto::pb::key_management_service_client::KeyManagementServiceClient;
use kmsd_proto::pb::*;
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// A connection that authenticates as the bootstrap administrator.
pub type AuthChannel = kmsd_client::AuthChannel;
pub type Client = KeyManagementServiceClient<AuthChannel>;

/// A daemon on an ephemeral loopback port with its own data directory and a clock the test moves.
pub struct TestServer {
    pub dir: Arc<TempDir>,
    pub clock: ManualClock,
    pub server: RunningServer,
    /// The CA (PEM) that signed the daemon's certificate, when it serves TLS.
    pub tls_ca: Option<String>,
}

impl TestServer {
    pub async fn start() -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::start_in(dir, ManualClock::new())
            .await
            .expect("server starts")
    }

    pub async fn start_in(dir: Arc<TempDir>, clock: ManualClock) -> Result<Self, StartError> {
        let server = try_start(&config(dir.path()), clock.clone()).await?;
        Ok(TestServer {
            dir,
            clock,
            server,
            tls_ca: None,
        })
    }

    /// A daemon started with `config` (limits or floors a test sets) on `dir`.
    pub async fn start_with(dir: Arc<TempDir>, config: &Config) -> Self {
        let clock = ManualClock::new();
        let server = try_start(config, clock.clone())
            .await
            .expect("server starts");
        TestServer {
            dir,
            clock,
            server,
            tls_ca: None,
        }
    }

    /// A daemon that also serves Prometheus metrics, on an ephemeral loopback port ([`scrape`] reads them).
    pub async fn start_with_metrics() -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut config = config(dir.path());
        config.network.metrics_listen = Some("127.0.0.1:0".parse().expect("an address"));
        Self::start_with(dir, &config).await
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn endpoint(&self) -> String {
        match self.tls_ca {
            None => format!("http://{}", self.server.local_addr()),
            Some(_) => format!("https://localhost:{}", self.server.local_addr().port()),
        }
    }

    /// The administrator's token, as the daemon wrote it on first start.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_owned()
    }

    /// A generated client authenticated as the administrator.
    pub async fn client(&self) -> Client {
        KeyManagementServiceClient::new(self.channel().await)
    }

    /// A connection whose calls carry the administrator's token.
    pub async fn channel(&self) -> AuthChannel {
        self.channel_as(Some(&self.admin_token())).await
    }

    /// A connection whose calls carry `token`, or no credentials at all.
    pub async fn channel_as(&self, token: Option<&str>) -> AuthChannel {
        let auth = kmsd_client::BearerAuth::new(token).expect("token");
        AuthChannel::new(self.raw_channel().await, auth)
    }

    /// A connection without credentials.
    pub async fn raw_channel(&self) -> Channel {
        let mut builder = kmsd_client::ClientBuilder::new(self.endpoint());
        if let Some(ca) = &self.tls_ca {
            builder = builder.ca_certificate(ca.as_bytes());
        }
        builder.channel().await.expect("connect")
    }

    /// The client library, authenticated as the administrator.
    pub async fn kms_client(&self) -> kmsd_client::Client {
        let mut builder =
            kmsd_client::ClientBuilder::new(self.endpoint()).token(self.admin_token());
        if let Some(ca) = &self.tls_ca {
            builder = builder.ca_certificate(ca.as_bytes());
        }
        builder.connect().await.expect("connect")
    }

    /// Stops the daemon and starts another on the same data directory and clock.
    pub async fn restart(self) -> Self {
        let TestServer {
            dir, clock, server, ..
        } = self;
        server.shutdown().await;
        Self::start_in(dir, clock).await.expect("server restarts")
    }

    pub async fn stop(self) -> Arc<TempDir> {
        self.server.shutdown().await;
        self.dir
    }
}

/// The records a new daemon makes before any call: the administrator's CreatePrincipal and CreateToken.
pub const BOOTSTRAP_RECORDS: u64 = 2;

/// The floors tests run with, so that how full the machine's disk is does not decide what they see.
pub const TEST_DISK: kmsd::audit::space::SpaceLimits = kmsd::audit::space::SpaceLimits {
    soft_floor: 16 << 20,
    hard_floor: 4 << 20,
};

pub fn config(data_dir: &Path) -> Config {
    let mut config = Config::new(PathBuf::from(data_dir));
    config.audit.disk = TEST_DISK;
    config
}

pub async fn try_start(config: &Config, clock: ManualClock) -> Result<RunningServer, StartError> {
    // The daemon's log, shown with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("kmsd=info")
        .with_test_writer()
        .try_init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    server::start(config, listener, Arc::new(clock)).await
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub fn ctx(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub async fn create_key(client: &mut Client, alias: &str) -> KeyMetadata {
    create_key_with(
        client,
        CreateKeyRequest {
            description: "test key".into(),
            alias: alias.into(),
            ..Default::default()
        },
    )
    .await
}

/// Creates a key as `request` asks and returns its metadata.
pub async fn create_key_with(client: &mut Client, request: CreateKeyRequest) -> KeyMetadata {
    client
        .create_key(request)
        .await
        .expect("CreateKey")
        .into_inner()
        .key_metadata
        .expect("metadata")
}

pub async fn describe(client: &mut Client, key_id: &str) -> KeyMetadata {
    client
        .describe_key(DescribeKeyRequest {
            key_id: key_id.into(),
        })
        .await
        .expect("DescribeKey")
        .into_inner()
        .key_metadata
        .expect("metadata")
}

pub async fn encrypt(
    client: &mut Client,
    key_id: &str,
    plaintext: &[u8],
    context: &[(&str, &str)],
) -> EncryptResponse {
    client
        .encrypt(EncryptRequest {
            key_id: key_id.into(),
            plaintext: plaintext.to_vec(),
            encryption_context: ctx(context),
            encryption_algorithm: String::new(),
        })
        .await
        .expect("Encrypt")
        .into_inner()
}

pub async fn decrypt(
    client: &mut Client,
    blob: &[u8],
    context: &[(&str, &str)],
) -> Result<DecryptResponse, Status> {
    client
        .decrypt(DecryptRequest {
            ciphertext_blob: blob.to_vec(),
            key_id: String::new(),
            encryption_context: ctx(context),
            encryption_algorithm: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Asserts a call failed with `code` and a message containing every one of `fragments`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    fragments: &[&str],
) -> Status {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    for f in fragments {
        assert!(
            status.message().contains(f),
            "message {:?} should mention {f:?}",
            status.message()
        );
    }
    status
}

pub fn state(meta: &KeyMetadata) -> KeyState {
    KeyState::try_from(meta.state).expect("known state")
}

pub type AuditClient = kmsd_proto::pb::audit_service_client::AuditServiceClient<AuthChannel>;

impl TestServer {
    pub async fn audit_client(&self) -> AuditClient {
        AuditClient::new(self.channel().await)
    }
}

/// A request carrying an `x-request-id` and an `x-kms-reason`, as a careful caller sends them.
pub fn tagged<T>(message: T, request_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    request.metadata_mut().insert(
        "x-kms-reason",
        format!("because {request_id}").parse().unwrap(),
    );
    request
}

/// Every audit record with this request id.
pub async fn events_for(server: &TestServer, request_id: &str) -> Vec<AuditEvent> {
    server
        .audit_client()
        .await
        .query_events(QueryEventsRequest {
            request_id: request_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

/// The one audit record with this request id.
pub async fn one_event(server: &TestServer, request_id: &str) -> AuditEvent {
    let mut events = events_for(server, request_id).await;
    assert_eq!(
        events.len(),
        1,
        "exactly one record for {request_id}: {events:?}"
    );
    events.remove(0)
}

pub async fn verify_log(server: &TestServer) -> VerifyLogResponse {
    server
        .audit_client()
        .await
        .verify_log(VerifyLogRequest::default())
        .await
        .unwrap()
        .into_inner()
}

pub fn outcome(e: &AuditEvent) -> Outcome {
    Outcome::try_from(e.outcome).unwrap()
}

/// The bytes of every database file in `dir` (`kmsd.db` and, if present, its WAL and shared memory).
pub fn database_files(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("kmsd.db")
        {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    bytes
}

/// The kmsd binary itself, serving on an ephemeral loopback port (it logs the address it bound), its JSON log
/// captured: for what only a real process shows (its log, its memory, its file descriptors, being killed).
pub struct Daemon {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    pub data_dir: PathBuf,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stopped: bool,
}

/// A test that fails part-way leaves no daemon behind.
impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Daemon {
    /// Starts `kmsd serve` on `data_dir` with `args` and `env` added, at debug level, and waits until it serves.
    /// Returns the log so far if it exits first.
    pub fn start(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Daemon, String> {
        Self::start_with_open_files(data_dir, args, env, None)
    }

    /// As [`Daemon::start`], under a soft and hard limit of `open_files` descriptors when given.
    pub fn start_with_open_files(
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        open_files: Option<u64>,
    ) -> Result<Daemon, String> {
        use std::io::{BufRead, BufReader};
        let mut cmd = match open_files {
            None => std::process::Command::new(env!("CARGO_BIN_EXE_kmsd")),
            Some(n) => {
                let mut sh = std::process::Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_kmsd"));
                sh
            }
        };
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--log-level", "debug"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env_remove("KMSD_LOG")
            .env_remove("KMSD_TOKEN")
            .env("KMSD_DISK_SOFT_FLOOR", TEST_DISK.soft_floor.to_string())
            .env("KMSD_DISK_HARD_FLOOR", TEST_DISK.hard_floor.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (name, value) in env {
            cmd.env(name, value);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut log = Vec::new();
        let mut addr = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains("kmsd is serving") {
                let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
                addr = parsed["local_addr"].as_str().map(|a| a.parse().unwrap());
            }
            log.push(line);
            if addr.is_some() {
                break;
            }
        }
        let Some(addr) = addr else {
            let _ = child.wait();
            return Err(log.join("\n"));
        };
        let log = Arc::new(std::sync::Mutex::new(log));
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            })
        };
        Ok(Daemon {
            child,
            addr,
            data_dir: data_dir.to_owned(),
            log,
            reader: Some(reader),
            stopped: false,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_owned()
    }

    /// A connection whose calls carry `token`, or nothing.
    pub async fn channel_as(&self, token: Option<&str>) -> AuthChannel {
        let channel = kmsd_client::ClientBuilder::new(self.endpoint())
            .channel()
            .await
            .expect("connect");
        AuthChannel::new(channel, kmsd_client::BearerAuth::new(token).expect("token"))
    }

    /// A generated client whose calls carry `token`, or nothing.
    pub async fn client_as(&self, token: Option<&str>) -> Client {
        KeyManagementServiceClient::new(self.channel_as(token).await)
    }

    /// The audit service, as the administrator.
    pub async fn audit_client(&self) -> AuditClient {
        AuditClient::new(self.channel_as(Some(&self.admin_token())).await)
    }

    /// The resident set size, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Open file descriptors, from /proc.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }

    /// Stops it with SIGTERM and returns its whole log; panics unless it exits cleanly.
    pub fn stop(mut self) -> String {
        self.stopped = true;
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        let log = self.log.lock().unwrap().join("\n");
        assert!(status.success(), "kmsd exited with {status:?}: {log}");
        log
    }
}

/// Runs kmsctl against `endpoint` with `token` (none if empty) and returns its output.
pub fn kmsctl_as(endpoint: &str, token: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kmsctl"));
    cmd.args(args)
        .env("KMSD_ENDPOINT", endpoint)
        .env_remove("KMSD_TOKEN")
        .env_remove("KMSD_TOKEN_FILE");
    if !token.is_empty() {
        cmd.env("KMSD_TOKEN", token);
    }
    cmd.output().unwrap()
}

/// The whole HTTP response to `GET path` from the metrics listener at `addr`, read the way Prometheus does.
pub fn scrape(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: kmsd\r\nAccept: text/plain\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}
