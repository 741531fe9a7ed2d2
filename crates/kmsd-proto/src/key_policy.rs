//! The key-policy document: its fields, its JSON form (what `kmsctl keys policy` reads and prints, and what kmsd
//! stores) and its protobuf form. What a policy allows is decided by the daemon, in `auth::policy`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::pb;

/// A key's policy: allow statements, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// An optional label, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sid: String,
    pub principals: Vec<String>,
    /// Permission names, or `*`.
    pub operations: Vec<String>,
    /// Context keys that must be present, with any value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context_keys_present: Vec<String>,
    /// Context keys that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context_equals: BTreeMap<String, String>,
    /// Whether the call must carry a reason (`x-kms-reason`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_reason: bool,
}

impl PolicyDocument {
    /// Compact JSON, statements in the order given: how kmsd stores a policy.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"statements":[]}"#.to_owned())
    }

    /// Indented JSON, for people and for `kmsctl keys policy put --file`.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| r#"{"statements":[]}"#.to_owned())
    }

    /// Unknown fields are refused, so a misspelt condition cannot silently grant more than meant.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

impl From<pb::KeyPolicy> for PolicyDocument {
    fn from(p: pb::KeyPolicy) -> Self {
        PolicyDocument {
            statements: p
                .statements
                .into_iter()
                .map(|s| Statement {
                    sid: s.sid,
                    principals: s.principals,
                    operations: s.operations,
                    context_keys_present: s.context_keys_present,
                    context_equals: s.context_equals.into_iter().collect(),
                    require_reason: s.require_reason,
                })
                .collect(),
        }
    }
}

impl From<&PolicyDocument> for pb::KeyPolicy {
    fn from(p: &PolicyDocument) -> Self {
        pb::KeyPolicy {
            statements: p
                .statements
                .iter()
                .map(|s| pb::PolicyStatement {
                    sid: s.sid.clone(),
                    principals: s.principals.clone(),
                    operations: s.operations.clone(),
                    context_keys_present: s.context_keys_present.clone(),
                    context_equals: s
                        .context_equals
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    require_reason: s.require_reason,
                })
                .collect(),
        }
    }
}
