//! The audit log: one record per call, allowed or not, made durable before the call is answered.
//!
//! Records form a hash chain (each carries the previous record's hash and its own, over a canonical JSON
//! encoding), and the writer signs checkpoints of the chain head with an Ed25519 key derived from the root key.
//! Edits, deleted rows, reordering, a truncated tail and a replaced database are all detectable by
//! [`verify::verify`], online (AuditService.VerifyLog) or offline (`kmsctl audit verify --db`).
//!
//! Invariants: a record never holds a secret, and is at most [`bound::MAX_RECORD_BYTES`] whatever a caller sent; records are never updated or deleted (SQLite triggers refuse it);
//! sequence numbers are gap-free; a call whose record could not be made durable is answered UNAVAILABLE, never with
//! its result (fail closed).

pub mod archive;
pub mod bound;
mod checkpoint;
pub mod gate;
pub(crate) mod record;
pub mod space;
pub mod verify;
mod writer;

pub use checkpoint::{
    Checkpoint, CheckpointSigner, PruneMark, SIGNING_KEY_LABEL, parse_public_key,
};
pub use gate::{Change, Gate, Unrecorded};

/// The `meta` row holding the audit signing key, wrapped under the root key.
pub const SIGNING_KEY_META: &str = "audit_signing_key";
pub use record::{
    AuditRecord, ChainLink, ChainedRecord, Encoded, GENESIS_HASH, Outcome, chain, map_json,
    time_ordered_id,
};

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use tokio::sync::{oneshot, watch};

use crate::clock::Clock;
use crate::storage::{AuditReader, Storage, StorageError};
use writer::{Msg, Writer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("the audit log cannot be written")]
    Unavailable,
    #[error(
        "the disk holding the audit log is below its hard floor ({free} bytes free); an administrator must archive \
         the log (kmsctl audit archive) or grow the disk"
    )]
    DiskFull { free: u64 },
    #[error("the audit writer has stopped")]
    Closed,
}

/// The public key a database's checkpoints verify with, recovered from the database with its root key (for
/// offline verification).
pub fn public_key_of(
    reader: &AuditReader,
    root: &crate::crypto::RootKey,
) -> Result<VerifyingKey, String> {
    let wrapped = reader
        .meta(SIGNING_KEY_META)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            "the database holds no audit signing key: it is not a kmsd audit log".to_owned()
        })?;
    CheckpointSigner::unwrap(root, &wrapped)
        .map(|s| s.public_key())
        .map_err(|_| {
            "the audit signing key does not unwrap with this root key: the database was made with another \
             root key (or replaced)"
                .to_owned()
        })
}

/// A handle to the audit writer thread, and the way to read the log back.
pub struct AuditLog {
    jobs: std::sync::mpsc::Sender<Msg>,
    healthy: watch::Receiver<bool>,
    space: Arc<space::SpaceWatch>,
    public_key: VerifyingKey,
    log_id: String,
    storage: Storage,
}

impl AuditLog {
    /// Starts the writer on a database that `Storage::open_*` has opened and migrated.
    pub async fn open(
        storage: &Storage,
        signer: CheckpointSigner,
        clock: Arc<dyn Clock>,
        checkpoint_every: Duration,
        space: space::SpaceLimits,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, StorageError> {
        // The writer's connection is blocking (PostgreSQL's runs its queries on this runtime), so it is opened and
        // read off the async workers.
        let opening = storage.clone();
        let (conn, log_id, (head_seq, head_hash), checkpointed_seq, writable) =
            tokio::task::spawn_blocking(move || {
                let mut conn = opening.audit_writer()?;
                let log_id = conn.log_id()?;
                let head = Writer::new_head(conn.head()?);
                let checkpointed_seq = conn.last_checkpoint_seq()?.unwrap_or(0);
                // Whether the log takes a write is known before anything is served, not at the first failed call.
                let writable = match conn.probe(head.0 + 1) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %e, "the audit log cannot be written at start-up; refusing calls until it can");
                        false
                    }
                };
                Ok::<_, StorageError>((conn, log_id, head, checkpointed_seq, writable))
            })
            .await
            .map_err(|e| StorageError::Corrupt(format!("the audit log's opening failed: {e}")))??;
        let public_key = signer.public_key();
        let (healthy_tx, healthy) = watch::channel(writable);
        // The disk is measured where kmsd owns it; PostgreSQL's disk is the database server's to watch, and a
        // write it refuses fails the calls closed all the same.
        let space = match storage.sqlite_path() {
            Some(path) => space::SpaceWatch::start(path, space, Duration::from_secs(1)),
            None => space::SpaceWatch::unmeasured(space),
        };
        let (jobs, inbox) = writer::channel();
        let wal = storage.audit_durability();
        let writer = Writer {
            metrics,
            stats: Default::default(),
            conn,
            head_seq,
            head_hash,
            checkpointed_seq,
            signer,
            clock,
            log_id: log_id.clone(),
            healthy: healthy_tx,
            checkpoint_every,
        };
        std::thread::Builder::new()
            .name("kmsd-audit".into())
            .spawn(move || writer.run(inbox, wal))
            .map_err(|e| {
                StorageError::Corrupt(format!("cannot start the audit writer thread: {e}"))
            })?;
        Ok(AuditLog {
            jobs,
            healthy,
            space,
            public_key,
            log_id,
            storage: storage.clone(),
        })
    }

    /// Appends a record and waits until it is durable. Returns its sequence number. Fails closed below the disk's
    /// hard floor.
    pub async fn append(&self, record: AuditRecord) -> Result<u64, AuditError> {
        if self.space.level() == space::Level::Critical {
            return Err(AuditError::DiskFull {
                free: self.space.report().available(),
            });
        }
        self.append_in_reserve(record).await
    }

    /// As [`AuditLog::append`], using the space below the hard floor too: only for the records of archiving and
    /// pruning the log, which is how that space is won back.
    pub async fn append_in_reserve(&self, record: AuditRecord) -> Result<u64, AuditError> {
        // Encoding here, on the caller's worker, keeps the writer thread's serial work to splicing and hashing.
        // Every record passes here, so here is where what callers sent is bounded.
        let encoded = bound::bounded(record);
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Msg::Append(encoded, tx))
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Writes a signed checkpoint of the current head now (none if nothing was appended since the last one).
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Msg::Checkpoint(tx))
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Signs and stores a checkpoint of record `seq`, whose hash is `hash`: the sealed end of a range to archive.
    pub async fn seal(&self, seq: u64, hash: String) -> Result<Checkpoint, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Msg::Seal { seq, hash, reply })
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Stores a signed prune mark for records up to `through_seq` (whose hash is `through_hash`) and removes them.
    /// The caller has made the record of this durable first.
    pub async fn prune(&self, through_seq: u64, through_hash: String) -> Result<u64, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Msg::Prune {
                through_seq,
                through_hash,
                reply,
            })
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Writes a final checkpoint and stops the writer; appends after this fail.
    pub async fn close(&self) {
        self.space.stop();
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Msg::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// `true` while appends succeed; turns `false` when a commit fails and back when writes succeed again.
    pub fn health(&self) -> watch::Receiver<bool> {
        self.healthy.clone()
    }

    /// The disk under the log.
    pub fn space(&self) -> &space::SpaceWatch {
        &self.space
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.public_key
    }

    pub fn log_id(&self) -> &str {
        &self.log_id
    }

    /// A read-only connection to the log, for queries and verification (blocking: use off the async workers).
    pub fn reader(&self) -> Result<AuditReader, StorageError> {
        self.storage.audit_reader()
    }
}
