//! `kms.v1.AuditService`: querying and verifying the audit log. Its own calls are audited too.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::call::Auditor;
use super::status::failed_precondition;
use crate::audit::verify::{self, Trusted};
use crate::audit::{AuditLog, ChainedRecord, Checkpoint, Outcome};
use crate::audit::{Change, Gate};
use crate::clock::UnixMillis;
use crate::keys::{self, InvalidInput, KeyRef};
use crate::kms::{Kms, KmsError};
use crate::proto as pb;
use crate::proto::audit_service_server::AuditService;
use crate::rpc::Rpc;
use crate::storage::{AuditQuery, AuditReader, StorageError};

pub struct AuditServiceImpl {
    audit: Arc<AuditLog>,
    kms: Arc<Kms>,
    auditor: Arc<Auditor>,
    /// The region and account of key ARNs, which DescribeLog reports for CloudTrail-form exports.
    home: crate::aws::arn::Home,
}

impl AuditServiceImpl {
    pub fn new(
        audit: Arc<AuditLog>,
        kms: Arc<Kms>,
        auditor: Arc<Auditor>,
        home: crate::aws::arn::Home,
    ) -> Self {
        AuditServiceImpl {
            audit,
            kms,
            auditor,
            home,
        }
    }
}

const TOKEN_PREFIX: &str = "e1:";

/// QueryEvents' limits on its filters: more context pairs, or longer strings, are INVALID_ARGUMENT.
pub const MAX_CONTEXT_FILTERS: usize = 16;
pub const MAX_FILTER_CHARS: usize = 1024;

/// The times a record can carry: years 1 to 9999 (RFC 3339), in milliseconds since the epoch.
const EARLIEST_MS: i64 = -62_135_596_800_000;
const LATEST_MS: i64 = 253_402_300_799_999;

/// Which end of a time range a bound is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Start,
    End,
}

/// A time filter as the stored form compares: a start before year 1 or an end after year 9999 is no bound at all
/// (an open end); a start after year 9999, an end before year 1, or nanoseconds out of range are refused.
fn time_bound(
    t: Option<&prost_types::Timestamp>,
    end: End,
    field: &str,
) -> Result<Option<String>, InvalidInput> {
    let Some(t) = t else {
        return Ok(None);
    };
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(InvalidInput(format!(
            "{field} has nanos {} (must be 0 to 999999999)",
            t.nanos
        )));
    }
    let ms = UnixMillis::from_timestamp(t).0;
    match (end, ms) {
        (End::Start, ms) if ms < EARLIEST_MS => Ok(None),
        (End::End, ms) if ms > LATEST_MS => Ok(None),
        (_, EARLIEST_MS..=LATEST_MS) => Ok(Some(UnixMillis(ms).rfc3339_millis())),
        _ => Err(InvalidInput(format!(
            "{field} is outside the times records carry (years 1 to 9999)"
        ))),
    }
}

/// Refuses filters past QueryEvents' documented limits.
fn check_filters(req: &pb::QueryEventsRequest) -> Result<(), InvalidInput> {
    if req.encryption_context.len() > MAX_CONTEXT_FILTERS {
        return Err(InvalidInput(format!(
            "encryption_context filters on {} pairs; at most {MAX_CONTEXT_FILTERS}",
            req.encryption_context.len()
        )));
    }
    let strings = [
        ("principal", &req.principal),
        ("event_name", &req.event_name),
        ("request_id", &req.request_id),
        ("key_id", &req.key_id),
    ]
    .into_iter()
    .chain(
        req.encryption_context
            .iter()
            .flat_map(|(k, v)| [("encryption_context", k), ("encryption_context", v)]),
    );
    for (field, value) in strings {
        if value.chars().count() > MAX_FILTER_CHARS {
            return Err(InvalidInput(format!(
                "{field} is longer than {MAX_FILTER_CHARS} characters"
            )));
        }
    }
    Ok(())
}

