//! An audit record, its canonical encoding and its place in the hash chain.
//!
//! The canonical encoding of record `seq` is the compact JSON object (keys sorted, no whitespace, UTF-8, absent
//! values as `null`) of the fields listed in [`AuditRecord::canonical_json`] plus `seq` and `prev_hash`; its hash
//! is the hex SHA-256 of those bytes. In Python:
//! `json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()`.

use std::collections::BTreeMap;

use serde_json::Value;
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

impl AuditRecord {
    /// A record kmsd writes on its own account (maintenance, bootstrap, summaries), as `principal`, from source
    /// `internal`, with a successful outcome unless changed.
    pub fn internal(
        now: crate::clock::UnixMillis,
        event: crate::rpc::Event,
        principal: &str,
        reason: &str,
        parameters: &[(&str, &str)],
    ) -> AuditRecord {
        AuditRecord {
            event_id: time_ordered_id(now),
            event_time: now.rfc3339_millis(),
            event_name: event.name().to_owned(),
            principal: principal.to_owned(),
            source_address: "internal".to_owned(),
            user_agent: concat!("kmsd/", env!("CARGO_PKG_VERSION")).to_owned(),
            request_id: time_ordered_id(now),
            key_id: None,
            key_version: None,
            key_alias: None,
            parameters: parameters
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            encryption_context: Default::default(),
            reason: Some(reason.to_owned()),
            outcome: Outcome::Success,
            error_code: None,
            error_message: None,
        }
    }
}

/// A UUIDv7: time-ordered, so generated event and request ids append to their index instead of landing on random
/// pages, and drawn from the thread-local CSPRNG rather than a syscall per id.
pub fn time_ordered_id(now: crate::clock::UnixMillis) -> String {
    uuid::Builder::from_unix_timestamp_millis(now.0.max(0) as u64, &crate::crypto::rng::array())
        .into_uuid()
        .to_string()
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
        Encoded::new(self.clone()).canonical_json(seq, prev_hash)
    }

    pub fn hash(&self, seq: u64, prev_hash: &str) -> String {
        Encoded::new(self.clone()).hash(seq, prev_hash)
    }
}

/// A record's canonical encoding, split around the two fields only the chain knows (`prev_hash` and `seq`), so
/// callers do the encoding in parallel and the writer thread only splices, hashes and stores.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub record: AuditRecord,
    /// The `parameters` and `encryption_context` columns, in canonical JSON.
    pub parameters_json: String,
    pub context_json: String,
    /// UTF-8 JSON text: everything up to `"prev_hash":"`, from there to `"seq":`, and the rest.
    head: Vec<u8>,
    middle: Vec<u8>,
    tail: Vec<u8>,
}

impl Encoded {
    pub fn new(record: AuditRecord) -> Self {
        // Written straight into the parts: no intermediate string per field (this runs once per call).
        fn field(out: &mut Vec<u8>, key: &str, value: &impl serde::Serialize) {
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            // Serializing strings, integers, options and maps of strings into memory cannot fail.
            serde_json::to_writer(&mut *out, value).expect("JSON of plain values");
            out.push(b',');
        }
        let parameters_json = map_json(&record.parameters);
        let context_json = map_json(&record.encryption_context);
        // Keys in sorted order, as serde_json sorts them.
        let mut head = Vec::with_capacity(512);
        head.extend_from_slice(b"{\"encryption_context\":");
        head.extend_from_slice(context_json.as_bytes());
        head.push(b',');
        field(&mut head, "error_code", &record.error_code);
        field(&mut head, "error_message", &record.error_message);
        field(&mut head, "event_id", &record.event_id);
        field(&mut head, "event_name", &record.event_name);
        field(&mut head, "event_time", &record.event_time);
        field(&mut head, "key_alias", &record.key_alias);
        field(&mut head, "key_id", &record.key_id);
        field(&mut head, "key_version", &record.key_version);
        field(&mut head, "outcome", &record.outcome.as_str());
        head.extend_from_slice(b"\"parameters\":");
        head.extend_from_slice(parameters_json.as_bytes());
        head.extend_from_slice(b",\"prev_hash\":\"");
        let mut middle = Vec::with_capacity(128);
        middle.extend_from_slice(b"\",");
        field(&mut middle, "principal", &record.principal);
        field(&mut middle, "reason", &record.reason);
        field(&mut middle, "request_id", &record.request_id);
        middle.extend_from_slice(b"\"seq\":");
        let mut tail = Vec::with_capacity(128);
        tail.push(b',');
        field(&mut tail, "source_address", &record.source_address);
        field(&mut tail, "user_agent", &record.user_agent);
        tail.pop();
        tail.push(b'}');
        Encoded {
            record,
            parameters_json,
            context_json,
            head,
            middle,
            tail,
        }
    }

