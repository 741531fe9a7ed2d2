//! SQLite's audit log: the writer's connection (append, checkpoints, probe) and read-only readers (query,
//! verification walks).
//!
//! Invariant: rows are only ever inserted; triggers in `0002_audit.sql` refuse UPDATE and DELETE.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, ToSql, params};

use super::configure;
use crate::audit::{ChainLink, ChainedRecord, Checkpoint, Encoded, PruneMark, chain};
use crate::storage::{
    AUDIT_COLUMNS, AuditQuery, Dialect, QueryArg, RawRecord, StorageError, UnreadableRecord,
};

const LOG_ID: &str = "audit_log_id";

/// The audit writer's own connection, used only from its thread.
pub struct SqliteAuditWriter(Connection);

impl SqliteAuditWriter {
    /// Opens a database that `Storage::open` has already migrated.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let conn = Connection::open(path)?;
        configure(&conn)?;
        // Commits here are made durable by [`WalSync`] on another thread, which is `synchronous=FULL`'s one extra
        // step (an fsync of the WAL after each commit), taken off the writer so the next batch need not wait for it.
        // Checkpoints still sync the WAL before copying and the database after, as with FULL.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The page cache stays at SQLite's default (2 MiB), which holds the tails of the table and its indexes that
        // every batch rewrites. A larger one costs more than it saves: SQLite scans the whole cache's hash table at
        // the end of each transaction (`pcache1TruncateUnsafe`), and that table grows with the pages cached: at
        // 64 MiB it became a quarter of the writer's time as the database grew (`cargo bench --bench audit`, in
        // BENCHMARKS.md: 13.1-13.6 against 9.0-10.2 µs of writer CPU per record).
        Ok(SqliteAuditWriter(conn))
    }

    /// The log's id, made on first use.
    pub fn log_id(&mut self) -> Result<String, StorageError> {
        if let Some(id) = read_log_id(&self.0)? {
            return Ok(id);
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.0.execute(
            "INSERT INTO meta (name, value) VALUES (?1, ?2)",
            params![LOG_ID, id.as_bytes()],
        )?;
        Ok(id)
    }

    /// The last record's sequence number and hash, if any.
    pub fn head(&self) -> Result<Option<(u64, String)>, StorageError> {
        Ok(self
            .0
            .query_row(
                "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .optional()?)
    }

    pub fn last_checkpoint_seq(&self) -> Result<Option<u64>, StorageError> {
        Ok(self
            .0
            .query_row("SELECT MAX(head_seq) FROM audit_checkpoints", [], |r| {
                r.get::<_, Option<i64>>(0)
            })?
            .map(|s| s as u64))
    }

    /// Chains a batch after `after` (the writer's head: it is the only writer of this file, which the data
    /// directory's lock guarantees) and appends it in one transaction: all of it is committed when this returns
    /// `Ok` ([`WalSync`] then makes it durable), none of it otherwise.
    pub fn append(
        &mut self,
        after: (u64, &str),
        records: Vec<Encoded>,
    ) -> Result<Vec<ChainLink>, StorageError> {
        let records = chain(after, records);
        let tx = self.0.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO audit_events (seq, event_id, event_time, event_name, principal, source_address,
                     user_agent, request_id, key_id, key_version, key_alias, parameters, encryption_context, reason,
                     outcome, error_code, error_message, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            )?;
            for c in &records {
                let r = &c.encoded.record;
                stmt.execute(params![
                    c.seq as i64,
                    r.event_id,
                    r.event_time,
                    r.event_name,
                    r.principal,
                    r.source_address,
                    r.user_agent,
                    r.request_id,
                    r.key_id,
                    r.key_version,
                    r.key_alias,
                    c.encoded.parameters_json,
                    c.encoded.context_json,
                    r.reason,
                    r.outcome.as_str(),
                    r.error_code,
                    r.error_message,
                    c.prev_hash,
                    c.hash,
                ])?;
            }
        }
        tx.commit()?;
        Ok(records)
    }

    /// Tries a write and rolls it back: tells whether appends would succeed now.
    pub fn probe(&mut self, next_seq: u64) -> Result<(), StorageError> {
        let tx = self.0.transaction()?;
        tx.execute(
            "INSERT INTO audit_events (seq, event_id, event_time, event_name, principal, source_address, user_agent,
                 request_id, parameters, encryption_context, outcome, prev_hash, hash)
             VALUES (?1, 'probe', '', 'probe', '', '', '', '', '{}', '{}', 'success', '', '')",
            [next_seq as i64],
        )?;
        tx.rollback()?;
        Ok(())
    }

    pub fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), StorageError> {
        self.0.execute(
            "INSERT INTO audit_checkpoints (head_seq, head_hash, time, log_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![cp.head_seq as i64, cp.head_hash, cp.time, cp.log_id, cp.signature],
        )?;
        Ok(())
    }
}

