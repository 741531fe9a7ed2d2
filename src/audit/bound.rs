//! Bounds on what one audit record holds, whatever a caller sent.
//!
//! Every call leaves a record, including calls from anyone who can reach the port, so what a caller sent is kept
//! only in bounded form. Every string that can come from a caller has token secrets redacted
//! ([`crate::auth::token::redact`]), then is cut to a limit with a marker giving its full length and a fingerprint
//! (the first 8 bytes of its SHA-256, hex), so two records can still be matched by what was sent. A caller that was
//! refused (outcome `denied`: not authenticated, or not allowed) gets [`Limits::REFUSED`]: the first bytes of
//! identifiers, lengths and fingerprints. Everyone else gets [`Limits::ADMITTED`], which keeps every valid
//! request's encryption context whole. A map over its budget is replaced by a summary parameter.
//!
//! Invariant: the canonical encoding of a bounded record is at most [`MAX_RECORD_BYTES`], whatever the input (a
//! record over it after the admitted limits is bounded again with the refused ones, which cannot exceed it).

use std::borrow::Cow;
use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::record::{AuditRecord, Encoded, Outcome};
use crate::auth::token;

/// The most bytes a record's canonical encoding takes (what is hashed; the stored row is about the same size).
pub const MAX_RECORD_BYTES: usize = 32 * 1024;

/// How much of a caller's input a record keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of each string a caller sent: identifiers, user agent, reason, each parameter.
    pub text: usize,
    /// Bytes of the encryption context as JSON; a larger context is summarized.
    pub context_json: usize,
    /// Bytes of an error message (messages may quote input).
    pub error_message: usize,
    /// Parameters kept; more are summarized.
    pub parameters: usize,
}

impl Limits {
    /// For authenticated, allowed callers: a valid encryption context (at most 8192 bytes encoded) always fits.
    pub const ADMITTED: Limits = Limits {
        text: 1024,
        context_json: 16 * 1024,
        error_message: 512,
        parameters: 24,
    };
    /// For callers that were refused: enough to say what they tried, not to store what they sent.
    pub const REFUSED: Limits = Limits {
        text: 64,
        context_json: 256,
        error_message: 512,
        parameters: 16,
    };
}

/// The record as it may be stored and its canonical encoding.
pub fn bounded(record: AuditRecord) -> Encoded {
    let limits = if record.outcome == Outcome::Denied {
        Limits::REFUSED
    } else {
        Limits::ADMITTED
    };
    let encoded = Encoded::new(apply(record, limits));
    if encoded.encoded_len() <= MAX_RECORD_BYTES {
        return encoded;
    }
    // Only an admitted caller's record can get here (many long, escaped parameters, say).
    Encoded::new(apply(encoded.record, Limits::REFUSED))
}

fn apply(mut r: AuditRecord, limits: Limits) -> AuditRecord {
    let text = |s: &mut String| bound_text(s, limits.text);
    let opt_text = |s: &mut Option<String>| {
        if let Some(s) = s {
            bound_text(s, limits.text)
        }
    };
    bound_text(&mut r.event_name, 64);
    text(&mut r.user_agent);
    text(&mut r.request_id);
    text(&mut r.source_address);
    opt_text(&mut r.key_id);
    opt_text(&mut r.key_alias);
    opt_text(&mut r.reason);
    opt_text(&mut r.error_code);
    if let Some(message) = &mut r.error_message {
        bound_text(message, limits.error_message);
    }

    let context_bytes: usize = r
        .encryption_context
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    let needs_redaction = r
        .encryption_context
        .iter()
        .any(|(k, v)| k.contains(token::PREFIX) || v.contains(token::PREFIX));
    // Cheap bound first: JSON escapes at most six bytes per byte, plus quotes, colon and comma per pair.
    let worst_json = 2 + context_bytes * 6 + r.encryption_context.len() * 6;
    if needs_redaction
        || (worst_json > limits.context_json
            && super::map_json(&r.encryption_context).len() > limits.context_json)
    {
        let summary = map_summary(&r.encryption_context);
        r.encryption_context.clear();
        r.parameters
            .insert("encryption_context_cut".to_owned(), summary);
    }

    if r.parameters.len() > limits.parameters {
        let summary = map_summary(&r.parameters);
        let kept: BTreeMap<String, String> = std::mem::take(&mut r.parameters)
            .into_iter()
            .take(limits.parameters - 1)
            .collect();
        r.parameters = kept;
        r.parameters.insert("parameters_cut".to_owned(), summary);
    }
    for value in r.parameters.values_mut() {
        bound_text(value, limits.text);
    }
    // Names are kmsd's own; the map is rebuilt only if one ever needs cutting.
    if r.parameters
        .keys()
        .any(|name| name.len() > 64 || name.contains(token::PREFIX))
    {
        r.parameters = std::mem::take(&mut r.parameters)
            .into_iter()
            .map(|(mut name, value)| {
                bound_text(&mut name, 64);
                (name, value)
            })
            .collect();
    }
    r
}

