//! The storage client: objects stored encrypted on any `object_store` backend, the three ways S3 users know.
//!
//! Each object is two stored entries. Its body, `objects/<bucket>/<key>`, is an envelope ([`crate::envelope`]) whose
//! header leaves out the data key (a *detached* envelope) and whose encryption context names the bucket and key, so a
//! body moved under another name does not open. Its key record, `keys/<bucket>/<key>`, is a small JSON document
//! ([`KeyRecord`]) holding how the data key is protected: for SSE-KMS and SSE-S3 the KMS key, version and encrypted
//! data key; for SSE-C a salt and an HMAC of the customer's key. Keeping the data key apart is what lets
//! [`ObjectClient::rewrap`] move an object to another KMS key (or its newest version) with one `ReEncrypt` and one
//! small write, without reading or rewriting the body, and without the old key's blob lingering in it.
//!
//! - **SSE-KMS**: a data key per object from GenerateDataKey under the caller's key; the KMS encryption context holds
//!   the bucket and the key (`kmsd:bucket`, `kmsd:key`) beside the caller's own pairs, so every Decrypt in the
//!   daemon's audit log says which object it was for.
//! - **SSE-S3** (the default): the same under the store's own key, `alias/kmsd/storage`, created on first use.
//! - **SSE-C**: the caller's 256-bit key, given with each put and get (base64 with its MD5, as S3 takes it), is the
//!   data key; the store keeps only `HMAC-SHA256(key, label ‖ salt)` to refuse a wrong key before any byte of the
//!   body is read. No KMS call.
//!
//! With a [`DataKeyCache`] ([`ObjectClient::with_cache`]) data keys are reused across objects of one bucket, as S3
//! Bucket Keys do: the KMS context then names only the bucket (the envelope still binds each body to its key), which
//! trades per-object audit records for far fewer KMS calls.
//!
//! Invariants: plaintext data keys and customer keys live only in zeroizing buffers and are never stored; a body's
//! bytes reach the caller only after its frame verifies; memory stays within a few frames and the store's upload
//! buffer, whatever the object's size; a put writes the body before its key record, so a record never names a body
//! that was not completely written.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::envelope::{self, EnvelopeError};
use crate::{CacheLimits, Client, DataKeyCache};
use kmsd_proto::pb::ReEncryptRequest;

/// The alias of the store-managed key (SSE-S3).
pub const SERVICE_KEY_ALIAS: &str = "alias/kmsd/storage";
/// Encryption-context keys the store adds; callers may not use the `kmsd:` prefix themselves.
pub const CONTEXT_BUCKET: &str = "kmsd:bucket";
pub const CONTEXT_KEY: &str = "kmsd:key";
const RESERVED_PREFIX: &str = "kmsd:";
const SSE_C_LABEL: &[u8] = b"kmsd sse-c v1\0";
/// Frames of 1 MiB: few enough per object to keep per-frame costs out of the throughput.
pub const FRAME_SIZE: u32 = 1024 * 1024;
/// The upload buffer, and how many parts may be in flight: at most about three buffers of memory per put.
const UPLOAD_BUFFER: usize = 8 * 1024 * 1024;
const UPLOAD_CONCURRENCY: usize = 2;

/// How an object is encrypted, chosen at put.
#[derive(Clone)]
pub enum Encryption {
    /// SSE-S3: under the store's own KMS key.
    ServiceManaged,
    /// SSE-KMS: under this KMS key (id or alias).
    Kms(String),
    /// SSE-C: under the caller's key, which the store never keeps.
    Customer(CustomerKey),
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encryption::ServiceManaged => f.write_str("ServiceManaged"),
            Encryption::Kms(key) => f.debug_tuple("Kms").field(key).finish(),
            Encryption::Customer(_) => f.write_str("Customer(<redacted>)"),
        }
    }
}

/// The mode an object was stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    #[serde(rename = "SSE-S3")]
    ServiceManaged,
    #[serde(rename = "SSE-KMS")]
    Kms,
    #[serde(rename = "SSE-C")]
    Customer,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ServiceManaged => "SSE-S3",
            Mode::Kms => "SSE-KMS",
            Mode::Customer => "SSE-C",
        }
    }
}

