//! Management calls: create, describe, list, aliases, state changes, details (description, tags, rotation
//! schedule), rotation and deletion.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::cache::{CachedKey, CachedVersion};
use super::{Kms, KmsError, generate_material, generate_material_off_thread, open_version};
use crate::audit::{Change, Gate};
use crate::auth::policy::Authorized;
use crate::clock::UnixMillis;
use crate::keys::{
    self, AliasName, KeyId, KeyRef, KeyUpdate, KmsKey, NewKeySpec, Operation, Origin, State,
    page_token,
};
use crate::rpc::{DaemonEvent, Event, Rpc};
use crate::storage::{AliasRow, VersionRow, is_constraint_violation};
use kmsd_proto::key_policy::PolicyDocument;

/// A key as callers see it: its record and aliases.
#[derive(Debug, Clone)]
pub struct KeyView {
    pub record: KmsKey,
    pub aliases: Vec<AliasName>,
}

impl From<&CachedKey> for KeyView {
    fn from(key: &CachedKey) -> Self {
        KeyView {
            record: key.record.clone(),
            aliases: key.aliases.iter().cloned().collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VersionView {
    pub version: u32,
    pub created_at: UnixMillis,
    pub primary: bool,
    pub destroyed: bool,
}

/// One page of a listing and the token for the next, if there is one.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

const KEY_TOKEN_PREFIX: &str = "k1:";
const ALIAS_TOKEN_PREFIX: &str = "a1:";

impl Kms {
    /// Creates a key with `policy` (empty: administrators only).
    pub async fn create_key(
        &self,
        spec: NewKeySpec,
        policy: PolicyDocument,
        gate: &dyn Gate,
    ) -> Result<KeyView, KmsError> {
        // Before the lock: a new RSA-4096 key pair takes a second or more to find, and other changes need not wait.
        // A key of origin EXTERNAL has none until it is imported.
        let material = match spec.origin {
            Origin::Kmsd => Some(generate_material_off_thread(spec.kind.spec).await?),
            Origin::External => None,
        };
        let _guard = self.lock_for_change().await?;
        if let Some(alias) = &spec.alias
            && self.cache.alias(alias).is_some()
        {
            return Err(KmsError::AliasExists(alias.clone()));
        }
        let now = self.clock.now();
        let id = KeyId::new_random();
        let record = KmsKey {
            id,
            description: spec.description,
            state: match spec.origin {
                Origin::Kmsd => State::Enabled,
                Origin::External => State::PendingImport,
            },
            created_at: now,
            primary_version: 1,
            rotation_period_days: spec.rotation_period_days,
            next_rotation_at: spec.rotation_period_days.map(|d| now.plus_days(d)),
            deletion_at: None,
            tags: spec.tags,
            kind: spec.kind,
            origin: spec.origin,
            valid_to: None,
            import_fingerprint: None,
        };
        let version = VersionRow {
            version: 1,
            created_at: now,
            wrapped_material: material
                .as_ref()
                .map(|m| self.root.wrap(id, 1, spec.kind.spec, m)),
        };
        let opened = material
            .as_ref()
            .map(|m| open_version(id, 1, spec.kind.spec, m))
            .transpose()?;
        let alias = spec.alias.map(|name| AliasRow {
            name,
            key_id: id,
            created_at: now,
        });
        gate.approve(Change::key(Rpc::CreateKey, id, Some(1)))
            .await?;
        self.storage
            .insert_key(
                record.clone(),
                version,
                alias.clone(),
                (!policy.statements.is_empty()).then(|| policy.to_json()),
            )
            .await?;
        self.cache.put(CachedKey {
            record,
            versions: BTreeMap::from([(
                1,
                CachedVersion {
                    created_at: now,
                    material: opened.map(Arc::new),
                },
            )]),
            aliases: Default::default(),
            policy: Arc::new(policy),
        });
        if let Some(alias) = alias {
            self.cache.put_alias(alias);
        }
        self.describe_id(id)
    }

    /// The key a reference names now, and its policy: what authorization decides on. Callers then act on the id,
    /// so an alias moved in between cannot redirect an authorized call to another key.
    pub fn policy_of(&self, key: &KeyRef) -> Result<(KeyId, Arc<PolicyDocument>), KmsError> {
        let cached = self.cache.resolve(key)?;
        Ok((cached.record.id, cached.policy.clone()))
    }

    /// A key's policy, for GetKeyPolicy.
    pub fn policy(&self, key: &Authorized) -> Result<(KeyId, Arc<PolicyDocument>), KmsError> {
        self.policy_of(key.key())
    }

    /// Replaces a key's policy (validated by the caller), once `gate` has approved.
    pub async fn put_policy(
        &self,
        key: &Authorized,
        policy: PolicyDocument,
        gate: &dyn Gate,
    ) -> Result<KeyId, KmsError> {
        let _guard = self.lock_for_change().await?;
        let cached = self.cache.resolve(key.key())?;
        let id = cached.record.id;
        gate.approve(Change::key(Rpc::PutKeyPolicy, id, None))
            .await?;
        self.storage
            .set_key_policy(id, policy.to_json(), self.clock.now())
            .await?;
        self.cache.put(CachedKey {
            record: cached.record.clone(),
            versions: cached.versions.clone(),
            aliases: cached.aliases.clone(),
            policy: Arc::new(policy),
        });
        Ok(id)
    }

    /// How many keys are in each state, for metrics.
    pub fn keys_by_state(&self) -> Vec<(&'static str, usize)> {
        let all = self.cache.all_keys();
        [
            State::Enabled,
            State::Disabled,
            State::PendingDeletion,
            State::Destroyed,
        ]
        .into_iter()
        .map(|state| {
            (
                state.as_str(),
                all.iter().filter(|k| k.record.state == state).count(),
            )
        })
        .collect()
    }

    /// The id a key reference names now, if it names one: for audit records, without copying the key's metadata.
    pub fn resolve_id(&self, key: &KeyRef) -> Option<KeyId> {
        self.cache.resolve(key).ok().map(|k| k.record.id)
    }

    pub fn describe(&self, key: &Authorized) -> Result<KeyView, KmsError> {
        Ok(KeyView::from(&*self.cache.resolve(key.key())?))
    }

    fn describe_id(&self, id: KeyId) -> Result<KeyView, KmsError> {
        Ok(KeyView::from(&*self.cache.resolve(&KeyRef::Id(id))?))
    }

    pub fn list_keys(&self, page_size: u32, page_token: &str) -> Result<Page<KeyView>, KmsError> {
        let limit = keys::page_size(page_size)? as usize;
        let after = page_token::decode(page_token, KEY_TOKEN_PREFIX)?
            .map(|s| KeyId::parse(&s))
            .transpose()?;
        // One extra tells whether another page exists.
        let mut found = self.cache.keys_after(after, limit + 1);
        let next_token = if found.len() > limit {
            found.truncate(limit);
            found
                .last()
                .map(|k| page_token::encode(KEY_TOKEN_PREFIX, &k.record.id.to_string()))
        } else {
            None
        };
        Ok(Page {
            items: found.iter().map(|k| KeyView::from(&**k)).collect(),
            next_token,
        })
    }

    pub async fn create_alias(
        &self,
        name: AliasName,
        target: &Authorized,
        gate: &dyn Gate,
    ) -> Result<AliasRow, KmsError> {
        let _guard = self.lock_for_change().await?;
        let key = self.cache.resolve(target.key())?;
        key.record.check(Operation::CreateAlias)?;
        if self.cache.alias(&name).is_some() {
            return Err(KmsError::AliasExists(name));
        }
        let row = AliasRow {
            name: name.clone(),
            key_id: key.record.id,
            created_at: self.clock.now(),
        };
        gate.approve(Change::key(Rpc::CreateAlias, row.key_id, None))
            .await?;
        self.storage.insert_alias(row.clone()).await.map_err(|e| {
            if is_constraint_violation(&e) {
                KmsError::AliasExists(name)
            } else {
                e.into()
            }
        })?;
        self.cache.put_alias(row.clone());
        Ok(row)
    }

    pub async fn delete_alias(&self, name: AliasName, gate: &dyn Gate) -> Result<(), KmsError> {
        let _guard = self.lock_for_change().await?;
        let Some(row) = self.cache.alias(&name) else {
            return Err(KmsError::NotFound(KeyRef::Alias(name)));
        };
        gate.approve(Change::key(Rpc::DeleteAlias, row.key_id, None))
            .await?;
        if !self.storage.delete_alias(name.as_str().to_owned()).await? {
            return Err(KmsError::NotFound(KeyRef::Alias(name)));
        }
        self.cache.remove_alias(&name);
        Ok(())
    }

    /// Points the alias `name` at the key `target` names (which must allow it, as CreateAlias's target must).
    pub async fn update_alias(
        &self,
        name: AliasName,
        target: &Authorized,
        gate: &dyn Gate,
    ) -> Result<AliasRow, KmsError> {
        let _guard = self.lock_for_change().await?;
        let key = self.cache.resolve(target.key())?;
        key.record.check(Operation::UpdateAlias)?;
        let Some(current) = self.cache.alias(&name) else {
            return Err(KmsError::NotFound(KeyRef::Alias(name)));
        };
        let id = current.key_id.to_string();
        gate.approve(
            Change::key(Rpc::UpdateAlias, key.record.id, None).with(&[("previous_key_id", &id)]),
        )
        .await?;
        if !self
            .storage
            .move_alias(name.as_str().to_owned(), current.key_id, key.record.id)
            .await?
        {
            return Err(KmsError::NotFound(KeyRef::Alias(name)));
        }
        let row = AliasRow {
            key_id: key.record.id,
            ..current
        };
        self.cache.remove_alias(&name);
        self.cache.put_alias(row.clone());
        Ok(row)
    }

    pub fn list_aliases(
        &self,
        key: Option<&KeyRef>,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<AliasRow>, KmsError> {
        let limit = keys::page_size(page_size)? as usize;
        let key_id = key
            .map(|k| self.cache.resolve(k))
            .transpose()?
            .map(|k| k.record.id);
        let after = page_token::decode(page_token, ALIAS_TOKEN_PREFIX)?
            .map(|s| AliasName::parse(&s))
            .transpose()?;
        let mut found = self.cache.aliases_after(after.as_ref(), key_id, limit + 1);
        let next_token = if found.len() > limit {
            found.truncate(limit);
            found
                .last()
                .map(|a| page_token::encode(ALIAS_TOKEN_PREFIX, a.name.as_str()))
        } else {
            None
        };
        Ok(Page {
            items: found,
            next_token,
        })
    }

    /// Enable, disable, schedule or cancel deletion: a change of state and nothing else.
    /// `arg_days` is the deletion window for `ScheduleKeyDeletion`.
    pub async fn change_state(
        &self,
        key: &Authorized,
        operation: Operation,
        arg_days: u32,
        gate: &dyn Gate,
    ) -> Result<KeyView, KmsError> {
        let _guard = self.lock_for_change().await?;
        let cached = self.cache.resolve(key.key())?;
        let mut record = cached
            .record
            .transition(operation, self.clock.now(), arg_days)?;
        // A key whose imported material is gone (deleted, expired, or never imported) returns from a cancelled
        // deletion waiting for its material, not disabled.
        if operation == Operation::CancelKeyDeletion
            && cached.material(record.primary_version).is_none()
        {
            record.state = State::PendingImport;
        }
        gate.approve(Change::key(operation.rpc(), record.id, None))
            .await?;
        self.storage.update_key(record.clone()).await?;
        self.cache.put(CachedKey {
            record,
            versions: cached.versions.clone(),
            aliases: cached.aliases.clone(),
            policy: cached.policy.clone(),
        });
        self.describe_id(cached.record.id)
    }

    /// Changes a key's description, tags or rotation schedule.
    pub async fn update(
        &self,
        key: &Authorized,
        update: &KeyUpdate,
        gate: &dyn Gate,
    ) -> Result<KeyView, KmsError> {
        let _guard = self.lock_for_change().await?;
        let cached = self.cache.resolve(key.key())?;
        let record = cached.record.updated(update, self.clock.now())?;
        if record.tags.len() > keys::limits::MAX_TAGS {
            return Err(keys::too_many_tags(record.tags.len()).into());
        }
        let days = record.rotation_period_days.map(|d| d.to_string());
        let parameters: Vec<(&str, &str)> = days
            .as_deref()
            .map(|d| ("rotation_period_days", d))
            .into_iter()
            .collect();
        gate.approve(Change::key(update.operation().rpc(), record.id, None).with(&parameters))
            .await?;
        self.storage.update_key(record.clone()).await?;
        self.cache.put(CachedKey {
            record,
            versions: cached.versions.clone(),
            aliases: cached.aliases.clone(),
            policy: cached.policy.clone(),
        });
        self.describe_id(cached.record.id)
    }

    pub async fn rotate(&self, key: &Authorized, gate: &dyn Gate) -> Result<KeyView, KmsError> {
        let _guard = self.lock_for_change().await?;
        let cached = self.cache.resolve(key.key())?;
        self.rotate_locked(&cached, gate, Rpc::RotateKey.into())
            .await?;
        self.describe_id(cached.record.id)
    }

    async fn rotate_locked(
        &self,
        cached: &CachedKey,
        gate: &dyn Gate,
        event: Event,
    ) -> Result<(), KmsError> {
        let now = self.clock.now();
        let record = cached.record.transition(Operation::RotateKey, now, 0)?;
        let version = record.primary_version;
        gate.approve(Change::key(event, record.id, Some(version)))
            .await?;
        let spec = record.kind.spec;
        let material = generate_material(spec)?;
        let row = VersionRow {
            version,
            created_at: now,
            wrapped_material: Some(self.root.wrap(record.id, version, spec, &material)),
        };
        let opened = open_version(record.id, version, spec, &material)?;
        self.storage.add_version(record.clone(), row).await?;
        self.cache.put(cached.with_version(
            record,
            version,
            CachedVersion {
                created_at: now,
                material: Some(Arc::new(opened)),
            },
        ));
        Ok(())
    }

    pub fn list_versions(&self, key: &Authorized) -> Result<Vec<VersionView>, KmsError> {
        let cached = self.cache.resolve(key.key())?;
        Ok(cached
            .versions
            .iter()
            .map(|(v, cv)| VersionView {
                version: *v,
                created_at: cv.created_at,
                primary: *v == cached.record.primary_version,
                destroyed: cv.material.is_none(),
            })
            .collect())
    }

    /// Rotates the key if its rotation is still due once the write lock is held.
    pub(super) async fn rotate_if_due(&self, id: KeyId, gate: &dyn Gate) -> Result<bool, KmsError> {
        let _guard = self.lock_for_change().await?;
        match self.cache.get(id) {
            Some(cached) if cached.record.rotation_due(self.clock.now()) => {
                self.rotate_locked(&cached, gate, DaemonEvent::AutomaticRotation.into())
                    .await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Destroys the key's material if its deletion window has ended once the write lock is held.
    pub(super) async fn destroy_if_due(
        &self,
        id: KeyId,
        gate: &dyn Gate,
    ) -> Result<bool, KmsError> {
        let _guard = self.lock_for_change().await?;
        let Some(cached) = self.cache.get(id) else {
            return Ok(false);
        };
        let Some(record) = cached.record.destroyed_if_due(self.clock.now()) else {
            return Ok(false);
        };
        gate.approve(Change::key(DaemonEvent::KeyDestroyed, id, None))
            .await?;
        self.storage.destroy_key(record.clone()).await?;
        for alias in &cached.aliases {
            self.cache.remove_alias(alias);
        }
        // Dropping the last `Arc` of each version's material zeroizes it. Calls already holding the old entry
        // finish with it; none can start.
        self.cache.put(CachedKey {
            record,
            versions: cached
                .versions
                .iter()
                .map(|(v, cv)| {
                    (
                        *v,
                        CachedVersion {
                            created_at: cv.created_at,
                            material: None,
                        },
                    )
                })
                .collect(),
            aliases: Default::default(),
            policy: cached.policy.clone(),
        });
        Ok(true)
    }
}
