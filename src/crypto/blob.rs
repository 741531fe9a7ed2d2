//! The ciphertext blob: self-describing, so Decrypt needs no key id. Format version 1, byte by byte:
//!
//! | offset | size | field                                        |
//! |--------|------|----------------------------------------------|
//! | 0      | 1    | format version, `0x01`                       |
//! | 1      | 16   | key id (the UUID's 16 bytes)                 |
//! | 17     | 4    | key version, unsigned big-endian             |
//! | 21     | 16   | salt for the per-blob key derivation         |
//! | 37     | 12   | AES-GCM nonce                                |
//! | 49     | n    | AES-256-GCM ciphertext (n = plaintext length) |
//! | 49 + n | 16   | GCM tag                                      |
//!
//! The first 49 bytes are the header. Authenticated data = header ‖ canonical encryption context.

use crate::keys::KeyId;

use super::InvalidCiphertext;

pub const FORMAT_V1: u8 = 1;
pub const SALT_LEN: usize = 16;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
pub const HEADER_LEN: usize = 1 + 16 + 4 + SALT_LEN + NONCE_LEN;

/// A blob's header, parsed; nothing in it is secret or authenticated until the tag verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHeader {
    pub key_id: KeyId,
    pub key_version: u32,
    pub salt: [u8; SALT_LEN],
    pub nonce: [u8; NONCE_LEN],
}

impl BlobHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = FORMAT_V1;
        out[1..17].copy_from_slice(self.key_id.as_bytes());
        out[17..21].copy_from_slice(&self.key_version.to_be_bytes());
        out[21..37].copy_from_slice(&self.salt);
        out[37..49].copy_from_slice(&self.nonce);
        out
    }
}

/// A blob split into its parts, borrowed from the caller's bytes.
#[derive(Debug)]
pub struct ParsedBlob<'a> {
    pub header: BlobHeader,
    /// The header's bytes as sent, which are authenticated.
    pub header_bytes: &'a [u8],
    /// Ciphertext followed by the tag.
    pub sealed: &'a [u8],
}

/// Splits a blob; refuses anything that is not a well-formed version 1 blob with at least one byte of ciphertext.
pub fn parse(blob: &[u8]) -> Result<ParsedBlob<'_>, InvalidCiphertext> {
    if blob.len() <= HEADER_LEN + TAG_LEN || blob[0] != FORMAT_V1 {
        return Err(InvalidCiphertext);
    }
    let (header_bytes, sealed) = blob.split_at(HEADER_LEN);
    let mut key_id = [0u8; 16];
    key_id.copy_from_slice(&header_bytes[1..17]);
    let mut version = [0u8; 4];
    version.copy_from_slice(&header_bytes[17..21]);
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&header_bytes[21..37]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&header_bytes[37..49]);
    Ok(ParsedBlob {
        header: BlobHeader {
            key_id: KeyId::from_bytes(key_id),
            key_version: u32::from_be_bytes(version),
            salt,
            nonce,
        },
        header_bytes,
        sealed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trips() {
        let header = BlobHeader {
            key_id: KeyId::new_random(),
            key_version: 7,
            salt: [3; SALT_LEN],
            nonce: [4; NONCE_LEN],
        };
        let mut blob = header.encode().to_vec();
        blob.extend_from_slice(&[0u8; TAG_LEN + 1]);
        let parsed = parse(&blob).unwrap();
        assert_eq!(parsed.header, header);
        assert_eq!(parsed.sealed.len(), TAG_LEN + 1);
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn short_or_unknown_version_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..=HEADER_LEN + TAG_LEN)) {
            prop_assert!(parse(&bytes).is_err());
        }
    }
}