/// Redacts token secrets in `s`, then cuts it to at most `limit` bytes plus a marker, on a character boundary.
pub fn bound_text(s: &mut String, limit: usize) {
    if let Cow::Owned(redacted) = token::redact(s) {
        *s = redacted;
    }
    if s.len() <= limit {
        return;
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let marker = format!(
        "…[cut: {} bytes, sha256 {}]",
        s.len(),
        fingerprint(s.as_bytes())
    );
    s.truncate(end);
    s.push_str(&marker);
}

/// The first 8 bytes of SHA-256, hex: enough to tell inputs apart, too little to recover one.
pub fn fingerprint(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// How many pairs, how many bytes, and a fingerprint of the map's canonical JSON.
fn map_summary(map: &BTreeMap<String, String>) -> String {
    let json = super::map_json(map);
    format!(
        "{} pairs, {} bytes, sha256 {}",
        map.len(),
        json.len(),
        fingerprint(json.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::tests::sample;

    fn hostile(n: usize) -> String {
        // Control characters: six bytes each once JSON-escaped.
        "\u{1}".repeat(n)
    }

    /// The worst a caller can send, in every field it controls, stays under the bound, admitted or refused.
    #[test]
    fn the_worst_record_fits_the_bound() {
        for outcome in [Outcome::Success, Outcome::Error, Outcome::Denied] {
            let big = hostile(16 * 1024);
            let record = AuditRecord {
                event_name: big.clone(),
                user_agent: big.clone(),
                request_id: big.clone(),
                source_address: big.clone(),
                key_id: Some(big.clone()),
                key_alias: Some(big.clone()),
                reason: Some(big.clone()),
                error_code: Some(big.clone()),
                error_message: Some(big.clone()),
                parameters: (0..100)
                    .map(|i| (format!("{i}{big}"), big.clone()))
                    .collect(),
                encryption_context: (0..100)
                    .map(|i| (format!("{i}{big}"), big.clone()))
                    .collect(),
                outcome,
                ..sample()
            };
            let encoded = bounded(record);
            assert!(
                encoded.encoded_len() <= MAX_RECORD_BYTES,
                "{outcome:?}: {} bytes",
                encoded.encoded_len()
            );
            // And the encoding is still the one the chain hashes.
            assert_eq!(
                encoded.canonical_json(1, "x").len(),
                encoded.encoded_len() + "1x".len()
            );
        }
    }

    #[test]
    fn a_refused_callers_input_is_cut_to_its_first_bytes_with_length_and_fingerprint() {
        let description = "d".repeat(3_900_000);
        let mut record = AuditRecord {
            outcome: Outcome::Denied,
            parameters: BTreeMap::from([("description".to_owned(), description.clone())]),
            ..sample()
        };
        record.encryption_context = (0..50).map(|i| (format!("k{i}"), "v".repeat(20))).collect();
        let stored = bounded(record).record;
        let kept = &stored.parameters["description"];
        assert!(
            kept.starts_with(&"d".repeat(Limits::REFUSED.text)),
            "{kept}"
        );
        assert!(kept.contains("3900000 bytes"), "{kept}");
        assert!(
            kept.contains(&fingerprint(description.as_bytes())),
            "{kept}"
        );
        assert!(kept.len() < 200, "{kept}");
        assert!(stored.encryption_context.is_empty());
        assert!(stored.parameters["encryption_context_cut"].starts_with("50 pairs, "));
    }

    #[test]
    fn an_admitted_callers_valid_context_and_short_fields_are_kept_whole() {
        let mut record = sample();
        record.encryption_context = (0..200)
            .map(|i| (format!("key{i:03}"), "v".repeat(30)))
            .collect();
        let stored = bounded(record.clone()).record;
        assert_eq!(stored, record);
    }

    #[test]
    fn token_secrets_are_redacted_in_every_field() {
        let t = token::issue().unwrap();
        let secret = &t.token[t.token.len() - 20..];
        let record = AuditRecord {
            outcome: Outcome::Error,
            user_agent: format!("agent {}", t.token.as_str()),
            error_message: Some(format!("token id {:?} is not a token id", t.token.as_str())),
            parameters: BTreeMap::from([("revoked_token_id".to_owned(), t.token.to_string())]),
            encryption_context: BTreeMap::from([("k".to_owned(), t.token.to_string())]),
            ..sample()
        };
        let json = bounded(record).canonical_json(1, "x");
        assert!(!json.contains(secret), "{json}");
        assert!(json.contains(&t.id), "the public id stays: {json}");
    }
}
