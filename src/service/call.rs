//! Auditing of every call: who, from where, which key, why, and how it ended, made durable before the answer.
//!
//! A handler opens a [`Call`] with [`Auditor::begin`], records what the request names as it parses it, runs the
//! operation, and hands the result to [`Auditor::finish`], which appends the record and only then releases the
//! response. If the record cannot be written, the caller gets UNAVAILABLE and never the result.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};

use crate::audit::space::Level;
use crate::audit::{AuditLog, AuditRecord, Outcome, map_json, time_ordered_id};
use crate::auth::{ANONYMOUS, AuthFailure, Authenticator, Caller};
use crate::clock::Clock;
use crate::crypto::blob;
use crate::keys::KeyRef;
use crate::kms::{Change, Gate, Kms, KmsError};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
pub const REASON_HEADER: &str = "x-kms-reason";
const MAX_REQUEST_ID_LEN: usize = 128;
const MAX_REASON_LEN: usize = 1024;

/// Records calls in the audit log.
pub struct Auditor {
    audit: Arc<AuditLog>,
    auth: Arc<Authenticator>,
    clock: Arc<dyn Clock>,
    metrics: Arc<crate::metrics::Metrics>,
    summary: std::sync::Mutex<Summary>,
}

/// Unauthenticated calls refused while the disk is below its soft floor, not yet recorded: they are recorded as
/// one summary record per [`Auditor::flush_summary`] instead of one record each.
#[derive(Default)]
struct Summary {
    calls: u64,
    first_time: Option<String>,
    last_time: Option<String>,
    /// Calls by event and by source address (without the port), each table bounded.
    events: BTreeMap<String, u64>,
    sources: BTreeMap<String, u64>,
    other_sources: u64,
}

impl Summary {
    const MAX_ROWS: usize = 16;

    fn note(&mut self, call: &Call) {
        self.calls += 1;
        self.first_time
            .get_or_insert_with(|| call.event_time.clone());
        self.last_time = Some(call.event_time.clone());
        let bump = |table: &mut BTreeMap<String, u64>, key: &str| {
            if let Some(n) = table.get_mut(key) {
                *n += 1;
                true
            } else if table.len() < Self::MAX_ROWS {
                table.insert(key.to_owned(), 1);
                true
            } else {
                false
            }
        };
        bump(&mut self.events, &call.event_name);
        let host = call
            .source_address
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|_| call.source_address.clone());
        if !bump(&mut self.sources, &host) {
            self.other_sources += 1;
        }
    }

    fn merge(&mut self, earlier: Summary) {
        self.calls += earlier.calls;
        self.first_time = earlier.first_time.or(self.first_time.take());
        self.last_time = self.last_time.take().or(earlier.last_time);
        for (table, from) in [
            (&mut self.events, earlier.events),
            (&mut self.sources, earlier.sources),
        ] {
            for (key, n) in from {
                *table.entry(key).or_default() += n;
            }
        }
        self.other_sources += earlier.other_sources;
    }
}

/// One call being audited.
pub struct Call {
    started: std::time::Instant,
    event_id: String,
    event_name: Cow<'static, str>,
    event_time: String,
    caller: Result<Caller, AuthFailure>,
    source_address: String,
    user_agent: String,
    request_id: String,
    reason: Option<String>,
    header_error: Option<String>,
    key_id: Option<String>,
    key_alias: Option<String>,
    key_version: Option<u32>,
    parameters: BTreeMap<String, String>,
    encryption_context: BTreeMap<String, String>,
    /// Whether its record may use the disk below the hard floor (see [`Call::use_disk_reserve`]).
    reserve: bool,
}

/// Put in a request's extensions by the layer that records calls no handler saw ([`super::unhandled`]); set when
/// a handler opens the call's record, so that layer knows the call is recorded.
#[derive(Clone, Default)]
pub struct CallSlot(Arc<AtomicBool>);