/// A customer-provided 256-bit key (SSE-C), zeroized on drop.
#[derive(Clone)]
pub struct CustomerKey(Zeroizing<[u8; 32]>);

impl CustomerKey {
    /// The key and its MD5, both base64, as S3 takes them (`x-amz-server-side-encryption-customer-key` and
    /// `...-key-MD5`): the MD5 catches a key damaged on its way.
    pub fn from_base64(key: &str, key_md5: &str) -> Result<Self, ObjectError> {
        let bytes =
            Zeroizing::new(BASE64.decode(key.trim()).map_err(|_| {
                ObjectError::InvalidArgument("the customer key is not base64".into())
            })?);
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            ObjectError::InvalidArgument(format!(
                "the customer key must be 256 bits (32 bytes), not {} bytes",
                bytes.len()
            ))
        })?;
        let key = CustomerKey(Zeroizing::new(key));
        let expected = BASE64
            .decode(key_md5.trim())
            .map_err(|_| ObjectError::InvalidArgument("the key MD5 is not base64".into()))?;
        if !bool::from(key.md5().ct_eq(expected.as_slice())) {
            return Err(ObjectError::InvalidArgument(
                "the customer key's MD5 does not match the key given".into(),
            ));
        }
        Ok(key)
    }

    pub fn from_bytes(key: [u8; 32]) -> Self {
        CustomerKey(Zeroizing::new(key))
    }

    fn md5(&self) -> [u8; 16] {
        Md5::digest(self.0.as_slice()).into()
    }

    /// The key's MD5, base64, as S3 reports it.
    pub fn md5_base64(&self) -> String {
        BASE64.encode(self.md5())
    }

    fn proof(&self, salt: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(self.0.as_slice())
            .expect("HMAC takes keys of any length");
        mac.update(SSE_C_LABEL);
        mac.update(salt);
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerKey(<redacted>)")
    }
}

/// An object's key record, stored beside its body. Nothing in it is secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub format: u32,
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u32>,
    /// The kmsd blob of the data key, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_data_key: Option<String>,
    /// The encryption context kmsd bound the data key to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kms_context: BTreeMap<String, String>,
    /// The caller's own context pairs, given at put.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, String>,
    /// SSE-C: the salt and `HMAC-SHA256(customer key, label ‖ salt)`, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_key_salt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_key_hmac: Option<String>,
    /// Plaintext bytes.
    pub size: u64,
    /// RFC 3339, UTC.
    pub created: String,
}

impl KeyRecord {
    /// The kmsd blob of the object's data key (SSE-KMS and SSE-S3).
    fn data_key_blob(&self, object: &str) -> Result<Vec<u8>, ObjectError> {
        self.encrypted_data_key
            .as_deref()
            .and_then(|s| BASE64.decode(s).ok())
            .ok_or_else(|| ObjectError::Corrupt {
                object: object.to_owned(),
                reason: "no encrypted data key".into(),
            })
    }
}

/// What `head` (and every put, get and rewrap) tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    pub record: KeyRecord,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    /// Bytes stored for the body (the envelope: plaintext plus about 21 bytes per frame and a header).
    pub stored_bytes: u64,
    pub last_modified: String,
}

