//! Verification of a stored log: the chain, then every checkpoint, then an optional trusted checkpoint.
//!
//! A log pruned after archival starts after its last prune mark: the mark must verify under the log's key and name
//! this log, and the first record held must follow the hash it names. Records and checkpoints it covers are the
//! archive's to verify (`kmsctl audit verify --archive`). Rows missing without a mark that covers them are a
//! deletion outside kmsd, reported like any other gap.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;

use super::checkpoint::Checkpoint;
use super::record::GENESIS_HASH;
use crate::storage::{AuditReader, StorageError};

/// Where a log is first inconsistent, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub seq: u64,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub records_checked: u64,
    pub checkpoints_checked: u64,
    /// The last record's sequence number and hash (0 and the genesis hash for an empty log).
    pub head_seq: u64,
    pub head_hash: String,
    pub problem: Option<Problem>,
    pub last_checkpoint: Option<Checkpoint>,
    /// The last sequence number archived and pruned under a valid mark, 0 if none.
    pub archived_through: u64,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// A checkpoint kept outside the database, for instance from the daemon's log.
#[derive(Debug, Clone)]
pub struct Trusted {
    pub seq: u64,
    pub hash: String,
}

pub fn verify(
    reader: &AuditReader,
    key: &VerifyingKey,
    trusted: Option<&Trusted>,
) -> Result<VerifyReport, StorageError> {
    let mut problems: Vec<Problem> = Vec::new();
    let log_id = reader.log_id()?;
    let checkpoints = reader.checkpoints()?;

    // Where the chain starts: after the last valid prune mark, or at record 1.
    let mut start: (u64, String) = (0, GENESIS_HASH.to_owned());
    for (id, mark) in reader.prunes()? {
        if !mark.verify(key) || log_id.as_deref() != Some(mark.log_id.as_str()) {
            problems.push(Problem {
                seq: mark.through_seq,
                message: format!(
                    "prune mark #{id} (through sequence {}) does not verify with this log's key or names another \
                     log: records were removed outside kmsd's archive path",
                    mark.through_seq
                ),
            });
            continue;
        }
        if mark.through_seq > start.0 {
            start = (mark.through_seq, mark.through_hash);
        }
    }

    // What each checkpointed sequence number must hash to.
    let mut expected_at: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    for (id, cp) in &checkpoints {
        if cp.head_seq <= start.0 {
            // Archived with the records it covers.
            continue;
        }
        if !cp.verify(key) {
            problems.push(Problem {
                seq: cp.head_seq,
                message: format!(
                    "checkpoint #{id} (sequence {}) does not verify with this daemon's key: it was not signed \
                     with this root key (a replaced database or an edited checkpoint)",
                    cp.head_seq
                ),
            });
            continue;
        }
        if log_id.as_deref() != Some(cp.log_id.as_str()) {
            problems.push(Problem {
                seq: cp.head_seq,
                message: format!(
                    "checkpoint #{id} belongs to log {}, not to this database's log {} (a replaced database)",
                    cp.log_id,
                    log_id.as_deref().unwrap_or("(none)")
                ),
            });
            continue;
        }
        expected_at
            .entry(cp.head_seq)
            .or_default()
            .push((format!("checkpoint #{id}"), cp.head_hash.clone()));
    }
    if let Some(t) = trusted.filter(|t| t.seq > start.0) {
        expected_at
            .entry(t.seq)
            .or_default()
            .push(("the trusted checkpoint".to_owned(), t.hash.clone()));
    }

    let mut report = VerifyReport {
        checkpoints_checked: checkpoints.len() as u64,
        head_seq: start.0,
        head_hash: start.1,
        last_checkpoint: checkpoints.last().map(|(_, cp)| cp.clone()),
        archived_through: start.0,
        ..Default::default()
    };
    let mut expected_seq = start.0 + 1;
    let mut chain_broken = false;
    reader.for_each_record(|row| {
        // Left by a prune interrupted part-way: its mark covers them.
        if row.as_ref().map_or_else(|bad| bad.seq, |r| r.seq) <= start.0 {
            return true;
        }
        let record = match row {
            Ok(r) => r,
            Err(bad) => {
                problems.push(Problem {
                    seq: bad.seq,
                    message: format!("record {} is unreadable: {} (edited by hand?)", bad.seq, bad.reason),
                });
                chain_broken = true;
                return false;
            }
        };
        let seq = record.seq;
        let problem = if seq != expected_seq {
            Some(Problem {
                seq: expected_seq,
                message: format!(
                    "record {expected_seq} is missing: the log goes from {} to {seq} (rows were deleted, and \
                     not through kmsd's archive path)",
                    expected_seq - 1
                ),
            })
        } else if record.prev_hash != report.head_hash {
            Some(Problem {
                seq,
                message: format!(
                    "record {seq} does not follow record {}: its prev_hash does not match (rows were deleted, \
                     reordered or replaced)",
                    seq - 1
                ),
            })
        } else if !record.hash_matches() {
            Some(Problem {
                seq,
                message: format!("record {seq} was altered: its contents do not match its hash"),
            })
        } else {
            None
        };
        if let Some(p) = problem {
            problems.push(p);
            chain_broken = true;
            return false;
        }
        if let Some(expectations) = expected_at.get(&seq) {
            for (who, hash) in expectations {
                if *hash != record.hash {
                    problems.push(Problem {
                        seq,
                        message: format!("record {seq} is not the record {who} signed (its hash differs)"),
                    });
                }
            }
        }
        report.records_checked += 1;
        report.head_seq = seq;
        report.head_hash = record.hash;
        expected_seq += 1;
        true
    })?;

    if !chain_broken
        && let Some((&last_expected, expectations)) =
            expected_at.range(report.head_seq + 1..).next_back()
    {
        let who = &expectations[0].0;
        problems.push(Problem {
            seq: report.head_seq + 1,
            message: format!(
                "the log ends at sequence {}, but {who} covers sequence {last_expected}: records {}..={last_expected} \
                 are gone (a truncated tail or an older copy of the database)",
                report.head_seq,
                report.head_seq + 1
            ),
        });
    }
    report.problem = problems.into_iter().min_by_key(|p| p.seq);
    Ok(report)
}
