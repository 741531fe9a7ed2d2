//! The composition root: [`start`] opens the daemon's state (`state.rs`: files, keys, storage, the bootstrap in
//! `bootstrap.rs`; no socket) and then serves it (the gRPC server with health and reflection behind the limits of
//! `transport.rs`, metrics, and the loop of `maintenance.rs`); [`RunningServer::shutdown`] takes it down.
//!
//! Invariants: nothing is served until the root key has been checked against the database and every key version
//! has unwrapped; on shutdown health turns NOT_SERVING first, in-flight calls drain within a bounded grace period,
//! and storage closes last.

mod bootstrap;
pub mod hardening;
mod lock;
mod maintenance;
mod relocate;
mod root_key;
mod state;
pub mod transport;

pub use state::{State, open};

pub use bootstrap::{BOOTSTRAP_MARK, CRASH_AT_VARIABLE, Recovered, recover_admin};
pub use lock::DataDirLock;
pub use relocate::{Moved, move_to_postgres};

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
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::config::{Config, TlsFiles};
use crate::kms::{Kms, OpenError};
use crate::proto;
use crate::service::{
    ADMIN_SERVICE_NAME, AUDIT_SERVICE_NAME, AdminServiceImpl, AdminServiceServer, AuditServiceImpl,
    AuditServiceServer, Auditor, KeyManagementServiceServer, KmsService, RecordUnhandledLayer,
    SERVICE_NAME,
};
use crate::storage::StorageError;

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
    #[error("{0}")]
    Transport(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("bootstrap: {0}")]
    Bootstrap(String),
}

/// A daemon that is serving.
pub struct RunningServer {
    auditor: Arc<Auditor>,
    summaries: JoinHandle<()>,
    gate: Arc<maintenance::MaintenanceGate>,
    _lock: DataDirLock,
    metrics_addr: Option<SocketAddr>,
    metrics_task: Option<JoinHandle<()>>,
    aws_addr: Option<SocketAddr>,
    aws_task: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
    kms: Arc<Kms>,
    audit: Arc<AuditLog>,
    health: HealthReporter,
    health_watch: JoinHandle<()>,
    shutdown: oneshot::Sender<()>,
    serve: JoinHandle<Result<(), tonic::transport::Error>>,
    maintenance: JoinHandle<()>,
    follower: JoinHandle<()>,
    grace: Duration,
}

/// Binds `config.network.listen` and starts serving.
pub async fn bind_and_start(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, StartError> {
    let listener = TcpListener::bind(config.network.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.network.listen,
            source,
        })?;
    start(config, listener, clock).await
}

/// Opens the state `config` names and serves it on `listener` (tests pass one bound to `127.0.0.1:0`).
pub async fn start(
    config: &Config,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, StartError> {
    // A transport that would be refused is refused before any file is touched.
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.network.listen,
        source,
    })?;
    config
        .check_transport(local_addr)
        .map_err(StartError::Transport)?;
    let tls = config.network.tls.as_ref().map(tls_config).transpose()?;
    let aws = bind_aws(config).await?;
    let state = open(config, clock).await?;
    serve(config, state, listener, local_addr, tls, aws).await
}

/// A listener on `addr`, and the address it bound (the port the OS chose for port 0).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok((listener, bound))
}

