//! Identity and access control: who is calling, and what they may do.
//!
//! [`Authenticator`] holds every principal, bearer-token hash, access key and certificate mapping in memory (loaded
//! at start, written through to storage by the admin calls), so authenticating a call costs a hash-map lookup and
//! one SHA-256 (a few HMACs for a signature), never a query. A call presents a bearer token (`authorization: Bearer
//! kmsd_...`), or, on the AWS endpoint, a request signed with an access key (AWS Signature Version 4,
//! [`access_key`], [`crate::aws::sigv4`]), or, over mutual TLS, a client certificate that rustls has verified
//! against the configured client CA; a certificate's URI SANs and then its subject CN are looked up among the
//! identities mapped to principals. Authorization is by role and by the
//! key's policy ([`policy`]): administrators may do everything; other principals may create keys if allowed to,
//! and use a key only as its policy allows.
//!
//! Invariants: a token's secret is never stored, logged or recorded, only its hash and public id; an access key's
//! secret is stored only wrapped under the root key and held only in zeroizing memory; a presented secret or
//! signature is compared in constant time and only after its id is found; an unknown id and a wrong secret fail
//! alike; a disabled principal, a revoked token or access key and an expired token never authenticate; a change to
//! this state is durable in storage before it takes effect here.

pub mod access_key;
pub mod cert;
pub mod policy;
pub mod token;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use zeroize::Zeroizing;

use crate::audit::{Change, Gate};
use crate::aws::sigv4;
use crate::clock::{Clock, UnixMillis};
use crate::crypto::RootKey;
use crate::keys::InvalidInput;
use crate::rpc::Rpc;
use crate::storage::{AccessKeyRow, ChangeKind, PrincipalRow, Storage, StorageError, TokenRow};

/// The principal the daemon creates on first start, whose token it writes to `<data-dir>/admin.token`.
pub const BOOTSTRAP_ADMIN: &str = "admin";
/// The name the daemon's own changes (maintenance, bootstrap) are recorded under; no caller can take it.
pub const SYSTEM_PRINCIPAL: &str = "kmsd";
/// Recorded as "who" for calls that did not authenticate.
pub const ANONYMOUS: &str = "anonymous";
const MAX_NAME_LEN: usize = 64;
const MAX_SUBJECT_LEN: usize = 1024;
const MAX_DESCRIPTION_CHARS: usize = 256;

/// An authenticated caller. Only [`Authenticator::authenticate`] makes one (its fields are private), so no code can
/// fabricate an administrator: the proofs of the call path (`service::Admitted`, `policy::Authorized`) rest on it.
#[derive(Debug, Clone)]
pub struct Caller {
    principal: Arc<str>,
    admin: bool,
    create_keys: bool,
    method: Method,
}

impl Caller {
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Whether it is an administrator: allowed everything, no policy statement needed.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Whether it may create keys (administrators may).
    pub fn can_create_keys(&self) -> bool {
        self.create_keys
    }

    /// How it proved who it is.
    pub fn method(&self) -> &Method {
        &self.method
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// A bearer token, by its public id.
    Token(String),
    /// A client certificate, by the identity that matched.
    Certificate(String),
    /// A request signed with an access key (SigV4), by the access key's id.
    AccessKey(String),
}

impl Method {
    /// For the audit record: how the caller proved who it is.
    pub fn describe(&self) -> (&'static str, &str) {
        match self {
            Method::Token(id) => ("token_id", id),
            Method::Certificate(subject) => ("certificate_subject", subject),
            Method::AccessKey(id) => ("access_key_id", id),
        }
    }
}

/// Why a call did not authenticate; the message says what to send instead. `credential` names the public id of a
/// presented token or access key that failed (`token_id` or `access_key_id`), for the audit record; `aws_error` is
/// the AWS exception a signed request's refusal is (`InvalidSignatureException`, ...).
#[derive(Debug, Clone)]
pub struct AuthFailure {
    pub message: String,
    pub credential: Option<(&'static str, String)>,
    pub aws_error: Option<&'static str>,
}

impl AuthFailure {
    fn new(message: impl Into<String>) -> Self {
        AuthFailure {
            message: message.into(),
            credential: None,
            aws_error: None,
        }
    }

    fn for_token(id: &str, message: impl Into<String>) -> Self {
        AuthFailure {
            credential: Some(("token_id", id.to_owned())),
            ..AuthFailure::new(message)
        }
    }

