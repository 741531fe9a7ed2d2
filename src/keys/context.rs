use std::collections::{BTreeMap, HashMap};

use super::{InvalidInput, invalid};

/// Non-secret key/value pairs bound to a ciphertext as authenticated data, and recorded in the audit log.
///
/// The canonical encoding, used as authenticated data, is the pairs sorted by key (bytewise UTF-8), each written as
/// `u32 BE key length ‖ key ‖ u32 BE value length ‖ value`; an empty context encodes to nothing. Sorting makes the
/// encoding independent of map order; the length prefixes make it unambiguous.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    /// The most bytes the canonical encoding may take, as AWS KMS limits a context to 8 KiB.
    pub const MAX_ENCODED_LEN: usize = 8192;

    pub fn canonical_bytes(&self) -> Vec<u8> {
        kmsd_proto::canonical::context_bytes(&self.0)
    }

    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn encoded_len(&self) -> usize {
        self.0.iter().map(|(k, v)| 8 + k.len() + v.len()).sum()
    }

    /// `field` names the request field in messages.
    pub fn parse(pairs: HashMap<String, String>, field: &str) -> Result<Self, InvalidInput> {
        if pairs.keys().any(|k| k.is_empty()) {
            return Err(invalid(format!("{field} has an empty key")));
        }
        let ctx = EncryptionContext(pairs.into_iter().collect());
        let len = ctx.encoded_len();
        if len > Self::MAX_ENCODED_LEN {
            return Err(invalid(format!(
                "{field} is too large ({len} bytes encoded, at most {})",
                Self::MAX_ENCODED_LEN
            )));
        }
        Ok(ctx)
    }
}

impl TryFrom<HashMap<String, String>> for EncryptionContext {
    type Error = InvalidInput;

    fn try_from(pairs: HashMap<String, String>) -> Result<Self, InvalidInput> {
        Self::parse(pairs, "encryption_context")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        EncryptionContext::try_from(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        )
        .expect("valid context")
    }

    #[test]
    fn canonical_encoding_is_sorted_and_length_prefixed() {
        let c = ctx(&[("b", "2"), ("a", "1")]);
        assert_eq!(
            c.canonical_bytes(),
            b"\0\0\0\x01a\0\0\0\x011\0\0\0\x01b\0\0\0\x012".to_vec()
        );
        // Moving a boundary between key and value changes the encoding.
        assert_ne!(
            ctx(&[("ab", "c")]).canonical_bytes(),
            ctx(&[("a", "bc")]).canonical_bytes()
        );
        assert!(EncryptionContext::default().canonical_bytes().is_empty());
    }

    #[test]
    fn rejects_empty_keys_and_oversize() {
        assert!(EncryptionContext::try_from(HashMap::from([(String::new(), "x".into())])).is_err());
        let big = HashMap::from([("k".to_string(), "v".repeat(9000))]);
        assert!(EncryptionContext::try_from(big).is_err());
    }
}