impl CallSlot {
    pub fn handled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Whose key a ciphertext blob names, for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobRole {
    /// The call's own key (Decrypt).
    Key,
    /// The source of a ReEncrypt.
    Source,
}

/// What a successful response says about the key it used, for the record.
pub trait Audited {
    /// The key id and, where one version was used, its version.
    fn key_used(&self) -> Option<(&str, Option<u32>)> {
        None
    }

    /// Non-secret facts only the response knows (ReEncrypt's source key, say).
    fn parameters(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

impl Auditor {
    pub fn new(
        audit: Arc<AuditLog>,
        auth: Arc<Authenticator>,
        clock: Arc<dyn Clock>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Auditor {
            audit,
            auth,
            clock,
            metrics,
            summary: Default::default(),
        }
    }

    pub fn begin<T>(&self, event_name: &'static str, request: &Request<T>) -> Call {
        if let Some(slot) = request.extensions().get::<CallSlot>() {
            slot.0.store(true, Ordering::Release);
        }
        self.open(Cow::Borrowed(event_name), request)
    }

    /// Opens the record of a call: who (authenticated here, refused later by [`Call::admit`]), from where, and the
    /// headers that describe it.
    pub(super) fn open<T>(&self, event_name: Cow<'static, str>, request: &Request<T>) -> Call {
        let metadata = request.metadata();
        let header = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok());
        let peer = request.remote_addr();
        let source_address = peer
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        let certificate = request.peer_certs();
        let caller = self.auth.authenticate(
            header("authorization"),
            certificate
                .as_ref()
                .and_then(|c| c.first())
                .map(|c| c.as_ref()),
        );
        let mut parameters = BTreeMap::new();
        match &caller {
            Ok(c) => {
                let (name, value) = c.method.describe();
                parameters.insert(name.to_owned(), value.to_owned());
            }
            Err(failure) => {
                if let Some(id) = &failure.token_id {
                    parameters.insert("token_id".to_owned(), id.clone());
                }
            }
        }
        let now = self.clock.now();
        let mut header_error = None;
        let request_id = match header(REQUEST_ID_HEADER) {
            Some(id) if !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN => id.to_owned(),
            Some(_) => {
                header_error = Some(format!(
                    "{REQUEST_ID_HEADER} must be 1-{MAX_REQUEST_ID_LEN} characters"
                ));
                time_ordered_id(now)
            }
            None => time_ordered_id(now),
        };
        let reason = match header(REASON_HEADER) {
            Some(r) if r.chars().count() > MAX_REASON_LEN => {
                header_error = Some(format!(
                    "{REASON_HEADER} is longer than {MAX_REASON_LEN} characters"
                ));
                Some(r.chars().take(MAX_REASON_LEN).collect())
            }
            Some(r) if !r.is_empty() => Some(r.to_owned()),
            _ => None,
        };
        Call {
            started: std::time::Instant::now(),
            event_name,
            event_time: now.rfc3339_millis(),
            event_id: time_ordered_id(now),
            caller,
            source_address,
            user_agent: header("user-agent").unwrap_or_default().to_owned(),
            request_id,
            reason,
            header_error,
            key_id: None,
            key_alias: None,
            key_version: None,
            parameters,
            encryption_context: BTreeMap::new(),
            reserve: false,
        }
    }

    /// A gate for a management call: its success record is made durable before the change is stored.
    pub fn gate<'a>(&'a self, call: &'a Call) -> AuditGate<'a> {
        AuditGate {
            auditor: self,
            call,
            recorded: AtomicBool::new(false),
        }
    }

    /// Finishes a management call whose gate may already have recorded it.
    pub async fn finish_gated<R: Audited>(
        &self,
        call: Call,
        recorded: bool,
        result: Result<R, Status>,
    ) -> Result<Response<R>, Status> {
        if recorded {
            // The record (success) is durable. If storing the change failed after it, the record over-reports:
            // better a recorded change that did not happen than a change without a record.
            let code = result.as_ref().err().map_or(tonic::Code::Ok, |s| s.code());
            self.metrics
                .call(&call.event_name, code, call.started.elapsed());
            return respond(&call.request_id, result);
        }
        self.finish(call, result).await
    }

    /// Appends the call's record, then releases the result; UNAVAILABLE instead if the record is not durable.
    pub async fn finish<R: Audited>(
        &self,
        call: Call,
        result: Result<R, Status>,
    ) -> Result<Response<R>, Status> {
        let request_id = call.request_id.clone();
        // On failure `result` is dropped: whatever key material it held is zeroized and never sent.
        self.record(call, &result).await?;
        respond(&request_id, result)
    }

    /// Appends the record of `call` ending with `result`, and counts it; the UNAVAILABLE answer to give instead if
    /// the record is not durable.
    pub(super) async fn record<R: Audited>(
        &self,
        mut call: Call,
        result: &Result<R, Status>,
    ) -> Result<(), Status> {
        let (outcome, error_code, error_message) = match result {
            Ok(response) => {
                if let Some((key_id, version)) = response.key_used() {
                    call.key_id = Some(key_id.to_owned());
                    call.key_version = version.or(call.key_version);
                }
                for (name, value) in response.parameters() {
                    call.parameters.insert(name.to_owned(), value);
                }
                (Outcome::Success, None, None)
            }
            Err(status) => (
                outcome_of(status.code()),
                Some(code_name(status.code()).to_owned()),
                Some(status.message().to_owned()),
            ),
        };
        let started = call.started;
        let code = result.as_ref().err().map_or(Code::Ok, |s| s.code());
        if call.caller.is_err() && self.audit.space().level() >= Level::Low {
            // Refused anyway; below the soft floor its record is a line in the next summary.
            self.lock_summary().note(&call);
            self.metrics.summarized_call();
            self.metrics.call(&call.event_name, code, started.elapsed());
            return Ok(());
        }
        // One line per call, carrying the request id its audit record has; never a secret.
        tracing::debug!(
            request_id = %crate::auth::token::redact(&call.request_id),
            event = &*call.event_name,
            principal = call.principal(),
            key_id = call.key_id.as_deref().unwrap_or(""),
            outcome = outcome.as_str(),
            code = error_code.as_deref().unwrap_or("OK"),
            "call"
        );
        let principal = call.principal().to_owned();
        let reserve = call.reserve;
        let event_name = call.event_name;
        let request_id = call.request_id;
        let record = AuditRecord {
            event_id: call.event_id,
            event_time: call.event_time,
            event_name: event_name.clone().into_owned(),
            principal,
            source_address: call.source_address,
            user_agent: call.user_agent,
            request_id: request_id.clone(),
            key_id: call.key_id,
            key_version: call.key_version,
            key_alias: call.key_alias,
            parameters: call.parameters,
            encryption_context: call.encryption_context,
            reason: call.reason,
            outcome,
            error_code,
            error_message,
        };
        let appended = if reserve {
            self.audit.append_in_reserve(record).await
        } else {
            self.audit.append(record).await
        };
        if let Err(e) = appended {
            let mut status = super::status::with_kind(
                Status::unavailable(format!(
                    "{e}; the call was refused so that no key use goes unrecorded (fail closed); retry later"
                )),
                "AuditUnavailable",
            );
            if let Ok(v) = MetadataValue::try_from(request_id.as_str()) {
                status.metadata_mut().insert(REQUEST_ID_HEADER, v);
            }
            self.metrics
                .call(&event_name, Code::Unavailable, started.elapsed());
            return Err(status);
        }
        self.metrics.call(&event_name, code, started.elapsed());
        Ok(())
    }

    fn lock_summary(&self) -> std::sync::MutexGuard<'_, Summary> {
        // Nothing panics while holding it.
        self.summary.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the unauthenticated calls summarized since the last summary, if any (see [`Summary`]). Run at an
    /// interval and at shutdown; if the record cannot be written, the calls wait for the next one.
    pub async fn flush_summary(&self) {
        let pending = std::mem::take(&mut *self.lock_summary());
        if pending.calls == 0 {
            return;
        }
        let table = |t: &BTreeMap<String, u64>| {
            map_json(&t.iter().map(|(k, n)| (k.clone(), n.to_string())).collect())
        };
        let (calls, events, sources, other) = (
            pending.calls.to_string(),
            table(&pending.events),
            table(&pending.sources),
            pending.other_sources.to_string(),
        );
        let mut record = AuditRecord::internal(
            self.clock.now(),
            "UnauthenticatedCallsSummary",
            ANONYMOUS,
            "the disk is below its soft floor: unauthenticated calls were refused and are recorded as this summary",
            &[
                ("calls", &calls),
                ("first_time", pending.first_time.as_deref().unwrap_or("")),
                ("last_time", pending.last_time.as_deref().unwrap_or("")),
                ("events", &events),
                ("sources", &sources),
                ("other_sources", &other),
            ],
        );
        record.outcome = Outcome::Denied;
        record.source_address = "summary".to_owned();
        if self.audit.append(record).await.is_err() {
            self.lock_summary().merge(pending);
        }
    }
}

/// The response, or the error, with the call's request id attached.
fn respond<R>(request_id: &str, result: Result<R, Status>) -> Result<Response<R>, Status> {
    let value = MetadataValue::try_from(request_id).ok();
    match result {
        Ok(body) => {
            let mut response = Response::new(body);
            if let Some(v) = value {
                response.metadata_mut().insert(REQUEST_ID_HEADER, v);
            }
            Ok(response)
        }
        Err(status) => {
            let mut status = super::status::bounded(status);
            if let Some(v) = value {
                status.metadata_mut().insert(REQUEST_ID_HEADER, v);
            }
            Err(status)
        }
    }
}

/// Records a management call's success before its change is stored (see [`crate::kms::Gate`]).
pub struct AuditGate<'a> {
    auditor: &'a Auditor,
    call: &'a Call,
    recorded: AtomicBool,
}

impl AuditGate<'_> {
    /// Whether the call's record was made durable here.
    pub fn recorded(&self) -> bool {
        self.recorded.load(Ordering::SeqCst)
    }
}

