//! Cryptographic calls: data keys, Encrypt, Decrypt (symmetric blobs, and RSA-OAEP with RSA keys), ReEncrypt and
//! random bytes. No locks, no storage.

use super::cache::CachedKey;
use super::signing::{Primary, pair};
use super::{Kms, KmsError};
use crate::auth::policy::{Authorized, KeyAccess};
use crate::crypto::KeyPair;
use crate::crypto::{self, InvalidCiphertext, Plaintext, blob, rng};
use crate::keys::{
    DataKeySize, EncryptionAlgorithm, EncryptionContext, KeyId, KeyRef, KeySpec, Operation,
    invalid, names_of,
};

pub struct NewDataKey {
    pub key_id: KeyId,
    pub key_version: u32,
    pub plaintext: Plaintext,
    pub ciphertext_blob: Vec<u8>,
}

pub struct Opened {
    pub key_id: KeyId,
    pub key_version: u32,
    pub plaintext: Plaintext,
}

pub struct ReEncrypted {
    pub source_key_id: KeyId,
    pub source_key_version: u32,
    pub key_id: KeyId,
    pub key_version: u32,
    pub ciphertext_blob: Vec<u8>,
}

/// A data key pair: the private key (PKCS#8 DER) in clear and sealed under the symmetric key, and the public key
/// (DER SubjectPublicKeyInfo).
pub struct NewDataKeyPair {
    pub key_id: KeyId,
    pub key_version: u32,
    pub private_key: Plaintext,
    pub private_key_ciphertext_blob: Vec<u8>,
    pub public_key: Vec<u8>,
}

/// The result of a seal: which key and version, and the blob.
pub struct Sealed {
    pub key_id: KeyId,
    pub key_version: u32,
    pub ciphertext_blob: Vec<u8>,
}

impl Kms {
    /// A fresh data key of `spec`'s length and its blob under the key's primary version.
    pub fn generate_data_key(
        &self,
        key: &Authorized,
        spec: DataKeySize,
        context: &EncryptionContext,
        operation: Operation,
    ) -> Result<NewDataKey, KmsError> {
        let mut bytes = vec![0u8; spec.byte_len()];
        rng::fill(&mut bytes);
        let plaintext = Plaintext::new(bytes);
        let sealed = self.seal_with_primary(key.key(), context, plaintext.expose(), operation)?;
        Ok(NewDataKey {
            key_id: sealed.key_id,
            key_version: sealed.key_version,
            plaintext,
            ciphertext_blob: sealed.ciphertext_blob,
        })
    }

    /// A fresh key pair of `spec` (made off the async workers), its private key sealed under the key's primary
    /// version as a blob any Decrypt with the same context opens.
    pub async fn generate_data_key_pair(
        &self,
        key: &Authorized,
        spec: KeySpec,
        context: &EncryptionContext,
        operation: Operation,
    ) -> Result<NewDataKeyPair, KmsError> {
        // The key's kind and state first: a refused call costs no key generation.
        self.cache.resolve(key.key())?.record.check(operation)?;
        let material = super::generate_material_off_thread(spec).await?;
        let public_key = KeyPair::open(spec, material.expose_secret())
            .map_err(|e| KmsError::Internal(e.to_string()))?
            .public_key_der()
            .to_vec();
        let sealed =
            self.seal_with_primary(key.key(), context, material.expose_secret(), operation)?;
        Ok(NewDataKeyPair {
            key_id: sealed.key_id,
            key_version: sealed.key_version,
            private_key: Plaintext::new(material.expose_secret().to_vec()),
            private_key_ciphertext_blob: sealed.ciphertext_blob,
            public_key,
        })
    }