    fn for_signature(access_key_id: Option<&str>, error: &sigv4::SigError) -> Self {
        AuthFailure {
            message: error.to_string(),
            credential: access_key_id.map(|id| ("access_key_id", bounded_id(id))),
            aws_error: Some(error.aws_name()),
        }
    }
}

/// A presented id as the record keeps it: an access key id is 20 characters, a hostile one may be anything.
fn bounded_id(id: &str) -> String {
    id.chars().take(2 * access_key::ID_LEN).collect()
}

/// A request signed for the AWS endpoint, as it arrived, and the region its credential must be scoped to.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub request: sigv4::Request<'a>,
    pub region: &'a str,
}

/// A principal as the admin API shows it.
pub type Principal = PrincipalRow;

/// A token as the admin API shows it: everything but the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub principal: String,
    pub description: String,
    pub created_at: UnixMillis,
    pub expires_at: Option<UnixMillis>,
    pub revoked_at: Option<UnixMillis>,
}

/// An access key as the admin API shows it: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyInfo {
    pub id: String,
    pub principal: String,
    pub description: String,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

impl From<&AccessKeyRow> for AccessKeyInfo {
    fn from(k: &AccessKeyRow) -> Self {
        AccessKeyInfo {
            id: k.id.clone(),
            principal: k.principal.clone(),
            description: k.description.clone(),
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// An access key just issued: its secret, shown to the caller once, and its record.
pub struct IssuedAccessKey {
    pub secret: Arc<access_key::Secret>,
    pub info: AccessKeyInfo,
}

impl From<&TokenRow> for TokenInfo {
    fn from(t: &TokenRow) -> Self {
        TokenInfo {
            id: t.id.clone(),
            principal: t.principal.clone(),
            description: t.description.clone(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A token just issued: the whole token, shown to the caller once, and its record.
pub struct IssuedToken {
    pub token: Zeroizing<String>,
    pub info: TokenInfo,
}

/// What a new principal is to be.
#[derive(Debug, Clone)]
pub struct NewPrincipal {
    pub name: String,
    pub description: String,
    pub admin: bool,
    pub create_keys: bool,
    pub certificate_subjects: Vec<String>,
}

/// Why an admin change was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The change's audit record could not be made durable, so the change was not made.
    #[error("the audit log cannot be written; the change was not made (fail closed); retry later")]
    AuditUnavailable,
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
    #[error("internal failure: {0}")]
    Internal(String),
}

/// An access key in memory: its record and its secret, unwrapped.
struct AccessKey {
    info: AccessKeyInfo,
    secret: Arc<access_key::Secret>,
}

#[derive(Default)]
struct State {
    principals: HashMap<String, PrincipalRow>,
    tokens: HashMap<String, TokenRow>,
    access_keys: HashMap<String, AccessKey>,
    /// Certificate identity → principal name.
    subjects: HashMap<String, String>,
}

impl State {
    async fn load(storage: &Storage, root: &RootKey) -> Result<Self, StorageError> {
        let rows = storage.load_access().await?;
        let mut state = State::default();
        for p in rows.principals {
            for s in &p.certificate_subjects {
                state.subjects.insert(s.clone(), p.name.clone());
            }
            state.principals.insert(p.name.clone(), p);
        }
        for t in rows.tokens {
            state.tokens.insert(t.id.clone(), t);
        }
        for k in rows.access_keys {
            let secret = access_key::unwrap(root, &k.id, &k.wrapped_secret).map_err(|_| {
                StorageError::Corrupt(format!(
                    "access key {} does not unwrap with the root key",
                    k.id
                ))
            })?;
            state.access_keys.insert(
                k.id.clone(),
                AccessKey {
                    info: AccessKeyInfo::from(&k),
                    secret: Arc::new(secret),
                },
            );
        }
        Ok(state)
    }
}

/// Every principal, token hash and certificate mapping, in memory; see the module documentation.
pub struct Authenticator {
    state: RwLock<State>,
    storage: Storage,
    /// Wraps access keys' secrets.
    root: Arc<RootKey>,
    clock: Arc<dyn Clock>,
    /// Serializes changes, so that each is validated against the state it will replace; with the cluster's change
    /// lock ([`Authenticator::lock_for_change`]) across replicas too.
    write_lock: tokio::sync::Mutex<()>,
    /// The last change of the shared change log this state reflects (PostgreSQL; 0 and unused on SQLite).
    applied: AtomicU64,
}

/// A change in progress: this replica's lock and the cluster's, with the state caught up under both.
struct ChangeGuard<'a> {
    _local: tokio::sync::MutexGuard<'a, ()>,
    _cluster: crate::storage::ChangeLock,
}

impl Authenticator {
    pub async fn load(
        storage: Storage,
        root: Arc<RootKey>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StorageError> {
        // Read before the state, so that a change committed meanwhile is applied again rather than missed.
        let applied = storage.change_head().await?.unwrap_or(0);
        let state = State::load(&storage, &root).await?;
        Ok(Authenticator {
            state: RwLock::new(state),
            storage,
            root,
            clock,
            write_lock: tokio::sync::Mutex::new(()),
            applied: AtomicU64::new(applied),
        })
    }

    /// Takes this replica's write lock and the cluster's change lock, and applies the changes other replicas made
    /// before it.
    async fn lock_for_change(&self) -> Result<ChangeGuard<'_>, StorageError> {
        let local = self.write_lock.lock().await;
        let cluster = self.storage.lock_changes().await?;
        self.catch_up_locked(false).await?;
        Ok(ChangeGuard {
            _local: local,
            _cluster: cluster,
        })
    }

    /// Applies the access changes other replicas made since the last catch-up (nothing on SQLite); with
    /// `everything`, reloads the whole state whether or not the log shows a change.
    pub async fn catch_up(&self, everything: bool) -> Result<(), StorageError> {
        let _local = self.write_lock.lock().await;
        self.catch_up_locked(everything).await
    }

    async fn catch_up_locked(&self, everything: bool) -> Result<(), StorageError> {
        let applied = self.applied.load(Ordering::SeqCst);
        let Some(changes) = self
            .storage
            .changes_after(applied, ChangeKind::Access)
            .await?
        else {
            return Ok(());
        };
        if everything || changes.gap || !changes.subjects.is_empty() {
            let state = State::load(&self.storage, &self.root).await?;
            *self.write() = state;
        }
        self.applied.store(changes.head, Ordering::SeqCst);
        Ok(())
    }

    // Every write is a whole-value insert, so a panic elsewhere cannot leave the state half-updated.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether no principal exists yet: the daemon's first start, when it creates the administrator.
    pub fn is_empty(&self) -> bool {
        self.read().principals.is_empty()
    }

    pub fn principal_exists(&self, name: &str) -> bool {
        self.read().principals.contains_key(name)
    }

    /// Who is calling: by the signature of a request to the AWS endpoint, else by the `authorization` header if
    /// there is one, else by the verified client certificate.
    pub fn authenticate(
        &self,
        signed: Option<&SignedRequest<'_>>,
        authorization: Option<&str>,
        certificate: Option<&[u8]>,
    ) -> Result<Caller, AuthFailure> {
        match (signed, authorization, certificate) {
            (Some(signed), _, _) => self.by_signature(signed),
            (None, Some(header), _) => self.by_token(header),
            (None, None, Some(der)) => self.by_certificate(der),
            (None, None, None) => Err(AuthFailure::new(
                "no credentials: send the header `authorization: Bearer <token>` (an administrator issues tokens \
                 with CreateToken; the first one is in <data-dir>/admin.token) or connect with a client certificate",
            )),
        }
    }

    fn by_token(&self, header: &str) -> Result<Caller, AuthFailure> {
        let presented = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or_else(|| AuthFailure::new("the authorization header must be `Bearer <token>`"))?;
        let (id, secret) = token::parse(presented).ok_or_else(|| {
            AuthFailure::new("the bearer token is malformed: kmsd tokens look like kmsd_<16 hex digits>_<43 characters>")
        })?;
        let state = self.read();
        let invalid = || AuthFailure::for_token(id, "the bearer token is not valid");
        let Some(record) = state.tokens.get(id) else {
            // The same work as for a known id, so timing does not tell which ids exist.
            let _ = token::matches(id, secret, &[0u8; 32]);
            return Err(invalid());
        };
        if !token::matches(id, secret, &record.secret_hash) {
            return Err(invalid());
        }
        // Past this point the caller holds the secret: it may learn why its own token no longer works.
        if let Some(at) = record.revoked_at {
            return Err(AuthFailure::for_token(
                id,
                format!(
                    "the bearer token {id} was revoked at {}",
                    at.rfc3339_millis()
                ),
            ));
        }
        if let Some(at) = record.expires_at
            && self.clock.now() >= at
        {
            return Err(AuthFailure::for_token(
                id,
                format!(
                    "the bearer token {id} expired at {}; ask an administrator for a new one",
                    at.rfc3339_millis()
                ),
            ));
        }
        let principal = state
            .principals
            .get(&record.principal)
            .ok_or_else(invalid)?;
        active(principal, Method::Token(id.to_owned())).map_err(|m| AuthFailure::for_token(id, m))
    }

    /// A SigV4-signed request: the claim checked (scope, signed headers, date), the access key found, the
    /// signature verified in constant time, then the key's and its principal's state.
    fn by_signature(&self, signed: &SignedRequest<'_>) -> Result<Caller, AuthFailure> {
        let claim = sigv4::claim(&signed.request, signed.region, self.clock.now())
            .map_err(|e| AuthFailure::for_signature(None, &e))?;
        let id = claim.access_key_id.as_str();
        let refused = |e: sigv4::SigError| AuthFailure::for_signature(Some(id), &e);
        let found = {
            let state = self.read();
            state
                .access_keys
                .get(id)
                .map(|k| (k.info.clone(), k.secret.clone()))
        };
        let Some((info, secret)) = found else {
            // The same work as for a known id, so timing does not tell which ids exist.
            let _ = sigv4::verify(&claim, &signed.request, &[0u8; access_key::SECRET_LEN]);
            return Err(refused(sigv4::SigError::UnrecognizedClient));
        };
        sigv4::verify(&claim, &signed.request, secret.expose().as_bytes()).map_err(refused)?;
        // Past this point the caller holds the secret: it may learn why its own key no longer works.
        let unrecognized = |message: String| AuthFailure {
            message,
            ..refused(sigv4::SigError::UnrecognizedClient)
        };
        if let Some(at) = info.revoked_at {
            return Err(unrecognized(format!(
                "the access key {id} was revoked at {}",
                at.rfc3339_millis()
            )));
        }
        let state = self.read();
        let principal = state
            .principals
            .get(&info.principal)
            .ok_or_else(|| refused(sigv4::SigError::UnrecognizedClient))?;
        active(principal, Method::AccessKey(id.to_owned())).map_err(unrecognized)
    }

    fn by_certificate(&self, der: &[u8]) -> Result<Caller, AuthFailure> {
        let identities = cert::identities(der).map_err(AuthFailure::new)?;
        let state = self.read();
        for identity in &identities {
            if let Some(name) = state.subjects.get(identity)
                && let Some(principal) = state.principals.get(name)
            {
                return active(principal, Method::Certificate(identity.clone()))
                    .map_err(AuthFailure::new);
            }
        }
        Err(AuthFailure::new(format!(
            "the client certificate ({}) is not mapped to a principal; an administrator can map one of its \
             identities with CreatePrincipal's certificate_subjects",
            if identities.is_empty() {
                "no URI SAN or CN".to_owned()
            } else {
                identities.join(", ")
            }
        )))
    }

    pub fn principals(&self) -> Vec<Principal> {
        let mut all: Vec<_> = self.read().principals.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Tokens, oldest first, of one principal or of all.
    pub fn tokens(&self, principal: Option<&str>) -> Vec<TokenInfo> {
        let state = self.read();
        let mut all: Vec<TokenInfo> = state
            .tokens
            .values()
            .filter(|t| principal.is_none_or(|p| t.principal == p))
            .map(TokenInfo::from)
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        all
    }

    /// What issuing a credential (a token, an access key) to `principal` starts with: its description checked, then
    /// the change lock taken with the principal found enabled under it.
    async fn lock_for_issuing(
        &self,
        principal: &str,
        description: &str,
    ) -> Result<ChangeGuard<'_>, AccessError> {
        check_description(description)?;
        let guard = self.lock_for_change().await?;
        if self.principal(principal)?.disabled_at.is_some() {
            return Err(AccessError::FailedPrecondition(format!(
                "principal {principal:?} is disabled"
            )));
        }
        Ok(guard)
    }

    /// Access keys, oldest first, of one principal or of all.
    pub fn access_keys(&self, principal: Option<&str>) -> Vec<AccessKeyInfo> {
        let state = self.read();
        let mut all: Vec<AccessKeyInfo> = state
            .access_keys
            .values()
            .filter(|k| principal.is_none_or(|p| k.info.principal == p))
            .map(|k| k.info.clone())
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        all
    }

    /// Issues an access key for `principal` once `gate` has made its record (naming the new key's id) durable. The
    /// secret is returned here and nowhere else; only its wrapped form is stored.
    pub async fn create_access_key(
        &self,
        principal: &str,
        description: String,
        gate: &dyn Gate,
    ) -> Result<IssuedAccessKey, AccessError> {
        let _guard = self.lock_for_issuing(principal, &description).await?;
        let issued = access_key::issue(&self.root)
            .map_err(|e| AccessError::Internal(format!("the OS refused randomness: {e}")))?;
        let row = AccessKeyRow {
            id: issued.id,
            principal: principal.to_owned(),
            description,
            wrapped_secret: issued.wrapped,
            created_at: self.clock.now(),
            revoked_at: None,
        };
        gate.approve(Change::of(
            Rpc::CreateAccessKey,
            &[("principal", principal), ("issued_access_key_id", &row.id)],
        ))
        .await?;
        self.storage.insert_access_key(row.clone()).await?;
        let info = AccessKeyInfo::from(&row);
        let secret = Arc::new(issued.secret);
        self.write().access_keys.insert(
            row.id,
            AccessKey {
                info: info.clone(),
                secret: secret.clone(),
            },
        );
        Ok(IssuedAccessKey { secret, info })
    }

    pub async fn revoke_access_key(
        &self,
        id: &str,
        gate: &dyn Gate,
    ) -> Result<AccessKeyInfo, AccessError> {
        if !access_key::is_id(id) {
            return Err(invalid(format!(
                "access_key_id {id:?} is not an access key id (20 characters starting with {}, as ListAccessKeys \
                 shows)",
                access_key::ID_PREFIX
            )));
        }
        let _guard = self.lock_for_change().await?;
        let (mut info, secret) = self
            .read()
            .access_keys
            .get(id)
            .map(|k| (k.info.clone(), k.secret.clone()))
            .ok_or_else(|| AccessError::NotFound(format!("access key {id} does not exist")))?;
        if info.revoked_at.is_some() {
            return Ok(info);
        }
        let now = self.clock.now();
        gate.approve(Change::of(
            Rpc::RevokeAccessKey,
            &[("revoked_access_key_id", id)],
        ))
        .await?;
        self.storage.revoke_access_key(id.to_owned(), now).await?;
        info.revoked_at = Some(now);
        self.write().access_keys.insert(
            id.to_owned(),
            AccessKey {
                info: info.clone(),
                secret,
            },
        );
        Ok(info)
    }

    /// Creates a principal once `gate` has made its record durable.
    pub async fn create_principal(
        &self,
        new: NewPrincipal,
        gate: &dyn Gate,
    ) -> Result<Principal, AccessError> {
        validate_name(&new.name)?;
        check_description(&new.description)?;
        for s in &new.certificate_subjects {
            if s.is_empty() || s.len() > MAX_SUBJECT_LEN || s.chars().any(char::is_control) {
                return Err(invalid(format!(
                    "certificate subject {s:?} must be 1-{MAX_SUBJECT_LEN} bytes without control characters"
                )));
            }
        }
        let _guard = self.lock_for_change().await?;
        {
            let state = self.read();
            if state.principals.contains_key(&new.name) {
                return Err(AccessError::AlreadyExists(format!(
                    "principal {:?} already exists",
                    new.name
                )));
            }
            if let Some(s) = new
                .certificate_subjects
                .iter()
                .find(|s| state.subjects.contains_key(*s))
            {
                return Err(AccessError::AlreadyExists(format!(
                    "certificate subject {s:?} already belongs to principal {:?}",
                    state.subjects[s]
                )));
            }
        }
        let row = PrincipalRow {
            name: new.name,
            description: new.description,
            admin: new.admin,
            create_keys: new.create_keys || new.admin,
            created_at: self.clock.now(),
            disabled_at: None,
            certificate_subjects: new.certificate_subjects,
        };
        let admin = row.admin.to_string();
        gate.approve(Change::of(
            Rpc::CreatePrincipal,
            &[("name", &row.name), ("admin", &admin)],
        ))
        .await?;
        self.storage.insert_principal(row.clone()).await?;
        let mut state = self.write();
        for s in &row.certificate_subjects {
            state.subjects.insert(s.clone(), row.name.clone());
        }
        state.principals.insert(row.name.clone(), row.clone());
        Ok(row)
    }

    /// Disables a principal: none of its tokens or certificates authenticate any more.
    pub async fn disable_principal(
        &self,
        name: &str,
        gate: &dyn Gate,
    ) -> Result<Principal, AccessError> {
        let _guard = self.lock_for_change().await?;
        let mut row = self.principal(name)?;
        if row.disabled_at.is_some() {
            return Ok(row);
        }
        if row.admin {
            let other_admins = self
                .read()
                .principals
                .values()
                .filter(|p| p.admin && p.disabled_at.is_none() && p.name != name)
                .count();
            if other_admins == 0 {
                return Err(AccessError::FailedPrecondition(format!(
                    "principal {name:?} is the last enabled administrator; create another first"
                )));
            }
        }
        let now = self.clock.now();
        gate.approve(Change::of(Rpc::DisablePrincipal, &[("name", name)]))
            .await?;
        self.storage.disable_principal(name.to_owned(), now).await?;
        row.disabled_at = Some(now);
        self.write().principals.insert(name.to_owned(), row.clone());
        Ok(row)
    }

    /// Issues a token for `principal`, valid for `ttl` if given, once `gate` has made its record (naming the new
    /// token's public id) durable. The token is returned here and nowhere else.
    pub async fn create_token(
        &self,
        principal: &str,
        description: String,
        ttl: Option<std::time::Duration>,
        gate: &dyn Gate,
    ) -> Result<IssuedToken, AccessError> {
        let _guard = self.lock_for_issuing(principal, &description).await?;
        let issued = token::issue()
            .map_err(|e| AccessError::Internal(format!("the OS refused randomness: {e}")))?;
        let now = self.clock.now();
        let expires_at = ttl.map(|ttl| {
            UnixMillis(
                now.0
                    .saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
            )
        });
        let row = TokenRow {
            id: issued.id.clone(),
            principal: principal.to_owned(),
            description,
            secret_hash: issued.hash,
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        gate.approve(Change::of(
            Rpc::CreateToken,
            &[("principal", principal), ("issued_token_id", &row.id)],
        ))
        .await?;
        self.storage.insert_token(row.clone()).await?;
        let info = TokenInfo::from(&row);
        self.write().tokens.insert(row.id.clone(), row);
        Ok(IssuedToken {
            token: issued.token,
            info,
        })
    }

    pub async fn revoke_token(&self, id: &str, gate: &dyn Gate) -> Result<TokenInfo, AccessError> {
        if !token::is_id(id) {
            return Err(invalid(format!(
                "token_id {id:?} is not a token id (16 lowercase hex digits, as ListTokens shows)"
            )));
        }
        let _guard = self.lock_for_change().await?;
        let mut row = self
            .read()
            .tokens
            .get(id)
            .cloned()
            .ok_or_else(|| AccessError::NotFound(format!("token {id} does not exist")))?;
        if row.revoked_at.is_some() {
            return Ok(TokenInfo::from(&row));
        }
        let now = self.clock.now();
        gate.approve(Change::of(Rpc::RevokeToken, &[("revoked_token_id", id)]))
            .await?;
        self.storage.revoke_token(id.to_owned(), now).await?;
        row.revoked_at = Some(now);
        let info = TokenInfo::from(&row);
        self.write().tokens.insert(id.to_owned(), row);
        Ok(info)
    }

    fn principal(&self, name: &str) -> Result<PrincipalRow, AccessError> {
        self.read()
            .principals
            .get(name)
            .cloned()
            .ok_or_else(|| AccessError::NotFound(format!("principal {name:?} does not exist")))
    }
}

fn active(principal: &PrincipalRow, method: Method) -> Result<Caller, String> {
    if principal.disabled_at.is_some() {
        return Err(format!("principal {:?} is disabled", principal.name));
    }
    Ok(Caller {
        principal: Arc::from(principal.name.as_str()),
        admin: principal.admin,
        create_keys: principal.create_keys,
        method,
    })
}

fn check_description(description: &str) -> Result<(), AccessError> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(invalid(format!(
            "description is longer than {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(())
}

fn invalid(msg: String) -> AccessError {
    AccessError::InvalidInput(InvalidInput(msg))
}

/// Principal names: 1-64 of `A-Z a-z 0-9 . _ @ -`, not the reserved names.
pub fn validate_name(name: &str) -> Result<(), InvalidInput> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
    if !ok {
        return Err(InvalidInput(format!(
            "principal name {name:?} must be 1-{MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ @ -"
        )));
    }
    if name == SYSTEM_PRINCIPAL || name == ANONYMOUS || name == policy::WILDCARD {
        return Err(InvalidInput(format!("principal name {name:?} is reserved")));
    }
    Ok(())
}

impl From<crate::audit::Unrecorded> for AccessError {
    fn from(_: crate::audit::Unrecorded) -> Self {
        AccessError::AuditUnavailable
    }
}