/// The AWS endpoint's listener and TLS settings, bound and read before anything is opened.
struct AwsListener {
    listener: TcpListener,
    bound: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

async fn bind_aws(config: &Config) -> Result<Option<AwsListener>, StartError> {
    let Some(addr) = config.network.aws_listen else {
        return Ok(None);
    };
    let tls = match &config.network.tls {
        None => None,
        Some(files) => Some(
            crate::aws::endpoint::tls_acceptor(&files.cert, &files.key).map_err(StartError::Tls)?,
        ),
    };
    let (listener, bound) = bind(addr).await?;
    config
        .check_transport(bound)
        .map_err(StartError::Transport)?;
    Ok(Some(AwsListener {
        listener,
        bound,
        tls,
    }))
}

/// Serves open state: health, reflection and the kmsd services behind the transport's limits, the metrics
/// listener, and the periodic tasks (summaries of refused calls, maintenance).
async fn serve(
    config: &Config,
    state: State,
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<tonic::transport::ServerTlsConfig>,
    aws: Option<AwsListener>,
) -> Result<RunningServer, StartError> {
    let State {
        lock,
        kms,
        auth,
        audit,
        metrics,
        clock,
        gate,
        storage,
        currency,
    } = state;

    let (health, health_service) = tonic_health::server::health_reporter();
    let writable = audit.health();
    let space = audit.space().changes();
    set_health(&health, serving(&writable, &space, &currency)).await;
    let health_watch = tokio::spawn(follow_health(
        writable,
        space,
        currency.clone(),
        health.clone(),
    ));
    let follower = tokio::spawn(crate::replica::follow(
        storage,
        kms.clone(),
        auth.clone(),
        currency.clone(),
    ));
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

    let limits = transport::TransportLimits {
        max_connections: transport::fit_connections_to_file_limit(config.transport.max_connections),
        ..config.transport.clone()
    };
    let admission = transport::Admission::new(limits.clone());
    let incoming = transport::accept(listener, admission.clone());
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    let auditor = Arc::new(Auditor::new(
        audit.clone(),
        auth.clone(),
        clock,
        metrics.clone(),
        currency,
    ));
    let (metrics_addr, metrics_task) = match config.network.metrics_listen {
        None => (None, None),
        Some(addr) => {
            let (listener, bound) = bind(addr).await?;
            let kms = kms.clone();
            let metrics = metrics.clone();
            let audit = audit.clone();
            let task = tokio::spawn(crate::metrics::serve(listener, move || {
                let space = audit.space();
                let report = space.report();
                let disk = crate::metrics::DiskGauges {
                    free_bytes: report.free_bytes,
                    reusable_bytes: report.reusable_bytes,
                    database_bytes: report.database_bytes,
                    soft_floor: space.limits().soft_floor,
                    hard_floor: space.limits().hard_floor,
                    level: space.level() as u64,
                };
                metrics.render(&kms.keys_by_state(), &disk)
            }));
            tracing::info!(%bound, "serving Prometheus metrics at /metrics");
            (Some(bound), Some(task))
        }
    };
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(limits.keepalive_interval)
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        // Header blocks are small (a token, a request id, a reason): 16 KiB bounds what a stream may hold.
        .http2_max_header_list_size(16 * 1024);
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| StartError::Tls(e.to_string()))?;
    }
    let max_message = limits.max_message_bytes;
    let router = builder
        // Outermost: a call refused by the limits below is recorded too.
        .layer(RecordUnhandledLayer(auditor.clone()))
        .layer(transport::CallLimitLayer(admission.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            KeyManagementServiceServer::new(KmsService::new(
                kms.clone(),
                auth.clone(),
                auditor.clone(),
            ))
            .max_decoding_message_size(max_message),
        )
        .add_service(
            AdminServiceServer::new(AdminServiceImpl::new(auth.clone(), auditor.clone()))
                .max_decoding_message_size(max_message),
        )
        .add_service(
            AuditServiceServer::new(AuditServiceImpl::new(
                audit.clone(),
                kms.clone(),
                auditor.clone(),
                config.network.aws_home.clone(),
            ))
            .max_decoding_message_size(max_message),
        );
    let (aws_addr, aws_task) = match aws {
        None => (None, None),
        Some(AwsListener {
            listener,
            bound,
            tls,
        }) => {
            let endpoint = crate::aws::endpoint::AwsEndpoint::new(
                KmsService::new(kms.clone(), auth.clone(), auditor.clone()),
                auditor.clone(),
                config.network.aws_home.clone(),
                admission.clone(),
            );
            let task =
                tokio::spawn(endpoint.serve(transport::accept(listener, admission.clone()), tls));
            tracing::info!(
                %bound,
                region = config.network.aws_home.region(),
                account = config.network.aws_home.account(),
                tls = config.network.tls.is_some(),
                "serving AWS KMS's JSON protocol (requests signed with kmsd access keys)"
            );
            (Some(bound), Some(task))
        }
    };
    let serve = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = shutdown_rx.await;
    }));
    let summaries = tokio::spawn({
        let auditor = auditor.clone();
        let every = config.audit.summary_interval;
        async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                auditor.flush_summary().await;
            }
        }
    });
    let maintenance = tokio::spawn(maintenance::maintenance_loop(
        kms.clone(),
        gate.clone(),
        config.maintenance_interval,
    ));
    tracing::info!(
        %local_addr,
        data_dir = %config.data.dir.display(),
        tls = config.network.tls.is_some(),
        mutual_tls = config.network.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        "kmsd is serving"
    );
    Ok(RunningServer {
        auditor,
        summaries,
        gate,
        _lock: lock,
        metrics_addr,
        metrics_task,
        aws_addr,
        aws_task,
        local_addr,
        kms,
        audit,
        health,
        health_watch,
        shutdown,
        serve,
        maintenance,
        follower,
        grace: config.network.shutdown_grace,
    })
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the AWS endpoint is served, if it is.
    pub fn aws_addr(&self) -> Option<SocketAddr> {
        self.aws_addr
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
        if let Some(task) = &self.aws_task {
            task.abort();
        }
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
        self.summaries.abort();
        self.follower.abort();
        self.auditor.flush_summary().await;
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
    for service in ["", SERVICE_NAME, AUDIT_SERVICE_NAME, ADMIN_SERVICE_NAME] {
        health.set_service_status(service, status).await;
    }
}

