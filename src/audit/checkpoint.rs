//! Signed checkpoints of the chain head.
//!
//! Canonical encoding (what is signed): the compact sorted JSON object
//! `{"head_hash":…,"head_seq":…,"log_id":…,"time":…,"version":1}`. The signature is Ed25519, hex. The signing key is
//! the log's own: a random seed made with the database and stored in the `meta` table wrapped under the root key
//! (so it survives a root-key rotation, and old checkpoints keep verifying); its public key is logged at start-up
//! and returned by VerifyLog, and anyone holding the root key and the database can recover it.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::json;

use super::record::canonical;
use crate::crypto::{KeyMaterial, RootKey, UnwrapError};

/// Authenticated data binding the wrapped signing key to its purpose.
pub const SIGNING_KEY_LABEL: &[u8] = b"kmsd audit checkpoint signing key v1";

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
        let message =
            Self::canonical_json(self.head_seq, &self.head_hash, &self.time, &self.log_id);
        verify_hex(key, message.as_bytes(), &self.signature)
    }
}

/// A signed statement that the log was pruned through `through_seq`, whose record's hash was `through_hash`: the
/// remaining chain starts after it. Its canonical encoding names its kind, so neither it nor a checkpoint can be
/// passed off as the other: `{"kind":"prune","log_id":…,"through_hash":…,"through_seq":…,"time":…,"version":1}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneMark {
    pub through_seq: u64,
    pub through_hash: String,
    pub time: String,
    pub log_id: String,
    pub signature: String,
}

impl PruneMark {
    pub fn canonical_json(
        through_seq: u64,
        through_hash: &str,
        time: &str,
        log_id: &str,
    ) -> String {
        canonical(&json!({
            "kind": "prune",
            "version": 1,
            "through_seq": through_seq,
            "through_hash": through_hash,
            "time": time,
            "log_id": log_id,
        }))
    }

    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let message = Self::canonical_json(
            self.through_seq,
            &self.through_hash,
            &self.time,
            &self.log_id,
        );
        verify_hex(key, message.as_bytes(), &self.signature)
    }
}

fn verify_hex(key: &VerifyingKey, message: &[u8], signature: &str) -> bool {
    let Ok(bytes) = hex::decode(signature) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify(message, &signature).is_ok()
}

/// The key checkpoints are signed with. Deliberately no `Debug`.
pub struct CheckpointSigner(SigningKey);

impl CheckpointSigner {
    /// A new signing key from the OS CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        Ok(Self::from_seed(&KeyMaterial::generate()?))
    }

    fn from_seed(seed: &KeyMaterial) -> Self {
        CheckpointSigner(SigningKey::from_bytes(seed.expose_secret()))
    }

    /// The key wrapped under the root key, to store.
    pub fn wrap(&self, root: &RootKey) -> Vec<u8> {
        let mut seed = self.0.to_bytes();
        root.wrap_secret(SIGNING_KEY_LABEL, &KeyMaterial::from_bytes(&mut seed))
    }

    pub fn unwrap(root: &RootKey, wrapped: &[u8]) -> Result<Self, UnwrapError> {
        Ok(Self::from_seed(
            &root.unwrap_secret(SIGNING_KEY_LABEL, wrapped)?,
        ))
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    pub fn sign_prune(
        &self,
        through_seq: u64,
        through_hash: &str,
        time: &str,
        log_id: &str,
    ) -> PruneMark {
        let message = PruneMark::canonical_json(through_seq, through_hash, time, log_id);
        PruneMark {
            through_seq,
            through_hash: through_hash.to_owned(),
            time: time.to_owned(),
            log_id: log_id.to_owned(),
            signature: hex::encode(self.0.sign(message.as_bytes()).to_bytes()),
        }
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

    #[test]
    fn signatures_verify_only_under_their_key_and_contents() {
        let root = RootKey::new(KeyMaterial::generate().unwrap());
        let signer = CheckpointSigner::generate().unwrap();
        let again = CheckpointSigner::unwrap(&root, &signer.wrap(&root)).unwrap();
        assert_eq!(again.public_key(), signer.public_key());
        let other_root = RootKey::new(KeyMaterial::generate().unwrap());
        assert!(CheckpointSigner::unwrap(&other_root, &signer.wrap(&root)).is_err());
        let cp = signer.sign(5, "ab", "2026-11-28T21:02:09.813Z", "log-1");
        assert!(cp.verify(&signer.public_key()));
        let other = CheckpointSigner::generate().unwrap();
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
        let mark = signer.sign_prune(5, "ab", "2026-11-28T21:02:09.813Z", "log-1");
        assert!(mark.verify(&signer.public_key()));
        assert!(!mark.verify(&other.public_key()));
        // A checkpoint's signature does not make a prune mark, nor the other way round.
        let forged = PruneMark {
            signature: cp.signature.clone(),
            ..mark.clone()
        };
        assert!(!forged.verify(&signer.public_key()));
    }
}
