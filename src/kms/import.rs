//! Imported key material (keys of origin EXTERNAL): GetParametersForImport, ImportKeyMaterial,
//! DeleteImportedKeyMaterial, and the expiry of imported material.
//!
//! A key takes only the material it was first given, as AWS KMS: the first import records a fingerprint
//! (`SHA-256("kmsd imported material v1\0" ‖ key id ‖ material)`, of the public key for key pairs), and any later
//! import (after a deletion or an expiry, or to change the expiry) must match it. Imported material is wrapped under
//! the root key like any version's, and erased (`secure_delete`) when it is deleted or expires.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::cache::{CachedKey, CachedVersion};
use super::{Kms, KmsError};
use crate::audit::{Change, Gate};
use crate::auth::policy::Authorized;
use crate::clock::UnixMillis;
use crate::crypto::import::{self, ImportParameters};
use crate::crypto::{Material, VersionKey};
use crate::keys::{KeyId, KeySpec, KmsKey, Operation, State, WrappingAlgorithm, invalid};
use crate::rpc::{DaemonEvent, Rpc};

/// How long GetParametersForImport's token and wrapping key are good for, as AWS's.
pub const PARAMETERS_VALID_MS: i64 = 24 * 3_600_000;
/// The furthest ahead imported material may be set to expire, as AWS's.
pub const MAX_VALID_TO_DAYS: u32 = 365;
const FINGERPRINT_LABEL: &[u8] = b"kmsd imported material v1\0";

/// GetParametersForImport's answer.
pub struct ImportParametersFor {
    pub key_id: KeyId,
    pub parameters: ImportParameters,
    pub valid_to: UnixMillis,
}

fn fingerprint(key_id: KeyId, material: &Material, opened: &VersionKey) -> String {
    let mut hash = Sha256::new();
    hash.update(FINGERPRINT_LABEL);
    hash.update(key_id.as_bytes());
    // A private key has many encodings (PKCS#8 v1 or v2, with or without its public key); its public key has one.
    match opened.pair() {
        Some(pair) => hash.update(pair.public_key_der()),
        None => hash.update(material.expose_secret()),
    }
    hex::encode(hash.finalize())
}

impl Kms {
    /// A wrapping key of `wrapping_spec` and a token for it, valid for 24 hours. Nothing is stored: the token
    /// carries the wrapping key, sealed under the root key.
    pub async fn import_parameters(
        &self,
        key: &Authorized,
        algorithm: WrappingAlgorithm,
        wrapping_spec: KeySpec,
    ) -> Result<ImportParametersFor, KmsError> {
        let cached = self.cache.resolve(key.key())?;
        cached.record.check(Operation::GetParametersForImport)?;
        let key_id = cached.record.id;
        let valid_to = UnixMillis(self.clock.now().0 + PARAMETERS_VALID_MS);
        let root = Arc::clone(&self.root);
        // A fresh RSA key pair each time: off the async workers, one per core at a time.
        let parameters = super::generating(move || {
            import::parameters(&root, key_id, algorithm, wrapping_spec, valid_to)
        })
        .await?
        .map_err(|e| KmsError::Internal(e.to_string()))?;
        Ok(ImportParametersFor {
            key_id,
            parameters,
            valid_to,
        })
    }

