//! The client library: typed async calls to a kmsd daemon, for other services.
//!
//! It depends on `kmsd-proto` and not on the daemon: no SQLite, no server code, no CLI. The storage client
//! ([`objects`]) is behind the `objects` feature.
//! A [`Client`] is cheap to clone and safe to share; [`Client::with_reason`], [`Client::with_request_id`] and
//! [`Client::with_timeout`] return a copy that sends `x-kms-reason` / `x-request-id` or uses another deadline on
//! every call it makes. Calls that change nothing on the server (reads, data keys, Encrypt, Decrypt, ReEncrypt,
//! random bytes) are retried with jittered exponential backoff when the daemon is unavailable; calls that change
//! state are never retried, so a retry cannot, say, rotate a key twice.
//!
//! Invariants: plaintext from the daemon is handed over in [`Zeroizing`] buffers and never appears in `Debug`
//! output; errors are an enum decided from status codes and kmsd's `x-kms-error` header, never message text.

mod data_key_cache;
pub mod envelope;
mod error;
#[cfg(feature = "objects")]
pub mod objects;

/// The wire contract this client speaks, re-exported so a service needs only this crate.
pub use kmsd_proto::{ErrorKind, headers, key_policy, pb};

pub use data_key_cache::{CacheLimits, CachedDataKey, DataKeyCache};
pub use error::{Details, Error};

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};
use zeroize::Zeroizing;

use kmsd_proto::pb::admin_service_client::AdminServiceClient;
use kmsd_proto::pb::audit_service_client::AuditServiceClient;
use kmsd_proto::pb::key_management_service_client::KeyManagementServiceClient;
use kmsd_proto::pb::*;

pub type Result<T> = std::result::Result<T, Error>;

/// How to reach the daemon and how patient to be.
#[derive(Clone)]
pub struct ClientBuilder {
    /// As given: one URL, or several separated by commas (replicas).
    endpoint: String,
    token: Option<Zeroizing<String>>,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    max_retries: u32,
    backoff: Duration,
    tls: Option<TlsSettings>,
    spread: bool,
}

/// TLS towards the daemon: the CA that signed its certificate, and optionally this client's own certificate and
/// key for mutual TLS (the daemon then knows the caller by the certificate, without a token).
#[derive(Clone, Default)]
struct TlsSettings {
    ca_pem: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Zeroizing<Vec<u8>>)>,
    domain: Option<String>,
}

impl ClientBuilder {
    /// Trust the daemon's certificate if this CA (PEM) signed it; turns TLS on.
    pub fn ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.get_or_insert_with(Default::default).ca_pem = Some(pem.into());
        self
    }

    /// Present this certificate chain and private key (PEM) for mutual TLS; turns TLS on.
    pub fn identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.tls.get_or_insert_with(Default::default).identity =
            Some((cert_pem.into(), Zeroizing::new(key_pem.into())));
        self
    }

    /// The name the daemon's certificate must carry, when it is not the endpoint's host.
    pub fn tls_domain(mut self, name: impl Into<String>) -> Self {
        self.tls.get_or_insert_with(Default::default).domain = Some(name.into());
        self
    }

    /// Opens a connection with these settings (TLS included), for generated clients used directly; pair it with
    /// [`ClientBuilder::bearer_auth`].
    pub async fn channel(&self) -> Result<Channel> {
        let url = self.urls().next().unwrap_or_default();
        self.endpoint(url, None)?
            .connect()
            .await
            .map_err(|e| Error::Transport(format!("{url}: {e}")))
    }

    /// An interceptor adding this builder's token to every request of a generated client.
    pub fn bearer_auth(&self) -> Result<BearerAuth> {
        BearerAuth::new(self.token.as_ref().map(|t| t.as_str()))
    }
}

/// Adds `authorization: Bearer <token>` to every request of a generated client (kmsctl uses one).
#[derive(Clone)]
pub struct BearerAuth(Option<MetadataValue<tonic::metadata::Ascii>>);

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerAuth(<redacted>)")
    }
}

impl BearerAuth {
    pub fn new(token: Option<&str>) -> Result<Self> {
        let value = match token {
            None => None,
            Some(token) => {
                let mut v = MetadataValue::try_from(format!("Bearer {}", token.trim()))
                    .map_err(|_| Error::Transport("the token is not printable ASCII".into()))?;
                // Keeps the header out of HTTP/2's compression tables.
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(BearerAuth(value))
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> std::result::Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request
                .metadata_mut()
                .insert(kmsd_proto::headers::AUTHORIZATION, v.clone());
        }
        Ok(request)
    }
}

/// A connection whose requests carry a bearer token.
pub type AuthChannel = tonic::service::interceptor::InterceptedService<Channel, BearerAuth>;

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl ClientBuilder {
    /// `endpoint` is a URL such as `http://127.0.0.1:50051`, or several separated by commas: replicas sharing one
    /// database. Calls go to one of them; a call that changes nothing moves to the next after UNAVAILABLE (or a
    /// connection failure), and any call's UNAVAILABLE makes the next call start at the next one. With
    /// [`ClientBuilder::connect`], a host name with several addresses counts as one replica per address.
    pub fn new(endpoint: impl Into<String>) -> Self {
        ClientBuilder {
            endpoint: endpoint.into(),
            token: None,
            timeout: Some(Duration::from_secs(10)),
            connect_timeout: Duration::from_secs(5),
            max_retries: 3,
            backoff: Duration::from_millis(50),
            tls: None,
            spread: false,
        }
    }

    /// With several replicas, start at a different one for each client this process makes (from a random one),
    /// instead of at the first given: many clients then spread their calls over every replica.
    pub fn spread(mut self) -> Self {
        self.spread = true;
        self
    }

    /// A bearer token sent as `authorization: Bearer <token>` on every call.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Zeroizing::new(token.into()));
        self
    }

    /// The default deadline of each call (10 s unless set); the daemon is told it (`grpc-timeout`) and gives up
    /// on the call when it passes.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// No deadline: calls wait as long as the daemon takes (a load generator measuring the daemon alone, say).
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retries of an idempotent call after UNAVAILABLE (3 unless set; 0 turns retries off), the first after about
    /// `backoff` (50 ms unless set), each later one after about twice the last, at most 2 s, with full jitter.
    pub fn retries(mut self, max_retries: u32, backoff: Duration) -> Self {
        self.max_retries = max_retries;
        self.backoff = backoff;
        self
    }

