//! The audit writer: group commit, pipelined with the fsync that makes it durable.
//!
//! Calls hand their record to the writer thread and wait. The writer takes every record pending, chains them and
//! commits them in one transaction to the WAL; the syncer thread then fsyncs the WAL and only then answers each call
//! of every batch committed before that fsync began. Under load the batches grow by themselves, fsyncs are shared,
//! and the writer commits the next batch while the last one is being synced. A failed commit answers its calls with
//! an error (the chain head does not move), marks the log unhealthy, and the writer probes for recovery. A failed
//! fsync leaves the durability of committed records unknown, so the log refuses every call from then on, until the
//! daemon is restarted and the log verified. The writer also signs a checkpoint of the head at an interval and when
//! it stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::AuditError;
use super::checkpoint::{Checkpoint, CheckpointSigner};
use super::record::{Encoded, GENESIS_HASH};
use crate::clock::Clock;
use crate::storage::{AuditWriter, Durability};

/// The most records one transaction takes, to bound the latency of the calls in it.
const MAX_BATCH: usize = 4096;
/// How often to try a write while writes are failing.
const PROBE_EVERY: Duration = Duration::from_millis(500);

pub(super) type Reply<T> = oneshot::Sender<Result<T, AuditError>>;

// Append is nearly every message: boxing it to shrink the rare ones would cost an allocation per call.
#[allow(clippy::large_enum_variant)]
pub(super) enum Msg {
    Append(Encoded, Reply<u64>),
    Checkpoint(Reply<Option<Checkpoint>>),
    /// Sign and store a checkpoint of a record already in the log: the end of a range to archive.
    Seal {
        seq: u64,
        hash: String,
        reply: Reply<Checkpoint>,
    },
    /// Sign and store a prune mark, then remove the records it covers.
    Prune {
        through_seq: u64,
        through_hash: String,
        reply: Reply<u64>,
    },
    Close(oneshot::Sender<()>),
}

/// Records deleted per transaction when pruning.
const PRUNE_CHUNK: u64 = 10_000;

/// Work for the syncer: a committed batch to acknowledge once durable, or a request to say when all before it are.
enum Synced {
    Batch {
        first_seq: u64,
        replies: Vec<Reply<u64>>,
    },
    Barrier(oneshot::Sender<()>),
}

/// Batch sizes and commit times, logged at debug level once a second: what group commit is doing under load.
#[derive(Default)]
pub(super) struct BatchStats {
    since: Option<Instant>,
    batches: u64,
    records: u64,
    largest: usize,
    busy: Duration,
}

impl BatchStats {
    fn note(&mut self, records: usize, took: Duration) {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.batches += 1;
        self.records += records as u64;
        self.largest = self.largest.max(records);
        self.busy += took;
        let elapsed = since.elapsed();
        if elapsed >= Duration::from_secs(1) {
            tracing::debug!(
                batches = self.batches,
                records = self.records,
                mean_batch = self.records / self.batches.max(1),
                largest_batch = self.largest,
                mean_commit_us = (self.busy.as_micros() as u64) / self.batches.max(1),
                writer_busy_pct = (100 * self.busy.as_micros() / elapsed.as_micros().max(1)) as u64,
                "audit writer"
            );
            *self = BatchStats::default();
        }
    }
}

pub(super) struct Writer {
    pub metrics: Arc<crate::metrics::Metrics>,
    pub stats: BatchStats,
    pub conn: AuditWriter,
    pub head_seq: u64,
    pub head_hash: String,
    pub checkpointed_seq: u64,
    pub signer: CheckpointSigner,
    pub clock: Arc<dyn Clock>,
    pub log_id: String,
    pub healthy: watch::Sender<bool>,
    pub checkpoint_every: Duration,
}

impl Writer {
    pub fn new_head(head: Option<(u64, String)>) -> (u64, String) {
        head.unwrap_or((0, GENESIS_HASH.to_owned()))
    }

