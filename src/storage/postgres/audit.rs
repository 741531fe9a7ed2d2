//! PostgreSQL's audit log: one hash chain that every replica's writer appends to, and blocking readers.
//!
//! A batch is one transaction: take the chain's transaction-scoped advisory lock, read the head in a statement of
//! its own (under READ COMMITTED it sees every batch committed before the lock was granted), chain the batch after
//! it, insert it in one statement (`UNNEST` of one array per column), commit. The lock is released by the commit, so
//! it is held for two statements and a commit; the primary key on `seq` refuses a fork even if a writer skipped it.

use tokio_postgres::types::ToSql;

use super::{CHAIN_LOCK, PgStore};
use crate::audit::{ChainLink, ChainedRecord, Checkpoint, Encoded, GENESIS_HASH, PruneMark, chain};
use crate::storage::{
    AUDIT_COLUMNS, AuditQuery, Dialect, QueryArg, RawRecord, StorageError, UnreadableRecord,
};

const LOG_ID: &str = "audit_log_id";

/// The audit writer thread's handle on the database (blocking).
pub struct PgAuditWriter {
    store: PgStore,
}

impl PgAuditWriter {
    pub(super) fn new(store: PgStore) -> Self {
        PgAuditWriter { store }
    }

    /// The log's id, made by whichever replica asks first.
    pub fn log_id(&mut self) -> Result<String, StorageError> {
        let store = &self.store;
        store.block_on(async {
            let c = store.client().await?;
            let made = uuid::Uuid::new_v4().to_string();
            c.execute(
                "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&LOG_ID, &made.as_bytes()],
            )
            .await?;
            let raw: Vec<u8> = c
                .query_one("SELECT value FROM meta WHERE name = $1", &[&LOG_ID])
                .await?
                .get(0);
            String::from_utf8(raw).map_err(|_| StorageError::Corrupt("audit log id".into()))
        })
    }

    pub fn head(&mut self) -> Result<Option<(u64, String)>, StorageError> {
        let store = &self.store;
        store.block_on(async {
            let c = store.client().await?;
            head(&c).await
        })
    }

    pub fn last_checkpoint_seq(&mut self) -> Result<Option<u64>, StorageError> {
        let store = &self.store;
        store.block_on(async {
            let c = store.client().await?;
            let seq: Option<i64> = c
                .query_one("SELECT MAX(head_seq) FROM audit_checkpoints", &[])
                .await?
                .get(0);
            Ok(seq.map(|s| s as u64))
        })
    }

    /// Chains `records` after the shared head, under the chain's lock, and inserts them in one transaction, in two
    /// round trips: BEGIN, the lock and the head pipelined (the server runs them in order, so the head's snapshot is
    /// taken once the lock is held), then the insert and COMMIT pipelined. The lock is held for the second round
    /// trip and the commit's flush.
    pub fn append(&mut self, records: Vec<Encoded>) -> Result<Vec<ChainLink>, StorageError> {
        let store = &self.store;
        store.block_on(async {
            let c = store.client().await?;
            let appended = append_pipelined(&c, records).await;
            if appended.is_err() {
                // It may have been left inside a transaction: it is closed rather than pooled.
                drop(deadpool_postgres::Object::take(c));
            }
            appended
        })
    }

    /// Whether the database takes writes now: reachable, and a primary rather than a standby.
    pub fn probe(&mut self) -> Result<(), StorageError> {
        let store = &self.store;
        store.block_on(async {
            let c = store.client().await?;
            let standby: bool = c.query_one("SELECT pg_is_in_recovery()", &[]).await?.get(0);
            if standby {
                return Err(StorageError::Connect(
                    "the server is a standby (read-only); add the primary to the URL, with \
                     target_session_attrs=read-write"
                        .into(),
                ));
            }
            Ok(())
        })
    }

    pub fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), StorageError> {
        let store = &self.store;
        store.block_on(async { insert_checkpoint(&store.client().await?, cp).await })
    }

    pub fn prune(&mut self, mark: &PruneMark, chunk: u64) -> Result<u64, StorageError> {
        let store = &self.store;
        store.block_on(async {
            let c = store.client().await?;
            insert_prune(&c, mark).await?;
            let mut removed = 0u64;
            loop {
                let n = c
                    .execute(
                        "DELETE FROM audit_events WHERE seq IN
                             (SELECT seq FROM audit_events WHERE seq <= $1 ORDER BY seq LIMIT $2)",
                        &[&(mark.through_seq as i64), &(chunk as i64)],
                    )
                    .await?;
                removed += n;
                if n < chunk {
                    return Ok(removed);
                }
            }
        })
    }
}

