//! Storage: the only module that speaks SQL, behind one seam with two backends.
//!
//! [`Storage`] is the key store and the access store (async, for the call path), [`AuditWriter`] the audit writer
//! thread's connection, [`AuditReader`] a blocking reader for queries and verification. Each is an enum over the two
//! backends, dispatched statically: SQLite (`sqlite/`, one file in the data directory, the embedded default) and
//! PostgreSQL (`postgres/`, chosen by `database_url`, what several replicas share). Both run the same conformance
//! tests (`tests/it/storage.rs`). Each dialect's migrations live under `migrations/<dialect>/`, applied at open; a
//! database newer than this binary is refused.
//!
//! Invariants: every multi-row change is one transaction; key material appears here only wrapped by the root key,
//! token secrets only hashed; audit rows are only inserted (triggers in both dialects refuse UPDATE and DELETE, and
//! PostgreSQL's TRUNCATE, except deletion of a range a signed prune mark covers).

pub mod postgres;
mod sqlite;

pub use postgres::{DatabaseUrl, Imported};
pub use sqlite::{MIGRATIONS, Wrapped, backup, rewrap_all};

use std::path::Path;

use crate::audit::{ChainLink, ChainedRecord, Checkpoint, Encoded, Outcome, PruneMark};
use crate::clock::UnixMillis;
use crate::keys::{AliasName, KeyId, KmsKey};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {}", postgres::describe_error(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL: {0}")]
    Connect(String),
    #[error(
        "the database has schema version {found}, newer than this kmsd understands ({known}); run a newer kmsd"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("the database holds a value this kmsd cannot read: {0}")]
    Corrupt(String),
    #[error("{0} is not available on PostgreSQL: {1}")]
    Unsupported(&'static str, &'static str),
    #[error("the storage thread has stopped")]
    Closed,
}

impl StorageError {
    /// Whether the database could not be reached or would not take writes (a retry, perhaps elsewhere, may
    /// succeed), as opposed to a refusal or damage.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StorageError::Connect(_) | StorageError::Closed => true,
            StorageError::Postgres(e) => match e.as_db_error() {
                // Not a server's answer: the connection failed or closed.
                None => true,
                Some(db) => {
                    let code = db.code().code();
                    // Connection exceptions, a server shutting down, a standby refusing writes, lock timeouts.
                    code.starts_with("08")
                        || code.starts_with("57P")
                        || code == "25006"
                        || code == "55P03"
                }
            },
            _ => false,
        }
    }
}

/// A stored key's kind, from its `key_spec` and `key_usage` columns.
pub(crate) fn key_kind(spec: &str, usage: &str) -> Result<crate::keys::KeyKind, StorageError> {
    crate::keys::KeySpec::parse(spec)
        .and_then(|spec| crate::keys::KeyKind::new(spec, crate::keys::KeyUsage::parse(usage)?))
        .map_err(|e| StorageError::Corrupt(format!("key kind {spec:?}/{usage:?}: {e}")))
}

/// A stored key's origin, from its `origin` column.
pub(crate) fn origin(text: &str) -> Result<crate::keys::Origin, StorageError> {
    crate::keys::Origin::parse(text)
        .map_err(|_| StorageError::Corrupt(format!("key origin {text:?}")))
}

/// Reports whether a storage error is a uniqueness or primary-key violation.
pub fn is_constraint_violation(err: &StorageError) -> bool {
    match err {
        StorageError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
            e.code == rusqlite::ErrorCode::ConstraintViolation
        }
        StorageError::Postgres(e) => {
            e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
        }
        _ => false,
    }
}

/// The key store and the access store. Cheap to clone.
#[derive(Clone)]
pub enum Storage {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// Runs the same call on whichever backend `$storage` is.
macro_rules! on_backend {
    ($storage:expr, $b:ident => $call:expr) => {
        match $storage {
            Storage::Sqlite($b) => $call,
            Storage::Postgres($b) => $call,
        }
    };
}

impl Storage {
    /// Opens (creating if needed) and migrates the SQLite database at `path`.
    pub fn open_sqlite(path: &Path) -> Result<Self, StorageError> {
        sqlite::SqliteStore::open(path).map(Storage::Sqlite)
    }

