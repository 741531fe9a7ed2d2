//! Start-up and shutdown: the data directory, the root key, storage, the gRPC server with health and reflection,
//! and the maintenance loop (automatic rotation, end of deletion windows).
//!
//! Invariants: nothing is served until the root key has been checked against the database and every key version
//! has unwrapped; on shutdown health turns NOT_SERVING first, in-flight calls drain within a bounded grace period,
//! and storage closes last.

pub mod hardening;
mod lock;
mod root_key;

pub use lock::DataDirLock;

/// Reads an existing root key file (for offline tools such as `kmsctl audit verify --db`).
pub fn read_root_key(path: &Path) -> Result<crate::crypto::RootKey, StartError> {
    root_key::load_or_create(path, false).map(|(root, _)| root)
}

/// Reads the root key file at `path`, creating it (0600) if it does not exist: for a new root key in a rotation.
pub fn read_or_create_root_key(path: &Path) -> Result<(crate::crypto::RootKey, bool), StartError> {
    root_key::load_or_create(path, true)
}

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use std::future::Future;
use std::pin::Pin;

use crate::audit::{AuditLog, AuditRecord, CheckpointSigner, Outcome, SIGNING_KEY_META};
use crate::clock::Clock;
use crate::kms::{Change, Gate, Kms, KmsError, OpenError};
use crate::metrics::Metrics;
use crate::proto;
use crate::service::time_ordered_id;
use crate::service::{
    AUDIT_SERVICE_NAME, AuditServiceImpl, AuditServiceServer, Auditor, KeyManagementServiceServer,
    KmsService, SERVICE_NAME,
};
use crate::storage::{Storage, StorageError};

/// Everything the daemon needs to start, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Defaults to `<data_dir>/root.key`.
    pub root_key_file: Option<PathBuf>,
    /// How often to look for due rotations and ended deletion windows.
    pub maintenance_interval: Duration,
    /// How long shutdown waits for in-flight calls.
    pub shutdown_grace: Duration,
    /// How often the audit writer signs a checkpoint of the chain head (also at shutdown).
    pub audit_checkpoint_interval: Duration,
    /// Where to serve Prometheus metrics (`GET /metrics`); off when `None`.
    pub metrics_listen: Option<SocketAddr>,
}

impl Config {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:50051";
    pub const DEFAULT_DATA_DIR: &'static str = "./kmsd-data";

    /// The defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen: Self::DEFAULT_LISTEN
                .parse()
                .expect("the default listen address is valid"),
            data_dir: data_dir.into(),
            root_key_file: None,
            maintenance_interval: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            audit_checkpoint_interval: Duration::from_secs(60),
            metrics_listen: None,
        }
    }

    pub fn root_key_path(&self) -> PathBuf {
        self.root_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("root.key"))
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("kmsd.db")
    }
}