    pub fn run(mut self, inbox: Receiver<Msg>, wal: Durability) {
        let poisoned = Arc::new(AtomicBool::new(false));
        let (synced, to_sync) = mpsc::channel::<Synced>();
        let syncer = {
            let poisoned = poisoned.clone();
            std::thread::Builder::new()
                .name("kmsd-audit-sync".into())
                .spawn(move || sync_loop(wal, to_sync, poisoned))
        };
        let syncer = match syncer {
            Ok(handle) => handle,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the audit sync thread; the audit log refuses every call");
                self.set_healthy(false);
                return;
            }
        };
        let closing = self.serve(inbox, &synced, &poisoned);
        drop(synced);
        let _ = syncer.join();
        // The connection closes before shutdown is told it is done, so whoever closes the database last finds no
        // writer still holding it (the last connection to close folds the WAL into the database file).
        drop(self);
        if let Some(done) = closing {
            let _ = done.send(());
        }
    }

    /// Serves until told to close (returning who to tell when closed) or until every sender is gone.
    fn serve(
        &mut self,
        inbox: Receiver<Msg>,
        synced: &Sender<Synced>,
        poisoned: &AtomicBool,
    ) -> Option<oneshot::Sender<()>> {
        let mut next_checkpoint = Instant::now() + self.checkpoint_every;
        loop {
            let now = Instant::now();
            let wait = if self.is_healthy() {
                next_checkpoint.saturating_duration_since(now)
            } else {
                PROBE_EVERY.min(next_checkpoint.saturating_duration_since(now))
            };
            let first = match inbox.recv_timeout(wait) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.checkpoint();
                    return None;
                }
            };
            let mut batch = Vec::new();
            let mut control = Vec::new();
            let mut take = |msg: Msg, batch: &mut Vec<_>| match msg {
                Msg::Append(record, reply) => batch.push((record, reply)),
                other => control.push(other),
            };
            if let Some(msg) = first {
                take(msg, &mut batch);
            }
            while batch.len() < MAX_BATCH {
                match inbox.try_recv() {
                    Ok(msg) => take(msg, &mut batch),
                    Err(_) => break,
                }
            }
            let appended = !batch.is_empty();
            if appended {
                self.commit(batch, synced, poisoned);
            }
            for msg in control {
                match msg {
                    Msg::Checkpoint(reply) => {
                        let _ = reply.send(self.checkpoint());
                    }
                    Msg::Seal { seq, hash, reply } => {
                        let time = self.clock.now().rfc3339_millis();
                        let cp = self.signer.sign(seq, &hash, &time, &self.log_id);
                        let stored = self.conn.insert_checkpoint(&cp).map(|()| cp).map_err(|e| {
                            tracing::error!(error = %e, "audit seal failed");
                            AuditError::Unavailable
                        });
                        let _ = reply.send(stored);
                    }
                    Msg::Prune {
                        through_seq,
                        through_hash,
                        reply,
                    } => {
                        let time = self.clock.now().rfc3339_millis();
                        let mark =
                            self.signer
                                .sign_prune(through_seq, &through_hash, &time, &self.log_id);
                        let pruned = self.conn.prune(&mark, PRUNE_CHUNK).map_err(|e| {
                            tracing::error!(error = %e, "audit prune failed");
                            AuditError::Unavailable
                        });
                        if let Ok(removed) = pruned {
                            tracing::warn!(through_seq, %through_hash, removed, "audit log pruned after archival");
                        }
                        let _ = reply.send(pruned);
                    }
                    Msg::Close(done) => {
                        if let Err(e) = self.checkpoint() {
                            tracing::error!(error = %e, "no audit checkpoint at shutdown");
                        }
                        // Every call committed so far is answered before shutdown goes on.
                        let (barrier, passed) = oneshot::channel();
                        if synced.send(Synced::Barrier(barrier)).is_ok() {
                            let _ = passed.blocking_recv();
                        }
                        return Some(done);
                    }
                    Msg::Append(..) => unreachable!("appends are batched above"),
                }
            }
            if poisoned.load(Ordering::SeqCst) {
                self.set_healthy(false);
            } else if !appended && !self.is_healthy() {
                self.probe();
            }
            if Instant::now() >= next_checkpoint {
                if self.is_healthy()
                    && let Err(e) = self.checkpoint()
                {
                    tracing::error!(error = %e, "audit checkpoint failed; will retry");
                }
                next_checkpoint = Instant::now() + self.checkpoint_every;
            }
        }
    }

    fn is_healthy(&self) -> bool {
        *self.healthy.borrow()
    }

    fn set_healthy(&self, healthy: bool) {
        self.healthy.send_if_modified(|h| {
            let changed = *h != healthy;
            *h = healthy;
            changed
        });
    }

    fn commit(
        &mut self,
        batch: Vec<(Encoded, Reply<u64>)>,
        synced: &Sender<Synced>,
        poisoned: &AtomicBool,
    ) {
        if poisoned.load(Ordering::SeqCst) {
            self.set_healthy(false);
            self.metrics.audit_failure(batch.len());
            for (_, reply) in batch {
                let _ = reply.send(Err(AuditError::Unavailable));
            }
            return;
        }
        let (records, replies): (Vec<Encoded>, Vec<Reply<u64>>) = batch.into_iter().unzip();
        let count = records.len();
        let started = Instant::now();
        let appended = self.conn.append((self.head_seq, &self.head_hash), records);
        self.stats.note(count, started.elapsed());
        if appended.is_ok() {
            self.metrics.audit_commit(count, started.elapsed());
        } else {
            self.metrics.audit_failure(count);
        }
        match appended {
            Ok(links) => {
                if !self.is_healthy() {
                    tracing::warn!("audit log writes succeed again");
                }
                self.set_healthy(true);
                let (Some(first), Some(last)) = (links.first(), links.last()) else {
                    return;
                };
                // The head is the last record this writer appended: on a shared log, others may follow it.
                let first_seq = first.seq;
                self.head_seq = last.seq;
                self.head_hash = last.hash.clone();
                if let Err(mpsc::SendError(Synced::Batch { replies, .. })) =
                    synced.send(Synced::Batch { first_seq, replies })
                {
                    // The syncer is gone: nothing can be made durable any more.
                    poisoned.store(true, Ordering::SeqCst);
                    self.set_healthy(false);
                    for reply in replies {
                        let _ = reply.send(Err(AuditError::Unavailable));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = count, "audit log write failed; refusing the calls");
                self.set_healthy(false);
                for reply in replies {
                    let _ = reply.send(Err(AuditError::Unavailable));
                }
            }
        }
    }

    fn probe(&mut self) {
        match self.conn.probe(self.head_seq + 1) {
            Ok(()) => {
                tracing::warn!("audit log writes succeed again");
                self.set_healthy(true);
            }
            Err(e) => tracing::debug!(error = %e, "audit log still not writable"),
        }
    }

    fn checkpoint(&mut self) -> Result<Option<Checkpoint>, AuditError> {
        if self.head_seq == 0 || self.head_seq == self.checkpointed_seq {
            return Ok(None);
        }
        let time = self.clock.now().rfc3339_millis();
        let cp = self
            .signer
            .sign(self.head_seq, &self.head_hash, &time, &self.log_id);
        self.conn.insert_checkpoint(&cp).map_err(|e| {
            tracing::error!(error = %e, "audit checkpoint write failed");
            AuditError::Unavailable
        })?;
        self.checkpointed_seq = self.head_seq;
        tracing::info!(
            head_seq = cp.head_seq,
            head_hash = %cp.head_hash,
            log_id = %cp.log_id,
            time = %cp.time,
            signature = %cp.signature,
            "audit checkpoint"
        );
        Ok(Some(cp))
    }
}

