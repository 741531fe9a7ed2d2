//! The envelope format: an object encrypted under a data key that travels beside it, encrypted by kmsd.
//!
//! Version 1, all integers big-endian. Header:
//!
//! | size | field |
//! |---|---|
//! | 4 | magic `KMSE` |
//! | 1 | version, `0x01` |
//! | 1 | algorithm, `0x01`: AES-256-GCM frames, HKDF-SHA256 key derivation, HKDF key commitment |
//! | 4 | frame size F: plaintext bytes in every frame but the last (4 KiB to 16 MiB) |
//! | 16 | message id, random |
//! | 2 + k | KMS key id (length, UTF-8); empty in a *detached* envelope |
//! | 2 + e | encrypted data key: the kmsd blob from GenerateDataKey (length, bytes); empty in a detached envelope |
//! | 4 + c | encryption context (length, kmsd's canonical encoding) |
//! | 32 | key commitment |
//! | 16 | header tag |
//!
//! Keys: `PRK = HKDF-Extract(salt = message id, ikm = data key)`; the frame key is `HKDF-Expand(PRK, "kmsd
//! envelope v1 key", 32)` and the commitment `HKDF-Expand(PRK, "kmsd envelope v1 commit", 32)`, so one envelope opens
//! under one data key only. The header tag is AES-256-GCM under the frame key with nonce 0 over no plaintext, with
//! every header byte before it as associated data.
//!
//! Body: frames numbered from 1, each `marker (1) ‖ [final only: plaintext length L (4)] ‖ ciphertext ‖ tag (16)`.
//! Marker `0x00` is a full frame of F bytes; `0x01` the final frame of L ≤ F bytes, exactly once, last. Frame n's
//! nonce is `0x00000000 ‖ n (8 bytes)`; its associated data `message id ‖ n ‖ marker ‖ [L]`. So a flipped byte,
//! truncation (no final frame), dropped, reordered or swapped frames, frames from another envelope, an edited header
//! and trailing data are all detected.
//!
//! A detached envelope leaves the key id and encrypted data key empty and keeps them elsewhere (the storage client
//! keeps them in a record beside the body, so that re-encrypting the data key never rewrites the body); the key
//! commitment still binds the body to its one data key.
//!
//! Invariants: the data key's plaintext lives only in zeroizing buffers; memory stays within a few frames whatever
//! the object's size; nothing is returned from a frame before its tag verifies.

mod stream;

pub use stream::{decrypt_stream, encrypt_stream, encrypt_stream_with_id, read_header};

use std::collections::BTreeMap;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub const MAGIC: &[u8; 4] = b"KMSE";
pub const VERSION: u8 = 1;
pub const ALGORITHM: u8 = 1;
pub const DEFAULT_FRAME_SIZE: u32 = 64 * 1024;
pub const MIN_FRAME_SIZE: u32 = 4096;
pub const MAX_FRAME_SIZE: u32 = 16 * 1024 * 1024;
pub const TAG_LEN: usize = 16;
const MARKER_FRAME: u8 = 0;
const MARKER_FINAL: u8 = 1;

/// Why an envelope could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a kmsd envelope (bad magic)")]
    NotAnEnvelope,
    #[error("envelope version {0} or algorithm is not supported by this client")]
    Unsupported(u8),
    #[error("malformed envelope header: {0}")]
    Malformed(&'static str),
    #[error("the envelope's encryption context is not the one expected")]
    ContextMismatch,
    #[error("the data key does not match this envelope (key commitment failed)")]
    WrongKey,
    #[error("the envelope header was altered")]
    HeaderTampered,
    #[error("frame {0} was altered, reordered or replaced")]
    FrameTampered(u64),
    #[error("the envelope is truncated: it ends before its final frame")]
    Truncated,
    #[error("data follows the envelope's final frame")]
    TrailingData,
    #[error("frame size {0} is outside 4 KiB to 16 MiB")]
    FrameSize(u32),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A parsed header: what is needed to get the data key back from kmsd and to open the frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub frame_size: u32,
    pub message_id: [u8; 16],
    pub kms_key_id: String,
    pub encrypted_data_key: Vec<u8>,
    pub encryption_context: BTreeMap<String, String>,
    commitment: [u8; 32],
    tag: [u8; TAG_LEN],
    /// The header's bytes before the tag, as authenticated.
    authenticated: Vec<u8>,
}

