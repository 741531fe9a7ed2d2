//! The PostgreSQL backend: what replicas share when one machine is not enough.
//!
//! Connections come from a `deadpool-postgres` pool of `tokio-postgres` clients, over TLS (rustls) when the URL asks
//! for it. A URL may name several hosts with `target_session_attrs=read-write`, so a replica reconnects to whichever
//! server is primary after a failover. Migrations (`migrations/postgres/`) run in one transaction under an advisory
//! lock, so replicas starting together apply them once. The audit writer and readers are blocking (the writer is a
//! thread of its own, readers run off the async workers); they run their queries on the daemon's runtime.
//!
//! Invariants: the password of the URL is never logged or shown ([`DatabaseUrl`]'s `Display` leaves it out); a
//! commit has returned before anything is reported stored.

mod audit;
mod import;
mod keys;

pub use audit::{PgAuditReader, PgAuditWriter};
pub use import::Imported;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::config::{Host, SslMode};

use super::StorageError;

/// Every migration in order; `kmsd_migrations` holds the numbers applied.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_schema.sql",
        include_str!("../../../migrations/postgres/0001_schema.sql"),
    ),
    (
        "0002_changes.sql",
        include_str!("../../../migrations/postgres/0002_changes.sql"),
    ),
    (
        "0003_access_keys.sql",
        include_str!("../../../migrations/postgres/0003_access_keys.sql"),
    ),
    (
        "0004_key_kinds.sql",
        include_str!("../../../migrations/postgres/0004_key_kinds.sql"),
    ),
];

/// Advisory lock ids: `kmsd` in ASCII in the high half, the purpose in the low.
const LOCK_BASE: i64 = 0x6b6d_7364 << 32;
pub(crate) const MIGRATION_LOCK: i64 = LOCK_BASE | 1;
pub(crate) const CHAIN_LOCK: i64 = LOCK_BASE | 2;
/// Held (session-scoped) by a replica while it validates, records and stores a management change.
pub(crate) const CHANGE_LOCK: i64 = LOCK_BASE | 3;

/// Held (session-scoped) by a replica while it checks for and makes the first administrator.
pub(crate) const BOOTSTRAP_LOCK: i64 = LOCK_BASE | 4;

/// The channel the change log notifies on commit.
pub(crate) const CHANGES_CHANNEL: &str = "kmsd_changes";

/// Connections a replica's pool holds at most: the audit writer, the key and access stores, and readers.
const POOL_SIZE: usize = 16;
/// How long a connection attempt, or a wait for a pooled connection, may take before the call fails (closed).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A `postgres://` URL (or libpq key=value string), parsed. Shown without its password.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: tokio_postgres::Config,
    /// `sslrootcert`: the CA that signs the server's certificate (PEM).
    ca_file: Option<PathBuf>,
}