fn parse_token(token: &str) -> Result<Option<u64>, InvalidInput> {
    keys::page_token::decode(token, TOKEN_PREFIX)?
        .map(|seq| {
            seq.parse()
                .map_err(|_| InvalidInput("page_token is not one QueryEvents issued".into()))
        })
        .transpose()
}

fn storage_failure(e: StorageError) -> Status {
    Status::from(KmsError::Storage(e))
}

fn timestamp(rfc3339: &str) -> Option<prost_types::Timestamp> {
    UnixMillis::parse_rfc3339(rfc3339)
}

fn outcome(o: Outcome) -> pb::Outcome {
    match o {
        Outcome::Success => pb::Outcome::Success,
        Outcome::Error => pb::Outcome::Error,
        Outcome::Denied => pb::Outcome::Denied,
    }
}

pub fn event(c: ChainedRecord) -> pb::AuditEvent {
    let r = c.record;
    pb::AuditEvent {
        sequence: c.seq,
        event_id: r.event_id,
        event_time: timestamp(&r.event_time),
        event_name: r.event_name,
        principal: r.principal,
        source_address: r.source_address,
        user_agent: r.user_agent,
        request_id: r.request_id,
        key_id: r.key_id.unwrap_or_default(),
        key_version: r.key_version.unwrap_or(0),
        key_alias: r.key_alias.unwrap_or_default(),
        parameters: r.parameters.into_iter().collect(),
        encryption_context: r.encryption_context.into_iter().collect(),
        reason: r.reason.unwrap_or_default(),
        outcome: outcome(r.outcome) as i32,
        error_code: r.error_code.unwrap_or_default(),
        error_message: r.error_message.unwrap_or_default(),
        prev_hash: c.prev_hash,
        hash: c.hash,
    }
}

fn checkpoint(cp: Checkpoint) -> pb::Checkpoint {
    pb::Checkpoint {
        head_sequence: cp.head_seq,
        time: timestamp(&cp.time),
        head_hash: cp.head_hash,
        log_id: cp.log_id,
        signature: cp.signature,
    }
}

impl AuditServiceImpl {
    /// Runs `f` on a read-only connection, off the async workers.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AuditReader) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, Status> {
        let audit = self.audit.clone();
        tokio::task::spawn_blocking(move || f(&audit.reader()?))
            .await
            .map_err(|e| KmsError::Internal(format!("audit read task failed: {e}")))?
            .map_err(storage_failure)
    }
}

/// The record at `seq`, or why not.
fn record_at(reader: &AuditReader, seq: u64) -> Result<Option<ChainedRecord>, StorageError> {
    Ok(reader
        .range(seq.saturating_sub(1), seq, 1)?
        .into_iter()
        .next()
        .and_then(Result::ok)
        .filter(|r| r.seq == seq))
}

/// How much of the log one ExportArchive page returns.
const EXPORT_PAGE_RECORDS: usize = 1000;
const EXPORT_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// The time SealArchive archives up to, as records spell times.
fn before(req: &pb::SealArchiveRequest) -> Option<String> {
    req.before
        .as_ref()
        .map(|t| UnixMillis::from_timestamp(t).rfc3339_millis())
}

#[tonic::async_trait]
impl AuditService for AuditServiceImpl {
    async fn describe_log(
        &self,
        request: Request<pb::DescribeLogRequest>,
    ) -> Result<Response<pb::DescribeLogResponse>, Status> {
        self.auditor
            .serve(
                Rpc::DescribeLog,
                request,
                |_, _| {},
                async |_, _admitted| {
                    let (extent, prunes) = self.read(|r| Ok((r.extent()?, r.prunes()?))).await?;
                    let space = self.audit.space();
                    let report = space.sample();
                    let limits = space.limits();
                    let (first_sequence, head_sequence) = extent.unwrap_or((0, 0));
                    Ok(pb::DescribeLogResponse {
                        first_sequence,
                        head_sequence,
                        archived_through: prunes
                            .iter()
                            .map(|(_, m)| m.through_seq)
                            .max()
                            .unwrap_or(0),
                        database_bytes: report.database_bytes,
                        reusable_bytes: report.reusable_bytes,
                        free_bytes: report.free_bytes,
                        total_bytes: report.total_bytes,
                        soft_floor_bytes: limits.soft_floor,
                        hard_floor_bytes: limits.hard_floor,
                        disk_level: space.level().as_str().to_owned(),
                        aws_region: self.home.region().to_owned(),
                        aws_account_id: self.home.account().to_owned(),
                    })
                },
            )
            .await
    }

