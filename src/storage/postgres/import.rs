//! Moving a SQLite database into PostgreSQL: every row, as it is, in one transaction.

use std::path::Path;

use super::audit::{insert_checkpoint, insert_links, insert_prune};
use super::{CHAIN_LOCK, CHANGE_LOCK, PgStore};
use crate::audit::{ChainLink, ChainedRecord, Encoded};
use crate::storage::sqlite::{SqliteAuditReader, SqliteStore};
use crate::storage::{StorageError, UnreadableRecord};

/// What an import copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub meta: usize,
    pub keys: usize,
    pub principals: usize,
    pub tokens: usize,
    pub access_keys: usize,
    pub records: u64,
    pub checkpoints: usize,
    pub prunes: usize,
}

/// Audit records copied per statement.
const PAGE: usize = 5_000;

impl PgStore {
    /// Copies the SQLite database at `path` (which no daemon may be using) into this database, which must hold
    /// no kmsd data yet: metadata (the root key's check value, the wrapped audit signing key, the log's id),
    /// keys with every version, alias, tag and policy, principals, tokens, access keys, and the audit log with its sequence
    /// numbers, hashes, checkpoints and prune marks unchanged. One transaction: all of it, or nothing.
    pub async fn import_sqlite(&self, path: &Path) -> Result<Imported, StorageError> {
        let source = SqliteStore::open(path)?;
        let result = self.import_from(&source, path).await;
        source.close().await;
        result
    }

    async fn import_from(
        &self,
        source: &SqliteStore,
        path: &Path,
    ) -> Result<Imported, StorageError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // No replica may write while the log and the keys arrive.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1), pg_advisory_xact_lock($2)",
            &[&CHANGE_LOCK, &CHAIN_LOCK],
        )
        .await?;
        let occupied: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM meta) OR EXISTS (SELECT 1 FROM keys)
                     OR EXISTS (SELECT 1 FROM principals) OR EXISTS (SELECT 1 FROM audit_events)",
                &[],
            )
            .await?
            .get(0);
        if occupied {
            return Err(StorageError::Corrupt(format!(
                "{} already holds kmsd data; moving a data directory needs an empty database",
                self.url
            )));
        }
        let mut imported = Imported::default();

        for (name, value) in source.all_meta().await? {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ($1, $2)",
                &[&name, &value],
            )
            .await?;
            imported.meta += 1;
        }

        for key in source.load_keys().await? {
            let r = &key.record;
            super::keys::insert_key_row(&tx, r).await?;
            for v in &key.versions {
                super::keys::insert_version(&tx, r.id, v).await?;
            }
            for alias in &key.aliases {
                super::keys::insert_alias(&tx, alias).await?;
            }
            if let Some(policy) = &key.policy {
                super::keys::set_policy(&tx, r.id, policy, r.created_at).await?;
            }
            imported.keys += 1;
        }

        let access = source.load_access().await?;
        for p in &access.principals {
            super::keys::insert_principal(&tx, p).await?;
        }
        for t in &access.tokens {
            super::keys::insert_token(&tx, t).await?;
        }
        for k in &access.access_keys {
            super::keys::insert_access_key(&tx, k).await?;
        }
        imported.principals = access.principals.len();
        imported.tokens = access.tokens.len();
        imported.access_keys = access.access_keys.len();

        // The audit log, a page at a time, read off the async workers.
        let mut reader = Some(SqliteAuditReader::open(path)?);
        let mut after = 0u64;
        loop {
            let taken = reader
                .take()
                .expect("the reader is put back after each page");
            let (back, page) = tokio::task::spawn_blocking(move || {
                let page = taken.range(after, i64::MAX as u64, PAGE);
                (taken, page)
            })
            .await
            .map_err(|e| {
                StorageError::Corrupt(format!("reading the SQLite audit log failed: {e}"))
            })?;
            reader = Some(back);
            let page = page?;
            let Some(last) = page.last() else {
                break;
            };
            after = match last {
                Ok(r) => r.seq,
                Err(u) => u.seq,
            };
            let full = page.len() == PAGE;
            let links = page
                .into_iter()
                .map(|r| r.map(link).map_err(unreadable))
                .collect::<Result<Vec<ChainLink>, StorageError>>()?;
            insert_links(&tx, &links).await?;
            imported.records += links.len() as u64;
            if !full {
                break;
            }
        }
        let reader = reader.expect("the reader is put back after each page");
        let (checkpoints, prunes) = tokio::task::spawn_blocking(move || {
            Ok::<_, StorageError>((reader.checkpoints()?, reader.prunes()?))
        })
        .await
        .map_err(|e| {
            StorageError::Corrupt(format!("reading the SQLite audit log failed: {e}"))
        })??;
        for (_, cp) in &checkpoints {
            insert_checkpoint(&tx, cp).await?;
        }
        for (_, mark) in &prunes {
            insert_prune(&tx, mark).await?;
        }
        imported.checkpoints = checkpoints.len();
        imported.prunes = prunes.len();
        tx.commit().await?;
        Ok(imported)
    }
}

/// A stored record as a link to insert again: what was hashed is what is stored.
fn link(r: ChainedRecord) -> ChainLink {
    ChainLink {
        seq: r.seq,
        prev_hash: r.prev_hash,
        hash: r.hash,
        encoded: Encoded::new(r.record),
    }
}

fn unreadable(u: UnreadableRecord) -> StorageError {
    StorageError::Corrupt(format!(
        "audit record {} of the SQLite database cannot be read ({}); verify it (kmsctl audit verify --db) \
         before moving it",
        u.seq, u.reason
    ))
}