    /// A symmetric key seals `plaintext` (1-4096 bytes) into a blob; an RSA key encrypts it (up to its own limit)
    /// with RSA-OAEP, whose ciphertext is the raw RSA output, as AWS's.
    pub fn encrypt(
        &self,
        key: &Authorized,
        algorithm: EncryptionAlgorithm,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<Sealed, KmsError> {
        if algorithm == EncryptionAlgorithm::SymmetricDefault {
            crate::keys::check_encrypt_plaintext(plaintext)?;
            return self.seal_with_primary(key.key(), context, plaintext, Operation::Encrypt);
        }
        let primary = self.primary(key, Operation::Encrypt)?;
        let pair = encrypting_pair(&primary, algorithm, context)?;
        let limit = pair.max_plaintext(algorithm).unwrap_or(0);
        if plaintext.is_empty() || plaintext.len() > limit {
            return Err(invalid(format!(
                "plaintext is {} bytes; {algorithm} with a {} key takes 1-{limit}",
                plaintext.len(),
                primary.kind.spec
            ))
            .into());
        }
        let ciphertext = pair
            .encrypt(algorithm, plaintext)
            .map_err(|e| KmsError::Internal(format!("key {}: {e}", primary.id)))?;
        Ok(Sealed {
            key_id: primary.id,
            key_version: primary.version,
            ciphertext_blob: ciphertext,
        })
    }

    /// Opens a blob, which must be under the key `access` names (any key, for an administrator who named none).
    pub fn decrypt(
        &self,
        blob_bytes: &[u8],
        access: &KeyAccess,
        context: &EncryptionContext,
    ) -> Result<Opened, KmsError> {
        let expected = self.blob_key(access.key(), Operation::Decrypt)?;
        self.open_blob(blob_bytes, expected, context, Operation::Decrypt)
    }

    /// RSA-OAEP decryption with an RSA key's private key; the caller must name the key and the algorithm.
    pub fn decrypt_with_pair(
        &self,
        key: &Authorized,
        algorithm: EncryptionAlgorithm,
        context: &EncryptionContext,
        ciphertext: &[u8],
    ) -> Result<Opened, KmsError> {
        let primary = self.primary(key, Operation::Decrypt)?;
        let plaintext =
            encrypting_pair(&primary, algorithm, context)?.decrypt(algorithm, ciphertext)?;
        Ok(Opened {
            key_id: primary.id,
            key_version: primary.version,
            plaintext,
        })
    }

    /// Opens the blob and seals its plaintext under `destination` (for an administrator who named none, the source
    /// key's primary version), all in memory; the plaintext is zeroized when this returns.
    pub fn re_encrypt(
        &self,
        blob_bytes: &[u8],
        source: &KeyAccess,
        source_context: &EncryptionContext,
        destination: &KeyAccess,
        destination_context: &EncryptionContext,
    ) -> Result<ReEncrypted, KmsError> {
        let expected = self.blob_key(source.key(), Operation::ReEncrypt)?;
        let opened = self.open_blob(blob_bytes, expected, source_context, Operation::ReEncrypt)?;
        let destination = destination
            .key()
            .cloned()
            .unwrap_or(KeyRef::Id(opened.key_id));
        let sealed = self.seal_with_primary(
            &destination,
            destination_context,
            opened.plaintext.expose(),
            Operation::ReEncrypt,
        )?;
        Ok(ReEncrypted {
            source_key_id: opened.key_id,
            source_key_version: opened.key_version,
            key_id: sealed.key_id,
            key_version: sealed.key_version,
            ciphertext_blob: sealed.ciphertext_blob,
        })
    }

    pub fn generate_random(&self, len: usize) -> Plaintext {
        let mut bytes = vec![0u8; len];
        rng::fill(&mut bytes);
        Plaintext::new(bytes)
    }

    fn seal_with_primary(
        &self,
        key: &KeyRef,
        context: &EncryptionContext,
        plaintext: &[u8],
        operation: Operation,
    ) -> Result<Sealed, KmsError> {
        let cached = self.cache.resolve(key)?;
        cached.record.check(operation)?;
        let version = cached.record.primary_version;
        let Some(material) = primary_version(&cached)?.symmetric() else {
            return Err(KmsError::Algorithm(format!(
                "key {} ({}) encrypts with {}, not SYMMETRIC_DEFAULT",
                cached.record.id,
                cached.record.kind.spec,
                crate::keys::names_of(cached.record.kind.encryption_algorithms())
            )));
        };
        Ok(Sealed {
            key_id: cached.record.id,
            key_version: version,
            ciphertext_blob: crypto::seal(material, cached.record.id, version, context, plaintext),
        })
    }

    /// The key a caller named for a blob, resolved once (an alias to its key's id), and refused if its kind does not
    /// open blobs: blobs are symmetric keys' only, so a key of another kind is told why, not that the blob is bad.
    fn blob_key<'a>(
        &self,
        named: Option<&'a KeyRef>,
        operation: Operation,
    ) -> Result<Option<(&'a KeyRef, KeyId)>, KmsError> {
        let Some(named) = named else {
            return Ok(None);
        };
        let cached = self.cache.resolve(named)?;
        let record = &cached.record;
        if !record.kind.spec.is_symmetric() {
            if !operation.fits(record.kind, record.origin) {
                record.check(operation)?;
            }
            return Err(KmsError::Algorithm(format!(
                "key {} ({}) decrypts with encryption_algorithm {}",
                record.id,
                record.kind.spec,
                names_of(record.kind.encryption_algorithms())
            )));
        }
        Ok(Some((named, record.id)))
    }

