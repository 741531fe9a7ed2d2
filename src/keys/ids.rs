use std::fmt;

use super::{InvalidInput, invalid};

/// A key's id: a UUID, written lowercase and hyphenated.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(uuid::Uuid);

impl KeyId {
    pub fn new_random() -> Self {
        KeyId(uuid::Uuid::new_v4())
    }

    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        // Only the hyphenated form, so one key has one spelling in requests, logs and audit records.
        if s.len() != 36 {
            return Err(not_a_key_ref(s));
        }
        uuid::Uuid::try_parse(s)
            .map(KeyId)
            .map_err(|_| not_a_key_ref(s))
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        KeyId(uuid::Uuid::from_bytes(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// An alias name: `alias/` followed by 1-250 of `A-Z a-z 0-9 / _ -`, as in AWS KMS.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct AliasName(String);

impl AliasName {
    pub const PREFIX: &'static str = "alias/";
    const MAX_NAME_LEN: usize = 250;

    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let Some(name) = s.strip_prefix(Self::PREFIX) else {
            return Err(invalid(format!(
                "alias name {s:?} must start with \"alias/\", as in alias/my-app"
            )));
        };
        if name.is_empty() || name.len() > Self::MAX_NAME_LEN {
            return Err(invalid(format!(
                "alias name {s:?} must have 1-{} characters after \"alias/\"",
                Self::MAX_NAME_LEN
            )));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-')))
        {
            return Err(invalid(format!(
                "alias name {s:?} contains {bad:?}; allowed are letters, digits, '/', '_' and '-'"
            )));
        }
        Ok(AliasName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AliasName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a `key_id` field names: a key by id, or by alias.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum KeyRef {
    Id(KeyId),
    Alias(AliasName),
}

impl KeyRef {
    /// `field` names the request field in messages, for example `key_id` or `destination_key_id`.
    pub fn parse(s: &str, field: &str) -> Result<Self, InvalidInput> {
        if s.is_empty() {
            return Err(invalid(format!(
                "{field} is required: a key id or an alias name (alias/<name>)"
            )));
        }
        if s.starts_with(AliasName::PREFIX) {
            return AliasName::parse(s).map(KeyRef::Alias);
        }
        KeyId::parse(s).map(KeyRef::Id).map_err(|_| {
            invalid(format!(
                "{field} {s:?} is neither a key id (a UUID such as 1234abcd-12ab-34cd-56ef-1234567890ab) nor an alias name (alias/<name>)"
            ))
        })
    }

    /// Parses an optional field: empty means absent.
    pub fn parse_optional(s: &str, field: &str) -> Result<Option<Self>, InvalidInput> {
        if s.is_empty() {
            Ok(None)
        } else {
            Self::parse(s, field).map(Some)
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::Id(id) => id.fmt(f),
            KeyRef::Alias(alias) => alias.fmt(f),
        }
    }
}

fn not_a_key_ref(s: &str) -> InvalidInput {
    invalid(format!(
        "{s:?} is not a key id (a UUID such as 1234abcd-12ab-34cd-56ef-1234567890ab)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_names() {
        assert!(AliasName::parse("alias/app-1/prod_x").is_ok());
        for bad in ["app", "alias/", "alias/a b", "alias/é", "Alias/x"] {
            assert!(AliasName::parse(bad).is_err(), "{bad}");
        }
        assert!(AliasName::parse(&format!("alias/{}", "a".repeat(250))).is_ok());
        assert!(AliasName::parse(&format!("alias/{}", "a".repeat(251))).is_err());
    }

    #[test]
    fn key_refs() {
        let id = KeyId::new_random();
        assert_eq!(KeyRef::parse(&id.to_string(), "key_id"), Ok(KeyRef::Id(id)));
        assert!(matches!(
            KeyRef::parse("alias/x", "key_id"),
            Ok(KeyRef::Alias(_))
        ));
        assert!(KeyRef::parse("", "key_id").is_err());
        assert!(KeyRef::parse(&id.simple().to_string(), "key_id").is_err());
    }

    impl KeyId {
        fn simple(&self) -> uuid::fmt::Simple {
            self.0.simple()
        }
    }
}
