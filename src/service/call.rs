//! The one path every call takes, whatever front end it arrived by: authenticated, admitted, authorized, run,
//! gated, and recorded exactly once, its answer released only once its record is durable.
//!
//! A front end turns what it received into a [`CallContext`] (the credentials presented, the source address, user
//! agent, request id and reason) and opens a [`Call`] with [`Auditor::open`], which authenticates the caller. It
//! describes the request on the call (the key, parameters and encryption context it names: what a record must say
//! was asked, even of a caller that is refused), then hands it to [`Auditor::run`] with the handler's body.
//! `run` refuses an unauthenticated caller, or one the [`Rpc`] does not admit ([`Requires`]), before the body
//! exists: the body receives an [`Admitted`] caller, the only way to reach one. The body authorizes each key it
//! uses against that key's policy with [`Admitted::authorize`] (the permission is the RPC's own), and passes the
//! `Admitted` as the [`Gate`] of any change it makes, so the change's success record is durable before the change
//! is stored. `run` then records the call, unless its gate already did: exactly one record per call, built in one
//! place ([`Call::into_record`]).
//!
//! Invariants: no handler body runs for a caller [`Auditor::run`] did not admit; every call yields exactly one
//! record; a result leaves only after its record is durable, and becomes UNAVAILABLE if it cannot be written (the
//! result, with any key material in it, is then dropped and zeroized unsent).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};
use tonic::{Code, Status};

use crate::audit::space::Level;
use crate::audit::{
    AuditLog, AuditRecord, Change, Gate, Outcome, Unrecorded, map_json, time_ordered_id,
};
use crate::auth::policy::{self, Access, Authorized, KeyAccess, Permission};
use crate::auth::{ANONYMOUS, AuthFailure, Authenticator, Caller};
use crate::clock::Clock;
use crate::crypto::blob;
use crate::keys::{EncryptionContext, KeyRef};
use crate::kms::Kms;
use crate::rpc::{DaemonEvent, Event, Requires, Rpc};

pub use kmsd_proto::headers::{REASON as REASON_HEADER, REQUEST_ID as REQUEST_ID_HEADER};
const MAX_REQUEST_ID_LEN: usize = 128;
/// Internal metadata on an UNAUTHENTICATED status of a signed request: the AWS exception to answer with
/// (`InvalidSignatureException`, ...). Only the AWS endpoint reads it; it never reaches a gRPC caller, whose calls
/// are never signed.
pub const AWS_ERROR_METADATA: &str = "x-kms-aws-error";
const MAX_REASON_LEN: usize = 1024;

/// What a front end knows of a call before any handler runs, borrowed from its request.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallContext<'a> {
    /// A request to the AWS endpoint, whose signature authenticates it (SigV4).
    pub signed: Option<crate::auth::SignedRequest<'a>>,
    /// The `authorization` header's value, as presented (`Bearer kmsd_...`).
    pub authorization: Option<&'a str>,
    /// The client certificate (DER) the TLS layer verified, if any.
    pub client_certificate: Option<&'a [u8]>,
    pub source: Option<SocketAddr>,
    pub user_agent: Option<&'a str>,
    /// The caller's request id, if it sent one (else one is made).
    pub request_id: Option<&'a str>,
    /// Why the caller says it makes the call (`x-kms-reason`).
    pub reason: Option<&'a str>,
    /// Why the front end refused the request before it could become a request of the common form (the AWS
    /// endpoint's own validation rules, a KeyId naming another account): an admitted caller gets this answer
    /// instead of the handler's.
    pub refusal: Option<&'a Status>,
}

/// Records calls in the audit log.
pub struct Auditor {
    audit: Arc<AuditLog>,
    auth: Arc<Authenticator>,
    clock: Arc<dyn Clock>,
    metrics: Arc<crate::metrics::Metrics>,
    summary: std::sync::Mutex<Summary>,
    /// Whether this replica's caches are current (see [`crate::replica`]).
    currency: Arc<crate::replica::Currency>,
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
        bump(&mut self.events, call.event.name());
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

/// One call being audited: who (authenticated when it is opened), from where, and what the request names.
#[derive(Clone)]
pub struct Call {
    started: std::time::Instant,
    event_id: String,
    event: Event,
    event_time: String,
    caller: Result<Caller, AuthFailure>,
    source_address: String,
    user_agent: String,
    request_id: String,
    reason: Option<String>,
    /// The answer an admitted caller gets instead of the handler's: malformed headers, or the front end's refusal.
    header_error: Option<Status>,
    key_id: Option<String>,
    key_alias: Option<String>,
    key_version: Option<u32>,
    parameters: BTreeMap<String, String>,
    encryption_context: BTreeMap<String, String>,
    /// Whether its record may use the disk below the hard floor (archival calls by an administrator).
    reserve: bool,
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
        currency: Arc<crate::replica::Currency>,
    ) -> Self {
        Auditor {
            audit,
            auth,
            clock,
            metrics,
            summary: Default::default(),
            currency,
        }
    }