/// Why the daemon could not start. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {reason}")]
    DataDir { path: PathBuf, reason: String },
    #[error("root key: {0}")]
    RootKey(String),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("database: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A daemon that is serving.
pub struct RunningServer {
    gate: Arc<MaintenanceGate>,
    _lock: DataDirLock,
    metrics_addr: Option<SocketAddr>,
    metrics_task: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
    kms: Arc<Kms>,
    audit: Arc<AuditLog>,
    health: HealthReporter,
    health_watch: JoinHandle<()>,
    shutdown: oneshot::Sender<()>,
    serve: JoinHandle<Result<(), tonic::transport::Error>>,
    maintenance: JoinHandle<()>,
    grace: Duration,
}

/// Binds `config.listen` and starts serving.
pub async fn bind_and_start(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, StartError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    start(config, listener, clock).await
}

/// Opens the data directory and serves on `listener` (tests pass one bound to `127.0.0.1:0`).
pub async fn start(
    config: &Config,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, StartError> {
    prepare_data_dir(&config.data_dir)?;
    let lock = DataDirLock::acquire(&config.data_dir)?;
    let db_path = config.database_path();
    let db_existed = db_path.exists();
    let root_path = config.root_key_path();
    let (root, created) = root_key::load_or_create(&root_path, !db_existed)?;
    if created {
        tracing::warn!(
            path = %root_path.display(),
            "created a new root key; back it up and keep it apart from the database: without it no key can be used"
        );
    }
    if !db_existed {
        create_private_file(&db_path)?;
    }
    let storage = Storage::open(&db_path)?;
    let signer = match storage.meta(SIGNING_KEY_META).await? {
        // A signing key that does not unwrap means the root key is not this database's (a database with keys
        // would fail the same way in Kms::open).
        Some(wrapped) => {
            CheckpointSigner::unwrap(&root, &wrapped).map_err(|_| OpenError::WrongRootKey)?
        }
        None => {
            let signer = CheckpointSigner::generate()
                .map_err(|e| StartError::RootKey(format!("the OS refused randomness: {e}")))?;
            storage
                .set_meta(SIGNING_KEY_META, signer.wrap(&root))
                .await?;
            signer
        }
    };
    let kms = Arc::new(Kms::open(storage, root, clock.clone()).await?);
    let metrics = Arc::new(Metrics::default());
    let audit = Arc::new(AuditLog::open(
        &db_path,
        signer,
        clock.clone(),
        config.audit_checkpoint_interval,
        metrics.clone(),
    )?);
    tracing::info!(
        public_key = %hex::encode(audit.public_key().as_bytes()),
        log_id = %audit.log_id(),
        "audit log open; checkpoints verify with this public key"
    );
    if !db_existed {
        tracing::info!(path = %db_path.display(), "created a new database");
    }
    // Deletion windows that ended while the daemon was down end now, before anything is served.
    let gate = Arc::new(MaintenanceGate {
        audit: audit.clone(),
        clock: clock.clone(),
    });
    if let Err(e) = kms.run_maintenance(&*gate).await {
        tracing::error!(error = %e, "maintenance at start-up failed; will retry");
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, true).await;
    let health_watch = tokio::spawn(follow_audit_health(audit.health(), health.clone()));
    // Both reflection versions describe every service, each other included, so `list` shows the same everywhere.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn {
            // Unary calls are small request/response pairs: Nagle's algorithm only adds latency.
            let _ = stream.set_nodelay(true);
        }
        conn
    });
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    let auditor = Arc::new(Auditor::new(audit.clone(), clock, metrics.clone()));
    let (metrics_addr, metrics_task) = match config.metrics_listen {
        None => (None, None),
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            let kms = kms.clone();
            let metrics = metrics.clone();
            let task = tokio::spawn(crate::metrics::serve(listener, move || {
                metrics.render(&kms.keys_by_state())
            }));
            tracing::info!(%bound, "serving Prometheus metrics at /metrics");
            (Some(bound), Some(task))
        }
    };
    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(KeyManagementServiceServer::new(KmsService::new(
            kms.clone(),
            auditor.clone(),
        )))
        .add_service(AuditServiceServer::new(AuditServiceImpl::new(
            audit.clone(),
            kms.clone(),
            auditor,
        )));
    let serve = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = shutdown_rx.await;
    }));
    let maintenance = tokio::spawn(maintenance_loop(
        kms.clone(),
        gate.clone(),
        config.maintenance_interval,
    ));
    tracing::info!(%local_addr, data_dir = %config.data_dir.display(), "kmsd is serving");
    Ok(RunningServer {
        gate,
        _lock: lock,
        metrics_addr,
        metrics_task,
        local_addr,
        kms,
        audit,
        health,
        health_watch,
        shutdown,
        serve,
        maintenance,
        grace: config.shutdown_grace,
    })
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where metrics are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn kms(&self) -> &Arc<Kms> {
        &self.kms
    }

    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Runs one maintenance pass now (tests advance a manual clock, then call this).
    pub async fn run_maintenance(&self) -> Result<(usize, usize), crate::kms::KmsError> {
        self.kms.run_maintenance(&*self.gate).await
    }

    /// Reports NOT_SERVING, stops accepting, lets in-flight calls finish within the grace period, writes a final
    /// audit checkpoint, then closes storage.
    pub async fn shutdown(self) {
        self.health_watch.abort();
        if let Some(task) = &self.metrics_task {
            task.abort();
        }
        set_health(&self.health, false).await;
        self.maintenance.abort();
        let _ = self.shutdown.send(());
        let mut serve = self.serve;
        match tokio::time::timeout(self.grace, &mut serve).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "server stopped with an error"),
            Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
            Err(_) => {
                tracing::warn!(grace = ?self.grace, "in-flight calls did not finish within the grace period");
                serve.abort();
            }
        }
        self.audit.close().await;
        self.kms.close().await;
        tracing::info!("kmsd stopped");
    }
}

