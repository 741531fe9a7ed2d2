//! The SQLite backend: the embedded default, one file in the data directory.
//!
//! One connection lives on a dedicated thread and runs jobs sent to it, so SQLite never blocks an async worker.
//! The database is opened in WAL mode with `synchronous=FULL` (a commit is durable when it returns) and
//! `secure_delete=ON` (destroyed material is overwritten, not left in free pages). Numbered migrations in
//! `migrations/` are applied at open; a database newer than this binary is refused.
//!
//! Invariants: every multi-row change is one transaction; key material appears here only wrapped by the root key.

mod access;
mod audit;
mod keys;
mod migrations;

pub use audit::{SqliteAuditReader, SqliteAuditWriter, WalSync};
pub use migrations::MIGRATIONS;

use std::path::Path;
use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{AliasRow, StorageError, StoredKey, VersionRow};
use crate::clock::UnixMillis;
use crate::keys::{KeyId, KeySpec, KmsKey};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

enum Msg {
    Run(Job),
    Close(oneshot::Sender<()>),
}

/// A handle to the storage thread. Cheap to clone: every clone sends to the one thread.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Msg>,
    path: std::sync::Arc<Path>,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`, on a thread of its own.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let conn = open_connection(path)?;
        let (jobs, inbox) = mpsc::channel::<Msg>();
        thread::Builder::new()
            .name("kmsd-storage".into())
            .spawn(move || run(conn, inbox))
            .map_err(|e| StorageError::Corrupt(format!("cannot start the storage thread: {e}")))?;
        Ok(SqliteStore {
            jobs,
            path: path.into(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the storage thread and waits for its result without blocking the async runtime.
    async fn call<R, F>(&self, f: F) -> Result<R, StorageError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StorageError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Msg::Run(Box::new(move |conn| {
                // The caller may have gone away (cancelled request); the work is done either way.
                let _ = tx.send(f(conn));
            })))
            .map_err(|_| StorageError::Closed)?;
        rx.await.map_err(|_| StorageError::Closed)?
    }

    /// Finishes queued jobs, then closes the connection (which checkpoints the WAL).
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Msg::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    pub async fn meta(&self, name: &'static str) -> Result<Option<Vec<u8>>, StorageError> {
        self.call(move |c| keys::meta(c, name)).await
    }

    pub async fn set_meta(&self, name: &'static str, value: Vec<u8>) -> Result<(), StorageError> {
        self.call(move |c| keys::set_meta(c, name, &value)).await
    }

    /// Every `meta` row, by name.
    pub async fn all_meta(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.call(|c| {
            let mut stmt = c.prepare("SELECT name, value FROM meta ORDER BY name")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn insert_meta_if_absent(
        &self,
        name: &'static str,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, StorageError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                rusqlite::params![name, value],
            )?;
            let stored = tx.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })?;
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    pub async fn load_keys(&self) -> Result<Vec<StoredKey>, StorageError> {
        self.call(keys::load_all).await
    }

    pub async fn insert_key(
        &self,
        record: KmsKey,
        version: VersionRow,
        alias: Option<AliasRow>,
        policy: Option<String>,
    ) -> Result<(), StorageError> {
        self.call(move |c| {
            keys::insert_key(c, &record, &version, alias.as_ref(), policy.as_deref())
        })
        .await
    }

    pub async fn set_key_policy(
        &self,
        key_id: KeyId,
        policy: String,
        at: UnixMillis,
    ) -> Result<(), StorageError> {
        self.call(move |c| keys::set_policy(c, key_id, &policy, at))
            .await
    }

    pub async fn update_key(&self, record: KmsKey) -> Result<(), StorageError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            keys::update_key(&tx, &record)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn add_version(
        &self,
        record: KmsKey,
        version: VersionRow,
    ) -> Result<(), StorageError> {
        self.call(move |c| keys::add_version(c, &record, &version))
            .await
    }

    /// Records the key as destroyed, erases every version's wrapped material and removes its aliases.
    pub async fn destroy_key(&self, record: KmsKey) -> Result<(), StorageError> {
        self.call(move |c| keys::destroy_key(c, &record)).await
    }

    pub async fn set_material(
        &self,
        record: KmsKey,
        version: u32,
        wrapped: Option<Vec<u8>>,
    ) -> Result<(), StorageError> {
        self.call(move |c| keys::set_material(c, &record, version, wrapped.as_deref()))
            .await
    }

    /// Fails with a constraint error if the alias exists.
    pub async fn insert_alias(&self, alias: AliasRow) -> Result<(), StorageError> {
        self.call(move |c| keys::insert_alias(c, &alias)).await
    }

    /// Returns whether the alias existed.
    pub async fn delete_alias(&self, name: String) -> Result<bool, StorageError> {
        self.call(move |c| keys::delete_alias(c, &name)).await
    }

    /// Returns whether the alias named `from` (and now names `to`).
    pub async fn move_alias(
        &self,
        name: String,
        from: KeyId,
        to: KeyId,
    ) -> Result<bool, StorageError> {
        self.call(move |c| keys::move_alias(c, &name, from, to))
            .await
    }

    /// For tests and tools that must look at what is stored for a key.
    pub async fn versions_of(&self, key_id: KeyId) -> Result<Vec<VersionRow>, StorageError> {
        self.call(move |c| keys::versions_of(c, key_id)).await
    }
}

pub(super) fn open_connection(path: &Path) -> Result<Connection, StorageError> {
    let mut conn = Connection::open(path)?;
    configure(&conn)?;
    migrations::apply(&mut conn)?;
    Ok(conn)
}

/// The settings every writing connection uses.
fn configure(conn: &Connection) -> Result<(), StorageError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

fn run(mut conn: Connection, inbox: mpsc::Receiver<Msg>) {
    while let Ok(msg) = inbox.recv() {
        match msg {
            Msg::Run(job) => job(&mut conn),
            Msg::Close(done) => {
                drop(conn);
                let _ = done.send(());
                return;
            }
        }
    }
}

/// Copies the database at `db_path` to a new file `out` (mode 0600) with SQLite's online backup API: a consistent
/// snapshot, taken while the daemon keeps serving. The copy holds key material only wrapped: restoring it needs the
/// same root key.
pub fn backup(db_path: &Path, out: &Path) -> Result<(), StorageError> {
    if !db_path.is_file() {
        return Err(StorageError::Corrupt(format!(
            "{} does not exist",
            db_path.display()
        )));
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(out)
        .map_err(|e| StorageError::Corrupt(format!("cannot create {}: {e}", out.display())))?;
    let source = Connection::open_with_flags(db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.busy_timeout(std::time::Duration::from_secs(5))?;
    let mut target = Connection::open(out)?;
    {
        use rusqlite::backup::{Backup, StepResult};
        let backup = Backup::new(&source, &mut target)?;
        // All pages in one step, inside one read transaction: a consistent snapshot even while audit records keep
        // arriving (small steps restart whenever the source changes, and might never finish under load).
        let mut attempts = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked if attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                _ => {
                    return Err(StorageError::Corrupt(
                        "the database stayed busy; backup gave up".into(),
                    ));
                }
            }
        }
    }
    target.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

/// A wrapped secret met by [`rewrap_all`].
#[derive(Debug)]
pub enum Wrapped<'a> {
    Version {
        key_id: KeyId,
        version: u32,
        /// The key's spec, which the wrapping binds.
        spec: KeySpec,
        wrapped: &'a [u8],
    },
    Meta {
        name: &'a str,
        value: &'a [u8],
    },
    /// An access key's secret.
    AccessKey {
        id: &'a str,
        wrapped: &'a [u8],
    },
}

/// Replaces every wrapped key version, access key secret and `meta` value for which `rewrap` returns `Some`, in one
/// transaction: all of it or, if `rewrap` or SQLite fails anywhere, none of it. Returns how many values changed.
pub fn rewrap_all(
    db_path: &Path,
    mut rewrap: impl FnMut(Wrapped<'_>) -> Result<Option<Vec<u8>>, String>,
) -> Result<usize, StorageError> {
    if !db_path.is_file() {
        return Err(StorageError::Corrupt(format!(
            "{} does not exist",
            db_path.display()
        )));
    }
    let mut conn = Connection::open(db_path)?;
    configure(&conn)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut changed = 0;
    let versions: Vec<(String, u32, String, Vec<u8>)> = {
        let mut stmt = tx.prepare(
            "SELECT v.key_id, v.version, k.key_spec, v.wrapped_material
             FROM key_versions v JOIN keys k ON k.key_id = v.key_id
             WHERE v.wrapped_material IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (key_id, version, spec, wrapped) in versions {
        let id = KeyId::parse(&key_id)
            .map_err(|_| StorageError::Corrupt(format!("key id {key_id:?}")))?;
        let spec = KeySpec::parse(&spec)
            .map_err(|_| StorageError::Corrupt(format!("key {key_id} has spec {spec:?}")))?;
        if let Some(new) = rewrap(Wrapped::Version {
            key_id: id,
            version,
            spec,
            wrapped: &wrapped,
        })
        .map_err(StorageError::Corrupt)?
        {
            tx.execute(
                "UPDATE key_versions SET wrapped_material = ?3 WHERE key_id = ?1 AND version = ?2",
                rusqlite::params![key_id, version, new],
            )?;
            changed += 1;
        }
    }
    let metas: Vec<(String, Vec<u8>)> = {
        let mut stmt = tx.prepare("SELECT name, value FROM meta")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (name, value) in metas {
        if let Some(new) = rewrap(Wrapped::Meta {
            name: &name,
            value: &value,
        })
        .map_err(StorageError::Corrupt)?
        {
            tx.execute(
                "UPDATE meta SET value = ?2 WHERE name = ?1",
                rusqlite::params![name, new],
            )?;
            changed += 1;
        }
    }
    let access_keys: Vec<(String, Vec<u8>)> = {
        let mut stmt = tx.prepare("SELECT access_key_id, wrapped_secret FROM access_keys")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, wrapped) in access_keys {
        if let Some(new) = rewrap(Wrapped::AccessKey {
            id: &id,
            wrapped: &wrapped,
        })
        .map_err(StorageError::Corrupt)?
        {
            tx.execute(
                "UPDATE access_keys SET wrapped_secret = ?2 WHERE access_key_id = ?1",
                rusqlite::params![id, new],
            )?;
            changed += 1;
        }
    }
    tx.commit()?;
    Ok(changed)
}