    /// Connects to the PostgreSQL database `url` names and migrates it (under an advisory lock, so replicas
    /// starting together migrate it once).
    pub async fn open_postgres(url: &DatabaseUrl) -> Result<Self, StorageError> {
        postgres::PgStore::open(url).await.map(Storage::Postgres)
    }

    /// Whether other kmsd processes may share this database (PostgreSQL): then caches follow its change log.
    pub fn is_shared(&self) -> bool {
        matches!(self, Storage::Postgres(_))
    }

    /// Where the data lives, for logs: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Storage::Sqlite(s) => format!("SQLite {}", s.path().display()),
            Storage::Postgres(p) => format!("PostgreSQL {}", p.url()),
        }
    }

    /// Finishes queued work, then closes the connections.
    pub async fn close(&self) {
        on_backend!(self, b => b.close().await)
    }

    pub async fn meta(&self, name: &'static str) -> Result<Option<Vec<u8>>, StorageError> {
        on_backend!(self, b => b.meta(name).await)
    }

    pub async fn set_meta(&self, name: &'static str, value: Vec<u8>) -> Result<(), StorageError> {
        on_backend!(self, b => b.set_meta(name, value).await)
    }

    /// Stores `value` under `name` unless a value is there already; returns the value stored now (this one, or
    /// the one that was there first).
    pub async fn insert_meta_if_absent(
        &self,
        name: &'static str,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, StorageError> {
        on_backend!(self, b => b.insert_meta_if_absent(name, value).await)
    }

    pub async fn load_keys(&self) -> Result<Vec<StoredKey>, StorageError> {
        on_backend!(self, b => b.load_keys().await)
    }

    pub async fn insert_key(
        &self,
        record: KmsKey,
        version: VersionRow,
        alias: Option<AliasRow>,
        policy: Option<String>,
    ) -> Result<(), StorageError> {
        on_backend!(self, b => b.insert_key(record, version, alias, policy).await)
    }

    pub async fn set_key_policy(
        &self,
        key_id: KeyId,
        policy: String,
        at: UnixMillis,
    ) -> Result<(), StorageError> {
        on_backend!(self, b => b.set_key_policy(key_id, policy, at).await)
    }

    /// Writes every mutable field of a key's record: state, versions, rotation, deletion, description and tags.
    pub async fn update_key(&self, record: KmsKey) -> Result<(), StorageError> {
        on_backend!(self, b => b.update_key(record).await)
    }

    pub async fn add_version(
        &self,
        record: KmsKey,
        version: VersionRow,
    ) -> Result<(), StorageError> {
        on_backend!(self, b => b.add_version(record, version).await)
    }

    /// Records the key as destroyed, erases every version's wrapped material and removes its aliases.
    pub async fn destroy_key(&self, record: KmsKey) -> Result<(), StorageError> {
        on_backend!(self, b => b.destroy_key(record).await)
    }

    /// Sets one version's wrapped material (imported) or erases it (`None`: deleted or expired), with the key's
    /// new record, in one transaction.
    pub async fn set_material(
        &self,
        record: KmsKey,
        version: u32,
        wrapped: Option<Vec<u8>>,
    ) -> Result<(), StorageError> {
        on_backend!(self, b => b.set_material(record, version, wrapped).await)
    }

    /// Fails with a constraint error if the alias exists.
    pub async fn insert_alias(&self, alias: AliasRow) -> Result<(), StorageError> {
        on_backend!(self, b => b.insert_alias(alias).await)
    }

    /// Returns whether the alias existed.
    pub async fn delete_alias(&self, name: String) -> Result<bool, StorageError> {
        on_backend!(self, b => b.delete_alias(name).await)
    }

    /// Points an alias at another key. Returns whether the alias named `from` (and now names `to`).
    pub async fn move_alias(
        &self,
        name: String,
        from: KeyId,
        to: KeyId,
    ) -> Result<bool, StorageError> {
        on_backend!(self, b => b.move_alias(name, from, to).await)
    }

    /// For tests and tools that must look at what is stored for a key.
    pub async fn versions_of(&self, key_id: KeyId) -> Result<Vec<VersionRow>, StorageError> {
        on_backend!(self, b => b.versions_of(key_id).await)
    }

    /// Every principal, token and access key, read in one transaction.
    pub async fn load_access(&self) -> Result<AccessRows, StorageError> {
        on_backend!(self, b => b.load_access().await)
    }

    pub async fn insert_principal(&self, p: PrincipalRow) -> Result<(), StorageError> {
        on_backend!(self, b => b.insert_principal(p).await)
    }

    /// Disables a principal: its tokens and certificate stop authenticating. The row stays for the audit trail.
    pub async fn disable_principal(
        &self,
        name: String,
        at: UnixMillis,
    ) -> Result<(), StorageError> {
        on_backend!(self, b => b.disable_principal(name, at).await)
    }

    pub async fn insert_token(&self, t: TokenRow) -> Result<(), StorageError> {
        on_backend!(self, b => b.insert_token(t).await)
    }

    pub async fn revoke_token(&self, id: String, at: UnixMillis) -> Result<(), StorageError> {
        on_backend!(self, b => b.revoke_token(id, at).await)
    }

    pub async fn insert_access_key(&self, k: AccessKeyRow) -> Result<(), StorageError> {
        on_backend!(self, b => b.insert_access_key(k).await)
    }

    pub async fn revoke_access_key(&self, id: String, at: UnixMillis) -> Result<(), StorageError> {
        on_backend!(self, b => b.revoke_access_key(id, at).await)
    }

    /// One key as stored now, if it exists.
    pub async fn load_key(&self, id: KeyId) -> Result<Option<StoredKey>, StorageError> {
        match self {
            Storage::Sqlite(s) => Ok(s.load_keys().await?.into_iter().find(|k| k.record.id == id)),
            Storage::Postgres(p) => p.load_key(id).await,
        }
    }

    /// The number of the last management change, where replicas share the database (PostgreSQL's change log);
    /// `None` where this process is the only writer.
    pub async fn change_head(&self) -> Result<Option<u64>, StorageError> {
        match self {
            Storage::Sqlite(_) => Ok(None),
            Storage::Postgres(p) => p.change_head().await.map(Some),
        }
    }

    /// What changed of `kind` after change `after` (see [`Storage::change_head`]); `None` without a change log.
    pub async fn changes_after(
        &self,
        after: u64,
        kind: ChangeKind,
    ) -> Result<Option<Changes>, StorageError> {
        match self {
            Storage::Sqlite(_) => Ok(None),
            Storage::Postgres(p) => p.changes_after(after, kind).await.map(Some),
        }
    }

    /// Removes change-log rows older than `keep` (PostgreSQL); returns how many.
    pub async fn trim_changes(&self, keep: std::time::Duration) -> Result<u64, StorageError> {
        match self {
            Storage::Sqlite(_) => Ok(0),
            Storage::Postgres(p) => p.trim_changes(keep).await,
        }
    }

    /// Takes the lock under which a management change is validated, recorded and stored: on PostgreSQL one every
    /// replica takes, so no two change the same state at once; on SQLite nothing beyond the caller's own lock.
    pub async fn lock_changes(&self) -> Result<ChangeLock, StorageError> {
        match self {
            Storage::Sqlite(_) => Ok(ChangeLock { _held: None }),
            Storage::Postgres(p) => p
                .lock_changes()
                .await
                .map(|l| ChangeLock { _held: Some(l) }),
        }
    }

    /// Takes the lock under which a replica checks for and makes the first administrator (nothing on SQLite, where
    /// the data directory's lock already makes the daemon the only one).
    pub async fn lock_bootstrap(&self) -> Result<ChangeLock, StorageError> {
        match self {
            Storage::Sqlite(_) => Ok(ChangeLock { _held: None }),
            Storage::Postgres(p) => p
                .lock_bootstrap()
                .await
                .map(|l| ChangeLock { _held: Some(l) }),
        }
    }

    /// A subscription to other replicas' changes; `None` where there are none.
    pub async fn listen(&self) -> Result<Option<postgres::PgListener>, StorageError> {
        match self {
            Storage::Sqlite(_) => Ok(None),
            Storage::Postgres(p) => p.listen().await.map(Some),
        }
    }

    /// A connection for the audit writer thread (blocking; SQLite's own connection, PostgreSQL's pool).
    pub fn audit_writer(&self) -> Result<AuditWriter, StorageError> {
        Ok(match self {
            Storage::Sqlite(s) => AuditWriter::Sqlite(sqlite::SqliteAuditWriter::open(s.path())?),
            Storage::Postgres(p) => AuditWriter::Postgres(p.audit_writer()),
        })
    }

    /// What makes the audit writer's commits durable: an fsync of SQLite's WAL, or nothing more than PostgreSQL's
    /// commit.
    pub fn audit_durability(&self) -> Durability {
        match self {
            Storage::Sqlite(s) => Durability::Wal(sqlite::WalSync::new(s.path())),
            Storage::Postgres(_) => Durability::Committed,
        }
    }

    /// A reader of the audit log (blocking: use it off the async workers).
    pub fn audit_reader(&self) -> Result<AuditReader, StorageError> {
        Ok(match self {
            Storage::Sqlite(s) => AuditReader::open(s.path())?,
            Storage::Postgres(p) => AuditReader::Postgres(p.audit_reader()),
        })
    }

    /// What kmsd found at start about a PostgreSQL database (replication, its role's privileges).
    pub fn postgres_setup(&self) -> Option<postgres::Setup> {
        match self {
            Storage::Sqlite(_) => None,
            Storage::Postgres(p) => p.setup(),
        }
    }

    /// The SQLite file, if this is SQLite (the disk watch, backups and root-key rotation work on it).
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Storage::Sqlite(s) => Some(s.path()),
            Storage::Postgres(_) => None,
        }
    }
}