    /// Opens a blob; `expected` (what the caller named, and its key id) must be the blob's key.
    fn open_blob(
        &self,
        blob_bytes: &[u8],
        expected: Option<(&KeyRef, KeyId)>,
        context: &EncryptionContext,
        operation: Operation,
    ) -> Result<Opened, KmsError> {
        let parsed = blob::parse(blob_bytes)?;
        let key_id = parsed.header.key_id;
        if let Some((named, expected_id)) = expected
            && expected_id != key_id
        {
            return Err(KmsError::IncorrectKey {
                requested: named.clone(),
                actual: key_id,
            });
        }
        // A blob naming a key or version that never existed is a bad blob, not a missing key: the header is not
        // authenticated until the tag verifies, so it says nothing the caller can rely on.
        let cached = self.cache.get(key_id).ok_or(InvalidCiphertext)?;
        cached.record.check(operation)?;
        // Blobs are sealed under symmetric versions only: one naming a key of another kind is not one of ours.
        let material = cached
            .material(parsed.header.key_version)
            .and_then(|m| m.symmetric())
            .ok_or(InvalidCiphertext)?;
        let plaintext = crypto::open(material, &parsed, context)?;
        Ok(Opened {
            key_id,
            key_version: parsed.header.key_version,
            plaintext,
        })
    }
}

/// The key pair of a key that encrypts with `algorithm`, which takes no encryption context.
fn encrypting_pair<'a>(
    primary: &'a Primary,
    algorithm: EncryptionAlgorithm,
    context: &EncryptionContext,
) -> Result<&'a KeyPair, KmsError> {
    let allowed = primary.kind.encryption_algorithms();
    if !allowed.contains(&algorithm) {
        return Err(KmsError::Algorithm(format!(
            "key {} ({}) encrypts with {}, not {algorithm}",
            primary.id,
            primary.kind.spec,
            names_of(allowed)
        )));
    }
    if !context.is_empty() {
        return Err(invalid(
            "an encryption context applies to SYMMETRIC_DEFAULT keys only; RSA encryption takes none",
        )
        .into());
    }
    pair(primary.id, &primary.key)
}

/// The opened primary version of an enabled key.
fn primary_version(cached: &CachedKey) -> Result<&crate::crypto::VersionKey, KmsError> {
    cached
        .material(cached.record.primary_version)
        .map(|m| &**m)
        .ok_or_else(|| {
            KmsError::Internal(format!(
                "key {} is enabled but its primary version has no material",
                cached.record.id
            ))
        })
}