    /// Opens the record of a call: who (authenticated here, refused or admitted by [`Auditor::run`]), from where,
    /// and the headers that describe it.
    pub fn open(&self, event: Event, context: CallContext<'_>) -> Call {
        let caller = self.auth.authenticate(
            context.signed.as_ref(),
            context.authorization,
            context.client_certificate,
        );
        let mut parameters = BTreeMap::new();
        match &caller {
            Ok(c) => {
                let (name, value) = c.method().describe();
                parameters.insert(name.to_owned(), value.to_owned());
            }
            Err(failure) => {
                if let Some((name, id)) = &failure.credential {
                    parameters.insert((*name).to_owned(), id.clone());
                }
            }
        }
        let now = self.clock.now();
        let mut header_error = context.refusal.cloned();
        let invalid = |msg: String| Some(Status::from(crate::keys::InvalidInput(msg)));
        let request_id = match context.request_id {
            Some(id) if !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN => id.to_owned(),
            Some(_) => {
                header_error = invalid(format!(
                    "{REQUEST_ID_HEADER} must be 1-{MAX_REQUEST_ID_LEN} characters"
                ));
                time_ordered_id(now)
            }
            None => time_ordered_id(now),
        };
        let reason = match context.reason {
            Some(r) if r.chars().count() > MAX_REASON_LEN => {
                header_error = invalid(format!(
                    "{REASON_HEADER} is longer than {MAX_REASON_LEN} characters"
                ));
                Some(r.chars().take(MAX_REASON_LEN).collect())
            }
            Some(r) if !r.is_empty() => Some(r.to_owned()),
            _ => None,
        };
        Call {
            started: std::time::Instant::now(),
            event,
            event_time: now.rfc3339_millis(),
            event_id: time_ordered_id(now),
            caller,
            source_address: context
                .source
                .map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
            user_agent: context.user_agent.unwrap_or_default().to_owned(),
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

    /// Runs a described call of `rpc`: admits its caller (or refuses it, and `body` never runs), runs `body` with
    /// the admitted caller, and records the call exactly once: at its gate if `body` made a change, else here once
    /// the result is known. The result, with the call's request id, is what the front end answers; UNAVAILABLE
    /// instead if the record could not be made durable.
    pub async fn run<R: Audited>(
        &self,
        rpc: Rpc,
        mut call: Call,
        body: impl AsyncFnOnce(&Admitted<'_>) -> Result<R, Status>,
    ) -> (Result<R, Status>, String) {
        debug_assert_eq!(call.event, Event::Call(rpc));
        let request_id = call.request_id.clone();
        // A replica that may have missed a revocation made elsewhere answers nothing (but records the refusal).
        let admitted = if self.currency.is_current() {
            call.admit(rpc)
        } else {
            Err(super::status::behind())
        };
        let (result, recorded) = match admitted {
            Err(refused) => (Err(refused), false),
            Ok(()) => {
                let admitted = Admitted {
                    auditor: self,
                    call: &call,
                    rpc,
                    recorded: AtomicBool::new(false),
                };
                let result = body(&admitted).await;
                (result, admitted.recorded())
            }
        };
        if recorded {
            // The record (success) is durable. If the change failed after it, the record over-reports: better a
            // recorded change that did not happen than a change without a record.
            let code = result.as_ref().err().map_or(Code::Ok, |s| s.code());
            self.metrics.call(call.event, code, call.started.elapsed());
            return (result, request_id);
        }
        // On failure `result` is dropped: whatever key material it held is zeroized and never sent.
        match self.record(call, &result).await {
            Ok(()) => (result, request_id),
            Err(unavailable) => (Err(unavailable), request_id),
        }
    }

    /// Appends the record of `call` ending with `result`, and counts it; the UNAVAILABLE answer to give instead if
    /// the record is not durable (the front end attaches the request id, as to every answer).
    pub(crate) async fn record<R: Audited>(
        &self,
        mut call: Call,
        result: &Result<R, Status>,
    ) -> Result<(), Status> {
        let code = result.as_ref().err().map_or(Code::Ok, |s| s.code());
        let started = call.started;
        let event = call.event;
        if call.caller.is_err() && self.audit.space().level() >= Level::Low {
            // Refused anyway; below the soft floor its record is a line in the next summary.
            self.lock_summary().note(&call);
            self.metrics.summarized_call();
            self.metrics.call(event, code, started.elapsed());
            return Ok(());
        }
        let ending = match result {
            Ok(response) => {
                if let Some((key_id, version)) = response.key_used() {
                    call.key_id = Some(key_id.to_owned());
                    call.key_version = version.or(call.key_version);
                }
                for (name, value) in response.parameters() {
                    call.parameters.insert(name.to_owned(), value);
                }
                Ending::Success
            }
            Err(status) => Ending::Failure(status),
        };
        let reserve = call.reserve;
        let record = call.into_record(ending);
        // One line per call, carrying the request id its audit record has; never a secret.
        tracing::debug!(
            request_id = %crate::auth::token::redact(&record.request_id),
            event = event.name(),
            principal = record.principal,
            key_id = record.key_id.as_deref().unwrap_or(""),
            outcome = record.outcome.as_str(),
            code = record.error_code.as_deref().unwrap_or("OK"),
            "call"
        );
        if let Err(e) = self.append(record, reserve).await {
            let status = super::status::with_kind(
                Status::unavailable(format!(
                    "{e}; the call was refused so that no key use goes unrecorded (fail closed); retry later"
                )),
                kmsd_proto::ErrorKind::AuditUnavailable,
            );
            self.metrics
                .call(event, Code::Unavailable, started.elapsed());
            return Err(status);
        }
        self.metrics.call(event, code, started.elapsed());
        Ok(())
    }

    async fn append(
        &self,
        record: AuditRecord,
        reserve: bool,
    ) -> Result<(), crate::audit::AuditError> {
        if reserve {
            self.audit.append_in_reserve(record).await.map(drop)
        } else {
            self.audit.append(record).await.map(drop)
        }
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
            DaemonEvent::UnauthenticatedCallsSummary.into(),
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

/// How a call ended, for its record.
enum Ending<'a> {
    Success,
    Failure(&'a Status),
}

/// A caller [`Auditor::run`] admitted to one call: what a handler body receives, and the only way it reaches the
/// caller. It is also the call's [`Gate`]: a change approved through it has the call's success record durable first.
pub struct Admitted<'a> {
    auditor: &'a Auditor,
    call: &'a Call,
    rpc: Rpc,
    recorded: AtomicBool,
}

impl Admitted<'_> {
    pub fn caller(&self) -> &Caller {
        // Admission checked it (see `Call::admit`); this is only reached through `Auditor::run`.
        match &self.call.caller {
            Ok(caller) => caller,
            Err(_) => unreachable!("an Admitted call has an authenticated caller"),
        }
    }

    /// Whether the call states a reason (policies may require one).
    pub fn has_reason(&self) -> bool {
        self.call.reason.is_some()
    }

    /// Authorizes this call's RPC on `key` under `context`: administrators always, others as the key's policy says.
    /// The proof names the key to act on: for everyone but administrators, the id authorization resolved, so that
    /// an alias moved in between cannot redirect the call.
    pub fn authorize(
        &self,
        kms: &Kms,
        key: KeyRef,
        context: Option<&EncryptionContext>,
    ) -> Result<Authorized, Status> {
        let caller = self.caller();
        if caller.is_admin() {
            return match policy::administrator(caller, Some(key)) {
                Some(KeyAccess::Key(authorized)) => Ok(authorized),
                _ => Err(Status::internal(
                    "an administrator's authority names the key it was given",
                )),
            };
        }
        let Some(permission) = Permission::of(self.rpc) else {
            // Only key-policy RPCs authorize per key; the others were admitted by role, and use `administrator`.
            return Err(Status::internal(format!(
                "{} has no key permission to authorize",
                self.rpc
            )));
        };
        let (id, key_policy) = kms.policy_of(&key)?;
        let access = Access {
            principal: caller.principal(),
            permission,
            context,
            has_reason: self.has_reason(),
        };
        Ok(policy::authorize(&key_policy, &access, id)?)
    }

    /// Authorizes opening a ciphertext: under the key the caller named, or else under the one the ciphertext names
    /// (`blob_key`); an administrator who named none may open it under whichever key it names.
    pub fn authorize_opening(
        &self,
        kms: &Kms,
        named: Option<KeyRef>,
        blob_key: impl FnOnce() -> Result<KeyRef, Status>,
        context: &EncryptionContext,
    ) -> Result<KeyAccess, Status> {
        if self.caller().is_admin() {
            return policy::administrator(self.caller(), named).ok_or_else(|| {
                Status::internal("an administrator has an administrator's authority")
            });
        }
        let key = match named {
            Some(key) => key,
            None => blob_key()?,
        };
        Ok(KeyAccess::Key(self.authorize(kms, key, Some(context))?))
    }

    /// An administrator's authority over `key`, for the RPCs only administrators are admitted to (CreateAlias,
    /// PutKeyPolicy).
    pub fn administer(&self, key: KeyRef) -> Result<Authorized, Status> {
        match policy::administrator(self.caller(), Some(key)) {
            Some(KeyAccess::Key(authorized)) if self.rpc.requires() == Requires::Admin => {
                Ok(authorized)
            }
            _ => Err(Status::internal(format!(
                "{} does not admit administrators only",
                self.rpc
            ))),
        }
    }

    /// Whether the call's record was made durable at its gate.
    fn recorded(&self) -> bool {
        self.recorded.load(Ordering::SeqCst)
    }
}

impl Gate for Admitted<'_> {
    fn approve<'a>(
        &'a self,
        change: Change<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Unrecorded>> + Send + 'a>> {
        Box::pin(async move {
            let mut call = self.call.clone();
            if let Some(id) = change.key_id {
                call.key_id = Some(id.to_string());
            }
            call.key_version = change.key_version.or(call.key_version);
            for (name, value) in change.parameters {
                call.parameters
                    .insert((*name).to_owned(), (*value).to_owned());
            }
            let reserve = call.reserve;
            self.auditor
                .append(call.into_record(Ending::Success), reserve)
                .await
                .map_err(|_| Unrecorded)?;
            self.recorded.store(true, Ordering::SeqCst);
            Ok(())
        })
    }
}

impl Call {
    /// The request id the call's record and answer carry.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The UNAUTHENTICATED answer, if the caller did not authenticate: naming, for a signed request, the AWS
    /// exception it is (see [`AWS_ERROR_METADATA`]).
    pub fn unauthenticated(&self) -> Option<Status> {
        self.caller.as_ref().err().map(unauthenticated)
    }

