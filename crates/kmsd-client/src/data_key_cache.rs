//! Data-key caching, as the AWS Encryption SDK's caching materials manager does, with bounds on each cached key's
//! age, messages and bytes — and single flight: concurrent callers that miss the cache share one KMS call instead of
//! each making their own (the SDK's cache makes N calls for N parallel misses).
//!
//! Invariants: a cached key is never used past any bound; plaintext keys live in zeroizing buffers and are dropped
//! (zeroized) when retired; a failed KMS call is not cached, so the next caller tries again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use super::{Client, Error, Result};

/// How long and how much one data key may be used for before a fresh one is fetched.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    pub max_age: Duration,
    /// Messages (objects) encrypted or decrypted with one cached key.
    pub max_messages: u64,
    /// Plaintext bytes encrypted or decrypted with one cached key.
    pub max_bytes: u64,
}

impl Default for CacheLimits {
    /// Conservative defaults: five minutes, 2^20 messages, 2^36 bytes.
    fn default() -> Self {
        CacheLimits {
            max_age: Duration::from_secs(300),
            max_messages: 1 << 20,
            max_bytes: 1 << 36,
        }
    }
}

/// A data key from the cache: its plaintext (zeroized when the last user drops it) and its blob.
pub struct CachedDataKey {
    pub key_id: String,
    pub key_version: u32,
    pub plaintext: Zeroizing<Vec<u8>>,
    pub ciphertext_blob: Vec<u8>,
    created: Instant,
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl std::fmt::Debug for CachedDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedDataKey")
            .field("key_id", &self.key_id)
            .field("key_version", &self.key_version)
            .field("plaintext", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl CachedDataKey {
    fn new(
        key_id: String,
        key_version: u32,
        plaintext: Zeroizing<Vec<u8>>,
        ciphertext_blob: Vec<u8>,
    ) -> Self {
        CachedDataKey {
            key_id,
            key_version,
            plaintext,
            ciphertext_blob,
            created: Instant::now(),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Takes one message of `bytes` from the key's allowance; false if that would pass a bound.
    /// A key fetched for this very call is usable once whatever its age, so tiny bounds cannot loop forever.
    fn reserve(&self, limits: &CacheLimits, bytes: u64, fresh: bool) -> bool {
        if !fresh && self.created.elapsed() >= limits.max_age {
            return false;
        }
        let messages = self.messages.fetch_add(1, Ordering::SeqCst) + 1;
        let total = self
            .bytes
            .fetch_add(bytes, Ordering::SeqCst)
            .saturating_add(bytes);
        messages <= limits.max_messages && total <= limits.max_bytes
    }
}

type Slot = Arc<OnceCell<Arc<CachedDataKey>>>;
/// Encryption keys by (KMS key as named, canonical context); decryption keys by (blob, canonical context).
type Slots<K> = Mutex<HashMap<K, Slot>>;

/// A cache of data keys in front of a [`Client`].
pub struct DataKeyCache {
    client: Client,
    limits: CacheLimits,
    encrypt: Slots<(String, Vec<u8>)>,
    decrypt: Slots<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for DataKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyCache")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold only slots; a panic elsewhere cannot leave one half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DataKeyCache {
    pub fn new(client: Client, limits: CacheLimits) -> Self {
        DataKeyCache {
            client,
            // At least one message per key: a zero bound would fetch forever.
            limits: CacheLimits {
                max_messages: limits.max_messages.max(1),
                ..limits
            },
            encrypt: Mutex::new(HashMap::new()),
            decrypt: Mutex::new(HashMap::new()),
        }
    }

    /// A data key under `key_id` bound to `context`, for one message of `bytes` plaintext bytes: from the cache if
    /// one is within its bounds, else from one GenerateDataKey shared by every caller waiting for it.
    pub async fn for_encryption(
        &self,
        key_id: &str,
        context: &BTreeMap<String, String>,
        bytes: u64,
    ) -> Result<Arc<CachedDataKey>> {
        let id = (
            key_id.to_owned(),
            kmsd_proto::canonical::context_bytes(context),
        );
        let pairs: Vec<(&str, &str)> = context
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.get(&self.encrypt, id, bytes, || async {
            let dk = self.client.generate_data_key(key_id, &pairs).await?;
            Ok(CachedDataKey::new(
                dk.key_id,
                dk.key_version,
                dk.plaintext,
                dk.ciphertext_blob,
            ))
        })
        .await
    }

    /// The plaintext of a data key's blob, for one message of `bytes` bytes: cached by the blob and context.
    pub async fn for_decryption(
        &self,
        blob: &[u8],
        context: &BTreeMap<String, String>,
        key_id: Option<&str>,
        bytes: u64,
    ) -> Result<Arc<CachedDataKey>> {
        let id = (blob.to_vec(), kmsd_proto::canonical::context_bytes(context));
        let pairs: Vec<(&str, &str)> = context
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.get(&self.decrypt, id, bytes, || async {
            let opened = self.client.decrypt(blob, &pairs, key_id).await?;
            Ok(CachedDataKey::new(
                opened.key_id,
                opened.key_version,
                opened.plaintext,
                blob.to_vec(),
            ))
        })
        .await
    }

    async fn get<K, F, Fut>(
        &self,
        map: &Slots<K>,
        id: K,
        bytes: u64,
        fetch: F,
    ) -> Result<Arc<CachedDataKey>>
    where
        K: std::hash::Hash + Eq + Clone,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<CachedDataKey>>,
    {
        loop {
            let slot = lock(map).entry(id.clone()).or_default().clone();
            // Everyone holding this slot waits on the same fetch; a failed fetch leaves the slot empty.
            let fetched = std::sync::atomic::AtomicBool::new(false);
            let key = slot
                .get_or_try_init(|| async {
                    fetched.store(true, Ordering::SeqCst);
                    fetch().await.map(Arc::new)
                })
                .await?
                .clone();
            if key.reserve(&self.limits, bytes, fetched.load(Ordering::SeqCst)) {
                return Ok(key);
            }
            // Spent: retire this slot (unless someone already replaced it) and fetch afresh.
            let mut m = lock(map);
            if m.get(&id).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                m.remove(&id);
            }
            if bytes > self.limits.max_bytes {
                return Err(Error::InvalidArgument(super::Details {
                    message: format!("a message of {bytes} bytes exceeds the cache's max_bytes"),
                    kind: None,
                    request_id: None,
                }));
            }
        }
    }
}