/// Syncs the WAL for every batch committed before the sync began, then answers their calls, in order.
fn sync_loop(mut wal: Durability, inbox: Receiver<Synced>, poisoned: Arc<AtomicBool>) {
    while let Ok(first) = inbox.recv() {
        let mut pending = vec![first];
        while let Ok(more) = inbox.try_recv() {
            pending.push(more);
        }
        let started = Instant::now();
        let durable = !poisoned.load(Ordering::SeqCst)
            && match wal.sync() {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        "fsync of the audit log failed: committed records may not be durable; refusing every call \
                         until kmsd is restarted and the log verified"
                    );
                    poisoned.store(true, Ordering::SeqCst);
                    false
                }
            };
        tracing::trace!(
            batches = pending.len(),
            sync_us = started.elapsed().as_micros() as u64,
            "audit sync"
        );
        for item in pending {
            match item {
                Synced::Batch { first_seq, replies } => {
                    for (i, reply) in replies.into_iter().enumerate() {
                        let answer = if durable {
                            Ok(first_seq + i as u64)
                        } else {
                            Err(AuditError::Unavailable)
                        };
                        let _ = reply.send(answer);
                    }
                }
                Synced::Barrier(passed) => {
                    let _ = passed.send(());
                }
            }
        }
    }
}

pub(super) fn channel() -> (mpsc::Sender<Msg>, Receiver<Msg>) {
    mpsc::channel()
}