    /// Admits the call's caller for `rpc`, or says why not: UNAUTHENTICATED, then INVALID_ARGUMENT if the call's
    /// headers were malformed, then PERMISSION_DENIED if the RPC needs a role the caller lacks.
    fn admit(&mut self, rpc: Rpc) -> Result<(), Status> {
        let caller = self.caller.as_ref().map_err(unauthenticated)?;
        if let Some(status) = &self.header_error {
            return Err(status.clone());
        }
        match rpc.requires() {
            Requires::Authenticated | Requires::KeyPolicy => Ok(()),
            Requires::CreateKeys if caller.can_create_keys() => Ok(()),
            Requires::CreateKeys => Err(super::status::permission_denied(format!(
                "principal {:?} lacks permission kms:CreateKey: only administrators and principals created with \
                 create_keys may create keys",
                caller.principal()
            ))),
            Requires::Admin | Requires::Archival if !caller.is_admin() => {
                Err(super::status::permission_denied(format!(
                    "{rpc} requires an administrator; principal {:?} is not one",
                    caller.principal()
                )))
            }
            Requires::Admin => Ok(()),
            Requires::Archival => {
                // An administrator's archival record may use the disk below its hard floor, because archiving is
                // how that space is won back. Nobody else's may.
                self.reserve = true;
                Ok(())
            }
        }
    }