impl Gate for AuditGate<'_> {
    fn approve(
        &self,
        change: Change,
    ) -> Pin<Box<dyn Future<Output = Result<(), KmsError>> + Send + '_>> {
        Box::pin(async move {
            self.record_success(Some(change.key_id.to_string()), change.key_version, &[])
                .await
                .map_err(|_| KmsError::AuditUnavailable)
        })
    }
}

impl AuditGate<'_> {
    /// Makes the call's success record durable now, before the change it describes is stored.
    pub async fn record_success(
        &self,
        key_id: Option<String>,
        key_version: Option<u32>,
        extra_parameters: &[(&str, &str)],
    ) -> Result<(), crate::audit::AuditError> {
        {
            let c = self.call;
            let record = AuditRecord {
                event_id: c.event_id.clone(),
                event_time: c.event_time.clone(),
                event_name: c.event_name.clone().into_owned(),
                principal: c.principal().to_owned(),
                source_address: c.source_address.clone(),
                user_agent: c.user_agent.clone(),
                request_id: c.request_id.clone(),
                key_id: key_id.or_else(|| c.key_id.clone()),
                key_version: key_version.or(c.key_version),
                key_alias: c.key_alias.clone(),
                parameters: {
                    let mut p = c.parameters.clone();
                    for (name, value) in extra_parameters {
                        p.insert((*name).to_owned(), (*value).to_owned());
                    }
                    p
                },
                encryption_context: c.encryption_context.clone(),
                reason: c.reason.clone(),
                outcome: Outcome::Success,
                error_code: None,
                error_message: None,
            };
            if c.reserve {
                self.auditor.audit.append_in_reserve(record).await?;
            } else {
                self.auditor.audit.append(record).await?;
            }
            self.recorded.store(true, Ordering::SeqCst);
            Ok(())
        }
    }
}