impl SqliteAuditWriter {
    /// Stores a prune mark, then deletes the records it covers in transactions of `chunk` rows, folding the WAL
    /// back into the database between them so the deletion itself needs little free space. Returns how many
    /// records were removed. Freed pages are reused by later records (the file does not shrink).
    pub fn prune(&mut self, mark: &PruneMark, chunk: u64) -> Result<u64, StorageError> {
        self.0.execute(
            "INSERT INTO audit_prunes (through_seq, through_hash, time, log_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![mark.through_seq as i64, mark.through_hash, mark.time, mark.log_id, mark.signature],
        )?;
        let mut removed = 0u64;
        loop {
            let n = self.0.execute(
                "DELETE FROM audit_events WHERE seq IN
                     (SELECT seq FROM audit_events WHERE seq <= ?1 ORDER BY seq LIMIT ?2)",
                params![mark.through_seq as i64, chunk as i64],
            )? as u64;
            removed += n;
            if n < chunk {
                break;
            }
            // The WAL would otherwise hold every deleted page until the next automatic checkpoint.
            self.0
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        self.0
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(removed)
    }
}

/// Makes committed audit batches durable: an fsync of the WAL file, the step `synchronous=FULL` would take inside
/// each commit. A batch is acknowledged only after a sync that began after its commit returned.
pub struct WalSync {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
}

impl WalSync {
    pub fn new(db_path: &Path) -> Self {
        let mut path = db_path.as_os_str().to_owned();
        path.push("-wal");
        WalSync {
            path: path.into(),
            file: None,
        }
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            // The WAL exists from the first commit on, and SQLite removes it only when the last connection closes.
            None => self.file.insert(std::fs::File::open(&self.path)?),
        };
        file.sync_data()
    }
}

fn read_log_id(conn: &Connection) -> Result<Option<String>, StorageError> {
    let raw: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE name = ?1", [LOG_ID], |r| {
            r.get(0)
        })
        .optional()?;
    raw.map(|b| String::from_utf8(b).map_err(|_| StorageError::Corrupt("audit log id".into())))
        .transpose()
}

/// A read-only connection for queries and verification, so neither waits for nor blocks the writers.
pub struct SqliteAuditReader(Connection);