/// Why a storage call failed. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("object {bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    #[error("object {0} is stored with SSE-C: give its customer key")]
    CustomerKeyRequired(String),
    #[error("object {0} is not stored with SSE-C: do not give a customer key")]
    CustomerKeyNotExpected(String),
    #[error("the customer key is not the one object {0} was stored with")]
    WrongCustomerKey(String),
    #[error("object {0} is stored with SSE-C: there is no KMS key to rewrap it under")]
    NotRewrappable(String),
    #[error("kmsd: {0}")]
    Kms(#[from] crate::Error),
    #[error("object {object}: {source}")]
    Envelope {
        object: String,
        source: EnvelopeError,
    },
    #[error("object {object}: its key record is damaged: {reason}")]
    Corrupt { object: String, reason: String },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Stores objects encrypted; cheap to clone.
#[derive(Clone)]
pub struct ObjectClient {
    store: Arc<dyn ObjectStore>,
    kms: Client,
    cache: Option<Arc<DataKeyCache>>,
    frame_size: u32,
}

impl std::fmt::Debug for ObjectClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectClient")
            .field("store", &self.store.to_string())
            .field("cached", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// Opens the store at `location`: a directory (created if missing), a `file://` URL, or `s3://bucket[/prefix]`
/// (credentials, region and endpoint from the usual `AWS_*` variables, e.g. `AWS_ENDPOINT` and `AWS_ALLOW_HTTP` for
/// an S3-compatible service).
pub fn open_store(location: &str) -> Result<Arc<dyn ObjectStore>, ObjectError> {
    let invalid = |e: String| ObjectError::InvalidArgument(format!("store {location:?}: {e}"));
    if !location.contains("://") || location.starts_with("file://") {
        let dir = location.strip_prefix("file://").unwrap_or(location);
        std::fs::create_dir_all(dir).map_err(|e| invalid(e.to_string()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?
            .with_automatic_cleanup(true);
        return Ok(Arc::new(store));
    }
    let url = url::Url::parse(location).map_err(|e| invalid(e.to_string()))?;
    let options: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let (store, prefix) = object_store::parse_url_opts(&url, options)?;
    let store: Arc<dyn ObjectStore> = Arc::from(store);
    if prefix.as_ref().is_empty() {
        Ok(store)
    } else {
        Ok(Arc::new(object_store::prefix::PrefixStore::new(
            store, prefix,
        )))
    }
}

fn object_name(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

/// The paths of an object's body and key record, once its bucket (see [`check_bucket`]) and key (1-1024 bytes of
/// path segments, none empty, `.` or `..`) check out.
fn paths(bucket: &str, key: &str) -> Result<(Path, Path), ObjectError> {
    check_bucket(bucket)?;
    let key_ok = !key.is_empty()
        && key.len() <= 1024
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.chars().any(char::is_control));
    if !key_ok {
        return Err(ObjectError::InvalidArgument(format!(
            "object key {key:?} must be 1-1024 bytes of /-separated names, none empty, . or .."
        )));
    }
    let parse = |p: String| {
        Path::parse(&p)
            .map_err(|e| ObjectError::InvalidArgument(format!("object key {key:?}: {e}")))
    };
    Ok((
        parse(format!("objects/{bucket}/{key}"))?,
        parse(format!("keys/{bucket}/{key}"))?,
    ))
}

/// S3's bucket-name rules: 3-63 of a-z 0-9 . -, starting and ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), ObjectError> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        return Err(ObjectError::InvalidArgument(format!(
            "bucket {bucket:?} must be 3-63 characters of a-z 0-9 . - and start and end with a letter or digit"
        )));
    }
    Ok(())
}

