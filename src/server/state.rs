//! Opening the daemon's state, with no socket: the data directory (created 0700 and locked), the root key
//! (created with a new database, checked against an existing one), the database and its migrations, the audit
//! signing key, principals and tokens, every key version unwrapped into the cache, the audit log, the resumable
//! bootstrap, and the maintenance pass that ends deletion windows that ended while the daemon was down.
//!
//! Invariant: nothing is returned, so nothing can be served, until the root key has opened the database and every
//! key version has unwrapped; the data directory stays locked while the state lives.

use std::path::Path;
use std::sync::Arc;

use super::maintenance::MaintenanceGate;
use super::{DataDirLock, StartError, bootstrap, root_key};
use crate::audit::{AuditLog, CheckpointSigner, SIGNING_KEY_META};
use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::config::Config;
use crate::kms::{Kms, OpenError};
use crate::metrics::Metrics;
use crate::storage::Storage;

/// The daemon's state, open and checked, before anything listens.
pub struct State {
    pub(super) lock: DataDirLock,
    pub kms: Arc<Kms>,
    pub auth: Arc<Authenticator>,
    pub audit: Arc<AuditLog>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub(super) gate: Arc<MaintenanceGate>,
    /// The database, for following other replicas' changes.
    pub(super) storage: crate::storage::Storage,
    pub(super) currency: Arc<crate::replica::Currency>,
}

/// Opens the state `config` names (see the module documentation).
pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> Result<State, StartError> {
    prepare_data_dir(&config.data.dir)?;
    let lock = DataDirLock::acquire(&config.data.dir)?;
    let root_path = config.root_key_path();
    // A root key is created only with a new database: a new key could open nothing already stored.
    let (storage, root, fresh) = match &config.data.database_url {
        None => {
            let db_path = config.database_path();
            let fresh = !db_path.exists();
            let root = load_root_key(&root_path, fresh)?;
            if fresh {
                create_private_file(&db_path)?;
            }
            (Storage::open_sqlite(&db_path)?, root, fresh)
        }
        Some(url) => {
            let storage = Storage::open_postgres(url).await?;
            let fresh = storage.meta(SIGNING_KEY_META).await?.is_none();
            let root = load_root_key(&root_path, fresh)?;
            (storage, root, fresh)
        }
    };
    tracing::info!(database = %storage.describe(), "database open");
    // Replicas starting together on a new PostgreSQL database race to store the signing key: the first one's is
    // kept, and every other replica must unwrap it, which a replica with another root key cannot (it refuses to
    // start).
    let wrapped = match storage.meta(SIGNING_KEY_META).await? {
        Some(wrapped) => wrapped,
        None => {
            let signer = CheckpointSigner::generate()
                .map_err(|e| StartError::RootKey(format!("the OS refused randomness: {e}")))?;
            storage
                .insert_meta_if_absent(SIGNING_KEY_META, signer.wrap(&root))
                .await?
        }
    };
    let signer = CheckpointSigner::unwrap(&root, &wrapped).map_err(|_| OpenError::WrongRootKey)?;
    let root = Arc::new(root);
    let auth = Arc::new(Authenticator::load(storage.clone(), root.clone(), clock.clone()).await?);
    let kms = Arc::new(Kms::open(storage.clone(), root, clock.clone()).await?);
    let metrics = Arc::new(Metrics::default());
    let audit = Arc::new(
        AuditLog::open(
            &storage,
            signer,
            clock.clone(),
            config.audit.checkpoint_interval,
            config.audit.disk,
            metrics.clone(),
        )
        .await?,
    );
    tracing::info!(
        public_key = %hex::encode(audit.public_key().as_bytes()),
        log_id = %audit.log_id(),
        "audit log open; checkpoints verify with this public key"
    );
    if fresh {
        tracing::info!(database = %storage.describe(), "created a new database");
    }
    bootstrap::first_start(config, &storage, &auth, &audit, &*clock).await?;
    let currency = if storage.is_shared() {
        crate::replica::Currency::followed()
    } else {
        crate::replica::Currency::standalone()
    };
    // Deletion windows that ended while the daemon was down end now, before anything is served.
    let gate = Arc::new(MaintenanceGate {
        audit: audit.clone(),
        clock: clock.clone(),
    });
    if let Err(e) = kms.run_maintenance(&*gate).await {
        tracing::error!(error = %e, "maintenance at start-up failed; will retry");
    }

    Ok(State {
        lock,
        kms,
        auth,
        audit,
        metrics,
        clock,
        gate,
        storage,
        currency,
    })
}

fn load_root_key(path: &Path, may_create: bool) -> Result<crate::crypto::RootKey, StartError> {
    let (root, created) = root_key::load_or_create(path, may_create)?;
    if created {
        tracing::warn!(
            path = %path.display(),
            "created a new root key; back it up and keep it apart from the database: without it no key can be \
             used (every replica sharing a database needs a copy of this file)"
        );
    }
    Ok(root)
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