    async fn seal_archive(
        &self,
        request: Request<pb::SealArchiveRequest>,
    ) -> Result<Response<pb::SealArchiveResponse>, Status> {
        self.auditor
            .serve(
                Rpc::SealArchive,
                request,
                |req, call| {
                    if let Some(before) = before(req) {
                        call.param("before", before);
                    }
                },
                async |req, _admitted| {
                    let before = before(&req).ok_or_else(|| {
                        InvalidInput("give before: the time to archive up to".into())
                    })?;
                    let range = self
                        .read(move |r| {
                            let (Some((first, _)), Some(last)) =
                                (r.extent()?, r.last_before(&before)?)
                            else {
                                return Ok(None);
                            };
                            if last < first {
                                return Ok(None);
                            }
                            Ok(record_at(r, first)?.zip(record_at(r, last)?))
                        })
                        .await?;
                    let Some((first, last)) = range else {
                        return Err(failed_precondition(
                            "no record before that time is held: nothing to archive".into(),
                        ));
                    };
                    let cp = self
                        .audit
                        .seal(last.seq, last.hash.clone())
                        .await
                        .map_err(|_| KmsError::AuditUnavailable)?;
                    Ok(pb::SealArchiveResponse {
                        log_id: self.audit.log_id().to_owned(),
                        public_key: hex::encode(self.audit.public_key().as_bytes()),
                        first_sequence: first.seq,
                        prev_hash: first.prev_hash,
                        last_sequence: last.seq,
                        last_hash: last.hash,
                        checkpoint: Some(checkpoint(cp)),
                    })
                },
            )
            .await
    }

    async fn export_archive(
        &self,
        request: Request<pb::ExportArchiveRequest>,
    ) -> Result<Response<pb::ExportArchiveResponse>, Status> {
        self.auditor
            .serve(
                Rpc::ExportArchive,
                request,
                |req, call| {
                    call.param("after_sequence", req.after_sequence);
                    call.param("through_sequence", req.through_sequence);
                },
                async |req, _admitted| {
                        if req.after_sequence >= req.through_sequence {
                            return Err(
                                InvalidInput("after_sequence must be below through_sequence".into()).into(),
                            );
                        }
                        let rows = self
                            .read(move |r| {
                                r.range(
                                    req.after_sequence,
                                    req.through_sequence,
                                    EXPORT_PAGE_RECORDS,
                                )
                            })
                            .await?;
                        let mut records = Vec::with_capacity(rows.len());
                        let mut bytes = 0;
                        let mut last_sequence = req.after_sequence;
                        for row in rows {
                            let record = row.map_err(|bad| {
                                KmsError::Corrupt(format!(
                                    "audit record {} is unreadable: {}; run VerifyLog",
                                    bad.seq, bad.reason
                                ))
                            })?;
                            if record.seq != last_sequence + 1 {
                                return Err(failed_precondition(format!(
                                    "record {} is not held (archived already, or missing: run VerifyLog)",
                                    last_sequence + 1
                                )));
                            }
                            let line = crate::audit::archive::line(&record);
                            bytes += line.len();
                            records.push(line);
                            last_sequence = record.seq;
                            if bytes >= EXPORT_PAGE_BYTES {
                                break;
                            }
                        }
                        if records.is_empty() {
                            return Err(failed_precondition(format!(
                                "record {} is not held",
                                req.after_sequence + 1
                            )));
                        }
                        Ok(pb::ExportArchiveResponse {
                            records,
                            last_sequence,
                        })
                },
            )
            .await
    }