pub(super) async fn insert_checkpoint(
    c: &impl deadpool_postgres::GenericClient,
    cp: &Checkpoint,
) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO audit_checkpoints (head_seq, head_hash, time, log_id, signature) VALUES ($1, $2, $3, $4, $5)",
        &[&(cp.head_seq as i64), &cp.head_hash, &cp.time, &cp.log_id, &cp.signature],
    )
    .await?;
    Ok(())
}

pub(super) async fn insert_prune(
    c: &impl deadpool_postgres::GenericClient,
    mark: &PruneMark,
) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO audit_prunes (through_seq, through_hash, time, log_id, signature) VALUES ($1, $2, $3, $4, $5)",
        &[&(mark.through_seq as i64), &mark.through_hash, &mark.time, &mark.log_id, &mark.signature],
    )
    .await?;
    Ok(())
}

/// Inserts chained records in one statement (`UNNEST` of one array per column).
pub(super) async fn insert_links(
    tx: &deadpool_postgres::Transaction<'_>,
    links: &[ChainLink],
) -> Result<(), StorageError> {
    let columns = Columns::of(links);
    let insert = tx.prepare_cached(INSERT).await?;
    tx.execute(&insert, &columns.params()).await?;
    Ok(())
}

async fn append_pipelined(
    c: &deadpool_postgres::Object,
    records: Vec<Encoded>,
) -> Result<Vec<ChainLink>, StorageError> {
    let lock = c.prepare_cached("SELECT pg_advisory_xact_lock($1)").await?;
    let head = c.prepare_cached(HEAD).await?;
    let insert = c.prepare_cached(INSERT).await?;
    let (begun, locked, head) = tokio::join!(
        c.batch_execute("BEGIN"),
        c.execute(&lock, &[&CHAIN_LOCK]),
        c.query_opt(&head, &[])
    );
    begun?;
    locked?;
    let (seq, hash) = head?
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1)))
        .unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
    let links = chain((seq, &hash), records);
    let columns = Columns::of(&links);
    let params = columns.params();
    // If the insert fails, COMMIT ends the failed transaction as a rollback (and says nothing): the insert's error
    // is the answer.
    let (inserted, committed) =
        tokio::join!(c.execute(&insert, &params), c.batch_execute("COMMIT"));
    inserted?;
    committed?;
    Ok(links)
}

/// The head: the last record's sequence number and hash; after a prune that left no record, the mark's. One
/// statement, so that it pipelines behind the lock.
const HEAD: &str = "SELECT seq, hash FROM (
         (SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1)
         UNION ALL
         (SELECT through_seq, through_hash FROM audit_prunes ORDER BY through_seq DESC LIMIT 1)
     ) AS h ORDER BY seq DESC LIMIT 1";

/// A batch in one statement: `UNNEST` of one array per column.
const INSERT: &str = "INSERT INTO audit_events (seq, event_id, event_time, event_name, principal, source_address,
         user_agent, request_id, key_id, key_version, key_alias, parameters, encryption_context, reason, outcome,
         error_code, error_message, prev_hash, hash)
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
         $8::text[], $9::text[], $10::bigint[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
         $16::text[], $17::text[], $18::text[], $19::text[])";

/// The last record's sequence number and hash; after a prune that left no record, the mark's.
async fn head(
    c: &impl deadpool_postgres::GenericClient,
) -> Result<Option<(u64, String)>, StorageError> {
    Ok(c.query_opt(HEAD, &[])
        .await?
        .map(|r| (r.get::<_, i64>(0) as u64, r.get(1))))
}