    /// Connects now (resolving each host name to all its addresses), failing if no replica can be reached; one
    /// that cannot be reached yet is connected to when a call goes to it.
    pub async fn connect(self) -> Result<Client> {
        let mut channels = Vec::new();
        let mut failures = Vec::new();
        for url in self.urls() {
            for (target, domain) in resolve(url).await {
                let endpoint = self.endpoint(&target, domain.as_deref())?;
                match endpoint.connect().await {
                    Ok(channel) => channels.push(channel),
                    Err(e) => {
                        failures.push(format!("{target}: {e}"));
                        channels.push(endpoint.connect_lazy());
                    }
                }
            }
        }
        if channels.is_empty() || failures.len() == channels.len() {
            return Err(Error::Transport(if failures.is_empty() {
                "no endpoint given".to_owned()
            } else {
                failures.join("; ")
            }));
        }
        Ok(self.client(channels))
    }

    /// Connects on first use, so a service can start before its KMS does.
    pub fn connect_lazy(self) -> Result<Client> {
        let channels = self
            .urls()
            .map(|url| Ok(self.endpoint(url, None)?.connect_lazy()))
            .collect::<Result<Vec<_>>>()?;
        if channels.is_empty() {
            return Err(Error::Transport("no endpoint given".into()));
        }
        Ok(self.client(channels))
    }

    /// The URLs given, each trimmed.
    fn urls(&self) -> impl Iterator<Item = &str> {
        self.endpoint
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }

    fn endpoint(&self, url: &str, domain: Option<&str>) -> Result<Endpoint> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Error::Transport(format!("bad endpoint {url:?}: {e}")))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if url.starts_with("https://") && self.tls.as_ref().is_none_or(|t| t.ca_pem.is_none()) {
            return Err(Error::Transport(format!(
                "{url} is https: give the CA certificate that signed the daemon's certificate (ca_certificate, \
                 kmsctl --ca-cert)"
            )));
        }
        let tls = match (&self.tls, domain) {
            // Connecting to one address of a name: the certificate is still checked against the name.
            (Some(tls), Some(domain)) if tls.domain.is_none() && url.starts_with("https://") => {
                Some(TlsSettings {
                    domain: Some(domain.to_owned()),
                    ..tls.clone()
                })
            }
            (tls, _) => tls.clone(),
        };
        if let Some(tls) = &tls {
            use tonic::transport::{Certificate, ClientTlsConfig, Identity};
            let mut config = ClientTlsConfig::new();
            if let Some(ca) = &tls.ca_pem {
                config = config.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(cert, key.as_slice()));
            }
            if let Some(domain) = &tls.domain {
                config = config.domain_name(domain.clone());
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| Error::Transport(format!("TLS settings: {e}")))?;
        }
        Ok(endpoint)
    }

    fn client(self, channels: Vec<Channel>) -> Client {
        let replicas: Arc<[Stubs]> = channels.into_iter().map(Stubs::new).collect();
        let start = if self.spread {
            // Each spreading client starts at the next replica (from a random one per process).
            static NEXT_START: std::sync::OnceLock<AtomicUsize> = std::sync::OnceLock::new();
            let next = NEXT_START.get_or_init(|| {
                AtomicUsize::new(RandomState::new().hash_one(std::process::id()) as usize)
            });
            next.fetch_add(1, Ordering::Relaxed) % replicas.len()
        } else {
            0
        };
        Client {
            replicas,
            current: Arc::new(AtomicUsize::new(start)),
            options: CallOptions {
                token: self.token,
                timeout: self.timeout,
                reason: None,
                request_id: None,
            },
            max_retries: self.max_retries,
            backoff: self.backoff,
            jitter: RandomState::new(),
        }
    }
}

#[derive(Clone)]
struct CallOptions {
    token: Option<Zeroizing<String>>,
    timeout: Option<Duration>,
    reason: Option<String>,
    request_id: Option<String>,
}

/// The stubs of one replica's connection.
#[derive(Clone)]
struct Stubs {
    kms: KeyManagementServiceClient<Channel>,
    admin: AdminServiceClient<Channel>,
    audit: AuditServiceClient<Channel>,
    health: tonic::client::Grpc<Channel>,
}

impl Stubs {
    fn new(channel: Channel) -> Self {
        Stubs {
            kms: KeyManagementServiceClient::new(channel.clone()),
            admin: AdminServiceClient::new(channel.clone()),
            audit: AuditServiceClient::new(channel.clone()),
            health: tonic::client::Grpc::new(channel),
        }
    }
}

/// Each host name's addresses as URLs with the address in place of the name, and the name (for TLS); a URL
/// whose host is an address, or does not resolve, as it is.
async fn resolve(url: &str) -> Vec<(String, Option<String>)> {
    let as_is = vec![(url.to_owned(), None)];
    let Ok(uri) = url.parse::<tonic::codegen::http::Uri>() else {
        return as_is;
    };
    let (Some(host), Some(scheme)) = (uri.host(), uri.scheme_str()) else {
        return as_is;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return as_is;
    }
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let Ok(addresses) = tokio::net::lookup_host((bare, port)).await else {
        return as_is;
    };
    let mut seen = Vec::new();
    for address in addresses {
        if !seen.contains(&address) {
            seen.push(address);
        }
    }
    if seen.len() <= 1 {
        return as_is;
    }
    seen.into_iter()
        .map(|address| (format!("{scheme}://{address}"), Some(bare.to_owned())))
        .collect()
}

/// A connection to kmsd (to each replica given). Clone it freely: clones share the connections.
#[derive(Clone)]
pub struct Client {
    /// Each replica's stubs; [`Client::call`] sends on one of them.
    replicas: Arc<[Stubs]>,
    /// Which replica calls start at; moves on after UNAVAILABLE. Shared by clones.
    current: Arc<AtomicUsize>,
    options: CallOptions,
    max_retries: u32,
    backoff: Duration,
    jitter: RandomState,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.options.timeout)
            .field("reason", &self.options.reason)
            .field("request_id", &self.options.request_id)
            .finish_non_exhaustive()
    }
}

