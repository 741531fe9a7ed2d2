//! Key lifecycle and the cryptographic operations: what each KMS call does, independent of gRPC.
//!
//! [`Kms`] owns the key cache, the root key and the storage handle. Management calls (create, enable, rotate, ...)
//! are serialized by one write lock: each validates the transition against the key's state, commits it to
//! storage, then replaces the key's cache entry. Cryptographic calls take no lock and touch no storage: they read
//! the cache and seal or open a blob.
//!
//! Invariants: a change is visible in the cache only after it is durable in storage; key material enters the
//! process only by unwrapping with the root key, and leaves it only inside blobs or as the plaintext a caller asked
//! for.

mod cache;
mod crypto_ops;
mod error;
mod import;
mod manage;
mod signing;

pub use crypto_ops::{NewDataKey, NewDataKeyPair, Opened, ReEncrypted, Sealed};

pub use error::KmsError;
pub use import::{ImportParametersFor, MAX_VALID_TO_DAYS, PARAMETERS_VALID_MS};
pub use manage::{KeyView, Page, VersionView};
pub use signing::PublicKey;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cache::{CachedKey, CachedVersion, KeyCache};

use crate::clock::Clock;
use crate::crypto::{Material, RootKey, VersionKey};
use crate::keys::{KeyId, KeySpec};
use crate::storage::{ChangeKind, Storage, StoredKey};
use kmsd_proto::key_policy::PolicyDocument;

const ROOT_CHECK: &str = "root_key_check";

/// Why the KMS could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "the root key does not match this database (it was created with a different root key); \
         start kmsd with the root key file that belongs to this data directory"
    )]
    WrongRootKey,
    #[error(
        "key {key_id} version {version} does not unwrap with the root key: the database is damaged"
    )]
    Unwrap { key_id: String, version: u32 },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

pub struct Kms {
    storage: Storage,
    root: Arc<RootKey>,
    clock: Arc<dyn Clock>,
    cache: KeyCache,
    /// Serializes changes on this replica; [`Kms::lock_for_change`] adds the cluster's change lock.
    write_lock: tokio::sync::Mutex<()>,
    /// The last change of the shared change log this cache reflects (PostgreSQL; 0 and unused on SQLite).
    applied: AtomicU64,
}

/// A change in progress: this replica's lock and the cluster's, with the cache caught up under both.
pub(crate) struct ChangeGuard<'a> {
    _local: tokio::sync::MutexGuard<'a, ()>,
    _cluster: crate::storage::ChangeLock,
}

impl Kms {
    /// Checks the root key against the database, then loads and unwraps every key version into memory.
    pub async fn open(
        storage: Storage,
        root: Arc<RootKey>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        // Read before the keys, so that a change committed meanwhile is applied again rather than missed.
        let applied = storage.change_head().await?.unwrap_or(0);
        let stored = storage.load_keys().await?;
        match storage.meta(ROOT_CHECK).await? {
            Some(value) if root.verify_check_value(&value) => {}
            Some(_) => return Err(OpenError::WrongRootKey),
            // A database made before any key existed has nothing to protect yet; one with keys but no check
            // value cannot be trusted to match.
            None if stored.is_empty() => storage.set_meta(ROOT_CHECK, root.check_value()).await?,
            None => return Err(OpenError::WrongRootKey),
        }
        let cache = KeyCache::default();
        for key in stored {
            let (cached, aliases) = unwrap_stored(&root, key)?;
            cache.put(cached);
            for alias in aliases {
                cache.put_alias(alias);
            }
        }
        Ok(Kms {
            storage,
            root,
            clock,
            cache,
            write_lock: tokio::sync::Mutex::new(()),
            applied: AtomicU64::new(applied),
        })
    }