/// A batch as one array per column, for `UNNEST`.
struct Columns<'a> {
    seq: Vec<i64>,
    event_id: Vec<&'a str>,
    event_time: Vec<&'a str>,
    event_name: Vec<&'a str>,
    principal: Vec<&'a str>,
    source_address: Vec<&'a str>,
    user_agent: Vec<&'a str>,
    request_id: Vec<&'a str>,
    key_id: Vec<Option<&'a str>>,
    key_version: Vec<Option<i64>>,
    key_alias: Vec<Option<&'a str>>,
    parameters: Vec<&'a str>,
    encryption_context: Vec<&'a str>,
    reason: Vec<Option<&'a str>>,
    outcome: Vec<&'static str>,
    error_code: Vec<Option<&'a str>>,
    error_message: Vec<Option<&'a str>>,
    prev_hash: Vec<&'a str>,
    hash: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn of(links: &'a [ChainLink]) -> Self {
        let mut c = Columns {
            seq: Vec::with_capacity(links.len()),
            event_id: Vec::with_capacity(links.len()),
            event_time: Vec::with_capacity(links.len()),
            event_name: Vec::with_capacity(links.len()),
            principal: Vec::with_capacity(links.len()),
            source_address: Vec::with_capacity(links.len()),
            user_agent: Vec::with_capacity(links.len()),
            request_id: Vec::with_capacity(links.len()),
            key_id: Vec::with_capacity(links.len()),
            key_version: Vec::with_capacity(links.len()),
            key_alias: Vec::with_capacity(links.len()),
            parameters: Vec::with_capacity(links.len()),
            encryption_context: Vec::with_capacity(links.len()),
            reason: Vec::with_capacity(links.len()),
            outcome: Vec::with_capacity(links.len()),
            error_code: Vec::with_capacity(links.len()),
            error_message: Vec::with_capacity(links.len()),
            prev_hash: Vec::with_capacity(links.len()),
            hash: Vec::with_capacity(links.len()),
        };
        for link in links {
            let r = &link.encoded.record;
            c.seq.push(link.seq as i64);
            c.event_id.push(&r.event_id);
            c.event_time.push(&r.event_time);
            c.event_name.push(&r.event_name);
            c.principal.push(&r.principal);
            c.source_address.push(&r.source_address);
            c.user_agent.push(&r.user_agent);
            c.request_id.push(&r.request_id);
            c.key_id.push(r.key_id.as_deref());
            c.key_version.push(r.key_version.map(i64::from));
            c.key_alias.push(r.key_alias.as_deref());
            c.parameters.push(&link.encoded.parameters_json);
            c.encryption_context.push(&link.encoded.context_json);
            c.reason.push(r.reason.as_deref());
            c.outcome.push(r.outcome.as_str());
            c.error_code.push(r.error_code.as_deref());
            c.error_message.push(r.error_message.as_deref());
            c.prev_hash.push(&link.prev_hash);
            c.hash.push(&link.hash);
        }
        c
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 19] {
        [
            &self.seq,
            &self.event_id,
            &self.event_time,
            &self.event_name,
            &self.principal,
            &self.source_address,
            &self.user_agent,
            &self.request_id,
            &self.key_id,
            &self.key_version,
            &self.key_alias,
            &self.parameters,
            &self.encryption_context,
            &self.reason,
            &self.outcome,
            &self.error_code,
            &self.error_message,
            &self.prev_hash,
            &self.hash,
        ]
    }
}

/// A blocking reader of the shared log, for queries and verification.
pub struct PgAuditReader {
    store: PgStore,
}

/// Rows a verification walk reads per query.
const WALK_PAGE: usize = 10_000;

impl PgAuditReader {
    pub(super) fn new(store: PgStore) -> Self {
        PgAuditReader { store }
    }

    fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StorageError> {
        let store = &self.store;
        store.block_on(async {
            let c = store.client().await?;
            Ok(c.query(sql, params).await?)
        })
    }