impl Call {
    /// The request id the call's record and answer carry.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The authenticated caller, or UNAUTHENTICATED; then INVALID_ARGUMENT if the call's headers were malformed.
    /// Handlers call this before doing anything.
    pub fn admit(&self) -> Result<&Caller, Status> {
        let caller = self.caller.as_ref().map_err(|failure| {
            super::status::with_kind(
                Status::unauthenticated(failure.message.clone()),
                "Unauthenticated",
            )
        })?;
        match &self.header_error {
            Some(msg) => Err(crate::keys::InvalidInput(msg.clone()).into()),
            None => Ok(caller),
        }
    }

    /// As [`Call::admit`], and PERMISSION_DENIED unless the caller is an administrator.
    pub fn admit_admin(&self) -> Result<&Caller, Status> {
        let caller = self.admit()?;
        if !caller.admin {
            return Err(super::status::permission_denied(format!(
                "{} requires an administrator; principal {:?} is not one",
                self.event_name, &*caller.principal
            )));
        }
        Ok(caller)
    }

    /// As [`Call::admit_admin`], for the archival calls: an administrator's record may then use the disk below its
    /// hard floor, because archiving is how that space is won back. Nobody else's may.
    pub fn admit_archival(&mut self) -> Result<(), Status> {
        self.admit_admin()?;
        self.reserve = true;
        Ok(())
    }