/// A time as RFC 3339 UTC, to the second.
fn rfc3339(unix_seconds: i64) -> String {
    chrono::DateTime::from_timestamp(unix_seconds, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn pairs(map: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

impl ObjectClient {
    /// A client over `store`, calling kmsd through `kms` (whose principal needs GenerateDataKey and Decrypt on the
    /// keys it uses; ReEncrypt for rewrap).
    pub fn new(store: Arc<dyn ObjectStore>, kms: Client) -> Self {
        ObjectClient {
            store,
            kms,
            cache: None,
            frame_size: FRAME_SIZE,
        }
    }

    /// Reuses data keys within `limits` across the objects of one bucket (see the module documentation).
    pub fn with_cache(mut self, limits: CacheLimits) -> Self {
        self.cache = Some(Arc::new(DataKeyCache::new(self.kms.clone(), limits)));
        self
    }

    /// The envelope frame size (1 MiB unless set; 4 KiB to 16 MiB).
    pub fn with_frame_size(mut self, frame_size: u32) -> Self {
        self.frame_size = frame_size;
        self
    }

    /// The encryption context of an object's envelope: the caller's pairs and the object's name.
    fn envelope_context(
        bucket: &str,
        key: &str,
        context: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut all = context.clone();
        all.insert(CONTEXT_BUCKET.to_owned(), bucket.to_owned());
        all.insert(CONTEXT_KEY.to_owned(), key.to_owned());
        all
    }

    /// The encryption context kmsd binds the data key to: the caller's pairs, the bucket, and the object's key
    /// unless data keys are shared across the bucket's objects.
    fn kms_context(
        &self,
        bucket: &str,
        key: &str,
        context: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut all = Self::envelope_context(bucket, key, context);
        if self.cache.is_some() {
            all.remove(CONTEXT_KEY);
        }
        all
    }

    /// Encrypts everything `reader` yields and stores it as `bucket`/`key`, replacing any object there.
    pub async fn put<R: AsyncRead + Unpin>(
        &self,
        bucket: &str,
        key: &str,
        reader: R,
        encryption: Encryption,
        context: &BTreeMap<String, String>,
    ) -> Result<ObjectInfo, ObjectError> {
        let (body_path, record_path) = paths(bucket, key)?;
        if let Some(k) = context.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
            return Err(ObjectError::InvalidArgument(format!(
                "context key {k:?}: the {RESERVED_PREFIX} prefix is the store's own"
            )));
        }
        let name = object_name(bucket, key);
        let mut record = KeyRecord {
            format: 1,
            mode: Mode::ServiceManaged,
            kms_key_id: None,
            key_version: None,
            encrypted_data_key: None,
            kms_context: BTreeMap::new(),
            context: context.clone(),
            customer_key_salt: None,
            customer_key_hmac: None,
            size: 0,
            created: rfc3339(chrono::Utc::now().timestamp()),
        };
        // The data key: held for the length of the upload, zeroized after.
        let data_key: Zeroizing<Vec<u8>> = match &encryption {
            Encryption::Customer(customer) => {
                let mut salt = [0u8; 16];
                getrandom::fill(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
                record.mode = Mode::Customer;
                record.customer_key_salt = Some(BASE64.encode(salt));
                record.customer_key_hmac = Some(BASE64.encode(customer.proof(&salt)));
                Zeroizing::new(customer.0.to_vec())
            }
            Encryption::Kms(_) | Encryption::ServiceManaged => {
                let (mode, kms_key) = match &encryption {
                    Encryption::Kms(k) => (Mode::Kms, k.clone()),
                    _ => (Mode::ServiceManaged, self.service_key().await?),
                };
                let kms_context = self.kms_context(bucket, key, context);
                let (key_id, key_version, plaintext, blob) = match &self.cache {
                    Some(cache) => {
                        let dk = cache.for_encryption(&kms_key, &kms_context, 0).await?;
                        (
                            dk.key_id.clone(),
                            dk.key_version,
                            Zeroizing::new(dk.plaintext.to_vec()),
                            dk.ciphertext_blob.clone(),
                        )
                    }
                    None => {
                        let dk = self
                            .kms
                            .generate_data_key(&kms_key, &pairs(&kms_context))
                            .await?;
                        (dk.key_id, dk.key_version, dk.plaintext, dk.ciphertext_blob)
                    }
                };
                record.mode = mode;
                record.kms_key_id = Some(key_id);
                record.key_version = Some(key_version);
                record.encrypted_data_key = Some(BASE64.encode(blob));
                record.kms_context = kms_context;
                plaintext
            }
        };
        let envelope_context = Self::envelope_context(bucket, key, context);
        let mut upload = object_store::buffered::BufWriter::with_capacity(
            self.store.clone(),
            body_path,
            UPLOAD_BUFFER,
        )
        .with_max_concurrency(UPLOAD_CONCURRENCY);
        let sealed = envelope::encrypt_stream(
            reader,
            &mut upload,
            &data_key,
            "",
            &[],
            &envelope_context,
            self.frame_size,
        )
        .await;
        drop(data_key);
        let size = match sealed {
            Ok(size) => size,
            Err(source) => {
                let _ = upload.abort().await;
                return Err(ObjectError::Envelope {
                    object: name,
                    source,
                });
            }
        };
        upload.shutdown().await?;
        record.size = size;
        self.write_record(&record_path, &record).await?;
        Ok(ObjectInfo {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            record,
        })
    }

    /// Decrypts `bucket`/`key` into `writer`, one verified frame at a time. Until this returns `Ok`, treat what was
    /// written as unconfirmed: a truncated body is detected only at its end.
    pub async fn get<W: AsyncWrite + Unpin>(
        &self,
        bucket: &str,
        key: &str,
        writer: W,
        customer_key: Option<&CustomerKey>,
    ) -> Result<ObjectInfo, ObjectError> {
        let (body_path, record_path) = paths(bucket, key)?;
        let name = object_name(bucket, key);
        let record = self.read_record(bucket, key, &record_path).await?;
        // Everything about the key is settled before the body is opened.
        let data_key: Zeroizing<Vec<u8>> = match (record.mode, customer_key) {
            (Mode::Customer, None) => return Err(ObjectError::CustomerKeyRequired(name)),
            (Mode::Customer, Some(customer)) => {
                let corrupt = |reason: &str| ObjectError::Corrupt {
                    object: name.clone(),
                    reason: reason.to_owned(),
                };
                let salt = record
                    .customer_key_salt
                    .as_deref()
                    .and_then(|s| BASE64.decode(s).ok())
                    .ok_or_else(|| corrupt("no customer-key salt"))?;
                let proof = record
                    .customer_key_hmac
                    .as_deref()
                    .and_then(|s| BASE64.decode(s).ok())
                    .ok_or_else(|| corrupt("no customer-key HMAC"))?;
                if !bool::from(customer.proof(&salt).ct_eq(proof.as_slice())) {
                    return Err(ObjectError::WrongCustomerKey(name));
                }
                Zeroizing::new(customer.0.to_vec())
            }
            (_, Some(_)) => return Err(ObjectError::CustomerKeyNotExpected(name)),
            (_, None) => {
                let blob = record.data_key_blob(&name)?;
                match &self.cache {
                    Some(cache) => {
                        let dk = cache
                            .for_decryption(&blob, &record.kms_context, None, 0)
                            .await?;
                        Zeroizing::new(dk.plaintext.to_vec())
                    }
                    None => {
                        self.kms
                            .decrypt(&blob, &pairs(&record.kms_context), None)
                            .await?
                            .plaintext
                    }
                }
            }
        };
        let body = match self.store.get(&body_path).await {
            Ok(body) => body,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ObjectError::Corrupt {
                    object: name,
                    reason: "its key record has no body (deleted or being replaced; retry)".into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let reader = tokio_util::io::StreamReader::new(body.into_stream());
        let expected = Self::envelope_context(bucket, key, &record.context);
        let opened =
            envelope::decrypt_stream(reader, writer, &expected, |_| async move { Ok(data_key) })
                .await;
        match opened {
            Ok((_, size)) if size == record.size => Ok(ObjectInfo {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                record,
            }),
            Ok((_, size)) => Err(ObjectError::Corrupt {
                object: name,
                reason: format!(
                    "the body holds {size} bytes, its key record says {}",
                    record.size
                ),
            }),
            Err(source) => Err(ObjectError::Envelope {
                object: name,
                source,
            }),
        }
    }

    /// How `bucket`/`key` is stored: mode, KMS key and version, size, context.
    pub async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, ObjectError> {
        let (_, record_path) = paths(bucket, key)?;
        let record = self.read_record(bucket, key, &record_path).await?;
        Ok(ObjectInfo {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            record,
        })
    }

    /// The objects of `bucket` whose keys start with `prefix` (a whole number of `/`-separated names), by key.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Listed>, ObjectError> {
        check_bucket(bucket)?;
        let root = format!("objects/{bucket}/");
        let base = if prefix.is_empty() {
            Path::parse(root.trim_end_matches('/'))
        } else {
            Path::parse(format!("{root}{}", prefix.trim_matches('/')))
        }
        .map_err(|e| ObjectError::InvalidArgument(format!("prefix {prefix:?}: {e}")))?;
        let mut stream = self.store.list(Some(&base));
        let mut out = Vec::new();
        use tokio_stream::StreamExt;
        while let Some(meta) = stream.next().await {
            let meta = meta?;
            let Some(key) = meta.location.as_ref().strip_prefix(&root) else {
                continue;
            };
            out.push(Listed {
                key: key.to_owned(),
                stored_bytes: meta.size,
                last_modified: rfc3339(meta.last_modified.timestamp()),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Deletes `bucket`/`key`: its key record first, so nothing can open a half-deleted object, then its body.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        let (body_path, record_path) = paths(bucket, key)?;
        match self.store.delete(&record_path).await {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ObjectError::NotFound {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        match self.store.delete(&body_path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Re-encrypts the object's data key under `destination` (a KMS key id or alias), or under the newest version
    /// of its own key when `None`, with one ReEncrypt: the body is neither read nor rewritten.
    pub async fn rewrap(
        &self,
        bucket: &str,
        key: &str,
        destination: Option<&str>,
    ) -> Result<ObjectInfo, ObjectError> {
        let (_, record_path) = paths(bucket, key)?;
        let name = object_name(bucket, key);
        let mut record = self.read_record(bucket, key, &record_path).await?;
        if record.mode == Mode::Customer {
            return Err(ObjectError::NotRewrappable(name));
        }
        let blob = record.data_key_blob(&name)?;
        let context: std::collections::HashMap<String, String> = record
            .kms_context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let out = self
            .kms
            .re_encrypt(ReEncryptRequest {
                ciphertext_blob: blob,
                source_key_id: record.kms_key_id.clone().unwrap_or_default(),
                source_encryption_context: context.clone(),
                destination_key_id: destination.unwrap_or_default().to_owned(),
                destination_encryption_context: context,
            })
            .await?;
        if destination.is_some() {
            record.mode = Mode::Kms;
        }
        record.kms_key_id = Some(out.encrypted.key_id);
        record.key_version = Some(out.encrypted.key_version);
        record.encrypted_data_key = Some(BASE64.encode(out.encrypted.ciphertext_blob));
        self.write_record(&record_path, &record).await?;
        Ok(ObjectInfo {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            record,
        })
    }

    /// The store-managed key's id, creating it (under [`SERVICE_KEY_ALIAS`]) on first use.
    async fn service_key(&self) -> Result<String, ObjectError> {
        match self.kms.describe_key(SERVICE_KEY_ALIAS).await {
            Ok(meta) => return Ok(meta.key_id),
            Err(crate::Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let created = self
            .kms
            .create_key(kmsd_proto::pb::CreateKeyRequest {
                description: "kmsd storage client: the store-managed key (SSE-S3)".into(),
                alias: SERVICE_KEY_ALIAS.into(),
                ..Default::default()
            })
            .await;
        match created {
            Ok(meta) => Ok(meta.key_id),
            // Another client created it meanwhile.
            Err(crate::Error::AlreadyExists(_)) => {
                Ok(self.kms.describe_key(SERVICE_KEY_ALIAS).await?.key_id)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn read_record(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
    ) -> Result<KeyRecord, ObjectError> {
        let bytes = match self.store.get(path).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ObjectError::NotFound {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let record: KeyRecord =
            serde_json::from_slice(&bytes).map_err(|e| ObjectError::Corrupt {
                object: object_name(bucket, key),
                reason: e.to_string(),
            })?;
        if record.format != 1 {
            return Err(ObjectError::Corrupt {
                object: object_name(bucket, key),
                reason: format!("key record format {} is not known", record.format),
            });
        }
        Ok(record)
    }

    async fn write_record(&self, path: &Path, record: &KeyRecord) -> Result<(), ObjectError> {
        let json = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        self.store.put(path, PutPayload::from(json)).await?;
        Ok(())
    }
}