    async fn prune_events(
        &self,
        request: Request<pb::PruneEventsRequest>,
    ) -> Result<Response<pb::PruneEventsResponse>, Status> {
        self.auditor
            .serve(
                Rpc::PruneEvents,
                request,
                |req, call| {
                    call.param("through_sequence", req.through_sequence);
                    call.param("through_hash", &req.through_hash);
                },
                async |req, admitted| {
                        let (through, hash) = (req.through_sequence, req.through_hash.clone());
                        let key = *self.audit.public_key();
                        let (extent, sealed, record) = self
                            .read(move |r| {
                                let sealed = r
                                    .checkpoints()?
                                    .into_iter()
                                    .any(|(_, cp)| cp.head_seq == through && cp.head_hash == hash && cp.verify(&key));
                                Ok((r.extent()?, sealed, record_at(r, through)?))
                            })
                            .await?;
                        let Some((first, _)) = extent else {
                            return Err(failed_precondition("the log holds no record".into()));
                        };
                        match record {
                            Some(r) if r.hash == req.through_hash => {}
                            Some(_) => return Err(InvalidInput(format!("record {through} does not have hash {}", req.through_hash)).into()),
                            None => return Err(failed_precondition(format!("record {through} is not held (archived already?)"))),
                        }
                        if !sealed {
                            return Err(failed_precondition(format!(
                                "records up to {through} were not sealed: run SealArchive and keep its archive first (kmsctl audit \
                                 archive does both)"
                            )));
                        }
                        let removed = through - first + 1;
                        // The record of the pruning is durable before anything is removed.
                        let (first, removed) = (first.to_string(), removed.to_string());
                        admitted
                            .approve(Change::of(
                                Rpc::PruneEvents,
                                &[("archived_from", &first), ("records_removed", &removed)],
                            ))
                            .await
                            .map_err(KmsError::from)?;
                        let removed = self
                            .audit
                            .prune(through, req.through_hash.clone())
                            .await
                            .map_err(|_| KmsError::AuditUnavailable)?;
                        Ok(pb::PruneEventsResponse {
                            records_removed: removed,
                            first_sequence: through + 1,
                        })
                },
            )
            .await
    }

