//! Tables for people, JSON for scripts.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use kmsd_client::pb::{Alias, GetKeyRotationStatusResponse, KeyMetadata, KeyState, KeyVersion};
use serde_json::{Value, json};

use super::{Failure, write_output};

pub struct Output {
    pub json: bool,
}

pub(crate) fn time(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// RFC 3339 with milliseconds, as audit records carry their time.
pub(crate) fn time_millis(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref()
        .map(|t| kmsd::clock::UnixMillis::from_timestamp(t).rfc3339_millis())
        .unwrap_or_default()
}

/// A timestamp for JSON: RFC 3339, or null when unset.
fn json_time(ts: &Option<prost_types::Timestamp>) -> Value {
    match time(ts) {
        t if t.is_empty() => Value::Null,
        t => Value::String(t),
    }
}

fn state(meta: &KeyMetadata) -> &'static str {
    KeyState::try_from(meta.state)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN")
}

fn key_json(m: &KeyMetadata) -> Value {
    json!({
        "key_id": m.key_id,
        "description": m.description,
        "state": state(m),
        "creation_time": time(&m.creation_time),
        "primary_version": m.primary_version,
        "rotation_period_days": m.rotation_period_days,
        "next_rotation_time": json_time(&m.next_rotation_time),
        "deletion_time": json_time(&m.deletion_time),
        "aliases": m.aliases,
        "tags": m.tags,
        "key_spec": m.key_spec,
        "key_usage": m.key_usage,
        "encryption_algorithms": m.encryption_algorithms,
        "signing_algorithms": m.signing_algorithms,
        "mac_algorithms": m.mac_algorithms,
        "origin": m.origin,
        "expiration_model": m.expiration_model,
        "valid_to": json_time(&m.valid_to),
    })
}

pub(crate) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Prints rows under a header, columns padded to their widest cell.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

impl Output {
    pub fn key(&self, m: &KeyMetadata) {
        if self.json {
            return print_json(&key_json(m));
        }
        let mut tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        tags.sort();
        let rows = [
            ("Key ID", m.key_id.clone()),
            ("State", state(m).to_string()),
            ("Spec", m.key_spec.clone()),
            ("Usage", m.key_usage.clone()),
            (
                "Algorithms",
                [
                    &m.encryption_algorithms,
                    &m.signing_algorithms,
                    &m.mac_algorithms,
                ]
                .into_iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            ),
            ("Origin", m.origin.clone()),
            ("Material until", time(&m.valid_to)),
            ("Description", m.description.clone()),
            ("Created", time(&m.creation_time)),
            ("Primary version", m.primary_version.to_string()),
            (
                "Rotation",
                match m.rotation_period_days {
                    0 => "manual".to_string(),
                    d => format!("every {d} days, next {}", time(&m.next_rotation_time)),
                },
            ),
            ("Deletion", time(&m.deletion_time)),
            ("Aliases", m.aliases.join(", ")),
            ("Tags", tags.join(", ")),
        ];
        for (name, value) in rows {
            if !value.is_empty() {
                println!("{:<16} {value}", format!("{name}:"));
            }
        }
    }

    pub fn key_list(&self, keys: &[KeyMetadata]) {
        if self.json {
            return print_json(&json!({ "keys": keys.iter().map(key_json).collect::<Vec<_>>() }));
        }
        let rows: Vec<Vec<String>> = keys
            .iter()
            .map(|m| {
                vec![
                    m.key_id.clone(),
                    state(m).to_string(),
                    m.primary_version.to_string(),
                    m.aliases.join(","),
                    m.description.clone(),
                ]
            })
            .collect();
        table(
            &["KEY ID", "STATE", "VERSION", "ALIASES", "DESCRIPTION"],
            &rows,
        );
    }

    pub fn versions(&self, versions: &[KeyVersion]) {
        if self.json {
            let list: Vec<Value> = versions
                .iter()
                .map(|v| {
                    json!({
                        "version": v.version,
                        "creation_time": time(&v.creation_time),
                        "primary": v.primary,
                        "destroyed": v.destroyed,
                    })
                })
                .collect();
            return print_json(&json!({ "versions": list }));
        }
        let rows: Vec<Vec<String>> = versions
            .iter()
            .map(|v| {
                vec![
                    v.version.to_string(),
                    time(&v.creation_time),
                    if v.primary { "yes" } else { "" }.to_string(),
                    if v.destroyed { "yes" } else { "" }.to_string(),
                ]
            })
            .collect();
        table(&["VERSION", "CREATED", "PRIMARY", "DESTROYED"], &rows);
    }

