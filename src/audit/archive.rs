//! Archives of the audit log: a sealed range of records in a file that verifies on its own.
//!
//! An archive is JSON lines. The first is the header:
//! `{"format":"kmsd-audit-archive","version":1,"log_id":…,"public_key":…,"first_sequence":…,"prev_hash":…,
//! "last_sequence":…,"last_hash":…}`. Then one line per record, in sequence order: the record's canonical fields
//! (the JSON columns as objects, as in the record's hash) plus its `hash`. The last line is
//! `{"checkpoint":{"head_seq":…,"head_hash":…,"time":…,"log_id":…,"signature":…}}`: signed when the range was
//! sealed, at its last record. Verification checks the records run from `first_sequence` to `last_sequence`
//! without gaps, each follows the previous one's hash (the first follows `prev_hash`: the genesis hash, or the last
//! hash of the archive before), each hash is its record's, and the checkpoint signs the last one under the log's
//! key. `deploy/verify-audit-log.py --archive FILE` checks the same in standard-library Python.

use std::io::BufRead;

use ed25519_dalek::VerifyingKey;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::checkpoint::{Checkpoint, parse_public_key};
use super::record::{ChainedRecord, Encoded, canonical};

pub const FORMAT: &str = "kmsd-audit-archive";

/// The archive's first line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub log_id: String,
    pub public_key: String,
    pub first_sequence: u64,
    pub prev_hash: String,
    pub last_sequence: u64,
    pub last_hash: String,
}

/// A record as an archive line.
pub fn line(record: &ChainedRecord) -> String {
    let json = Encoded::new(record.record.clone()).canonical_json(record.seq, &record.prev_hash);
    // The canonical encoding is one JSON object; serde_json reads back what it wrote.
    let mut fields: Map<String, Value> =
        serde_json::from_str(&json).expect("the canonical encoding is a JSON object");
    fields.insert("hash".to_owned(), Value::String(record.hash.clone()));
    Value::Object(fields).to_string()
}

/// The checkpoint as the archive's last line.
pub fn checkpoint_line(cp: &Checkpoint) -> String {
    serde_json::json!({ "checkpoint": {
        "head_seq": cp.head_seq,
        "head_hash": cp.head_hash,
        "time": cp.time,
        "log_id": cp.log_id,
        "signature": cp.signature,
    }})
    .to_string()
}

/// What a verified archive holds.
#[derive(Debug, Clone)]
pub struct ArchiveReport {
    pub header: Header,
    pub records: u64,
    /// Whether the checkpoint was verified with a key given from outside the archive (else with its own).
    pub key_given: bool,
}

/// Verifies an archive read from `input`; `key` is the log's public key from a trusted place (without it, the
/// header's own key is used, which proves integrity but not origin).
pub fn verify(input: impl BufRead, key: Option<&VerifyingKey>) -> Result<ArchiveReport, String> {
    let mut lines = input.lines().enumerate();
    let mut next = || -> Result<Option<(usize, String)>, String> {
        match lines.next() {
            None => Ok(None),
            Some((n, Ok(line))) => Ok(Some((n + 1, line))),
            Some((n, Err(e))) => Err(format!("line {}: {e}", n + 1)),
        }
    };
    let (_, first) = next()?.ok_or("the archive is empty")?;
    let header: Header = serde_json::from_str(&first)
        .map_err(|e| format!("line 1 is not an archive header: {e}"))?;
    if header.format != FORMAT || header.version != 1 {
        return Err(format!(
            "line 1: format {:?} version {} is not {FORMAT} version 1",
            header.format, header.version
        ));
    }
    let own_key = parse_public_key(&header.public_key)
        .ok_or("the header's public key is not an Ed25519 key")?;
    let key_given = key.is_some();
    let key = key.copied().unwrap_or(own_key);

    let mut expected = header.first_sequence;
    let mut prev = header.prev_hash.clone();
    let mut records = 0u64;
    let checkpoint = loop {
        let (n, line) = next()?.ok_or("the archive ends without its checkpoint (cut short?)")?;
        let mut fields: Map<String, Value> = serde_json::from_str(&line)
            .map_err(|e| format!("line {n} is not a JSON object: {e}"))?;
        if let Some(cp) = fields.remove("checkpoint") {
            break (n, cp);
        }
        let hash = match fields.remove("hash") {
            Some(Value::String(h)) => h,
            _ => return Err(format!("line {n} has no hash")),
        };
        let seq = fields
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or(format!("line {n} has no seq"))?;
        if seq != expected {
            return Err(format!(
                "line {n}: record {expected} is missing (found {seq})"
            ));
        }
        if fields.get("prev_hash").and_then(Value::as_str) != Some(prev.as_str()) {
            return Err(format!(
                "record {seq} does not follow record {}",
                seq.wrapping_sub(1)
            ));
        }
        let computed = hex::encode(Sha256::digest(canonical(&Value::Object(fields)).as_bytes()));
        if computed != hash {
            return Err(format!(
                "record {seq} was altered: its contents do not match its hash"
            ));
        }
        prev = hash;
        expected += 1;
        records += 1;
    };
    let (n, cp) = checkpoint;
    if next()?.is_some() {
        return Err(format!("line {}: lines after the checkpoint", n + 1));
    }
    let field = |name: &str| {
        cp.get(name)
            .cloned()
            .ok_or(format!("the checkpoint has no {name}"))
    };
    let text = |name: &str| -> Result<String, String> {
        field(name)?
            .as_str()
            .map(str::to_owned)
            .ok_or(format!("the checkpoint's {name} is not text"))
    };
    let cp = Checkpoint {
        head_seq: field("head_seq")?
            .as_u64()
            .ok_or("the checkpoint's head_seq is not a number")?,
        head_hash: text("head_hash")?,
        time: text("time")?,
        log_id: text("log_id")?,
        signature: text("signature")?,
    };
    let last = expected - 1;
    if records == 0 || last != header.last_sequence || prev != header.last_hash {
        return Err(format!(
            "the records end at {last} with hash {prev}, but the header says {} with {}",
            header.last_sequence, header.last_hash
        ));
    }
    if cp.head_seq != last || cp.head_hash != prev || cp.log_id != header.log_id {
        return Err("the checkpoint does not cover the archive's last record of this log".into());
    }
    if !cp.verify(&key) {
        return Err(if key_given {
            "the checkpoint's signature does not verify with the given public key: not this log's archive".into()
        } else {
            "the checkpoint's signature does not verify with the archive's own key".into()
        });
    }
    Ok(ArchiveReport {
        header,
        records,
        key_given,
    })
}
