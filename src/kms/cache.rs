//! The in-memory read model of every key: metadata, aliases and unwrapped version material.
//!
//! Hot paths (GenerateDataKey, Encrypt, Decrypt) read only from here, never from SQL. Writers replace a key's
//! entry whole after its change has committed to storage, so readers see either the old or the new key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::clock::UnixMillis;
use crate::crypto::VersionKey;
use crate::keys::{AliasName, KeyId, KeyRef, KmsKey};
use crate::storage::AliasRow;
use kmsd_proto::key_policy::PolicyDocument;

use super::KmsError;

#[derive(Clone)]
pub struct CachedVersion {
    pub created_at: UnixMillis,
    /// `None` once the key is destroyed.
    pub material: Option<Arc<VersionKey>>,
}

pub struct CachedKey {
    pub record: KmsKey,
    pub versions: BTreeMap<u32, CachedVersion>,
    pub aliases: BTreeSet<AliasName>,
    /// Who may use the key besides administrators (see [`crate::auth::policy`]).
    pub policy: Arc<PolicyDocument>,
}

impl CachedKey {
    /// This key with `record`, and `version` set to `cached` (added, or replaced), aliases and policy as they were.
    pub fn with_version(&self, record: KmsKey, version: u32, cached: CachedVersion) -> CachedKey {
        let mut versions = self.versions.clone();
        versions.insert(version, cached);
        CachedKey {
            record,
            versions,
            aliases: self.aliases.clone(),
            policy: self.policy.clone(),
        }
    }

    /// The material of a version, if the version exists and has not been destroyed.
    pub fn material(&self, version: u32) -> Option<&Arc<VersionKey>> {
        self.versions.get(&version)?.material.as_ref()
    }
}

#[derive(Default)]
struct Inner {
    keys: BTreeMap<KeyId, Arc<CachedKey>>,
    aliases: BTreeMap<AliasName, AliasRow>,
}

#[derive(Default)]
pub struct KeyCache(RwLock<Inner>);

impl KeyCache {
    // A panic while holding the lock cannot leave `Inner` half-updated: every write is a single insert or remove.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn resolve(&self, key: &KeyRef) -> Result<Arc<CachedKey>, KmsError> {
        let inner = self.read();
        let id = match key {
            KeyRef::Id(id) => *id,
            KeyRef::Alias(alias) => match inner.aliases.get(alias) {
                Some(row) => row.key_id,
                None => return Err(KmsError::NotFound(key.clone())),
            },
        };
        inner
            .keys
            .get(&id)
            .cloned()
            .ok_or_else(|| KmsError::NotFound(key.clone()))
    }

    pub fn get(&self, id: KeyId) -> Option<Arc<CachedKey>> {
        self.read().keys.get(&id).cloned()
    }

    pub fn alias(&self, name: &AliasName) -> Option<AliasRow> {
        self.read().aliases.get(name).cloned()
    }

    pub fn put(&self, key: CachedKey) {
        self.write().keys.insert(key.record.id, Arc::new(key));
    }

    /// Replaces a key and its aliases with what storage holds now (another replica changed it): aliases that
    /// left it go, aliases that came to it from another key leave that key.
    pub fn replace_key(&self, key: CachedKey, aliases: Vec<AliasRow>) {
        let mut inner = self.write();
        let id = key.record.id;
        let gone: Vec<AliasName> = inner
            .aliases
            .iter()
            .filter(|(name, row)| row.key_id == id && !aliases.iter().any(|a| &a.name == *name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            inner.aliases.remove(&name);
        }
        for alias in &aliases {
            if let Some(previous) = inner.aliases.insert(alias.name.clone(), alias.clone())
                && previous.key_id != id
                && let Some(other) = inner.keys.get(&previous.key_id)
            {
                let updated = with_aliases(other, |a| {
                    a.remove(&alias.name);
                });
                inner.keys.insert(previous.key_id, updated);
            }
        }
        let key = CachedKey {
            aliases: aliases.into_iter().map(|a| a.name).collect(),
            ..key
        };
        inner.keys.insert(id, Arc::new(key));
    }

    /// Replaces everything at once (a replica that may have missed changes reloads).
    pub fn replace_all(&self, keys: Vec<(CachedKey, Vec<AliasRow>)>) {
        let mut fresh = Inner::default();
        for (key, aliases) in keys {
            let key = CachedKey {
                aliases: aliases.iter().map(|a| a.name.clone()).collect(),
                ..key
            };
            for alias in aliases {
                fresh.aliases.insert(alias.name.clone(), alias);
            }
            fresh.keys.insert(key.record.id, Arc::new(key));
        }
        *self.write() = fresh;
    }

    pub fn put_alias(&self, alias: AliasRow) {
        let mut inner = self.write();
        if let Some(key) = inner.keys.get(&alias.key_id) {
            let updated = with_aliases(key, |a| {
                a.insert(alias.name.clone());
            });
            inner.keys.insert(alias.key_id, updated);
        }
        inner.aliases.insert(alias.name.clone(), alias);
    }

    pub fn remove_alias(&self, name: &AliasName) {
        let mut inner = self.write();
        if let Some(row) = inner.aliases.remove(name)
            && let Some(key) = inner.keys.get(&row.key_id)
        {
            let updated = with_aliases(key, |a| {
                a.remove(name);
            });
            inner.keys.insert(row.key_id, updated);
        }
    }

    /// Up to `limit` keys with ids after `after`, in id order.
    pub fn keys_after(&self, after: Option<KeyId>, limit: usize) -> Vec<Arc<CachedKey>> {
        let inner = self.read();
        let range = match after {
            Some(id) => inner
                .keys
                .range((std::ops::Bound::Excluded(id), std::ops::Bound::Unbounded)),
            None => inner.keys.range(..),
        };
        range.take(limit).map(|(_, k)| k.clone()).collect()
    }

    /// Up to `limit` aliases named after `after`, in name order, optionally only those of one key.
    pub fn aliases_after(
        &self,
        after: Option<&AliasName>,
        key: Option<KeyId>,
        limit: usize,
    ) -> Vec<AliasRow> {
        let inner = self.read();
        let range = match after {
            Some(name) => inner.aliases.range((
                std::ops::Bound::Excluded(name.clone()),
                std::ops::Bound::Unbounded,
            )),
            None => inner.aliases.range(..),
        };
        range
            .map(|(_, row)| row)
            .filter(|row| key.is_none_or(|k| row.key_id == k))
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn all_keys(&self) -> Vec<Arc<CachedKey>> {
        self.read().keys.values().cloned().collect()
    }
}

fn with_aliases(key: &CachedKey, change: impl FnOnce(&mut BTreeSet<AliasName>)) -> Arc<CachedKey> {
    let mut aliases = key.aliases.clone();
    change(&mut aliases);
    Arc::new(CachedKey {
        record: key.record.clone(),
        versions: key.versions.clone(),
        aliases,
        policy: key.policy.clone(),
    })
}