/// The KMS and audit services serve only while audit records can be written: without the log, no call can be
/// answered, so load balancers should look elsewhere.
async fn set_health(health: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for service in ["", SERVICE_NAME, AUDIT_SERVICE_NAME] {
        health.set_service_status(service, status).await;
    }
}

async fn follow_audit_health(
    mut healthy: tokio::sync::watch::Receiver<bool>,
    health: HealthReporter,
) {
    while healthy.changed().await.is_ok() {
        let serving = *healthy.borrow_and_update();
        if !serving {
            tracing::error!("audit log writes are failing: reporting NOT_SERVING");
        }
        set_health(&health, serving).await;
    }
}

/// Records the changes the daemon makes on its own (automatic rotation, the end of a deletion window) in the audit
/// log before they are stored, as a call's changes are: no key changes without a record.
struct MaintenanceGate {
    audit: Arc<AuditLog>,
    clock: Arc<dyn Clock>,
}

impl Gate for MaintenanceGate {
    fn approve(
        &self,
        change: Change,
    ) -> Pin<Box<dyn Future<Output = Result<(), KmsError>> + Send + '_>> {
        Box::pin(async move {
            let now = self.clock.now();
            let reason = match change.event {
                "AutomaticRotation" => "automatic: the key's rotation period elapsed",
                "KeyDestroyed" => {
                    "automatic: the key's deletion window ended; its material is destroyed"
                }
                _ => "automatic",
            };
            let record = AuditRecord {
                event_id: time_ordered_id(now),
                event_time: now.rfc3339_millis(),
                event_name: change.event.to_owned(),
                principal: "kmsd".to_owned(),
                source_address: "internal".to_owned(),
                user_agent: concat!("kmsd/", env!("CARGO_PKG_VERSION"), " maintenance").to_owned(),
                request_id: time_ordered_id(now),
                key_id: Some(change.key_id.to_string()),
                key_version: change.key_version,
                key_alias: None,
                parameters: Default::default(),
                encryption_context: Default::default(),
                reason: Some(reason.to_owned()),
                outcome: Outcome::Success,
                error_code: None,
                error_message: None,
            };
            self.audit
                .append(record)
                .await
                .map(drop)
                .map_err(|_| KmsError::AuditUnavailable)
        })
    }
}

async fn maintenance_loop(kms: Arc<Kms>, gate: Arc<MaintenanceGate>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // The first tick is immediate; start-up already ran a pass.
    loop {
        ticks.tick().await;
        if let Err(e) = kms.run_maintenance(&*gate).await {
            tracing::error!(error = %e, "maintenance failed; will retry");
        }
    }
}

/// SQLite gives the WAL and shared-memory files the database file's mode, so creating it 0600 keeps all three
/// private.
fn create_private_file(path: &Path) -> Result<(), StartError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map(drop)
        .map_err(|e| StartError::DataDir {
            path: path.to_owned(),
            reason: format!("cannot create the database file: {e}"),
        })
}

fn prepare_data_dir(path: &Path) -> Result<(), StartError> {
    let err = |reason: String| StartError::DataDir {
        path: path.to_owned(),
        reason,
    };
    if path.exists() {
        if !path.is_dir() {
            return Err(err("exists and is not a directory".into()));
        }
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(path)
        .map_err(|e| err(format!("cannot create: {e}")))?;
    tracing::info!(path = %path.display(), "created the data directory");
    Ok(())
}
