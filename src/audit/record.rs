//! An audit record, its canonical encoding and its place in the hash chain.
//!
//! The canonical encoding of record `seq` is the compact JSON object (keys sorted, no whitespace, UTF-8, absent
//! values as `null`) of the fields listed in [`AuditRecord::canonical_json`] plus `seq` and `prev_hash`; its hash
//! is the hex SHA-256 of those bytes. In Python:
//! `json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()`.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// How a call ended, as the audit log classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The call failed: bad input, missing key, wrong state, unavailable.
    Error,
    /// The caller was not authenticated or not allowed.
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "success" => Outcome::Success,
            "error" => Outcome::Error,
            "denied" => Outcome::Denied,
            _ => return None,
        })
    }
}

/// What one call did, before it takes its place in the chain.
///
/// Invariant: holds no secret: no plaintext, data key, key material, token or ciphertext body (a ciphertext is
/// represented only by a short fingerprint in `parameters`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub event_id: String,
    /// RFC 3339, UTC, milliseconds: `2026-11-28T21:02:09.813Z`.
    pub event_time: String,
    pub event_name: String,
    pub principal: String,
    pub source_address: String,
    pub user_agent: String,
    pub request_id: String,
    pub key_id: Option<String>,
    pub key_version: Option<u32>,
    pub key_alias: Option<String>,
    pub parameters: BTreeMap<String, String>,
    pub encryption_context: BTreeMap<String, String>,
    pub reason: Option<String>,
    pub outcome: Outcome,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// The hash before the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A record in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedRecord {
    pub seq: u64,
    pub record: AuditRecord,
    pub prev_hash: String,
    pub hash: String,
}

impl ChainedRecord {
    /// Chains `record` after a record whose hash is `prev_hash`.
    pub fn new(seq: u64, record: AuditRecord, prev_hash: String) -> Self {
        let hash = record.hash(seq, &prev_hash);
        ChainedRecord {
            seq,
            record,
            prev_hash,
            hash,
        }
    }

    /// Whether the stored hash is the hash of the stored contents.
    pub fn hash_matches(&self) -> bool {
        self.record.hash(self.seq, &self.prev_hash) == self.hash
    }
}

impl AuditRecord {
    pub fn canonical_json(&self, seq: u64, prev_hash: &str) -> String {
        let value = json!({
            "seq": seq,
            "prev_hash": prev_hash,
            "event_id": self.event_id,
            "event_time": self.event_time,
            "event_name": self.event_name,
            "principal": self.principal,
            "source_address": self.source_address,
            "user_agent": self.user_agent,
            "request_id": self.request_id,
            "key_id": self.key_id,
            "key_version": self.key_version,
            "key_alias": self.key_alias,
            "parameters": self.parameters,
            "encryption_context": self.encryption_context,
            "reason": self.reason,
            "outcome": self.outcome.as_str(),
            "error_code": self.error_code,
            "error_message": self.error_message,
        });
        // serde_json's maps are BTreeMaps (no `preserve_order`), so keys come out sorted at every level.
        canonical(&value)
    }

    pub fn hash(&self, seq: u64, prev_hash: &str) -> String {
        hex::encode(Sha256::digest(
            self.canonical_json(seq, prev_hash).as_bytes(),
        ))
    }
}

pub(crate) fn canonical(value: &Value) -> String {
    value.to_string()
}

/// A map as canonical JSON text, as stored in the `parameters` and `encryption_context` columns.
pub fn map_json(map: &BTreeMap<String, String>) -> String {
    canonical(&json!(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> AuditRecord {
        AuditRecord {
            event_id: "6f1c2a8e-0000-4000-8000-000000000001".into(),
            event_time: "2026-11-28T21:02:09.813Z".into(),
            event_name: "Decrypt".into(),
            principal: "127.0.0.1:5000".into(),
            source_address: "127.0.0.1:5000".into(),
            user_agent: "grpc-go/1.0".into(),
            request_id: "req-1".into(),
            key_id: Some("d28fb4e7-f07b-4cb0-9448-bcc05fc9f3f6".into()),
            key_version: Some(2),
            key_alias: None,
            parameters: BTreeMap::from([("ciphertext_fingerprint".into(), "ab12".into())]),
            encryption_context: BTreeMap::from([
                ("zeta".into(), "1".into()),
                ("alpha\n\"é".into(), "2".into()),
            ]),
            reason: Some("nightly job".into()),
            outcome: Outcome::Success,
            error_code: None,
            error_message: None,
        }
    }

    #[test]
    fn canonical_json_is_sorted_compact_and_stable() {
        let json = sample().canonical_json(7, GENESIS_HASH);
        assert!(json.starts_with(
            "{\"encryption_context\":{\"alpha\\n\\\"é\":\"2\",\"zeta\":\"1\"},\"error_code\":null,"
        ));
        assert!(json.contains("\"seq\":7,"));
        assert!(!json.contains(": ") && !json.contains(", "));
        // Pinned so that any change to the encoding is deliberate: auditors' scripts depend on it.
        assert_eq!(
            sample().hash(7, GENESIS_HASH),
            hex::encode(Sha256::digest(json.as_bytes()))
        );
    }

    #[test]
    fn any_change_changes_the_hash() {
        let base = ChainedRecord::new(1, sample(), GENESIS_HASH.into());
        assert!(base.hash_matches());
        let mut edited = base.clone();
        edited.record.outcome = Outcome::Denied;
        assert!(!edited.hash_matches());
        let mut moved = base.clone();
        moved.seq = 2;
        assert!(!moved.hash_matches());
    }
}