    /// Imports material wrapped for `token` into the key, which becomes ENABLED if it was PENDING_IMPORT.
    /// `valid_to`: when the material expires (`None`: never).
    pub async fn import_material(
        &self,
        key: &Authorized,
        token: &[u8],
        wrapped: &[u8],
        valid_to: Option<UnixMillis>,
        gate: &dyn Gate,
    ) -> Result<KeyId, KmsError> {
        let _guard = self.lock_for_change().await?;
        let cached = self.cache.resolve(key.key())?;
        let current = &cached.record;
        current.check(Operation::ImportKeyMaterial)?;
        let now = self.clock.now();
        if let Some(at) = valid_to
            && (at <= now || at > now.plus_days(MAX_VALID_TO_DAYS))
        {
            return Err(invalid(format!(
                "valid_to must be in the future and at most {MAX_VALID_TO_DAYS} days away"
            ))
            .into());
        }
        let id = current.id;
        let spec = current.kind.spec;
        let material = import::unwrap_material(&self.root, id, token, wrapped, now)?;
        let opened = VersionKey::open(spec, &material)
            .map_err(|e| KmsError::IncorrectKeyMaterial(e.to_string()))?;
        let fingerprint = fingerprint(id, &material, &opened);
        if current
            .import_fingerprint
            .as_ref()
            .is_some_and(|first| *first != fingerprint)
        {
            return Err(KmsError::IncorrectKeyMaterial(format!(
                "key {id} takes only the key material first imported into it"
            )));
        }
        let version = current.primary_version;
        let record = KmsKey {
            state: match current.state {
                State::PendingImport => State::Enabled,
                other => other,
            },
            valid_to,
            import_fingerprint: Some(fingerprint),
            ..current.clone()
        };
        let wrapped_at_rest = self.root.wrap(id, version, spec, &material);
        self.store_material(
            &cached,
            record,
            Some((wrapped_at_rest, opened)),
            Rpc::ImportKeyMaterial,
            gate,
        )
        .await?;
        Ok(id)
    }

    /// Deletes the key's imported material at once; the key waits for it again (PENDING_IMPORT).
    pub async fn delete_imported_material(
        &self,
        key: &Authorized,
        gate: &dyn Gate,
    ) -> Result<KeyId, KmsError> {
        let _guard = self.lock_for_change().await?;
        let cached = self.cache.resolve(key.key())?;
        cached.record.check(Operation::DeleteImportedKeyMaterial)?;
        let record = KmsKey {
            state: State::PendingImport,
            valid_to: None,
            ..cached.record.clone()
        };
        let id = record.id;
        self.store_material(&cached, record, None, Rpc::DeleteImportedKeyMaterial, gate)
            .await?;
        Ok(id)
    }

    /// Deletes imported material whose time has come (the maintenance pass), recorded as the daemon's
    /// `ImportedMaterialExpired`. A key pending deletion stays so; any other waits for its material again.
    pub(super) async fn expire_if_due(&self, id: KeyId, gate: &dyn Gate) -> Result<bool, KmsError> {
        let _guard = self.lock_for_change().await?;
        let Some(cached) = self.cache.get(id) else {
            return Ok(false);
        };
        let now = self.clock.now();
        if !cached.record.material_expired(now) {
            return Ok(false);
        }
        let version = cached.record.primary_version;
        if cached.material(version).is_none() {
            return Ok(false);
        }
        let record = KmsKey {
            state: match cached.record.state {
                State::PendingDeletion => State::PendingDeletion,
                _ => State::PendingImport,
            },
            ..cached.record.clone()
        };
        self.store_material(
            &cached,
            record,
            None,
            DaemonEvent::ImportedMaterialExpired,
            gate,
        )
        .await?;
        Ok(true)
    }

    /// Records `event` through `gate`, then stores `record` with its primary version's material set (imported: as
    /// wrapped at rest, and opened) or erased (`None`), then replaces the key's cache entry (dropping the last `Arc`
    /// of erased material zeroizes it).
    async fn store_material(
        &self,
        cached: &CachedKey,
        record: KmsKey,
        material: Option<(Vec<u8>, VersionKey)>,
        event: impl Into<crate::rpc::Event>,
        gate: &dyn Gate,
    ) -> Result<(), KmsError> {
        let version = record.primary_version;
        gate.approve(Change::key(event, record.id, Some(version)))
            .await?;
        let (wrapped, opened) = material.map(|(w, o)| (w, Arc::new(o))).unzip();
        self.storage
            .set_material(record.clone(), version, wrapped)
            .await?;
        let created_at = cached
            .versions
            .get(&version)
            .map_or(record.created_at, |v| v.created_at);
        self.cache.put(cached.with_version(
            record,
            version,
            CachedVersion {
                created_at,
                material: opened,
            },
        ));
        Ok(())
    }
}