    /// Takes this replica's write lock and the cluster's change lock, and applies every change other replicas
    /// made before it: a change is then validated against the state it replaces, wherever that was written.
    pub(crate) async fn lock_for_change(&self) -> Result<ChangeGuard<'_>, KmsError> {
        let local = self.write_lock.lock().await;
        let cluster = self.storage.lock_changes().await?;
        self.catch_up_locked().await?;
        Ok(ChangeGuard {
            _local: local,
            _cluster: cluster,
        })
    }

    /// Applies the key changes other replicas made since the last catch-up (nothing on SQLite).
    pub async fn catch_up(&self) -> Result<(), KmsError> {
        let _local = self.write_lock.lock().await;
        self.catch_up_locked().await
    }

    /// Reloads every key from storage (a replica that reconnects may have missed changes).
    pub async fn reload(&self) -> Result<(), KmsError> {
        let _local = self.write_lock.lock().await;
        let Some(head) = self.storage.change_head().await? else {
            return Ok(());
        };
        self.reload_all().await?;
        self.applied.store(head, Ordering::SeqCst);
        Ok(())
    }

    async fn catch_up_locked(&self) -> Result<(), KmsError> {
        let applied = self.applied.load(Ordering::SeqCst);
        let Some(changes) = self.storage.changes_after(applied, ChangeKind::Key).await? else {
            return Ok(());
        };
        if changes.gap {
            self.reload_all().await?;
        } else {
            for subject in &changes.subjects {
                let id = KeyId::parse(subject).map_err(|_| {
                    KmsError::Internal(format!("the change log names key {subject:?}"))
                })?;
                if let Some(stored) = self.storage.load_key(id).await? {
                    let (cached, aliases) =
                        unwrap_stored(&self.root, stored).map_err(open_failure)?;
                    self.cache.replace_key(cached, aliases);
                }
            }
        }
        self.applied.store(changes.head, Ordering::SeqCst);
        Ok(())
    }

    async fn reload_all(&self) -> Result<(), KmsError> {
        let mut keys = Vec::new();
        for stored in self.storage.load_keys().await? {
            keys.push(unwrap_stored(&self.root, stored).map_err(open_failure)?);
        }
        self.cache.replace_all(keys);
        Ok(())
    }

    /// Closes storage after queued writes finish.
    pub async fn close(&self) {
        self.storage.close().await;
    }

    /// For tests and tools: the storage this KMS writes to.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Destroys keys whose deletion window has ended and rotates keys whose rotation is due, each change passing
    /// `gate` (where the daemon makes its audit record durable) before it is stored.
    /// Returns how many keys were destroyed and rotated.
    pub async fn run_maintenance(
        &self,
        gate: &dyn crate::audit::Gate,
    ) -> Result<(usize, usize), KmsError> {
        let now = self.clock.now();
        let (mut destroyed, mut rotated) = (0, 0);
        for key in self.cache.all_keys() {
            if key.record.destroyed_if_due(now).is_some() {
                if self.destroy_if_due(key.record.id, gate).await? {
                    destroyed += 1;
                    tracing::info!(key_id = %key.record.id, "deletion window ended: key material destroyed");
                }
            } else if key.record.material_expired(now) {
                if self.expire_if_due(key.record.id, gate).await? {
                    tracing::info!(key_id = %key.record.id, "imported key material expired and was deleted");
                }
            } else if key.record.rotation_due(now)
                && self.rotate_if_due(key.record.id, gate).await?
            {
                rotated += 1;
                tracing::info!(key_id = %key.record.id, "automatic rotation");
            }
        }
        Ok((destroyed, rotated))
    }
}

fn unwrap_stored(
    root: &RootKey,
    key: StoredKey,
) -> Result<(CachedKey, Vec<crate::storage::AliasRow>), OpenError> {
    let id = key.record.id;
    let spec = key.record.kind.spec;
    let mut versions = BTreeMap::new();
    for v in key.versions {
        let unwrap_failed = || OpenError::Unwrap {
            key_id: id.to_string(),
            version: v.version,
        };
        let material = match &v.wrapped_material {
            Some(wrapped) => {
                let material = root
                    .unwrap(id, v.version, spec, wrapped)
                    .map_err(|_| unwrap_failed())?;
                Some(Arc::new(
                    VersionKey::open(spec, &material).map_err(|_| unwrap_failed())?,
                ))
            }
            None => None,
        };
        versions.insert(
            v.version,
            CachedVersion {
                created_at: v.created_at,
                material,
            },
        );
    }
    let policy = match &key.policy {
        None => PolicyDocument::default(),
        Some(json) => PolicyDocument::from_json(json).map_err(|e| {
            crate::storage::StorageError::Corrupt(format!("the policy of key {id}: {e}"))
        })?,
    };
    Ok((
        CachedKey {
            record: key.record,
            versions,
            aliases: Default::default(),
            policy: Arc::new(policy),
        },
        key.aliases,
    ))
}