impl DatabaseUrl {
    /// Parses `url`. Accepts what `tokio-postgres` does (several hosts, `target_session_attrs`, `sslmode`
    /// `disable`/`prefer`/`require`, `connect_timeout`, ...) plus libpq's `sslrootcert`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, ca_file) = take_param(url, "sslrootcert");
        let mut config = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| format!("not a PostgreSQL URL (postgres://user@host/db): {e}"))?;
        if config.get_hosts().is_empty() {
            return Err("a PostgreSQL URL must name a host (postgres://user@host/db)".into());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("kmsd");
        }
        if ca_file.is_some() && config.get_ssl_mode() == SslMode::Disable {
            return Err("sslrootcert is set but sslmode=disable".into());
        }
        if ca_file.is_none() && config.get_ssl_mode() == SslMode::Require {
            return Err(
                "sslmode=require needs sslrootcert=<CA file>: kmsd verifies the database server's certificate"
                    .into(),
            );
        }
        Ok(DatabaseUrl {
            config,
            ca_file: ca_file.map(PathBuf::from),
        })
    }

    /// Whether connections use TLS: when a CA to verify the server with is given.
    fn tls(&self) -> bool {
        self.ca_file.is_some()
    }

    /// Whether every host is a Unix socket (where TLS means nothing).
    fn local_only(&self) -> bool {
        self.config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, Host::Unix(_)))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        write!(f, "postgres://")?;
        if let Some(user) = c.get_user() {
            write!(f, "{user}@")?;
        }
        let ports = c.get_ports();
        for (i, host) in c.get_hosts().iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            match host {
                Host::Tcp(name) => write!(f, "{name}")?,
                Host::Unix(path) => write!(f, "[{}]", path.display())?,
            }
            if let Some(port) = ports.get(i).or(ports.first()) {
                write!(f, ":{port}")?;
            }
        }
        write!(f, "/{}", c.get_dbname().unwrap_or(""))?;
        let mut query = Vec::new();
        if c.get_target_session_attrs() == tokio_postgres::config::TargetSessionAttrs::ReadWrite {
            query.push("target_session_attrs=read-write".to_owned());
        }
        if let Some(ca) = &self.ca_file {
            query.push(format!("sslmode=require&sslrootcert={}", ca.display()));
        }
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Removes `name=value` from a URL's query (or a key=value string) and returns the rest and the value.
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let prefix = format!("{name}=");
    let mut value = None;
    // Keeps every part but `name=...`, whose value it takes.
    let mut split = |parts: &mut dyn Iterator<Item = &str>| -> Vec<String> {
        parts
            .filter(|part| match part.strip_prefix(&prefix) {
                Some(v) => {
                    value = Some(v.to_owned());
                    false
                }
                None => true,
            })
            .map(str::to_owned)
            .collect()
    };
    let rest = match url.split_once('?') {
        Some((base, query)) => {
            let kept = split(&mut query.split('&'));
            if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
        None if !url.contains("://") => split(&mut url.split_whitespace()).join(" "),
        None => url.to_owned(),
    };
    (rest, value)
}

/// An error's own words: the server's code and message for database errors (tokio-postgres shows only
/// "db error").
pub fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

impl From<PoolError> for StorageError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => StorageError::Postgres(e),
            other => StorageError::Connect(other.to_string()),
        }
    }
}

/// What kmsd found at start about the database it serves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Commits wait for a synchronous standby, so a failover loses no answered call's record.
    pub synchronous: bool,
    /// kmsd's role could rewrite or remove audit records (superuser, owner, or UPDATE/TRUNCATE granted).
    pub can_rewrite_audit: bool,
}

/// The pool and where it leads. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    setup: Option<Setup>,
    url: Arc<DatabaseUrl>,
    /// The runtime the pool's connections live on, for the blocking audit writer and readers.
    runtime: tokio::runtime::Handle,
}