impl SqliteAuditReader {
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        if !path.exists() {
            return Err(StorageError::Corrupt(format!(
                "{} does not exist",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(SqliteAuditReader(conn))
    }

    pub fn log_id(&self) -> Result<Option<String>, StorageError> {
        read_log_id(&self.0)
    }

    /// A value of the `meta` table, such as the wrapped audit signing key.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .0
            .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn query(
        &self,
        q: &AuditQuery,
    ) -> Result<Vec<Result<ChainedRecord, UnreadableRecord>>, StorageError> {
        let (sql, args) = q.to_sql(Dialect::Sqlite);
        let args: Vec<Box<dyn ToSql>> = args
            .into_iter()
            .map(|a| -> Box<dyn ToSql> {
                match a {
                    QueryArg::Text(t) => Box::new(t),
                    QueryArg::Int(n) => Box::new(n),
                }
            })
            .collect();
        let mut stmt = self.0.prepare(&sql)?;
        let refs: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
        let rows = stmt.query_map(refs.as_slice(), read_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Calls `f` with every record in sequence order; stops early if `f` returns false.
    pub fn for_each_record(
        &self,
        mut f: impl FnMut(Result<ChainedRecord, UnreadableRecord>) -> bool,
    ) -> Result<(), StorageError> {
        let mut stmt = self.0.prepare(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events ORDER BY seq ASC"
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            if !f(read_row(row)?) {
                break;
            }
        }
        Ok(())
    }

    /// Bytes of the database's pages that are free for reuse (after a prune, say).
    pub fn free_page_bytes(&self) -> Result<u64, StorageError> {
        let free: i64 = self
            .0
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let size: i64 = self.0.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((free.max(0) as u64).saturating_mul(size.max(0) as u64))
    }

    /// The first and last sequence numbers held, if any.
    pub fn extent(&self) -> Result<Option<(u64, u64)>, StorageError> {
        let (first, last): (Option<i64>, Option<i64>) =
            self.0
                .query_row("SELECT MIN(seq), MAX(seq) FROM audit_events", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        Ok(first.zip(last).map(|(f, l)| (f as u64, l as u64)))
    }

    /// The last record before `time` such that every record before it is before `time` too.
    pub fn last_before(&self, time: &str) -> Result<Option<u64>, StorageError> {
        let first_at_or_after: Option<i64> = self.0.query_row(
            "SELECT MIN(seq) FROM audit_events WHERE event_time >= ?1",
            [time],
            |r| r.get(0),
        )?;
        Ok(match first_at_or_after {
            Some(seq) => (seq > 1).then(|| seq as u64 - 1),
            None => self.extent()?.map(|(_, last)| last),
        })
    }

    /// Records after `after` up to `through`, oldest first, at most `limit`.
    pub fn range(
        &self,
        after: u64,
        through: u64,
        limit: usize,
    ) -> Result<Vec<Result<ChainedRecord, UnreadableRecord>>, StorageError> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![after as i64, through as i64, limit as i64],
            read_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn prunes(&self) -> Result<Vec<(i64, PruneMark)>, StorageError> {
        let mut stmt = self.0.prepare(
            "SELECT id, through_seq, through_hash, time, log_id, signature FROM audit_prunes ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                PruneMark {
                    through_seq: r.get::<_, i64>(1)? as u64,
                    through_hash: r.get(2)?,
                    time: r.get(3)?,
                    log_id: r.get(4)?,
                    signature: r.get(5)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn checkpoints(&self) -> Result<Vec<(i64, Checkpoint)>, StorageError> {
        let mut stmt = self
            .0
            .prepare("SELECT id, head_seq, head_hash, time, log_id, signature FROM audit_checkpoints ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Checkpoint {
                    head_seq: r.get::<_, i64>(1)? as u64,
                    head_hash: r.get(2)?,
                    time: r.get(3)?,
                    log_id: r.get(4)?,
                    signature: r.get(5)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn read_row(r: &Row<'_>) -> rusqlite::Result<Result<ChainedRecord, UnreadableRecord>> {
    Ok(RawRecord {
        seq: r.get::<_, i64>(0)? as u64,
        event_id: r.get(1)?,
        event_time: r.get(2)?,
        event_name: r.get(3)?,
        principal: r.get(4)?,
        source_address: r.get(5)?,
        user_agent: r.get(6)?,
        request_id: r.get(7)?,
        key_id: r.get(8)?,
        key_version: r.get(9)?,
        key_alias: r.get(10)?,
        parameters: r.get(11)?,
        encryption_context: r.get(12)?,
        reason: r.get(13)?,
        outcome: r.get(14)?,
        error_code: r.get(15)?,
        error_message: r.get(16)?,
        prev_hash: r.get(17)?,
        hash: r.get(18)?,
    }
    .decode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditRecord, GENESIS_HASH};

    /// A batch, and the batch after it, store every record in order and intact: what was hashed is what is read.
    #[test]
    fn batches_store_every_record_in_order_and_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsd.db");
        drop(super::super::open_connection(&path).unwrap());
        let mut writer = SqliteAuditWriter::open(&path).unwrap();
        let record = |n: usize| AuditRecord {
            request_id: format!("req-{n}"),
            key_version: (!n.is_multiple_of(3)).then_some(n as u32),
            reason: n.is_multiple_of(2).then(|| format!("reason {n}")),
            ..crate::audit::record::tests::sample()
        };
        let encode = |n| Encoded::new(record(n));
        let first = writer
            .append((0, GENESIS_HASH), (0..45).map(encode).collect())
            .unwrap();
        let last = first.last().unwrap();
        let second = writer
            .append((last.seq, &last.hash), (45..48).map(encode).collect())
            .unwrap();

        let mut read = Vec::new();
        SqliteAuditReader::open(&path)
            .unwrap()
            .for_each_record(|r| {
                read.push(r.expect("a readable record"));
                true
            })
            .unwrap();
        assert_eq!(read.len(), 48);
        for (n, (stored, appended)) in read.iter().zip(first.iter().chain(&second)).enumerate() {
            assert_eq!(stored.seq, n as u64 + 1);
            assert_eq!(stored.record, appended.encoded.record);
            assert_eq!(stored.prev_hash, appended.prev_hash);
            assert_eq!(stored.hash, appended.hash);
            assert!(
                stored.hash_matches(),
                "record {} hashes as stored",
                stored.seq
            );
        }
    }
}