/// Which cache a management change concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A key, its versions, aliases or policy: the subject is the key id.
    Key,
    /// Principals and tokens: the subject is a principal or token (the access state is reloaded whole).
    Access,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Key => "key",
            ChangeKind::Access => "access",
        }
    }
}

/// Changes read from the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The last change when they were read: the caller has applied everything up to it once it applies these.
    pub head: u64,
    /// What changed, each once.
    pub subjects: Vec<String>,
    /// Changes after the caller's were removed before it read them: only reloading everything is exact.
    pub gap: bool,
}

/// A cluster-wide lock, held until dropped (see [`Storage::lock_changes`], [`Storage::lock_bootstrap`]).
pub struct ChangeLock {
    _held: Option<postgres::PgChangeLock>,
}

/// The audit writer thread's connection (see `audit::writer`).
pub enum AuditWriter {
    Sqlite(sqlite::SqliteAuditWriter),
    Postgres(postgres::PgAuditWriter),
}

impl AuditWriter {
    /// The log's id, made on first use.
    pub fn log_id(&mut self) -> Result<String, StorageError> {
        match self {
            AuditWriter::Sqlite(w) => w.log_id(),
            AuditWriter::Postgres(w) => w.log_id(),
        }
    }

    /// The last record's sequence number and hash, if any.
    pub fn head(&mut self) -> Result<Option<(u64, String)>, StorageError> {
        match self {
            AuditWriter::Sqlite(w) => w.head(),
            AuditWriter::Postgres(w) => w.head(),
        }
    }

