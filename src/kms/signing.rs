//! Calls on key pairs and HMAC keys: Sign, Verify, GetPublicKey, GenerateMac and VerifyMac (RSA encryption is in
//! `crypto_ops`, beside symmetric encryption). No locks, no storage.
//!
//! Each checks the key's kind and state (`KmsKey::check`), then that the algorithm the caller named is one the key
//! allows (AWS's `InvalidKeyUsageException` otherwise), then uses the primary version: key pairs and HMAC keys have
//! exactly one, as they are never rotated.

use std::sync::Arc;

use super::{Kms, KmsError};
use crate::auth::policy::Authorized;
use crate::crypto::{HmacKey, KeyPair, VersionKey};
use crate::keys::{
    KeyId, KeyKind, MacAlgorithm, MessageType, Operation, SigningAlgorithm, check_message,
    check_signing_message, names_of,
};

/// A key's public half, as GetPublicKey returns it.
pub struct PublicKey {
    pub key_id: KeyId,
    pub kind: KeyKind,
    /// DER SubjectPublicKeyInfo.
    pub der: Vec<u8>,
}

impl Kms {
    pub fn sign(
        &self,
        key: &Authorized,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
    ) -> Result<(KeyId, Vec<u8>), KmsError> {
        let (id, version) = self.signing_key(key, Operation::Sign, algorithm)?;
        check_signing_message(algorithm, message_type, message)?;
        let signature = pair(id, &version)?
            .sign(algorithm, message_type, message)
            .map_err(|e| KmsError::Internal(format!("key {id}: {e}")))?;
        Ok((id, signature))
    }

    /// The key's id if `signature` is valid; `KmsError::InvalidSignature` if it is not.
    pub fn verify(
        &self,
        key: &Authorized,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
        signature: &[u8],
    ) -> Result<KeyId, KmsError> {
        let (id, version) = self.signing_key(key, Operation::Verify, algorithm)?;
        check_signing_message(algorithm, message_type, message)?;
        if pair(id, &version)?.verify(algorithm, message_type, message, signature) {
            Ok(id)
        } else {
            Err(KmsError::InvalidSignature { mac: false })
        }
    }

    pub fn public_key(&self, key: &Authorized) -> Result<PublicKey, KmsError> {
        let primary = self.primary(key, Operation::GetPublicKey)?;
        Ok(PublicKey {
            key_id: primary.id,
            kind: primary.kind,
            der: pair(primary.id, &primary.key)?.public_key_der().to_vec(),
        })
    }

    pub fn generate_mac(
        &self,
        key: &Authorized,
        algorithm: MacAlgorithm,
        message: &[u8],
    ) -> Result<(KeyId, Vec<u8>), KmsError> {
        let (id, version) = self.mac_key(key, Operation::GenerateMac, algorithm)?;
        check_message(message)?;
        Ok((id, hmac(id, &version)?.mac(message)))
    }

    /// The key's id if `mac` is valid (compared in constant time); `KmsError::InvalidSignature` if it is not.
    pub fn verify_mac(
        &self,
        key: &Authorized,
        algorithm: MacAlgorithm,
        message: &[u8],
        mac: &[u8],
    ) -> Result<KeyId, KmsError> {
        let (id, version) = self.mac_key(key, Operation::VerifyMac, algorithm)?;
        check_message(message)?;
        if hmac(id, &version)?.verify(message, mac) {
            Ok(id)
        } else {
            Err(KmsError::InvalidSignature { mac: true })
        }
    }

    /// The primary version of a key whose kind and state allow `operation`.
    pub(super) fn primary(
        &self,
        key: &Authorized,
        operation: Operation,
    ) -> Result<Primary, KmsError> {
        let cached = self.cache.resolve(key.key())?;
        cached.record.check(operation)?;
        let version = cached.record.primary_version;
        let material = cached.material(version).cloned().ok_or_else(|| {
            KmsError::Internal(format!(
                "key {} is enabled but its primary version has no material",
                cached.record.id
            ))
        })?;
        Ok(Primary {
            id: cached.record.id,
            kind: cached.record.kind,
            version,
            key: material,
        })
    }

    fn signing_key(
        &self,
        key: &Authorized,
        operation: Operation,
        algorithm: SigningAlgorithm,
    ) -> Result<(KeyId, Arc<VersionKey>), KmsError> {
        let Primary { id, kind, key, .. } = self.primary(key, operation)?;
        let allowed = kind.signing_algorithms();
        if !allowed.contains(&algorithm) {
            return Err(KmsError::Algorithm(format!(
                "key {id} ({}) signs with {}, not {algorithm}",
                kind.spec,
                names_of(allowed)
            )));
        }
        Ok((id, key))
    }

    fn mac_key(
        &self,
        key: &Authorized,
        operation: Operation,
        algorithm: MacAlgorithm,
    ) -> Result<(KeyId, Arc<VersionKey>), KmsError> {
        let Primary { id, kind, key, .. } = self.primary(key, operation)?;
        let allowed = kind.mac_algorithms();
        if !allowed.contains(&algorithm) {
            return Err(KmsError::Algorithm(format!(
                "key {id} ({}) MACs with {}, not {algorithm}",
                kind.spec,
                names_of(allowed)
            )));
        }
        Ok((id, key))
    }
}

/// A key's primary version, opened.
pub(super) struct Primary {
    pub id: KeyId,
    pub kind: KeyKind,
    pub version: u32,
    pub key: Arc<VersionKey>,
}

/// A version whose material is not of its key's kind: the kind is checked first, so this is damage.
fn mismatched(id: KeyId) -> KmsError {
    KmsError::Internal(format!("key {id}: its material is not of its key spec"))
}

pub(super) fn pair(id: KeyId, version: &VersionKey) -> Result<&KeyPair, KmsError> {
    version.pair().ok_or_else(|| mismatched(id))
}

fn hmac(id: KeyId, version: &VersionKey) -> Result<&HmacKey, KmsError> {
    version.hmac().ok_or_else(|| mismatched(id))
}