    pub fn aliases(&self, aliases: &[Alias]) {
        if self.json {
            let list: Vec<Value> = aliases
                .iter()
                .map(|a| {
                    json!({
                        "alias_name": a.alias_name,
                        "key_id": a.key_id,
                        "creation_time": time(&a.creation_time),
                    })
                })
                .collect();
            return print_json(&json!({ "aliases": list }));
        }
        let rows: Vec<Vec<String>> = aliases
            .iter()
            .map(|a| {
                vec![
                    a.alias_name.clone(),
                    a.key_id.clone(),
                    time(&a.creation_time),
                ]
            })
            .collect();
        table(&["ALIAS", "KEY ID", "CREATED"], &rows);
    }

    /// A ciphertext blob: base64 on its own line (or in JSON with its key and version).
    pub fn blob(
        &self,
        key_id: &str,
        version: u32,
        blob: &[u8],
        path: Option<&PathBuf>,
    ) -> Result<(), Failure> {
        let encoded = BASE64.encode(blob);
        let text = if self.json {
            format!(
                "{}\n",
                serde_json::to_string_pretty(&json!({
                    "key_id": key_id,
                    "key_version": version,
                    "ciphertext_blob": encoded,
                }))
                .unwrap_or_default()
            )
        } else {
            format!("{encoded}\n")
        };
        write_output(path, text.as_bytes())
    }

    /// Decrypted bytes, raw (or base64 in JSON).
    pub fn plaintext(
        &self,
        key_id: &str,
        version: u32,
        plaintext: &[u8],
        path: Option<&PathBuf>,
    ) -> Result<(), Failure> {
        if self.json {
            let text = serde_json::to_string_pretty(&json!({
                "key_id": key_id,
                "key_version": version,
                "plaintext": BASE64.encode(plaintext),
            }))
            .unwrap_or_default();
            return write_output(path, format!("{text}\n").as_bytes());
        }
        write_output(path, plaintext)
    }

    pub fn data_key(&self, key_id: &str, version: u32, plaintext: Option<&[u8]>, blob: &[u8]) {
        if self.json {
            let mut v = json!({
                "key_id": key_id,
                "key_version": version,
                "ciphertext_blob": BASE64.encode(blob),
            });
            if let Some(p) = plaintext {
                v["plaintext"] = json!(BASE64.encode(p));
            }
            return print_json(&v);
        }
        println!("{:<16} {key_id}", "Key ID:");
        println!("{:<16} {version}", "Key version:");
        if let Some(p) = plaintext {
            println!("{:<16} {}", "Plaintext:", BASE64.encode(p));
        }
        println!("{:<16} {}", "Ciphertext blob:", BASE64.encode(blob));
    }

    pub fn random(&self, bytes: &[u8]) {
        if self.json {
            return print_json(&json!({ "plaintext": BASE64.encode(bytes) }));
        }
        println!("{}", BASE64.encode(bytes));
    }

    pub fn tags(&self, tags: &std::collections::HashMap<String, String>) {
        let sorted: std::collections::BTreeMap<&String, &String> = tags.iter().collect();
        if self.json {
            return print_json(&json!({ "tags": sorted }));
        }
        let rows: Vec<Vec<String>> = sorted
            .iter()
            .map(|(k, v)| vec![(*k).clone(), (*v).clone()])
            .collect();
        table(&["TAG", "VALUE"], &rows);
    }

    pub fn rotation_status(&self, status: &GetKeyRotationStatusResponse) {
        if self.json {
            return print_json(&json!({
                "key_id": status.key_id,
                "rotation_enabled": status.rotation_enabled,
                "rotation_period_days": status.rotation_period_days,
                "next_rotation_time": time(&status.next_rotation_time),
            }));
        }
        if status.rotation_enabled {
            println!(
                "key {} rotates every {} days; next at {}",
                status.key_id,
                status.rotation_period_days,
                time(&status.next_rotation_time)
            );
        } else {
            println!("key {} does not rotate automatically", status.key_id);
        }
    }

    pub fn done(&self, what: &str) {
        if self.json {
            print_json(&json!({ "ok": true }));
        } else {
            println!("{what}");
        }
    }
}