    pub fn last_checkpoint_seq(&mut self) -> Result<Option<u64>, StorageError> {
        match self {
            AuditWriter::Sqlite(w) => w.last_checkpoint_seq(),
            AuditWriter::Postgres(w) => w.last_checkpoint_seq(),
        }
    }

    /// Chains `records` after the head and appends them in one transaction; returns them chained. `after` is this
    /// writer's own head: SQLite has one writer and chains after it; PostgreSQL's replicas share the chain, so it
    /// reads the head under the chain's lock instead.
    pub fn append(
        &mut self,
        after: (u64, &str),
        records: Vec<Encoded>,
    ) -> Result<Vec<ChainLink>, StorageError> {
        match self {
            AuditWriter::Sqlite(w) => w.append(after, records),
            AuditWriter::Postgres(w) => w.append(records),
        }
    }

    /// Tells whether appends would succeed now, changing nothing.
    pub fn probe(&mut self, next_seq: u64) -> Result<(), StorageError> {
        match self {
            AuditWriter::Sqlite(w) => w.probe(next_seq),
            AuditWriter::Postgres(w) => w.probe(),
        }
    }

    pub fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), StorageError> {
        match self {
            AuditWriter::Sqlite(w) => w.insert_checkpoint(cp),
            AuditWriter::Postgres(w) => w.insert_checkpoint(cp),
        }
    }

    /// Stores a prune mark, then deletes the records it covers in transactions of `chunk` rows. Returns how many
    /// records were removed.
    pub fn prune(&mut self, mark: &PruneMark, chunk: u64) -> Result<u64, StorageError> {
        match self {
            AuditWriter::Sqlite(w) => w.prune(mark, chunk),
            AuditWriter::Postgres(w) => w.prune(mark, chunk),
        }
    }
}