/// Whether calls can be served: the audit log takes writes, the disk is above its hard floor, and this replica's
/// caches are current.
fn serving(
    writable: &tokio::sync::watch::Receiver<bool>,
    space: &tokio::sync::watch::Receiver<crate::audit::space::Level>,
    currency: &crate::replica::Currency,
) -> bool {
    *writable.borrow()
        && *space.borrow() != crate::audit::space::Level::Critical
        && currency.is_current()
}

async fn follow_health(
    mut writable: tokio::sync::watch::Receiver<bool>,
    mut space: tokio::sync::watch::Receiver<crate::audit::space::Level>,
    currency: Arc<crate::replica::Currency>,
    health: HealthReporter,
) {
    // Currency lapses with time alone (a follower stuck on an unreachable database says nothing), so it is also
    // looked at on a timer.
    let mut ticks = tokio::time::interval(crate::replica::POLL_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was = serving(&writable, &space, &currency);
    loop {
        tokio::select! {
            changed = writable.changed() => if changed.is_err() { return },
            changed = space.changed() => if changed.is_err() { return },
            _ = ticks.tick() => {}
        }
        let now = serving(&writable, &space, &currency);
        if now == was {
            continue;
        }
        if !now {
            tracing::error!(
                audit_writable = *writable.borrow(),
                current = currency.is_current(),
                "calls cannot be answered (audit records cannot be made durable, or this replica is behind the \
                 others): reporting NOT_SERVING"
            );
        } else {
            tracing::warn!("calls can be answered again: reporting SERVING");
        }
        set_health(&health, now).await;
        was = now;
    }
}

/// rustls settings from the configured PEM files.
fn tls_config(files: &TlsFiles) -> Result<tonic::transport::ServerTlsConfig, StartError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |path: &PathBuf, what: &str| {
        std::fs::read(path)
            .map_err(|e| StartError::Tls(format!("cannot read the {what} {}: {e}", path.display())))
    };
    let cert = read(&files.cert, "certificate")?;
    let key = read(&files.key, "private key")?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &files.client_ca {
        // Optional: callers without a certificate can still authenticate with a bearer token, and health checks
        // need none.
        config = config
            .client_ca_root(Certificate::from_pem(read(ca, "client CA")?))
            .client_auth_optional(true);
    }
    Ok(config)
}
