//! The canonical encoding of an encryption context, shared by ciphertext blobs (server) and envelopes (client):
//! pairs sorted by key (bytewise UTF-8), each `u32 BE key length ‖ key ‖ u32 BE value length ‖ value`; the empty
//! context encodes to nothing. Sorting makes it independent of map order; the lengths make it unambiguous.

use std::collections::BTreeMap;

pub fn context_bytes(context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(context.iter().map(|(k, v)| 8 + k.len() + v.len()).sum());
    for (k, v) in context {
        // Contexts are bounded far below 4 GiB (8 KiB at the daemon).
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}
