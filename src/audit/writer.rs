//! The audit writer: one thread, one connection, group commit.
//!
//! Calls hand their record to the thread and wait. The thread takes every record pending, chains them, writes
//! them in one transaction (WAL, `synchronous=FULL`), and only then answers each call; under load the batches grow
//! by themselves, so fsyncs are shared instead of serializing the daemon. A failed commit answers every call in the
//! batch with an error (the chain head does not move), marks the log unhealthy, and the thread probes for recovery.
//! It also writes a signed checkpoint of the head at an interval and when it stops.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::AuditError;
use super::checkpoint::{Checkpoint, CheckpointSigner};
use super::record::{ChainLink, Encoded, GENESIS_HASH};
use crate::clock::Clock;
use crate::storage::AuditWriterConn;

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
    Close(oneshot::Sender<()>),
}

pub(super) struct Writer {
    pub conn: AuditWriterConn,
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

    pub fn run(mut self, inbox: Receiver<Msg>) {
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
                    return;
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
                self.commit(batch);
            }
            for msg in control {
                match msg {
                    Msg::Checkpoint(reply) => {
                        let _ = reply.send(self.checkpoint());
                    }
                    Msg::Close(done) => {
                        if let Err(e) = self.checkpoint() {
                            tracing::error!(error = %e, "no audit checkpoint at shutdown");
                        }
                        let _ = done.send(());
                        return;
                    }
                    Msg::Append(..) => unreachable!("appends are batched above"),
                }
            }
            if !appended && !self.is_healthy() {
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

    fn commit(&mut self, batch: Vec<(Encoded, Reply<u64>)>) {
        let mut chained = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut seq = self.head_seq;
        let mut prev = self.head_hash.clone();
        for (encoded, reply) in batch {
            seq += 1;
            let hash = encoded.hash(seq, &prev);
            chained.push(ChainLink {
                seq,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
                encoded,
            });
            replies.push(reply);
        }
        match self.conn.append(&chained) {
            Ok(()) => {
                if !self.is_healthy() {
                    tracing::warn!("audit log writes succeed again");
                }
                self.set_healthy(true);
                let first = self.head_seq + 1;
                self.head_seq = seq;
                self.head_hash = prev;
                for (i, reply) in replies.into_iter().enumerate() {
                    let _ = reply.send(Ok(first + i as u64));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = chained.len(), "audit log write failed; refusing the calls");
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

pub(super) fn channel() -> (mpsc::Sender<Msg>, Receiver<Msg>) {
    mpsc::channel()
}