    pub fn log_id(&self) -> Result<Option<String>, StorageError> {
        self.meta(LOG_ID)?
            .map(|b| String::from_utf8(b).map_err(|_| StorageError::Corrupt("audit log id".into())))
            .transpose()
    }

    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .rows("SELECT value FROM meta WHERE name = $1", &[&name])?
            .first()
            .map(|r| r.get(0)))
    }

    pub fn query(
        &self,
        q: &AuditQuery,
    ) -> Result<Vec<Result<ChainedRecord, UnreadableRecord>>, StorageError> {
        let (sql, args) = q.to_sql(Dialect::Postgres);
        let args: Vec<Box<dyn ToSql + Sync + Send>> = args
            .into_iter()
            .map(|a| -> Box<dyn ToSql + Sync + Send> {
                match a {
                    QueryArg::Text(t) => Box::new(t),
                    QueryArg::Int(n) => Box::new(n),
                }
            })
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        self.rows(&sql, &params)?.iter().map(read_row).collect()
    }

    /// Calls `f` with every record in sequence order, a page at a time; stops early if `f` returns false.
    pub fn for_each_record(
        &self,
        mut f: impl FnMut(Result<ChainedRecord, UnreadableRecord>) -> bool,
    ) -> Result<(), StorageError> {
        let mut after = 0u64;
        loop {
            let page = self.range(after, i64::MAX as u64, WALK_PAGE)?;
            let full = page.len() == WALK_PAGE;
            for record in page {
                after = match &record {
                    Ok(r) => r.seq,
                    Err(u) => u.seq,
                };
                if !f(record) {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    pub fn extent(&self) -> Result<Option<(u64, u64)>, StorageError> {
        let rows = self.rows("SELECT MIN(seq), MAX(seq) FROM audit_events", &[])?;
        let (first, last): (Option<i64>, Option<i64>) = rows
            .first()
            .map(|r| (r.get(0), r.get(1)))
            .unwrap_or((None, None));
        Ok(first.zip(last).map(|(f, l)| (f as u64, l as u64)))
    }

    pub fn last_before(&self, time: &str) -> Result<Option<u64>, StorageError> {
        let rows = self.rows(
            "SELECT MIN(seq) FROM audit_events WHERE event_time >= $1",
            &[&time],
        )?;
        let first_at_or_after: Option<i64> = rows.first().and_then(|r| r.get(0));
        Ok(match first_at_or_after {
            Some(seq) => (seq > 1).then(|| seq as u64 - 1),
            None => self.extent()?.map(|(_, last)| last),
        })
    }

    pub fn range(
        &self,
        after: u64,
        through: u64,
        limit: usize,
    ) -> Result<Vec<Result<ChainedRecord, UnreadableRecord>>, StorageError> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"
        );
        let through = through.min(i64::MAX as u64) as i64;
        self.rows(&sql, &[&(after as i64), &through, &(limit as i64)])?
            .iter()
            .map(read_row)
            .collect()
    }

    pub fn prunes(&self) -> Result<Vec<(i64, PruneMark)>, StorageError> {
        Ok(self
            .rows(
                "SELECT id, through_seq, through_hash, time, log_id, signature FROM audit_prunes ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    PruneMark {
                        through_seq: r.get::<_, i64>(1) as u64,
                        through_hash: r.get(2),
                        time: r.get(3),
                        log_id: r.get(4),
                        signature: r.get(5),
                    },
                )
            })
            .collect())
    }

    pub fn checkpoints(&self) -> Result<Vec<(i64, Checkpoint)>, StorageError> {
        Ok(self
            .rows(
                "SELECT id, head_seq, head_hash, time, log_id, signature FROM audit_checkpoints ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    Checkpoint {
                        head_seq: r.get::<_, i64>(1) as u64,
                        head_hash: r.get(2),
                        time: r.get(3),
                        log_id: r.get(4),
                        signature: r.get(5),
                    },
                )
            })
            .collect())
    }
}

fn read_row(
    r: &tokio_postgres::Row,
) -> Result<Result<ChainedRecord, UnreadableRecord>, StorageError> {
    let key_version = r
        .try_get::<_, Option<i64>>(9)?
        .map(|v| u32::try_from(v).map_err(|_| StorageError::Corrupt(format!("key version {v}"))))
        .transpose()?;
    Ok(RawRecord {
        seq: r.try_get::<_, i64>(0)? as u64,
        event_id: r.try_get(1)?,
        event_time: r.try_get(2)?,
        event_name: r.try_get(3)?,
        principal: r.try_get(4)?,
        source_address: r.try_get(5)?,
        user_agent: r.try_get(6)?,
        request_id: r.try_get(7)?,
        key_id: r.try_get(8)?,
        key_version,
        key_alias: r.try_get(10)?,
        parameters: r.try_get(11)?,
        encryption_context: r.try_get(12)?,
        reason: r.try_get(13)?,
        outcome: r.try_get(14)?,
        error_code: r.try_get(15)?,
        error_message: r.try_get(16)?,
        prev_hash: r.try_get(17)?,
        hash: r.try_get(18)?,
    }
    .decode())
}