    /// Who the record names: the authenticated principal, or `anonymous`.
    fn principal(&self) -> &str {
        self.caller
            .as_ref()
            .map_or(ANONYMOUS, |caller| &caller.principal)
    }

    /// Whether the call states a reason (policies may require one).
    pub fn has_reason(&self) -> bool {
        self.reason.is_some()
    }

    /// Records the key a request names: an id as is, an alias with the key it currently points to.
    pub fn key(&mut self, named: &str, kms: &Kms) {
        match KeyRef::parse(named, "key_id") {
            Ok(KeyRef::Id(id)) => self.key_id = Some(id.to_string()),
            Ok(KeyRef::Alias(alias)) => {
                self.key_id = kms
                    .resolve_id(&KeyRef::Alias(alias.clone()))
                    .map(|id| id.to_string());
                self.key_alias = Some(alias.to_string());
            }
            Err(_) if named.is_empty() => {}
            // A malformed name is still worth recording: it is part of what was asked.
            Err(_) => {
                self.parameters
                    .insert("key_id".to_owned(), named.to_owned());
            }
        }
    }

    /// Records a fingerprint of a ciphertext blob to correlate it by, and the key and version its header names:
    /// as the call's key (Decrypt), or as `source_key_id`/`source_key_version` parameters (ReEncrypt, whose key
    /// is the destination).
    pub fn blob(&mut self, blob_bytes: &[u8], role: BlobRole) {
        let digest = Sha256::digest(blob_bytes);
        self.parameters.insert(
            "ciphertext_fingerprint".to_owned(),
            hex::encode(&digest[..8]),
        );
        self.parameters
            .insert("ciphertext_bytes".to_owned(), blob_bytes.len().to_string());
        let Ok(parsed) = blob::parse(blob_bytes) else {
            return;
        };
        match role {
            BlobRole::Key => {
                self.key_id = Some(parsed.header.key_id.to_string());
                self.key_version = Some(parsed.header.key_version);
            }
            BlobRole::Source => {
                self.param("source_key_id", parsed.header.key_id);
                self.param("source_key_version", parsed.header.key_version);
            }
        }
    }

    pub fn alias(&mut self, alias: &str) {
        self.key_alias = Some(alias.to_owned());
    }

    pub fn param(&mut self, name: &str, value: impl ToString) {
        self.parameters.insert(name.to_owned(), value.to_string());
    }

    pub fn map_param(&mut self, name: &str, map: &HashMap<String, String>) {
        if !map.is_empty() {
            let sorted: BTreeMap<String, String> =
                map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            self.parameters.insert(name.to_owned(), map_json(&sorted));
        }
    }

    pub fn context(&mut self, context: &HashMap<String, String>) {
        self.encryption_context = context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
}

fn outcome_of(code: Code) -> Outcome {
    match code {
        Code::PermissionDenied | Code::Unauthenticated => Outcome::Denied,
        _ => Outcome::Error,
    }
}

/// The canonical gRPC status code name, as in the gRPC spec.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