    /// The one place a record is built from a call.
    fn into_record(self, ending: Ending<'_>) -> AuditRecord {
        let principal = self.principal().to_owned();
        let (outcome, error_code, error_message) = match ending {
            Ending::Success => (Outcome::Success, None, None),
            Ending::Failure(status) => (
                outcome_of(status.code()),
                Some(code_name(status.code()).to_owned()),
                Some(status.message().to_owned()),
            ),
        };
        AuditRecord {
            event_id: self.event_id,
            event_time: self.event_time,
            event_name: self.event.name().to_owned(),
            principal,
            source_address: self.source_address,
            user_agent: self.user_agent,
            request_id: self.request_id,
            key_id: self.key_id,
            key_version: self.key_version,
            key_alias: self.key_alias,
            parameters: self.parameters,
            encryption_context: self.encryption_context,
            reason: self.reason,
            outcome,
            error_code,
            error_message,
        }
    }

    /// Who the record names: the authenticated principal, or `anonymous`.
    fn principal(&self) -> &str {
        self.caller
            .as_ref()
            .map_or(ANONYMOUS, |caller| caller.principal())
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

    /// What a Sign, Verify, GenerateMac or VerifyMac request was given to sign or MAC: its type (if it has one), its
    /// length and its SHA-256, never the message itself.
    pub fn message(&mut self, message: &[u8], message_type: Option<&str>) {
        if let Some(t) = message_type {
            self.param("message_type", if t.is_empty() { "RAW" } else { t });
        }
        self.param("message_bytes", message.len());
        self.param("message_sha256", hex::encode(Sha256::digest(message)));
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

/// The answer to a caller that did not authenticate.
fn unauthenticated(failure: &AuthFailure) -> Status {
    let mut status = super::status::with_kind(
        Status::unauthenticated(failure.message.clone()),
        kmsd_proto::ErrorKind::Unauthenticated,
    );
    if let Some(name) = failure.aws_error {
        status.metadata_mut().insert(
            AWS_ERROR_METADATA,
            tonic::metadata::MetadataValue::from_static(name),
        );
    }
    status
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