/// What remains to make a committed audit batch durable.
pub enum Durability {
    /// SQLite: an fsync of the WAL (the writer commits with `synchronous=NORMAL` and the syncer thread syncs).
    Wal(sqlite::WalSync),
    /// PostgreSQL: a commit returns once the server has flushed it (and, with synchronous replication, once a
    /// standby has it): nothing is left to do.
    Committed,
}

impl Durability {
    pub fn sync(&mut self) -> std::io::Result<()> {
        match self {
            Durability::Wal(wal) => wal.sync(),
            Durability::Committed => Ok(()),
        }
    }
}

/// A reader of the audit log for queries and verification, so neither waits for nor blocks the writers.
pub enum AuditReader {
    Sqlite(sqlite::SqliteAuditReader),
    Postgres(postgres::PgAuditReader),
}

macro_rules! on_reader {
    ($reader:expr, $r:ident => $call:expr) => {
        match $reader {
            AuditReader::Sqlite($r) => $call,
            AuditReader::Postgres($r) => $call,
        }
    };
}

impl AuditReader {
    /// A read-only connection to a SQLite database file (offline verification reads a copy this way).
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        sqlite::SqliteAuditReader::open(path).map(AuditReader::Sqlite)
    }

    pub fn log_id(&self) -> Result<Option<String>, StorageError> {
        on_reader!(self, r => r.log_id())
    }

    /// A value of the `meta` table, such as the wrapped audit signing key.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        on_reader!(self, r => r.meta(name))
    }

    pub fn query(
        &self,
        q: &AuditQuery,
    ) -> Result<Vec<Result<ChainedRecord, UnreadableRecord>>, StorageError> {
        on_reader!(self, r => r.query(q))
    }

    /// Calls `f` with every record in sequence order; stops early if `f` returns false.
    pub fn for_each_record(
        &self,
        f: impl FnMut(Result<ChainedRecord, UnreadableRecord>) -> bool,
    ) -> Result<(), StorageError> {
        on_reader!(self, r => r.for_each_record(f))
    }

    /// Bytes of the database's pages that are free for reuse (after a prune, say); 0 where not measured.
    pub fn free_page_bytes(&self) -> Result<u64, StorageError> {
        match self {
            AuditReader::Sqlite(r) => r.free_page_bytes(),
            AuditReader::Postgres(_) => Ok(0),
        }
    }

    /// The first and last sequence numbers held, if any.
    pub fn extent(&self) -> Result<Option<(u64, u64)>, StorageError> {
        on_reader!(self, r => r.extent())
    }

    /// The last record before `time` such that every record before it is before `time` too.
    pub fn last_before(&self, time: &str) -> Result<Option<u64>, StorageError> {
        on_reader!(self, r => r.last_before(time))
    }

    /// Records after `after` up to `through`, oldest first, at most `limit`.
    pub fn range(
        &self,
        after: u64,
        through: u64,
        limit: usize,
    ) -> Result<Vec<Result<ChainedRecord, UnreadableRecord>>, StorageError> {
        on_reader!(self, r => r.range(after, through, limit))
    }

    pub fn prunes(&self) -> Result<Vec<(i64, PruneMark)>, StorageError> {
        on_reader!(self, r => r.prunes())
    }

    pub fn checkpoints(&self) -> Result<Vec<(i64, Checkpoint)>, StorageError> {
        on_reader!(self, r => r.checkpoints())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalRow {
    pub name: String,
    pub description: String,
    pub admin: bool,
    pub create_keys: bool,
    pub created_at: UnixMillis,
    pub disabled_at: Option<UnixMillis>,
    pub certificate_subjects: Vec<String>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub principal: String,
    pub description: String,
    pub secret_hash: [u8; 32],
    pub created_at: UnixMillis,
    pub expires_at: Option<UnixMillis>,
    pub revoked_at: Option<UnixMillis>,
}

impl std::fmt::Debug for TokenRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRow")
            .field("id", &self.id)
            .field("principal", &self.principal)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// An access key (the AWS endpoint's SigV4 credential) as stored: its secret only wrapped under the root key.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKeyRow {
    pub id: String,
    pub principal: String,
    pub description: String,
    pub wrapped_secret: Vec<u8>,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

impl std::fmt::Debug for AccessKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyRow")
            .field("id", &self.id)
            .field("principal", &self.principal)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// The whole access state as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRows {
    pub principals: Vec<PrincipalRow>,
    pub tokens: Vec<TokenRow>,
    pub access_keys: Vec<AccessKeyRow>,
}