impl PgStore {
    /// Connects, checks the server answers, and migrates.
    pub async fn open(url: &DatabaseUrl) -> Result<Self, StorageError> {
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if url.tls() {
            Manager::from_config(url.config.clone(), tls(url)?, manager_config)
        } else {
            if !url.local_only() {
                tracing::warn!(
                    database = %url,
                    "connecting to PostgreSQL without TLS: add sslmode=require&sslrootcert=<CA file> to the URL \
                     unless the network between kmsd and the database is private"
                );
            }
            Manager::from_config(url.config.clone(), tokio_postgres::NoTls, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StorageError::Connect(e.to_string()))?;
        let store = PgStore {
            pool,
            setup: None,
            url: Arc::new(url.clone()),
            runtime: tokio::runtime::Handle::current(),
        };
        store.migrate().await?;
        let setup = store.report_setup().await?;
        Ok(PgStore {
            setup: Some(setup),
            ..store
        })
    }

    /// What was found at start.
    pub fn setup(&self) -> Option<Setup> {
        self.setup
    }

    /// Says at start what the database's replication and this role's privileges mean for kmsd's promises.
    async fn report_setup(&self) -> Result<Setup, StorageError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT current_setting('synchronous_standby_names'),
                        current_setting('synchronous_commit'),
                        pg_is_in_recovery(),
                        current_user::text,
                        (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                        pg_has_role(current_user, (SELECT tableowner FROM pg_tables
                                                   WHERE tablename = 'audit_events' AND schemaname = current_schema()),
                                    'USAGE'),
                        has_table_privilege('audit_events', 'UPDATE')
                            OR has_table_privilege('audit_events', 'TRUNCATE')
                            OR has_table_privilege('audit_checkpoints', 'UPDATE')
                            OR has_table_privilege('audit_checkpoints', 'DELETE')
                            OR has_table_privilege('audit_prunes', 'DELETE')",
                &[],
            )
            .await?;
        let (standbys, commit, in_recovery): (String, String, bool) =
            (row.get(0), row.get(1), row.get(2));
        let (role, superuser, owner, rewrites): (String, bool, bool, bool) =
            (row.get(3), row.get(4), row.get(5), row.get(6));
        if in_recovery {
            tracing::warn!(
                database = %self.url,
                "the database is a standby (read-only): calls will be refused until it is promoted; add the \
                 primary to database_url with target_session_attrs=read-write"
            );
        }
        let synchronous =
            !standbys.trim().is_empty() && matches!(commit.as_str(), "on" | "remote_apply");
        if synchronous {
            tracing::info!(
                synchronous_standby_names = %standbys,
                synchronous_commit = %commit,
                "synchronous replication: a commit, and so every answered call's audit record, is on a standby \
                 before the call is answered, so a failover loses none"
            );
        } else {
            tracing::warn!(
                synchronous_standby_names = %standbys,
                synchronous_commit = %commit,
                "no synchronous replication: a failover to a standby can lose the audit records of calls already \
                 answered; set synchronous_standby_names (and synchronous_commit = on) on the primary to keep \
                 \"answered implies recorded\" across failovers"
            );
        }
        if superuser || owner || rewrites {
            tracing::warn!(
                %role,
                superuser,
                owns_the_audit_tables = owner,
                may_update_or_truncate_audit_records = rewrites,
                "this role can rewrite or remove audit records (or drop the triggers that refuse it): run kmsd as \
                 a role with only the privileges deploy/postgres-roles.sql grants, and migrate as the owner"
            );
        }
        Ok(Setup {
            synchronous,
            can_rewrite_audit: superuser || owner || rewrites,
        })
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StorageError> {
        Ok(self.pool.get().await?)
    }

    async fn migrate(&self) -> Result<(), StorageError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        // Looked up first: a role without CREATE (the least-privilege role) still starts on a migrated database.
        let exists: bool = tx
            .query_one("SELECT to_regclass('kmsd_migrations') IS NOT NULL", &[])
            .await?
            .get(0);
        if !exists {
            tx.batch_execute(
                "CREATE TABLE kmsd_migrations (
                     version    INTEGER PRIMARY KEY,
                     name       TEXT NOT NULL,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                 )",
            )
            .await?;
        }
        let found: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM kmsd_migrations", &[])
            .await?
            .get(0);
        let known = MIGRATIONS.len() as i64;
        if i64::from(found) > known {
            return Err(StorageError::SchemaTooNew {
                found: found.into(),
                known,
            });
        }
        for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.batch_execute(sql).await.map_err(|e| {
                StorageError::Corrupt(format!("migration {name} failed: {}", describe_error(&e)))
            })?;
            tx.execute(
                "INSERT INTO kmsd_migrations (version, name) VALUES ($1, $2)",
                &[&(index as i32 + 1), name],
            )
            .await?;
            tracing::info!(migration = name, "applied database migration");
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close();
    }

    /// Takes the cluster-wide change lock (waiting at most `lock_timeout`, 10 s): while it is held no other
    /// replica stores a management change.
    pub async fn lock_changes(&self) -> Result<PgChangeLock, StorageError> {
        self.lock(CHANGE_LOCK).await
    }

    /// Takes the cluster-wide bootstrap lock: replicas starting together on an empty database make one
    /// administrator, and none mistakes another's bootstrap in progress for an interrupted one.
    pub async fn lock_bootstrap(&self) -> Result<PgChangeLock, StorageError> {
        self.lock(BOOTSTRAP_LOCK).await
    }

    async fn lock(&self, id: i64) -> Result<PgChangeLock, StorageError> {
        let c = self.client().await?;
        c.batch_execute("SET lock_timeout = '10s'").await?;
        c.execute("SELECT pg_advisory_lock($1)", &[&id]).await?;
        Ok(PgChangeLock { conn: Some(c), id })
    }

    /// A connection of its own that LISTENs for the change log's notifications.
    pub async fn listen(&self) -> Result<PgListener, StorageError> {
        let (wake, notifications) = tokio::sync::mpsc::channel(1);
        let client = if self.url.tls() {
            let (client, connection) = self.url.config.connect(tls(&self.url)?).await?;
            tokio::spawn(relay_notifications(connection, wake));
            client
        } else {
            let (client, connection) = self.url.config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(relay_notifications(connection, wake));
            client
        };
        client
            .batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))
            .await?;
        Ok(PgListener {
            _client: client,
            notifications,
        })
    }

    pub fn audit_writer(&self) -> PgAuditWriter {
        PgAuditWriter::new(self.clone())
    }

    pub fn audit_reader(&self) -> PgAuditReader {
        PgAuditReader::new(self.clone())
    }

    /// Runs `f` to completion from a thread that is not one of the runtime's workers (the audit writer, a
    /// blocking task).
    pub(crate) fn block_on<T>(&self, f: impl Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }
}