/// A data key pair: its private key (PKCS#8 DER, zeroized on drop) for immediate use, the same sealed as a blob to
/// store, and its public key (DER SubjectPublicKeyInfo).
pub struct DataKeyPair {
    pub key_id: String,
    pub key_version: u32,
    pub private_key: Zeroizing<Vec<u8>>,
    pub private_key_ciphertext_blob: Vec<u8>,
    pub public_key: Vec<u8>,
}

impl std::fmt::Debug for DataKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyPair")
            .field("key_id", &self.key_id)
            .field("key_version", &self.key_version)
            .field("private_key", &"<redacted>")
            .field("public_key_bytes", &self.public_key.len())
            .finish_non_exhaustive()
    }
}

/// A data key: its plaintext for immediate use (zeroized on drop) and its blob to store.
pub struct DataKey {
    pub key_id: String,
    pub key_version: u32,
    pub plaintext: Zeroizing<Vec<u8>>,
    pub ciphertext_blob: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("key_id", &self.key_id)
            .field("key_version", &self.key_version)
            .field("plaintext", &"<redacted>")
            .field(
                "ciphertext_blob",
                &format_args!("{} bytes", self.ciphertext_blob.len()),
            )
            .finish()
    }
}

/// A decrypted blob: which key and version opened it, and the plaintext (zeroized on drop).
pub struct Decrypted {
    pub key_id: String,
    pub key_version: u32,
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted")
            .field("key_id", &self.key_id)
            .field("key_version", &self.key_version)
            .field("plaintext", &"<redacted>")
            .finish()
    }
}

/// A ciphertext blob and the key version that sealed it (Encrypt, GenerateDataKeyWithoutPlaintext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    pub key_id: String,
    pub key_version: u32,
    pub ciphertext_blob: Vec<u8>,
}

/// A key's policy, and the id of the key it belongs to (a call may name the key by an alias).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyOf {
    pub key_id: String,
    pub policy: KeyPolicy,
}

/// ReEncrypt's result: the new blob, and the key version that opened the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReEncrypted {
    pub source_key_id: String,
    pub source_key_version: u32,
    pub encrypted: Encrypted,
}

/// What a health check reports for a service (`""`: the daemon as a whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Serving {
    Serving,
    NotServing,
    /// The daemon knows no such service.
    ServiceUnknown,
    Unknown,
}

impl Serving {
    /// The name the gRPC health protocol gives the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Serving::Serving => "SERVING",
            Serving::NotServing => "NOT_SERVING",
            Serving::ServiceUnknown => "SERVICE_UNKNOWN",
            Serving::Unknown => "UNKNOWN",
        }
    }
}

/// The standard gRPC health protocol's two messages (`grpc.health.v1`), written out so the client needs no
/// health crate.
mod health {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HealthCheckRequest {
        #[prost(string, tag = "1")]
        pub service: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HealthCheckResponse {
        #[prost(int32, tag = "1")]
        pub status: i32,
    }

    pub const CHECK: &str = "/grpc.health.v1.Health/Check";
}

/// Every item of a paginated listing, gathered by calling `page` with each next-page token (empty first) until the
/// daemon returns none or `limit` items are in hand.
async fn all_pages<T, F, Fut>(limit: usize, mut page: F) -> Result<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String)>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token).await?;
        all.extend(items);
        if next.is_empty() || all.len() >= limit {
            all.truncate(limit);
            return Ok(all);
        }
        token = next;
    }
}

/// The page size the helpers that gather every page ask for.
const GATHER_PAGE_SIZE: u32 = 1000;

/// Whether a call may be sent again after UNAVAILABLE without changing its effect.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    Idempotent,
    Once,
}

fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Client {
    /// Connects to `endpoint` with the defaults (see [`ClientBuilder`]).
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self> {
        ClientBuilder::new(endpoint).connect().await
    }

    /// A copy that sends this `x-kms-reason` with every call: the "why" of the audit record.
    pub fn with_reason(&self, reason: impl Into<String>) -> Self {
        let mut c = self.clone();
        c.options.reason = Some(reason.into());
        c
    }

    /// A copy that sends this `x-request-id` with every call, to find its audit records by.
    pub fn with_request_id(&self, request_id: impl Into<String>) -> Self {
        let mut c = self.clone();
        c.options.request_id = Some(request_id.into());
        c
    }

    /// A copy whose calls have this deadline.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        let mut c = self.clone();
        c.options.timeout = Some(timeout);
        c
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(timeout) = self.options.timeout {
            request.set_timeout(timeout);
        }
        let md = request.metadata_mut();
        if let Some(token) = &self.options.token
            && let Ok(mut v) = MetadataValue::try_from(format!("Bearer {}", token.as_str()))
        {
            // Keeps the header out of HTTP/2's compression tables.
            v.set_sensitive(true);
            md.insert(kmsd_proto::headers::AUTHORIZATION, v);
        }
        if let Some(reason) = &self.options.reason
            && let Ok(v) = MetadataValue::try_from(reason.as_str())
        {
            md.insert(kmsd_proto::headers::REASON, v);
        }
        if let Some(id) = &self.options.request_id
            && let Ok(v) = MetadataValue::try_from(id.as_str())
        {
            md.insert(kmsd_proto::headers::REQUEST_ID, v);
        }
        request
    }

    /// After UNAVAILABLE from replica `i`, later calls start at the next one (unless another call moved on
    /// already).
    fn move_on_from(&self, i: usize) {
        let next = (i + 1) % self.replicas.len();
        let _ = self
            .current
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Sends a call to the current replica. A call that changes nothing is sent again after UNAVAILABLE: to each
    /// other replica in turn at once, then with jittered exponential backoff, for at least `max_retries` retries.
    /// Any other call is sent once (the rules of retries do not change with replicas).
    async fn call<M, R, F, Fut>(&self, retry: Retry, message: M, send: F) -> Result<R>
    where
        M: Clone,
        F: Fn(Stubs, Request<M>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<R>, Status>>,
    {
        let replicas = self.replicas.len();
        let first = self.current.load(Ordering::Relaxed) % replicas;
        if retry == Retry::Once || self.max_retries == 0 {
            // Sent once: the message needs no copy kept for a retry.
            let result = send(self.replicas[first].clone(), self.request(message))
                .await
                .map(tonic::Response::into_inner)
                .map_err(Error::from);
            if result.as_ref().is_err_and(Error::is_retryable) {
                self.move_on_from(first);
            }
            return result;
        }
        let retries = self.max_retries.max(replicas as u32 - 1);
        let mut attempt = 0u32;
        let mut at = first;
        loop {
            match send(self.replicas[at].clone(), self.request(message.clone())).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => {
                    let error = Error::from(status);
                    if !error.is_retryable() || attempt >= retries {
                        return Err(error);
                    }
                    self.move_on_from(at);
                    at = (at + 1) % replicas;
                    // Every replica is tried once without waiting; then each round waits longer.
                    if attempt + 1 >= replicas as u32 {
                        tokio::time::sleep(self.backoff_for(attempt + 1 - replicas as u32)).await;
                    }
                    attempt += 1;
                }
            }
        }
    }

    fn backoff_for(&self, attempt: u32) -> Duration {
        let ceiling = self
            .backoff
            .saturating_mul(1 << attempt.min(16))
            .min(Duration::from_secs(2));
        // Full jitter: anywhere in [0, ceiling], so clients retrying together spread out.
        let fraction = (self.jitter.hash_one((attempt, std::time::Instant::now())) % 1000) as u32;
        ceiling.mul_f64(f64::from(fraction) / 1000.0)
    }

    // Keys.

    pub async fn create_key(&self, request: CreateKeyRequest) -> Result<KeyMetadata> {
        let r = self
            .call(Retry::Once, request, |mut c, r| async move {
                c.kms.create_key(r).await
            })
            .await?;
        Ok(r.key_metadata.unwrap_or_default())
    }

    pub async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata> {
        let request = DescribeKeyRequest {
            key_id: key_id.into(),
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.describe_key(r).await
            })
            .await?;
        Ok(r.key_metadata.unwrap_or_default())
    }

    /// One page of keys; pass the returned token back for the next (empty when done).
    pub async fn list_keys(
        &self,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<KeyMetadata>, String)> {
        let request = ListKeysRequest {
            page_size,
            page_token: page_token.into(),
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.list_keys(r).await
            })
            .await?;
        Ok((r.keys, r.next_page_token))
    }

    /// Every key, following pages (an administrator's call).
    pub async fn list_all_keys(&self) -> Result<Vec<KeyMetadata>> {
        all_pages(usize::MAX, |token| async move {
            self.list_keys(GATHER_PAGE_SIZE, &token).await
        })
        .await
    }

    pub async fn create_alias(&self, alias_name: &str, key_id: &str) -> Result<Alias> {
        let request = CreateAliasRequest {
            alias_name: alias_name.into(),
            key_id: key_id.into(),
        };
        let r = self
            .call(Retry::Once, request, |mut c, r| async move {
                c.kms.create_alias(r).await
            })
            .await?;
        Ok(r.alias.unwrap_or_default())
    }

    pub async fn delete_alias(&self, alias_name: &str) -> Result<()> {
        let request = DeleteAliasRequest {
            alias_name: alias_name.into(),
        };
        self.call(Retry::Once, request, |mut c, r| async move {
            c.kms.delete_alias(r).await
        })
        .await
        .map(drop)
    }

    /// One page of aliases, optionally of one key.
    pub async fn list_aliases(
        &self,
        key_id: Option<&str>,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<Alias>, String)> {
        let request = ListAliasesRequest {
            key_id: key_id.unwrap_or_default().into(),
            page_size,
            page_token: page_token.into(),
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.list_aliases(r).await
            })
            .await?;
        Ok((r.aliases, r.next_page_token))
    }

    /// Every alias (of `key_id`, if given), following pages (an administrator's call).
    pub async fn list_all_aliases(&self, key_id: Option<&str>) -> Result<Vec<Alias>> {
        all_pages(usize::MAX, |token| async move {
            self.list_aliases(key_id, GATHER_PAGE_SIZE, &token).await
        })
        .await
    }

    pub async fn enable_key(&self, key_id: &str) -> Result<KeyMetadata> {
        let request = EnableKeyRequest {
            key_id: key_id.into(),
        };
        let r = self
            .call(Retry::Once, request, |mut c, r| async move {
                c.kms.enable_key(r).await
            })
            .await?;
        Ok(r.key_metadata.unwrap_or_default())
    }

    pub async fn disable_key(&self, key_id: &str) -> Result<KeyMetadata> {
        let request = DisableKeyRequest {
            key_id: key_id.into(),
        };
        let r = self
            .call(Retry::Once, request, |mut c, r| async move {
                c.kms.disable_key(r).await
            })
            .await?;
        Ok(r.key_metadata.unwrap_or_default())
    }

    pub async fn rotate_key(&self, key_id: &str) -> Result<KeyMetadata> {
        let request = RotateKeyRequest {
            key_id: key_id.into(),
        };
        let r = self
            .call(Retry::Once, request, |mut c, r| async move {
                c.kms.rotate_key(r).await
            })
            .await?;
        Ok(r.key_metadata.unwrap_or_default())
    }

    /// Points an existing alias at another key.
    pub async fn update_alias(&self, alias_name: &str, key_id: &str) -> Result<Alias> {
        let request = UpdateAliasRequest {
            alias_name: alias_name.into(),
            key_id: key_id.into(),
        };
        // Pointing an alias at the same key twice has the effect of once.
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.update_alias(r).await
            })
            .await?;
        Ok(r.alias.unwrap_or_default())
    }

    pub async fn update_key_description(
        &self,
        key_id: &str,
        description: &str,
    ) -> Result<KeyMetadata> {
        let request = UpdateKeyDescriptionRequest {
            key_id: key_id.into(),
            description: description.into(),
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.update_key_description(r).await
            })
            .await?;
        Ok(r.key_metadata.unwrap_or_default())
    }

    /// Adds tags to a key, or gives existing ones new values.
    pub async fn tag_key(
        &self,
        key_id: &str,
        tags: impl IntoIterator<Item = (String, String)>,
    ) -> Result<KeyMetadata> {
        let request = TagResourceRequest {
            key_id: key_id.into(),
            tags: tags.into_iter().collect(),
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.tag_resource(r).await
            })
            .await?;
        Ok(r.key_metadata.unwrap_or_default())
    }

    pub async fn untag_key(&self, key_id: &str, tag_keys: Vec<String>) -> Result<KeyMetadata> {
        let request = UntagResourceRequest {
            key_id: key_id.into(),
            tag_keys,
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.untag_resource(r).await
            })
            .await?;
        Ok(r.key_metadata.unwrap_or_default())
    }

    pub async fn list_key_tags(&self, key_id: &str) -> Result<HashMap<String, String>> {
        let request = ListResourceTagsRequest {
            key_id: key_id.into(),
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.list_resource_tags(r).await
            })
            .await?;
        Ok(r.tags)
    }

    /// Turns automatic rotation on every `days` days (0: 365), or changes its period.
    pub async fn enable_key_rotation(&self, key_id: &str, days: u32) -> Result<KeyMetadata> {
        let request = EnableKeyRotationRequest {
            key_id: key_id.into(),
            rotation_period_days: days,
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.enable_key_rotation(r).await
            })
            .await?;
        Ok(r.key_metadata.unwrap_or_default())
    }

    pub async fn disable_key_rotation(&self, key_id: &str) -> Result<KeyMetadata> {
        let request = DisableKeyRotationRequest {
            key_id: key_id.into(),
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.disable_key_rotation(r).await
            })
            .await?;
        Ok(r.key_metadata.unwrap_or_default())
    }

    pub async fn get_key_rotation_status(
        &self,
        key_id: &str,
    ) -> Result<GetKeyRotationStatusResponse> {
        let request = GetKeyRotationStatusRequest {
            key_id: key_id.into(),
        };
        self.call(Retry::Idempotent, request, |mut c, r| async move {
            c.kms.get_key_rotation_status(r).await
        })
        .await
    }

    /// Signs `message` (1-4096 bytes) with a SIGN_VERIFY key, under one of its `signing_algorithms`
    /// (`ECDSA_SHA_256`, `RSASSA_PSS_SHA_256`, `ED25519_SHA_512`, `ML_DSA_SHAKE_256`, ...).
    pub async fn sign(
        &self,
        key_id: &str,
        message: &[u8],
        algorithm: &str,
    ) -> Result<SignResponse> {
        self.sign_as(key_id, message, "RAW", algorithm).await
    }

    /// Signs a digest the caller computed with the algorithm's hash (message type DIGEST).
    pub async fn sign_digest(
        &self,
        key_id: &str,
        digest: &[u8],
        algorithm: &str,
    ) -> Result<SignResponse> {
        self.sign_as(key_id, digest, "DIGEST", algorithm).await
    }

    async fn sign_as(
        &self,
        key_id: &str,
        message: &[u8],
        message_type: &str,
        algorithm: &str,
    ) -> Result<SignResponse> {
        let request = SignRequest {
            key_id: key_id.into(),
            message: message.to_vec(),
            message_type: message_type.into(),
            signing_algorithm: algorithm.into(),
        };
        self.call(Retry::Idempotent, request, |mut c, r| async move {
            c.kms.sign(r).await
        })
        .await
    }

    /// Whether `signature` is the key's signature of `message` under `algorithm`: `Ok(false)` for a signature that
    /// is not valid, an error for anything else (an unknown key, a key that does not sign, ...).
    pub async fn verify(
        &self,
        key_id: &str,
        message: &[u8],
        signature: &[u8],
        algorithm: &str,
    ) -> Result<bool> {
        self.verify_as(key_id, message, "RAW", signature, algorithm)
            .await
    }

    /// As [`Client::verify`], for a signature of a digest the caller computed.
    pub async fn verify_digest(
        &self,
        key_id: &str,
        digest: &[u8],
        signature: &[u8],
        algorithm: &str,
    ) -> Result<bool> {
        self.verify_as(key_id, digest, "DIGEST", signature, algorithm)
            .await
    }

    async fn verify_as(
        &self,
        key_id: &str,
        message: &[u8],
        message_type: &str,
        signature: &[u8],
        algorithm: &str,
    ) -> Result<bool> {
        let request = VerifyRequest {
            key_id: key_id.into(),
            message: message.to_vec(),
            message_type: message_type.into(),
            signature: signature.to_vec(),
            signing_algorithm: algorithm.into(),
        };
        match self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.verify(r).await
            })
            .await
        {
            Ok(r) => Ok(r.signature_valid),
            Err(Error::InvalidSignature(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The public key of an asymmetric key: DER SubjectPublicKeyInfo, with its spec, usage and algorithms.
    pub async fn get_public_key(&self, key_id: &str) -> Result<GetPublicKeyResponse> {
        let request = GetPublicKeyRequest {
            key_id: key_id.into(),
        };
        self.call(Retry::Idempotent, request, |mut c, r| async move {
            c.kms.get_public_key(r).await
        })
        .await
    }

    /// A fresh key pair (`RSA_2048`, `ECC_NIST_P256`, ...) for use outside kmsd: its private key (PKCS#8 DER) in
    /// clear and sealed under the symmetric key `key_id` (a blob [`Client::decrypt`] opens with the same context),
    /// and its public key (DER SubjectPublicKeyInfo).
    pub async fn generate_data_key_pair(
        &self,
        key_id: &str,
        key_pair_spec: &str,
        context: &[(&str, &str)],
    ) -> Result<DataKeyPair> {
        let request = GenerateDataKeyPairRequest {
            key_id: key_id.into(),
            key_pair_spec: key_pair_spec.into(),
            encryption_context: metadata(context),
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.generate_data_key_pair(r).await
            })
            .await?;
        Ok(DataKeyPair {
            key_id: r.key_id,
            key_version: r.key_version,
            private_key: Zeroizing::new(r.private_key_plaintext),
            private_key_ciphertext_blob: r.private_key_ciphertext_blob,
            public_key: r.public_key,
        })
    }

    /// As [`Client::generate_data_key_pair`], without the private key in clear.
    pub async fn generate_data_key_pair_without_plaintext(
        &self,
        key_id: &str,
        key_pair_spec: &str,
        context: &[(&str, &str)],
    ) -> Result<GenerateDataKeyPairWithoutPlaintextResponse> {
        let request = GenerateDataKeyPairWithoutPlaintextRequest {
            key_id: key_id.into(),
            key_pair_spec: key_pair_spec.into(),
            encryption_context: metadata(context),
        };
        self.call(Retry::Idempotent, request, |mut c, r| async move {
            c.kms.generate_data_key_pair_without_plaintext(r).await
        })
        .await
    }

    /// For a key of origin EXTERNAL: an RSA public key (DER) to wrap its material with and the token
    /// [`Client::import_key_material`] needs, both valid for 24 hours. Empty arguments take the defaults
    /// (`RSAES_OAEP_SHA_256`, `RSA_2048`); wrap private keys with `RSA_AES_KEY_WRAP_SHA_256`.
    pub async fn get_parameters_for_import(
        &self,
        key_id: &str,
        wrapping_algorithm: &str,
        wrapping_key_spec: &str,
    ) -> Result<GetParametersForImportResponse> {
        let request = GetParametersForImportRequest {
            key_id: key_id.into(),
            wrapping_algorithm: wrapping_algorithm.into(),
            wrapping_key_spec: wrapping_key_spec.into(),
        };
        self.call(Retry::Idempotent, request, |mut c, r| async move {
            c.kms.get_parameters_for_import(r).await
        })
        .await
    }

    /// Imports wrapped material into a key of origin EXTERNAL; with `valid_to`, kmsd deletes it then.
    pub async fn import_key_material(
        &self,
        key_id: &str,
        import_token: &[u8],
        encrypted_key_material: &[u8],
        valid_to: Option<std::time::SystemTime>,
    ) -> Result<()> {
        let request = ImportKeyMaterialRequest {
            key_id: key_id.into(),
            import_token: import_token.to_vec(),
            encrypted_key_material: encrypted_key_material.to_vec(),
            expiration_model: if valid_to.is_some() {
                "KEY_MATERIAL_EXPIRES".into()
            } else {
                "KEY_MATERIAL_DOES_NOT_EXPIRE".into()
            },
            valid_to: valid_to.map(prost_types::Timestamp::from),
        };
        // Importing the same material again is allowed and changes nothing more.
        self.call(Retry::Idempotent, request, |mut c, r| async move {
            c.kms.import_key_material(r).await
        })
        .await?;
        Ok(())
    }

    /// Deletes an EXTERNAL key's material at once; it is PENDING_IMPORT until the same material is imported.
    pub async fn delete_imported_key_material(&self, key_id: &str) -> Result<()> {
        let request = DeleteImportedKeyMaterialRequest {
            key_id: key_id.into(),
        };
        self.call(Retry::Once, request, |mut c, r| async move {
            c.kms.delete_imported_key_material(r).await
        })
        .await?;
        Ok(())
    }

    /// The HMAC of `message` (1-4096 bytes) with a GENERATE_VERIFY_MAC key, under its `algorithm`
    /// (`HMAC_SHA_256`, ...).
    pub async fn generate_mac(
        &self,
        key_id: &str,
        message: &[u8],
        algorithm: &str,
    ) -> Result<GenerateMacResponse> {
        let request = GenerateMacRequest {
            key_id: key_id.into(),
            message: message.to_vec(),
            mac_algorithm: algorithm.into(),
        };
        self.call(Retry::Idempotent, request, |mut c, r| async move {
            c.kms.generate_mac(r).await
        })
        .await
    }

    /// Whether `mac` is the key's HMAC of `message` (compared by the daemon in constant time): `Ok(false)` for a
    /// MAC that is not valid.
    pub async fn verify_mac(
        &self,
        key_id: &str,
        message: &[u8],
        mac: &[u8],
        algorithm: &str,
    ) -> Result<bool> {
        let request = VerifyMacRequest {
            key_id: key_id.into(),
            message: message.to_vec(),
            mac_algorithm: algorithm.into(),
            mac: mac.to_vec(),
        };
        match self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.verify_mac(r).await
            })
            .await
        {
            Ok(r) => Ok(r.mac_valid),
            Err(Error::InvalidMac(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn list_key_versions(&self, key_id: &str) -> Result<Vec<KeyVersion>> {
        let request = ListKeyVersionsRequest {
            key_id: key_id.into(),
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.list_key_versions(r).await
            })
            .await?;
        Ok(r.versions)
    }

    /// Schedules the key's destruction after `pending_window_days` (7-30; 0 for the default 30).
    pub async fn schedule_key_deletion(
        &self,
        key_id: &str,
        pending_window_days: u32,
    ) -> Result<KeyMetadata> {
        let request = ScheduleKeyDeletionRequest {
            key_id: key_id.into(),
            pending_window_days,
        };
        let r = self
            .call(Retry::Once, request, |mut c, r| async move {
                c.kms.schedule_key_deletion(r).await
            })
            .await?;
        Ok(r.key_metadata.unwrap_or_default())
    }

    pub async fn cancel_key_deletion(&self, key_id: &str) -> Result<KeyMetadata> {
        let request = CancelKeyDeletionRequest {
            key_id: key_id.into(),
        };
        let r = self
            .call(Retry::Once, request, |mut c, r| async move {
                c.kms.cancel_key_deletion(r).await
            })
            .await?;
        Ok(r.key_metadata.unwrap_or_default())
    }

    // Cryptography.

    /// A fresh 256-bit data key under `key_id`, bound to `context`.
    pub async fn generate_data_key(
        &self,
        key_id: &str,
        context: &[(&str, &str)],
    ) -> Result<DataKey> {
        self.generate_data_key_with(GenerateDataKeyRequest {
            key_id: key_id.into(),
            encryption_context: metadata(context),
            ..Default::default()
        })
        .await
    }

    /// As [`Client::generate_data_key`], with every field of the request (key spec, length) to choose.
    pub async fn generate_data_key_with(&self, request: GenerateDataKeyRequest) -> Result<DataKey> {
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.generate_data_key(r).await
            })
            .await?;
        Ok(DataKey {
            key_id: r.key_id,
            key_version: r.key_version,
            plaintext: Zeroizing::new(r.plaintext),
            ciphertext_blob: r.ciphertext_blob,
        })
    }

    /// A data key's blob only: for a service that stores keys for others to use later.
    pub async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &[(&str, &str)],
    ) -> Result<Encrypted> {
        self.generate_data_key_without_plaintext_with(GenerateDataKeyWithoutPlaintextRequest {
            key_id: key_id.into(),
            encryption_context: metadata(context),
            ..Default::default()
        })
        .await
    }

    /// As [`Client::generate_data_key_without_plaintext`], with every field of the request to choose.
    pub async fn generate_data_key_without_plaintext_with(
        &self,
        request: GenerateDataKeyWithoutPlaintextRequest,
    ) -> Result<Encrypted> {
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.generate_data_key_without_plaintext(r).await
            })
            .await?;
        Ok(Encrypted {
            key_id: r.key_id,
            key_version: r.key_version,
            ciphertext_blob: r.ciphertext_blob,
        })
    }

    /// Encrypts up to 4096 bytes under a symmetric key.
    pub async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &[(&str, &str)],
    ) -> Result<Encrypted> {
        self.encrypt_as(key_id, plaintext, context, "").await
    }

    /// Encrypts with an RSA key (`RSAES_OAEP_SHA_1` or `RSAES_OAEP_SHA_256`), up to the key's own limit (190 bytes
    /// for RSA_2048 with SHA-256). The ciphertext is RSA-OAEP's, which anyone with the public key could make.
    pub async fn encrypt_with(
        &self,
        key_id: &str,
        plaintext: &[u8],
        algorithm: &str,
    ) -> Result<Encrypted> {
        self.encrypt_as(key_id, plaintext, &[], algorithm).await
    }

    async fn encrypt_as(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &[(&str, &str)],
        algorithm: &str,
    ) -> Result<Encrypted> {
        // The copy kept for retries is zeroized when the call is done; the one tonic encodes is its to drop.
        let request = ZeroizingRequest(EncryptRequest {
            key_id: key_id.into(),
            plaintext: plaintext.to_vec(),
            encryption_context: metadata(context),
            encryption_algorithm: algorithm.into(),
        });
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.encrypt(r.map(|z| z.take())).await
            })
            .await?;
        Ok(Encrypted {
            key_id: r.key_id,
            key_version: r.key_version,
            ciphertext_blob: r.ciphertext_blob,
        })
    }

    /// Decrypts a blob with the context it was made with; `key_id`, if given, must be the blob's key.
    pub async fn decrypt(
        &self,
        blob: &[u8],
        context: &[(&str, &str)],
        key_id: Option<&str>,
    ) -> Result<Decrypted> {
        self.decrypt_as(blob, context, key_id.unwrap_or_default(), "")
            .await
    }

    /// Decrypts an RSA-OAEP ciphertext with the RSA key that it was made for and the algorithm it was made with.
    pub async fn decrypt_with(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        algorithm: &str,
    ) -> Result<Decrypted> {
        self.decrypt_as(ciphertext, &[], key_id, algorithm).await
    }

    async fn decrypt_as(
        &self,
        blob: &[u8],
        context: &[(&str, &str)],
        key_id: &str,
        algorithm: &str,
    ) -> Result<Decrypted> {
        let request = DecryptRequest {
            ciphertext_blob: blob.to_vec(),
            key_id: key_id.into(),
            encryption_context: metadata(context),
            encryption_algorithm: algorithm.into(),
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.decrypt(r).await
            })
            .await?;
        Ok(Decrypted {
            key_id: r.key_id,
            key_version: r.key_version,
            plaintext: Zeroizing::new(r.plaintext),
        })
    }

    /// Opens a blob under its key and seals the plaintext under another (or the same key's primary version),
    /// without the plaintext leaving the daemon.
    pub async fn re_encrypt(&self, request: ReEncryptRequest) -> Result<ReEncrypted> {
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.re_encrypt(r).await
            })
            .await?;
        Ok(ReEncrypted {
            source_key_id: r.source_key_id,
            source_key_version: r.source_key_version,
            encrypted: Encrypted {
                key_id: r.key_id,
                key_version: r.key_version,
                ciphertext_blob: r.ciphertext_blob,
            },
        })
    }

    pub async fn generate_random(&self, number_of_bytes: u32) -> Result<Zeroizing<Vec<u8>>> {
        let request = GenerateRandomRequest { number_of_bytes };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.generate_random(r).await
            })
            .await?;
        Ok(Zeroizing::new(r.plaintext))
    }

    // Audit.

    pub async fn query_events(&self, request: QueryEventsRequest) -> Result<QueryEventsResponse> {
        self.call(Retry::Idempotent, request, |mut c, r| async move {
            c.audit.query_events(r).await
        })
        .await
    }

    /// Every record `request` matches, oldest or newest first as it asks, following pages up to `limit` records.
    pub async fn query_all_events(
        &self,
        request: QueryEventsRequest,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        all_pages(limit, |page_token| {
            let request = QueryEventsRequest {
                page_token,
                page_size: request.page_size.clamp(1, GATHER_PAGE_SIZE),
                ..request.clone()
            };
            async move {
                let r = self.query_events(request).await?;
                Ok((r.events, r.next_page_token))
            }
        })
        .await
    }

    pub async fn verify_log(&self, request: VerifyLogRequest) -> Result<VerifyLogResponse> {
        self.call(Retry::Idempotent, request, |mut c, r| async move {
            c.audit.verify_log(r).await
        })
        .await
    }

    /// The log's extent and the disk under it (an administrator's call).
    pub async fn describe_log(&self) -> Result<DescribeLogResponse> {
        self.call(
            Retry::Idempotent,
            DescribeLogRequest {},
            |mut c, r| async move { c.audit.describe_log(r).await },
        )
        .await
    }

    /// Signs a checkpoint at the last record before `before`: the range an archive will hold.
    pub async fn seal_archive(
        &self,
        before: prost_types::Timestamp,
    ) -> Result<SealArchiveResponse> {
        let request = SealArchiveRequest {
            before: Some(before),
        };
        self.call(Retry::Once, request, |mut c, r| async move {
            c.audit.seal_archive(r).await
        })
        .await
    }

    /// One page of the records after `after_sequence` through `through_sequence`, as archive lines.
    pub async fn export_archive(
        &self,
        after_sequence: u64,
        through_sequence: u64,
    ) -> Result<ExportArchiveResponse> {
        let request = ExportArchiveRequest {
            after_sequence,
            through_sequence,
        };
        self.call(Retry::Idempotent, request, |mut c, r| async move {
            c.audit.export_archive(r).await
        })
        .await
    }

    /// Removes the sealed records through `through_sequence` (whose hash must be `through_hash`) from the database.
    pub async fn prune_events(
        &self,
        through_sequence: u64,
        through_hash: &str,
    ) -> Result<PruneEventsResponse> {
        let request = PruneEventsRequest {
            through_sequence,
            through_hash: through_hash.into(),
        };
        self.call(Retry::Once, request, |mut c, r| async move {
            c.audit.prune_events(r).await
        })
        .await
    }

    // Health.

    /// The standard gRPC health check of `service` (`""`: the daemon as a whole). Needs no credentials.
    pub async fn health(&self, service: &str) -> Result<Serving> {
        let request = health::HealthCheckRequest {
            service: service.into(),
        };
        let r: health::HealthCheckResponse = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.health
                    .ready()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(health::CHECK);
                c.health
                    .unary(r, path, tonic_prost::ProstCodec::default())
                    .await
            })
            .await?;
        Ok(match r.status {
            1 => Serving::Serving,
            2 => Serving::NotServing,
            3 => Serving::ServiceUnknown,
            _ => Serving::Unknown,
        })
    }

    // Access control.

    /// Who the daemon knows this client as.
    pub async fn who_am_i(&self) -> Result<WhoAmIResponse> {
        self.call(Retry::Idempotent, WhoAmIRequest {}, |mut c, r| async move {
            c.admin.who_am_i(r).await
        })
        .await
    }

    pub async fn get_key_policy(&self, key_id: &str) -> Result<PolicyOf> {
        let request = GetKeyPolicyRequest {
            key_id: key_id.into(),
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.kms.get_key_policy(r).await
            })
            .await?;
        Ok(PolicyOf {
            key_id: r.key_id,
            policy: r.policy.unwrap_or_default(),
        })
    }

    pub async fn put_key_policy(&self, key_id: &str, policy: KeyPolicy) -> Result<PolicyOf> {
        let request = PutKeyPolicyRequest {
            key_id: key_id.into(),
            policy: Some(policy),
        };
        let r = self
            .call(Retry::Once, request, |mut c, r| async move {
                c.kms.put_key_policy(r).await
            })
            .await?;
        Ok(PolicyOf {
            key_id: r.key_id,
            policy: r.policy.unwrap_or_default(),
        })
    }

    pub async fn create_principal(&self, request: CreatePrincipalRequest) -> Result<Principal> {
        let r = self
            .call(Retry::Once, request, |mut c, r| async move {
                c.admin.create_principal(r).await
            })
            .await?;
        Ok(r.principal.unwrap_or_default())
    }

    pub async fn list_principals(&self) -> Result<Vec<Principal>> {
        let r = self
            .call(
                Retry::Idempotent,
                ListPrincipalsRequest {},
                |mut c, r| async move { c.admin.list_principals(r).await },
            )
            .await?;
        Ok(r.principals)
    }

    pub async fn disable_principal(&self, name: &str) -> Result<Principal> {
        let request = DisablePrincipalRequest { name: name.into() };
        let r = self
            .call(Retry::Once, request, |mut c, r| async move {
                c.admin.disable_principal(r).await
            })
            .await?;
        Ok(r.principal.unwrap_or_default())
    }

    /// Issues a token for `principal`; `ttl` of `None` never expires. The token is returned once, zeroized on drop.
    pub async fn create_token(
        &self,
        principal: &str,
        description: &str,
        ttl: Option<Duration>,
    ) -> Result<(Zeroizing<String>, Token)> {
        let request = CreateTokenRequest {
            principal: principal.into(),
            description: description.into(),
            ttl_seconds: ttl.map_or(0, |t| t.as_secs().max(1)),
        };
        let r = self
            .call(Retry::Once, request, |mut c, r| async move {
                c.admin.create_token(r).await
            })
            .await?;
        Ok((Zeroizing::new(r.token), r.info.unwrap_or_default()))
    }

    pub async fn list_tokens(&self, principal: Option<&str>) -> Result<Vec<Token>> {
        let request = ListTokensRequest {
            principal: principal.unwrap_or_default().into(),
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.admin.list_tokens(r).await
            })
            .await?;
        Ok(r.tokens)
    }

    pub async fn revoke_token(&self, token_id: &str) -> Result<Token> {
        let request = RevokeTokenRequest {
            token_id: token_id.into(),
        };
        // Revoking twice has the same effect as once.
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.admin.revoke_token(r).await
            })
            .await?;
        Ok(r.info.unwrap_or_default())
    }

    /// Issues an access key for `principal`, for the AWS-compatible endpoint: its secret (shown once) and its
    /// record.
    pub async fn create_access_key(
        &self,
        principal: &str,
        description: &str,
    ) -> Result<(Zeroizing<String>, AccessKey)> {
        let request = CreateAccessKeyRequest {
            principal: principal.into(),
            description: description.into(),
        };
        let r = self
            .call(Retry::Once, request, |mut c, r| async move {
                c.admin.create_access_key(r).await
            })
            .await?;
        Ok((
            Zeroizing::new(r.secret_access_key),
            r.info.unwrap_or_default(),
        ))
    }

    pub async fn list_access_keys(&self, principal: Option<&str>) -> Result<Vec<AccessKey>> {
        let request = ListAccessKeysRequest {
            principal: principal.unwrap_or_default().into(),
        };
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.admin.list_access_keys(r).await
            })
            .await?;
        Ok(r.access_keys)
    }

    pub async fn revoke_access_key(&self, access_key_id: &str) -> Result<AccessKey> {
        let request = RevokeAccessKeyRequest {
            access_key_id: access_key_id.into(),
        };
        // Revoking twice has the same effect as once.
        let r = self
            .call(Retry::Idempotent, request, |mut c, r| async move {
                c.admin.revoke_access_key(r).await
            })
            .await?;
        Ok(r.info.unwrap_or_default())
    }
}

/// An Encrypt request whose plaintext is zeroized when the last copy is dropped.
#[derive(Clone)]
struct ZeroizingRequest(EncryptRequest);

impl ZeroizingRequest {
    fn take(mut self) -> EncryptRequest {
        std::mem::take(&mut self.0)
    }
}

impl Drop for ZeroizingRequest {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0.plaintext);
    }
}