    /// The length of the canonical encoding without its sequence number and previous hash.
    pub fn encoded_len(&self) -> usize {
        self.head.len() + self.middle.len() + self.tail.len()
    }

    /// The parts with the chain's two fields spliced in.
    fn parts<'a>(&'a self, seq: &'a [u8], prev_hash: &'a str) -> [&'a [u8]; 5] {
        [
            &self.head,
            prev_hash.as_bytes(),
            &self.middle,
            seq,
            &self.tail,
        ]
    }

    pub fn canonical_json(&self, seq: u64, prev_hash: &str) -> String {
        let seq = seq.to_string();
        let bytes = self.parts(seq.as_bytes(), prev_hash).concat();
        // Every part is UTF-8: JSON text from serde_json, ASCII punctuation, a `&str` and decimal digits.
        String::from_utf8(bytes).expect("canonical JSON is UTF-8")
    }

    pub fn hash(&self, seq: u64, prev_hash: &str) -> String {
        let mut digest = Sha256::new();
        let seq = seq.to_string();
        for part in self.parts(seq.as_bytes(), prev_hash) {
            digest.update(part);
        }
        hex::encode(digest.finalize())
    }
}

/// A record being appended: its encoding and its place in the chain.
#[derive(Debug, Clone)]
pub struct ChainLink {
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
    pub encoded: Encoded,
}

/// Chains `records` after the record `after` names (its sequence number and hash; `(0, GENESIS_HASH)` for an empty
/// log): the one place sequence numbers and hashes are given out.
pub fn chain(after: (u64, &str), records: Vec<Encoded>) -> Vec<ChainLink> {
    let (mut seq, prev) = after;
    let mut prev = prev.to_owned();
    records
        .into_iter()
        .map(|encoded| {
            seq += 1;
            let hash = encoded.hash(seq, &prev);
            ChainLink {
                seq,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
                encoded,
            }
        })
        .collect()
}

pub(crate) fn canonical(value: &Value) -> String {
    value.to_string()
}

/// A map as canonical JSON text, as stored in the `parameters` and `encryption_context` columns.
pub fn map_json(map: &BTreeMap<String, String>) -> String {
    // A BTreeMap serializes in key order, which is the canonical (sorted) order.
    serde_json::to_string(map).expect("JSON of a map of strings")
}

#[cfg(test)]
pub(crate) mod tests {
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
        assert_eq!(
            sample().hash(7, GENESIS_HASH),
            hex::encode(Sha256::digest(json.as_bytes()))
        );
    }

    /// The encoding built by hand must be exactly what serde_json makes of the whole record, keys sorted.
    fn oracle(r: &AuditRecord, seq: u64, prev_hash: &str) -> String {
        canonical(&serde_json::json!({
            "seq": seq,
            "prev_hash": prev_hash,
            "event_id": r.event_id,
            "event_time": r.event_time,
            "event_name": r.event_name,
            "principal": r.principal,
            "source_address": r.source_address,
            "user_agent": r.user_agent,
            "request_id": r.request_id,
            "key_id": r.key_id,
            "key_version": r.key_version,
            "key_alias": r.key_alias,
            "parameters": r.parameters,
            "encryption_context": r.encryption_context,
            "reason": r.reason,
            "outcome": r.outcome.as_str(),
            "error_code": r.error_code,
            "error_message": r.error_message,
        }))
    }

    #[test]
    fn the_split_encoding_equals_serde_jsons_sorted_encoding() {
        let mut r = sample();
        assert_eq!(
            r.canonical_json(7, GENESIS_HASH),
            oracle(&r, 7, GENESIS_HASH)
        );
        r.key_id = None;
        r.key_version = None;
        r.reason = None;
        r.outcome = Outcome::Error;
        r.error_code = Some("NOT_FOUND".into());
        r.error_message = Some("key \"x\" does not exist\n\u{1}".into());
        r.parameters.clear();
        r.encryption_context.clear();
        let prev = "ab".repeat(32);
        assert_eq!(
            r.canonical_json(u64::MAX, &prev),
            oracle(&r, u64::MAX, &prev)
        );
        assert_eq!(
            r.hash(3, &prev),
            hex::encode(Sha256::digest(oracle(&r, 3, &prev).as_bytes()))
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