/// The keys of one envelope, derived from its data key; zeroized on drop.
pub(crate) struct EnvelopeKeys {
    cipher: Aes256Gcm,
    commitment: Zeroizing<[u8; 32]>,
}

impl EnvelopeKeys {
    pub(crate) fn derive(data_key: &[u8], message_id: &[u8; 16]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(message_id), data_key);
        let mut key = Zeroizing::new([0u8; 32]);
        let mut commitment = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit.
        hk.expand(b"kmsd envelope v1 key", key.as_mut())
            .expect("HKDF output length is valid");
        hk.expand(b"kmsd envelope v1 commit", commitment.as_mut())
            .expect("HKDF output length is valid");
        EnvelopeKeys {
            cipher: Aes256Gcm::new((&*key).into()),
            commitment,
        }
    }

    fn tag(&self, nonce: &[u8; 12], aad: &[u8]) -> [u8; TAG_LEN] {
        let tag = self
            .cipher
            .encrypt_inout_detached(&Nonce::<Aes256Gcm>::from(*nonce), aad, (&mut [][..]).into())
            // Empty plaintext: cannot exceed AES-GCM's limits.
            .expect("AES-GCM over an empty plaintext");
        tag.into()
    }

    pub(crate) fn seal_frame(&self, n: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        self.cipher
            .encrypt_inout_detached(&Nonce::<Aes256Gcm>::from(frame_nonce(n)), aad, buf.into())
            // Frames are at most 16 MiB, far below AES-GCM's 64 GiB limit.
            .expect("AES-GCM seal of a bounded frame")
            .into()
    }

    pub(crate) fn open_frame(
        &self,
        n: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), EnvelopeError> {
        self.cipher
            .decrypt_inout_detached(
                &Nonce::<Aes256Gcm>::from(frame_nonce(n)),
                aad,
                buf.into(),
                &Tag::<Aes256Gcm>::try_from(tag).map_err(|_| EnvelopeError::FrameTampered(n))?,
            )
            .map_err(|_| EnvelopeError::FrameTampered(n))
    }
}

fn frame_nonce(n: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&n.to_be_bytes());
    nonce
}

pub(crate) fn frame_aad(
    message_id: &[u8; 16],
    n: u64,
    marker: u8,
    final_len: Option<u32>,
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(29);
    aad.extend_from_slice(message_id);
    aad.extend_from_slice(&n.to_be_bytes());
    aad.push(marker);
    if let Some(len) = final_len {
        aad.extend_from_slice(&len.to_be_bytes());
    }
    aad
}

impl Header {
    /// A new header for `data_key` (plaintext) and its KMS blob, bound to `context`.
    pub(crate) fn new(
        kms_key_id: &str,
        encrypted_data_key: &[u8],
        context: &BTreeMap<String, String>,
        frame_size: u32,
        message_id: [u8; 16],
        data_key: &[u8],
    ) -> Result<(Self, EnvelopeKeys), EnvelopeError> {
        if !(MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&frame_size) {
            return Err(EnvelopeError::FrameSize(frame_size));
        }
        let keys = EnvelopeKeys::derive(data_key, &message_id);
        let context_bytes = kmsd_proto::canonical::context_bytes(context);
        let key_id_len = u16::try_from(kms_key_id.len())
            .map_err(|_| EnvelopeError::Malformed("key id too long"))?;
        let edk_len = u16::try_from(encrypted_data_key.len())
            .map_err(|_| EnvelopeError::Malformed("encrypted data key too long"))?;
        let ctx_len = u32::try_from(context_bytes.len())
            .map_err(|_| EnvelopeError::Malformed("encryption context too long"))?;
        let mut a = Vec::with_capacity(
            64 + kms_key_id.len() + encrypted_data_key.len() + context_bytes.len(),
        );
        a.extend_from_slice(MAGIC);
        a.push(VERSION);
        a.push(ALGORITHM);
        a.extend_from_slice(&frame_size.to_be_bytes());
        a.extend_from_slice(&message_id);
        a.extend_from_slice(&key_id_len.to_be_bytes());
        a.extend_from_slice(kms_key_id.as_bytes());
        a.extend_from_slice(&edk_len.to_be_bytes());
        a.extend_from_slice(encrypted_data_key);
        a.extend_from_slice(&ctx_len.to_be_bytes());
        a.extend_from_slice(&context_bytes);
        a.extend_from_slice(keys.commitment.as_ref());
        let tag = keys.tag(&[0u8; 12], &a);
        Ok((
            Header {
                frame_size,
                message_id,
                kms_key_id: kms_key_id.to_owned(),
                encrypted_data_key: encrypted_data_key.to_vec(),
                encryption_context: context.clone(),
                commitment: *keys.commitment,
                tag,
                authenticated: a,
            },
            keys,
        ))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.authenticated.clone();
        out.extend_from_slice(&self.tag);
        out
    }