/// A key version as stored: its material wrapped by the root key, or `None` once destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub version: u32,
    pub created_at: UnixMillis,
    pub wrapped_material: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRow {
    pub name: AliasName,
    pub key_id: KeyId,
    pub created_at: UnixMillis,
}

/// Everything stored about one key.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub record: KmsKey,
    pub versions: Vec<VersionRow>,
    pub aliases: Vec<AliasRow>,
    /// The key's policy as stored (JSON), if one was ever set.
    pub policy: Option<String>,
}

/// Filters for [`AuditReader::query`]; every one given must match.
#[derive(Debug, Default, Clone)]
pub struct AuditQuery {
    /// Inclusive, RFC 3339 with milliseconds.
    pub start_time: Option<String>,
    /// Exclusive.
    pub end_time: Option<String>,
    pub key_id: Option<String>,
    pub key_alias: Option<String>,
    pub principal: Option<String>,
    pub event_name: Option<String>,
    pub outcome: Option<Outcome>,
    pub encryption_context: Vec<(String, String)>,
    pub request_id: Option<String>,
    pub oldest_first: bool,
    /// Continue after this sequence number (in the query's order).
    pub after_seq: Option<u64>,
    pub limit: usize,
}

/// A value a query binds: what the two dialects' drivers each turn into their own parameter type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryArg {
    Text(String),
    Int(i64),
}

