//! Cryptography: the root key that wraps every key version, the per-blob cipher, the blob format, and the key
//! versions of every spec (`version_key`: symmetric, HMAC, and the key pairs of `signing`).
//!
//! Each blob is sealed with AES-256-GCM under a key derived for that blob alone, as AWS KMS does:
//! `HKDF-SHA256(ikm = version key, salt = 16 random bytes, info = "kmsd blob v1")`. A version key therefore never
//! encrypts more than once itself and never approaches AES-GCM's random-nonce limit, however much it is used.
//!
//! Invariants: no I/O; key material lives only in [`KeyMaterial`], [`Material`], [`Plaintext`] and the key types of
//! [`VersionKey`], which zeroize (or, inside AWS-LC, cleanse) on drop and have no `Debug`; a failed open says only
//! [`InvalidCiphertext`], never which check failed.

pub mod blob;
pub mod import;
pub mod rng;
mod secret;
pub mod signing;
mod version_key;

pub use secret::{KeyMaterial, Plaintext};
pub use signing::{InvalidMaterial, KeyPair};
pub use version_key::{GenerateError, HmacKey, Material, VersionKey};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::keys::{EncryptionContext, KeyId, KeySpec};
use blob::{BlobHeader, NONCE_LEN, ParsedBlob};

/// A blob that is malformed, was tampered with, or was sealed under another context or key.
/// Deliberately carries no detail, so a caller cannot probe which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the ciphertext is invalid, was tampered with, or was made with a different encryption context"
)]
pub struct InvalidCiphertext;

const BLOB_KDF_INFO: &[u8] = b"kmsd blob v1";
const WRAP_AAD_LABEL: &[u8] = b"kmsd key-version wrap v1";
const ROOT_CHECK_AAD: &[u8] = b"kmsd root-key check v1";
const ROOT_CHECK_PLAINTEXT: &[u8] = b"kmsd root key check value";

fn cipher(key: &[u8; KeyMaterial::LEN]) -> Aes256Gcm {
    Aes256Gcm::new(key.into())
}

fn blob_cipher(version_key: &KeyMaterial, salt: &[u8]) -> Aes256Gcm {
    let mut derived = Zeroizing::new([0u8; KeyMaterial::LEN]);
    Hkdf::<Sha256>::new(Some(salt), version_key.expose())
        .expand(BLOB_KDF_INFO, derived.as_mut())
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32.
        .expect("HKDF output length is valid");
    cipher(&derived)
}

fn aad(header: &[u8], context: &EncryptionContext) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(&context.canonical_bytes());
    aad
}

