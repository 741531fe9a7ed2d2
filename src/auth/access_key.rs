//! Access keys: the credentials AWS clients sign requests with (Signature Version 4) on the AWS-compatible endpoint.
//!
//! An access key is an id (20 characters, `KMSD` and 16 of base32's `A-Z2-7`, public: it names the key in listings
//! and audit records) and a secret (40 characters of base64, 240 random bits). A signature can only be checked with
//! the secret itself, so, unlike a bearer token's, it cannot be kept as a hash: it is drawn as 32 bytes of key
//! material, of which the secret is the base64 of the first 30, and stored wrapped under the root key, bound to the
//! access key's id. It is shown once, to the administrator who created it.
//!
//! Invariants: the secret is never stored in clear, logged or recorded; in memory it lives only in zeroizing types;
//! a wrapped secret opens only under its own id.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::crypto::{KeyMaterial, RootKey, UnwrapError};

/// What an access key id starts with, so a kmsd key is told from an AWS one at a glance.
pub const ID_PREFIX: &str = "KMSD";
pub const ID_LEN: usize = 20;
/// AWS's secret access keys are 40 characters.
pub const SECRET_LEN: usize = 40;
const SECRET_BYTES: usize = 30;
const WRAP_LABEL: &[u8] = b"kmsd access key secret v1\0";
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A freshly issued access key: its id, its secret (for the caller, once) and the secret wrapped for storage.
pub struct Issued {
    pub id: String,
    pub secret: Secret,
    pub wrapped: Vec<u8>,
}

/// An access key's secret, the 40 characters a client signs with. Zeroized on drop, no `Debug`.
pub struct Secret(Zeroizing<String>);

impl Secret {
    fn of(material: &KeyMaterial) -> Secret {
        Secret(Zeroizing::new(
            STANDARD.encode(&material.expose_secret()[..SECRET_BYTES]),
        ))
    }

    /// The secret, to sign with or to show the administrator who created it; nothing may log or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Draws a new access key and wraps its secret under `root`.
pub fn issue(root: &RootKey) -> Result<Issued, getrandom::Error> {
    let mut id_bytes = [0u8; 16];
    getrandom::fill(&mut id_bytes)?;
    let mut id = String::with_capacity(ID_LEN);
    id.push_str(ID_PREFIX);
    // 16 characters, each of one random byte's low five bits: uniform over the alphabet.
    id.extend(id_bytes.iter().map(|b| BASE32[usize::from(b & 31)] as char));
    let material = KeyMaterial::generate()?;
    let wrapped = root.wrap_secret(&label(&id), &material);
    Ok(Issued {
        secret: Secret::of(&material),
        id,
        wrapped,
    })
}

/// Opens a stored access key's secret.
pub fn unwrap(root: &RootKey, id: &str, wrapped: &[u8]) -> Result<Secret, UnwrapError> {
    Ok(Secret::of(&root.unwrap_secret(&label(id), wrapped)?))
}

/// What a secret is bound to when wrapped: the label and the access key's id.
pub fn label(id: &str) -> Vec<u8> {
    let mut label = WRAP_LABEL.to_vec();
    label.extend_from_slice(id.as_bytes());
    label
}

/// Whether `s` has an access key id's shape (checked before any lookup).
pub fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.starts_with(ID_PREFIX) && s.bytes().all(|b| BASE32.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_have_aws_shapes_and_open_only_under_their_own_id() {
        let root = RootKey::new(KeyMaterial::generate().unwrap());
        let a = issue(&root).unwrap();
        let b = issue(&root).unwrap();
        assert_ne!(a.id, b.id);
        assert!(is_id(&a.id), "{}", a.id);
        assert_eq!(a.secret.expose().len(), SECRET_LEN);
        assert_ne!(a.secret.expose(), b.secret.expose());
        assert_eq!(
            unwrap(&root, &a.id, &a.wrapped).unwrap().expose(),
            a.secret.expose()
        );
        // Moved to another id's row, or opened with another root key, it does not open.
        assert!(unwrap(&root, &b.id, &a.wrapped).is_err());
        let other = RootKey::new(KeyMaterial::generate().unwrap());
        assert!(unwrap(&other, &a.id, &a.wrapped).is_err());
        // The wrapped form does not contain the secret.
        let wrapped = String::from_utf8_lossy(&a.wrapped);
        assert!(!wrapped.contains(a.secret.expose()));
    }

    #[test]
    fn ids_are_checked_for_shape() {
        assert!(is_id("KMSDABCDEFGHIJ234567"));
        assert!(!is_id("AKIAABCDEFGHIJ234567"));
        assert!(!is_id("KMSDabcdefghij234567"));
        assert!(!is_id("KMSDABCDEFGHIJ23456"));
        assert!(!is_id("KMSDABCDEFGHIJ234561"));
    }
}