    async fn query_events(
        &self,
        request: Request<pb::QueryEventsRequest>,
    ) -> Result<Response<pb::QueryEventsResponse>, Status> {
        self.auditor
            .serve(
                Rpc::QueryEvents,
                request,
                |req, call| {
                    call.key(&req.key_id, &self.kms);
                    for (name, value) in [
                        ("principal", &req.principal),
                        ("event_name", &req.event_name),
                        ("request_id", &req.request_id),
                    ] {
                        if !value.is_empty() {
                            call.param(name, value);
                        }
                    }
                    call.map_param("encryption_context", &req.encryption_context);
                },
                async |req, _admitted| {
                    check_filters(&req)?;
                    let limit = keys::page_size(req.page_size).map_err(Status::from)? as usize;
                    let (key_id, key_alias) = match KeyRef::parse_optional(&req.key_id, "key_id")? {
                        None => (None, None),
                        Some(KeyRef::Id(id)) => (Some(id.to_string()), None),
                        Some(alias @ KeyRef::Alias(_)) => {
                            let resolved = self.kms.resolve_id(&alias).map(|id| id.to_string());
                            (resolved, Some(alias.to_string()))
                        }
                    };
                    let outcome = match pb::Outcome::try_from(req.outcome) {
                        Ok(pb::Outcome::Unspecified) => None,
                        Ok(pb::Outcome::Success) => Some(Outcome::Success),
                        Ok(pb::Outcome::Error) => Some(Outcome::Error),
                        Ok(pb::Outcome::Denied) => Some(Outcome::Denied),
                        Err(_) => {
                            return Err(InvalidInput(format!(
                                "outcome {} is not known (SUCCESS, ERROR or DENIED)",
                                req.outcome
                            ))
                            .into());
                        }
                    };
                    let non_empty = |s: String| (!s.is_empty()).then_some(s);
                    let query = AuditQuery {
                        start_time: time_bound(req.start_time.as_ref(), End::Start, "start_time")?,
                        end_time: time_bound(req.end_time.as_ref(), End::End, "end_time")?,
                        key_id,
                        key_alias,
                        principal: non_empty(req.principal),
                        event_name: non_empty(req.event_name),
                        outcome,
                        encryption_context: req.encryption_context.into_iter().collect(),
                        request_id: non_empty(req.request_id),
                        oldest_first: req.oldest_first,
                        after_seq: parse_token(&req.page_token)?,
                        limit: limit + 1,
                    };
                    let audit = self.audit.clone();
                    let rows = tokio::task::spawn_blocking(move || audit.reader()?.query(&query))
                        .await
                        .map_err(|e| KmsError::Internal(format!("query task failed: {e}")))?
                        .map_err(storage_failure)?;
                    let mut events = Vec::with_capacity(rows.len());
                    for row in rows {
                        match row {
                            Ok(record) => events.push(event(record)),
                            Err(bad) => {
                                return Err(KmsError::Corrupt(format!(
                                    "audit record {} is unreadable: {}; run VerifyLog",
                                    bad.seq, bad.reason
                                ))
                                .into());
                            }
                        }
                    }
                    let next_page_token = if events.len() > limit {
                        events.truncate(limit);
                        events
                            .last()
                            .map(|e| {
                                keys::page_token::encode(TOKEN_PREFIX, &e.sequence.to_string())
                            })
                            .unwrap_or_default()
                    } else {
                        String::new()
                    };
                    Ok(pb::QueryEventsResponse {
                        events,
                        next_page_token,
                    })
                },
            )
            .await
    }

    async fn verify_log(
        &self,
        request: Request<pb::VerifyLogRequest>,
    ) -> Result<Response<pb::VerifyLogResponse>, Status> {
        self.auditor
            .serve(
                Rpc::VerifyLog,
                request,
                |req, call| {
                    if req.trusted_sequence != 0 {
                        call.param("trusted_sequence", req.trusted_sequence);
                    }
                },
                async |req, _admitted| {
                    let trusted = match (req.trusted_sequence, req.trusted_hash.as_str()) {
                        (0, "") => None,
                        (0, _) | (_, "") => {
                            return Err(InvalidInput(
                                "give both trusted_sequence and trusted_hash, or neither".into(),
                            )
                            .into());
                        }
                        (seq, hash) => Some(Trusted {
                            seq,
                            hash: hash.to_owned(),
                        }),
                    };
                    let audit = self.audit.clone();
                    let report = tokio::task::spawn_blocking(move || {
                        let reader = audit.reader()?;
                        verify::verify(&reader, audit.public_key(), trusted.as_ref())
                    })
                    .await
                    .map_err(|e| KmsError::Internal(format!("verification task failed: {e}")))?
                    .map_err(storage_failure)?;
                    Ok(pb::VerifyLogResponse {
                        ok: report.ok(),
                        records_checked: report.records_checked,
                        checkpoints_checked: report.checkpoints_checked,
                        head_sequence: report.head_seq,
                        head_hash: report.head_hash,
                        first_bad_sequence: report.problem.as_ref().map(|p| p.seq).unwrap_or(0),
                        problem: report.problem.map(|p| p.message).unwrap_or_default(),
                        public_key: hex::encode(self.audit.public_key().as_bytes()),
                        last_checkpoint: report.last_checkpoint.map(checkpoint),
                        archived_through: report.archived_through,
                    })
                },
            )
            .await
    }
}
