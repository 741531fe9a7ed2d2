//! Signed checkpoints of the chain head.
//!
//! Canonical encoding (what is signed): the compact sorted JSON object
//! `{"head_hash":…,"head_seq":…,"log_id":…,"time":…,"version":1}`. The signature is Ed25519, hex; the signing key's
//! 32-byte seed is `HKDF-SHA256(ikm = root key, salt = none, info = "kmsd audit checkpoint signing v1")`, so anyone
//! holding the root key can re-derive the public key, and anyone given the public key can verify.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::json;

use super::record::canonical;
use crate::crypto::RootKey;

pub const SIGNING_KEY_INFO: &[u8] = b"kmsd audit checkpoint signing v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub head_seq: u64,
    pub head_hash: String,
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    pub log_id: String,
    /// Hex Ed25519 signature over [`Checkpoint::canonical_json`].
    pub signature: String,
}

impl Checkpoint {
    pub fn canonical_json(head_seq: u64, head_hash: &str, time: &str, log_id: &str) -> String {
        canonical(&json!({
            "version": 1,
            "head_seq": head_seq,
            "head_hash": head_hash,
            "time": time,
            "log_id": log_id,
        }))
    }

    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = hex::decode(&self.signature) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&bytes) else {
            return false;
        };
        let message =
            Self::canonical_json(self.head_seq, &self.head_hash, &self.time, &self.log_id);
        key.verify(message.as_bytes(), &signature).is_ok()
    }
}

/// The key checkpoints are signed with. Deliberately no `Debug`.
pub struct CheckpointSigner(SigningKey);

impl CheckpointSigner {
    pub fn from_root(root: &RootKey) -> Self {
        let seed = root.derive(SIGNING_KEY_INFO);
        CheckpointSigner(SigningKey::from_bytes(seed.expose_secret()))
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    pub fn sign(&self, head_seq: u64, head_hash: &str, time: &str, log_id: &str) -> Checkpoint {
        let message = Checkpoint::canonical_json(head_seq, head_hash, time, log_id);
        Checkpoint {
            head_seq,
            head_hash: head_hash.to_owned(),
            time: time.to_owned(),
            log_id: log_id.to_owned(),
            signature: hex::encode(self.0.sign(message.as_bytes()).to_bytes()),
        }
    }
}

/// Parses a hex Ed25519 public key.
pub fn parse_public_key(hex_key: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyMaterial;

    #[test]
    fn signatures_verify_only_under_their_key_and_contents() {
        let signer = CheckpointSigner::from_root(&RootKey::new(KeyMaterial::generate().unwrap()));
        let cp = signer.sign(5, "ab", "2026-11-28T21:02:09.813Z", "log-1");
        assert!(cp.verify(&signer.public_key()));
        let other = CheckpointSigner::from_root(&RootKey::new(KeyMaterial::generate().unwrap()));
        assert!(!cp.verify(&other.public_key()));
        let moved = Checkpoint {
            head_seq: 6,
            ..cp.clone()
        };
        assert!(!moved.verify(&signer.public_key()));
        assert_eq!(
            parse_public_key(&hex::encode(signer.public_key().as_bytes())),
            Some(signer.public_key())
        );
    }
}