/// How the two SQL dialects differ where an audit query is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl AuditQuery {
    /// The SELECT for this query in `dialect`, and its parameters in order.
    pub(crate) fn to_sql(&self, dialect: Dialect) -> (String, Vec<QueryArg>) {
        let mut clauses: Vec<String> = Vec::new();
        let mut args: Vec<QueryArg> = Vec::new();
        // Each `?` in a clause becomes the dialect's next numbered parameter, so clauses compose without counting.
        let mut add = |clause: &str, values: Vec<QueryArg>| {
            let mut numbered = String::new();
            let mut values = values.into_iter();
            for (i, part) in clause.split('?').enumerate() {
                if i > 0
                    && let Some(v) = values.next()
                {
                    args.push(v);
                    let mark = if dialect == Dialect::Sqlite { '?' } else { '$' };
                    numbered.push_str(&format!("{mark}{}", args.len()));
                }
                numbered.push_str(part);
            }
            clauses.push(numbered);
        };
        let text = |s: &str| QueryArg::Text(s.to_owned());
        if let Some(t) = &self.start_time {
            add("event_time >= ?", vec![text(t)]);
        }
        if let Some(t) = &self.end_time {
            add("event_time < ?", vec![text(t)]);
        }
        match (&self.key_id, &self.key_alias) {
            (Some(id), Some(alias)) => {
                add("(key_id = ? OR key_alias = ?)", vec![text(id), text(alias)])
            }
            (Some(id), None) => add("key_id = ?", vec![text(id)]),
            (None, Some(alias)) => add("key_alias = ?", vec![text(alias)]),
            (None, None) => {}
        }
        if let Some(p) = &self.principal {
            add("principal = ?", vec![text(p)]);
        }
        if let Some(n) = &self.event_name {
            add("event_name = ?", vec![text(n)]);
        }
        if let Some(o) = self.outcome {
            add("outcome = ?", vec![text(o.as_str())]);
        }
        let context = match dialect {
            Dialect::Sqlite => {
                "EXISTS (SELECT 1 FROM json_each(audit_events.encryption_context) WHERE key = ? AND value = ?)"
            }
            Dialect::Postgres => "(encryption_context::jsonb ->> ?::text) = ?::text",
        };
        for (k, v) in &self.encryption_context {
            add(context, vec![text(k), text(v)]);
        }
        if let Some(r) = &self.request_id {
            add("request_id = ?", vec![text(r)]);
        }
        if let Some(after) = self.after_seq {
            let op = if self.oldest_first {
                "seq > ?"
            } else {
                "seq < ?"
            };
            add(op, vec![QueryArg::Int(after as i64)]);
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let order = if self.oldest_first { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events {filter} ORDER BY seq {order} LIMIT {}",
            self.limit
        );
        (sql, args)
    }
}

/// A stored row that does not parse back into a record (its JSON columns were edited, say).
#[derive(Debug)]
pub struct UnreadableRecord {
    pub seq: u64,
    pub reason: String,
}

/// An audit row as both dialects store it (the columns of `audit_events`, in order), before its JSON columns and
/// outcome are parsed back.
pub(crate) struct RawRecord {
    pub seq: u64,
    pub event_id: String,
    pub event_time: String,
    pub event_name: String,
    pub principal: String,
    pub source_address: String,
    pub user_agent: String,
    pub request_id: String,
    pub key_id: Option<String>,
    pub key_version: Option<u32>,
    pub key_alias: Option<String>,
    pub parameters: String,
    pub encryption_context: String,
    pub reason: Option<String>,
    pub outcome: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The columns of [`RawRecord`], for SELECTs.
pub(crate) const AUDIT_COLUMNS: &str = "seq, event_id, event_time, event_name, principal, source_address, \
     user_agent, request_id, key_id, key_version, key_alias, parameters, encryption_context, reason, outcome, \
     error_code, error_message, prev_hash, hash";

impl RawRecord {
    /// The record, or why the stored row is not one kmsd wrote.
    pub(crate) fn decode(self) -> Result<ChainedRecord, UnreadableRecord> {
        let seq = self.seq;
        let unreadable = |reason: String| Err(UnreadableRecord { seq, reason });
        let Ok(parameters) = serde_json::from_str(&self.parameters) else {
            return unreadable("its parameters are not a JSON object of strings".into());
        };
        let Ok(encryption_context) = serde_json::from_str(&self.encryption_context) else {
            return unreadable("its encryption context is not a JSON object of strings".into());
        };
        let Some(outcome) = Outcome::parse(&self.outcome) else {
            return unreadable(format!(
                "its outcome {:?} is not one kmsd writes",
                self.outcome
            ));
        };
        Ok(ChainedRecord {
            seq,
            record: crate::audit::AuditRecord {
                event_id: self.event_id,
                event_time: self.event_time,
                event_name: self.event_name,
                principal: self.principal,
                source_address: self.source_address,
                user_agent: self.user_agent,
                request_id: self.request_id,
                key_id: self.key_id,
                key_version: self.key_version,
                key_alias: self.key_alias,
                parameters,
                encryption_context,
                reason: self.reason,
                outcome,
                error_code: self.error_code,
                error_message: self.error_message,
            },
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}