/// A cluster-wide lock (the change lock, the bootstrap lock), held; released when dropped.
pub struct PgChangeLock {
    conn: Option<deadpool_postgres::Object>,
    id: i64,
}

impl Drop for PgChangeLock {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let id = self.id;
        // Unlocking is a statement, so it runs on a task; if it cannot run or fails, the connection is closed
        // instead of returned to the pool, which ends its session and so releases the lock.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = conn
                        .execute("SELECT pg_advisory_unlock($1)", &[&id])
                        .await
                    {
                        tracing::warn!(error = %describe_error(&e), "releasing the change lock failed; closing its connection");
                        drop(deadpool_postgres::Object::take(conn));
                    }
                });
            }
            Err(_) => drop(deadpool_postgres::Object::take(conn)),
        }
    }
}

/// Wakes its holder when a change is committed anywhere; ends when its connection does.
pub struct PgListener {
    _client: tokio_postgres::Client,
    pub notifications: tokio::sync::mpsc::Receiver<()>,
}

/// Drives a listening connection, passing each notification on as a wake-up (several pending make one).
async fn relay_notifications<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    wake: tokio::sync::mpsc::Sender<()>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                if let Err(tokio::sync::mpsc::error::TrySendError::Closed(())) = wake.try_send(()) {
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %describe_error(&e), "the change listener's connection failed");
                return;
            }
            None => return,
        }
    }
}

fn tls(url: &DatabaseUrl) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StorageError> {
    let Some(ca_file) = &url.ca_file else {
        return Err(StorageError::Connect("no CA file for TLS".into()));
    };
    let pem = std::fs::read(ca_file).map_err(|e| {
        StorageError::Connect(format!(
            "cannot read sslrootcert {}: {e}",
            ca_file.display()
        ))
    })?;
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            StorageError::Connect(format!("sslrootcert {}: {e}", ca_file.display()))
        })?;
        roots.add(cert).map_err(|e| {
            StorageError::Connect(format!("sslrootcert {}: {e}", ca_file.display()))
        })?;
    }
    if roots.is_empty() {
        return Err(StorageError::Connect(format!(
            "sslrootcert {} holds no certificate",
            ca_file.display()
        )));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StorageError::Connect(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_show_no_password_and_keep_every_host() {
        let url = DatabaseUrl::parse(
            "postgres://kmsd:s3cret@db1:5432,db2:5433/kms?target_session_attrs=read-write",
        )
        .unwrap();
        let shown = url.to_string();
        assert_eq!(
            shown,
            "postgres://kmsd@db1:5432,db2:5433/kms?target_session_attrs=read-write"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
    }

    #[test]
    fn sslrootcert_is_taken_out_of_the_url() {
        let url = DatabaseUrl::parse(
            "postgres://kmsd@db/kms?sslmode=require&sslrootcert=/etc/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            url.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert!(
            url.to_string()
                .ends_with("?sslmode=require&sslrootcert=/etc/ca.pem")
        );
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for bad in [
            "postgres://kmsd@db/kms?sslmode=require",
            "postgres://kmsd@db/kms?bogus=1",
            "postgres:///kms",
        ] {
            assert!(DatabaseUrl::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