    /// Checks the data key against the commitment and the header tag; returns the frame keys.
    pub(crate) fn open(&self, data_key: &[u8]) -> Result<EnvelopeKeys, EnvelopeError> {
        let keys = EnvelopeKeys::derive(data_key, &self.message_id);
        if !bool::from(keys.commitment.as_ref().ct_eq(&self.commitment)) {
            return Err(EnvelopeError::WrongKey);
        }
        let expected = keys.tag(&[0u8; 12], &self.authenticated);
        if !bool::from(expected.ct_eq(&self.tag)) {
            return Err(EnvelopeError::HeaderTampered);
        }
        Ok(keys)
    }

    /// Parses a header from its bytes (as far as they go); `Ok(None)` if more bytes are needed.
    pub fn parse(bytes: &[u8]) -> Result<Option<(Header, usize)>, EnvelopeError> {
        let mut r = Cursor { bytes, at: 0 };
        let Some(magic) = r.take(4) else {
            return Ok(None);
        };
        if magic != MAGIC {
            return Err(EnvelopeError::NotAnEnvelope);
        }
        let Some(v) = r.take(2) else { return Ok(None) };
        if v[0] != VERSION || v[1] != ALGORITHM {
            return Err(EnvelopeError::Unsupported(v[0]));
        }
        let Some(fs) = r.u32() else { return Ok(None) };
        if !(MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&fs) {
            return Err(EnvelopeError::Malformed("frame size out of range"));
        }
        let Some(id) = r.take(16) else {
            return Ok(None);
        };
        let Some(k) = r.u16() else { return Ok(None) };
        let Some(key_id) = r.take(k as usize) else {
            return Ok(None);
        };
        let kms_key_id = String::from_utf8(key_id.to_vec())
            .map_err(|_| EnvelopeError::Malformed("key id is not UTF-8"))?;
        let Some(e) = r.u16() else { return Ok(None) };
        let Some(edk) = r.take(e as usize) else {
            return Ok(None);
        };
        let Some(c) = r.u32() else { return Ok(None) };
        if c > 1 << 20 {
            return Err(EnvelopeError::Malformed(
                "encryption context larger than 1 MiB",
            ));
        }
        let Some(ctx) = r.take(c as usize) else {
            return Ok(None);
        };
        let encryption_context = parse_context(ctx)?;
        let Some(commitment) = r.take(32) else {
            return Ok(None);
        };
        let authenticated = bytes[..r.at].to_vec();
        let Some(tag) = r.take(TAG_LEN) else {
            return Ok(None);
        };
        let mut message_id = [0u8; 16];
        message_id.copy_from_slice(id);
        let mut c32 = [0u8; 32];
        c32.copy_from_slice(commitment);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag);
        Ok(Some((
            Header {
                frame_size: fs,
                message_id,
                kms_key_id,
                encrypted_data_key: edk.to_vec(),
                encryption_context,
                commitment: c32,
                tag: t,
                authenticated,
            },
            r.at,
        )))
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn parse_context(mut bytes: &[u8]) -> Result<BTreeMap<String, String>, EnvelopeError> {
    let bad = || EnvelopeError::Malformed("encryption context");
    let mut out = BTreeMap::new();
    let field = |bytes: &mut &[u8]| -> Result<String, EnvelopeError> {
        if bytes.len() < 4 {
            return Err(bad());
        }
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let rest = &bytes[4..];
        if rest.len() < len {
            return Err(bad());
        }
        let s = String::from_utf8(rest[..len].to_vec()).map_err(|_| bad())?;
        *bytes = &rest[len..];
        Ok(s)
    };
    while !bytes.is_empty() {
        let k = field(&mut bytes)?;
        let v = field(&mut bytes)?;
        out.insert(k, v);
    }
    Ok(out)
}