/// A stored key that does not open is damage, whether met at start-up or later.
fn open_failure(e: OpenError) -> KmsError {
    match e {
        OpenError::Storage(e) => KmsError::Storage(e),
        other => KmsError::Internal(other.to_string()),
    }
}

fn generate_material(spec: KeySpec) -> Result<Material, KmsError> {
    Material::generate(spec).map_err(|e| KmsError::Internal(e.to_string()))
}

/// As [`generate_material`], off the async workers: finding an RSA-4096 key pair takes a second or more of CPU.
async fn generate_material_off_thread(spec: KeySpec) -> Result<Material, KmsError> {
    if !spec.is_asymmetric() {
        return generate_material(spec);
    }
    generating(move || generate_material(spec)).await?
}

/// Runs a key generation on the blocking pool, at most one per core at a time: callers that may each ask for an
/// RSA-4096 key pair (CreateKey, GenerateDataKeyPair, GetParametersForImport) queue for the cores instead of each
/// taking a thread of the pool and all of them the machine.
async fn generating<T: Send + 'static>(
    generate: impl FnOnce() -> T + Send + 'static,
) -> Result<T, KmsError> {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let slots = SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });
    let _slot = slots
        .acquire()
        .await
        .map_err(|_| KmsError::Internal("key generation is closed".into()))?;
    tokio::task::spawn_blocking(generate)
        .await
        .map_err(|e| KmsError::Internal(format!("key generation stopped: {e}")))
}

/// Opens material this process made or was given for a key version.
fn open_version(
    key_id: KeyId,
    version: u32,
    spec: KeySpec,
    material: &Material,
) -> Result<VersionKey, KmsError> {
    VersionKey::open(spec, material)
        .map_err(|e| KmsError::Internal(format!("key {key_id} version {version}: {e}")))
}

/// Re-wraps every key version, the audit signing key and the root-key check value of the database at `db_path`
/// from `old` to `new`, in one transaction. No ciphertext a client holds changes: blobs name key versions, whose
/// material stays the same. Returns how many wrapped values were replaced. The daemon must be stopped.
pub fn rotate_root_key(
    db_path: &std::path::Path,
    old: &RootKey,
    new: &RootKey,
) -> Result<usize, KmsError> {
    use crate::audit::{SIGNING_KEY_LABEL, SIGNING_KEY_META};
    use crate::storage::Wrapped;

    // Checked before any write: a wrong or missing check value must stop the rotation, not follow it.
    let reader = crate::storage::AuditReader::open(db_path)?;
    match reader.meta(ROOT_CHECK)? {
        Some(value) if old.verify_check_value(&value) => {}
        Some(_) => {
            return Err(KmsError::Internal(
                "the current root key does not match this database".into(),
            ));
        }
        None => {
            return Err(KmsError::Internal(
                "the database has no root-key check value".into(),
            ));
        }
    }
    drop(reader);
    let changed = crate::storage::rewrap_all(db_path, |item| match item {
        Wrapped::Version {
            key_id,
            version,
            spec,
            wrapped,
        } => {
            let material = old.unwrap(key_id, version, spec, wrapped).map_err(|_| {
                format!("key {key_id} version {version} does not unwrap with the current root key")
            })?;
            Ok(Some(new.wrap(key_id, version, spec, &material)))
        }
        Wrapped::Meta { name, value } if name == ROOT_CHECK => {
            if !old.verify_check_value(value) {
                return Err("the current root key does not match this database".into());
            }
            Ok(Some(new.check_value()))
        }
        Wrapped::Meta { name, value } if name == SIGNING_KEY_META => {
            let secret = old.unwrap_secret(SIGNING_KEY_LABEL, value).map_err(|_| {
                "the audit signing key does not unwrap with the current root key".to_owned()
            })?;
            Ok(Some(new.wrap_secret(SIGNING_KEY_LABEL, &secret)))
        }
        Wrapped::Meta { .. } => Ok(None),
        Wrapped::AccessKey { id, wrapped } => {
            let label = crate::auth::access_key::label(id);
            let secret = old.unwrap_secret(&label, wrapped).map_err(|_| {
                format!("access key {id} does not unwrap with the current root key")
            })?;
            Ok(Some(new.wrap_secret(&label, &secret)))
        }
    });
    match changed {
        Ok(n) => Ok(n),
        Err(crate::storage::StorageError::Corrupt(reason)) => Err(KmsError::Internal(reason)),
        Err(e) => Err(e.into()),
    }
}