/// Seals `plaintext` under `version_key` (version `key_version` of key `key_id`) into a blob.
pub fn seal(
    version_key: &KeyMaterial,
    key_id: KeyId,
    key_version: u32,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> Vec<u8> {
    let header = BlobHeader {
        key_id,
        key_version,
        salt: rng::array(),
        nonce: rng::array(),
    };
    let header_bytes = header.encode();
    let sealed = blob_cipher(version_key, &header.salt)
        .encrypt(
            &Nonce::<Aes256Gcm>::from(header.nonce),
            Payload {
                msg: plaintext,
                aad: &aad(&header_bytes, context),
            },
        )
        // AES-GCM encryption fails only for inputs beyond 64 GiB; plaintexts here are at most a few KiB.
        .expect("AES-GCM seal of a bounded plaintext");
    let mut out = Vec::with_capacity(header_bytes.len() + sealed.len());
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(&sealed);
    out
}

/// Opens a parsed blob with the key of the version its header names.
pub fn open(
    version_key: &KeyMaterial,
    blob: &ParsedBlob<'_>,
    context: &EncryptionContext,
) -> Result<Plaintext, InvalidCiphertext> {
    blob_cipher(version_key, &blob.header.salt)
        .decrypt(
            &Nonce::<Aes256Gcm>::from(blob.header.nonce),
            Payload {
                msg: blob.sealed,
                aad: &aad(blob.header_bytes, context),
            },
        )
        .map(Plaintext::new)
        .map_err(|_| InvalidCiphertext)
}

/// The key that wraps every key version's material at rest. It never touches the database.
pub struct RootKey(KeyMaterial);

/// Wrapped material failed to open: the database was made with another root key, or was altered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("wrapped key material does not open with this root key")]
pub struct UnwrapError;

impl RootKey {
    pub fn new(material: KeyMaterial) -> Self {
        RootKey(material)
    }

    /// Wraps a key version's material, binding the key id, version and spec so a wrapped value cannot be moved to
    /// another key or version, or read as another kind of key. Output: nonce (12) ‖ ciphertext ‖ tag (16).
    pub fn wrap(&self, key_id: KeyId, version: u32, spec: KeySpec, material: &Material) -> Vec<u8> {
        self.seal(&wrap_aad(key_id, version, spec), material.expose())
    }

    pub fn unwrap(
        &self,
        key_id: KeyId,
        version: u32,
        spec: KeySpec,
        wrapped: &[u8],
    ) -> Result<Material, UnwrapError> {
        let opened = Zeroizing::new(self.open(&wrap_aad(key_id, version, spec), wrapped)?);
        Ok(Material::from_bytes(opened))
    }

    /// Wraps a secret that is not a key version (the audit signing key), bound to `label`.
    pub fn wrap_secret(&self, label: &[u8], secret: &KeyMaterial) -> Vec<u8> {
        self.seal(label, secret.expose())
    }

    pub fn unwrap_secret(&self, label: &[u8], wrapped: &[u8]) -> Result<KeyMaterial, UnwrapError> {
        let opened = Zeroizing::new(self.open(label, wrapped)?);
        let mut bytes: [u8; KeyMaterial::LEN] =
            opened.as_slice().try_into().map_err(|_| UnwrapError)?;
        Ok(KeyMaterial::from_bytes(&mut bytes))
    }

    /// A value stored beside the keys so that start-up can tell a wrong root key before serving anything.
    pub fn check_value(&self) -> Vec<u8> {
        self.seal(ROOT_CHECK_AAD, ROOT_CHECK_PLAINTEXT)
    }

    pub fn verify_check_value(&self, value: &[u8]) -> bool {
        self.open(ROOT_CHECK_AAD, value)
            .is_ok_and(|p| p == ROOT_CHECK_PLAINTEXT)
    }

    fn seal(&self, aad: &[u8], msg: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rng::array();
        let sealed = cipher(self.0.expose())
            .encrypt(&Nonce::<Aes256Gcm>::from(nonce), Payload { msg, aad })
            // Inputs are a few dozen bytes; AES-GCM fails only beyond 64 GiB.
            .expect("AES-GCM seal of a bounded plaintext");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    fn open(&self, aad: &[u8], wrapped: &[u8]) -> Result<Vec<u8>, UnwrapError> {
        if wrapped.len() < NONCE_LEN {
            return Err(UnwrapError);
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        cipher(self.0.expose())
            .decrypt(
                &Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| UnwrapError)?,
                Payload { msg: sealed, aad },
            )
            .map_err(|_| UnwrapError)
    }
}

/// `label ‖ key id (16) ‖ version (u32 BE)`, then the spec's name for every spec but `SYMMETRIC_DEFAULT` (whose
/// versions were wrapped before there were other specs, and read as they always did).
fn wrap_aad(key_id: KeyId, version: u32, spec: KeySpec) -> Vec<u8> {
    let mut aad = WRAP_AAD_LABEL.to_vec();
    aad.extend_from_slice(key_id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    if !spec.is_symmetric() {
        aad.extend_from_slice(spec.as_str().as_bytes());
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ctx(k: &str, v: &str) -> EncryptionContext {
        EncryptionContext::try_from(HashMap::from([(k.to_string(), v.to_string())])).unwrap()
    }

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let key = KeyMaterial::generate().unwrap();
        let id = KeyId::new_random();
        let blob_bytes = seal(&key, id, 3, &ctx("a", "1"), b"hello");
        let blob = blob::parse(&blob_bytes).unwrap();
        assert_eq!(blob.header.key_id, id);
        assert_eq!(blob.header.key_version, 3);
        assert_eq!(
            open(&key, &blob, &ctx("a", "1")).unwrap().expose(),
            b"hello"
        );
        assert!(open(&key, &blob, &ctx("a", "2")).is_err());
        assert!(open(&key, &blob, &EncryptionContext::default()).is_err());
        let other = KeyMaterial::generate().unwrap();
        assert!(open(&other, &blob, &ctx("a", "1")).is_err());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let key = KeyMaterial::generate().unwrap();
        let blob_bytes = seal(
            &key,
            KeyId::new_random(),
            1,
            &EncryptionContext::default(),
            b"data key!",
        );
        for i in 0..blob_bytes.len() * 8 {
            let mut tampered = blob_bytes.clone();
            tampered[i / 8] ^= 1 << (i % 8);
            let opened =
                blob::parse(&tampered).and_then(|b| open(&key, &b, &EncryptionContext::default()));
            assert!(opened.is_err(), "bit {i} flipped went unnoticed");
        }
    }

    #[test]
    fn wrapping_binds_key_and_version() {
        let root = RootKey::new(KeyMaterial::generate().unwrap());
        let id = KeyId::new_random();
        let sym = KeySpec::SymmetricDefault;
        let material = Material::generate(sym).unwrap();
        let wrapped = root.wrap(id, 1, sym, &material);
        assert_eq!(
            root.unwrap(id, 1, sym, &wrapped).unwrap().expose(),
            material.expose()
        );
        assert!(root.unwrap(id, 2, sym, &wrapped).is_err());
        assert!(root.unwrap(KeyId::new_random(), 1, sym, &wrapped).is_err());
        let other_root = RootKey::new(KeyMaterial::generate().unwrap());
        assert!(other_root.unwrap(id, 1, sym, &wrapped).is_err());
        // 32 random bytes are a valid HMAC_256 key too: the spec is bound, so they cannot be read as one.
        assert!(root.unwrap(id, 1, KeySpec::Hmac256, &wrapped).is_err());
        let hmac = Material::generate(KeySpec::Hmac256).unwrap();
        let wrapped = root.wrap(id, 1, KeySpec::Hmac256, &hmac);
        assert!(root.unwrap(id, 1, KeySpec::Hmac256, &wrapped).is_ok());
        assert!(root.unwrap(id, 1, sym, &wrapped).is_err());
        assert!(root.verify_check_value(&root.check_value()));
        assert!(!other_root.verify_check_value(&root.check_value()));
    }
}
