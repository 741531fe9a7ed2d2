//! Bearer tokens: `kmsd_<id>_<secret>`, shown once when issued and stored only as a hash.
//!
//! The id (8 random bytes, hex) is public: it finds the token's record and names the token in listings and audit
//! records. The secret (32 random bytes, base64url) is what proves possession; only SHA-256 over a label, the id
//! and the secret is kept, and a presented secret's hash is compared with it in constant time. A 256-bit random
//! secret needs no slow password hash: there is nothing to guess.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub const PREFIX: &str = "kmsd_";
const ID_BYTES: usize = 8;
const ID_LEN: usize = ID_BYTES * 2;
const SECRET_BYTES: usize = 32;
const SECRET_LEN: usize = 43; // base64url of 32 bytes, unpadded
const HASH_LABEL: &[u8] = b"kmsd bearer token v1\0";

pub type TokenHash = [u8; 32];

/// A freshly issued token: the whole token for the caller (once), and what is stored.
pub struct Issued {
    pub id: String,
    pub token: Zeroizing<String>,
    pub hash: TokenHash,
}

pub fn issue() -> Result<Issued, getrandom::Error> {
    let mut id = [0u8; ID_BYTES];
    getrandom::fill(&mut id)?;
    let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
    getrandom::fill(secret.as_mut())?;
    let id = hex::encode(id);
    let secret = Zeroizing::new(URL_SAFE_NO_PAD.encode(secret.as_ref()));
    let hash = hash(&id, &secret);
    let token = Zeroizing::new(format!("{PREFIX}{id}_{}", secret.as_str()));
    Ok(Issued { id, token, hash })
}

/// Splits a presented token into its id and secret, if it has a token's shape.
pub fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    if rest.len() != ID_LEN + 1 + SECRET_LEN || !rest.is_char_boundary(ID_LEN) {
        return None;
    }
    let (id, secret) = rest.split_at(ID_LEN);
    let secret = secret.strip_prefix('_')?;
    id.bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        .then_some((id, secret))
}

pub fn hash(id: &str, secret: &str) -> TokenHash {
    let mut h = Sha256::new();
    h.update(HASH_LABEL);
    h.update(id.as_bytes());
    h.update(b"\0");
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// Whether `secret` is the one whose hash is `stored`, in time independent of where they differ.
pub fn matches(id: &str, secret: &str, stored: &TokenHash) -> bool {
    hash(id, secret).ct_eq(stored).into()
}

/// Whether `id` has a token id's shape (for revocation by id).
pub fn is_id(id: &str) -> bool {
    id.len() == ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// What a redacted secret reads as.
pub const REDACTED: &str = "[REDACTED]";

/// `text` with the secret part of anything shaped like a token (`kmsd_`, 16 hex digits, `_`, then a run of
/// base64url characters of any length, so a cut or mistyped secret is caught too) replaced by [`REDACTED`]. The
/// id stays: it is public, and it says which token was sent. Used wherever caller input may be recorded or logged.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let secret_start = |at: usize| -> Option<usize> {
        let id = text.get(at + PREFIX.len()..at + PREFIX.len() + ID_LEN)?;
        let after = at + PREFIX.len() + ID_LEN;
        (is_id(id) && text[after..].starts_with('_')).then_some(after + 1)
    };
    let mut out = String::new();
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find(PREFIX) {
        let at = search + found;
        search = at + PREFIX.len();
        let Some(start) = secret_start(at) else {
            continue;
        };
        let end = start
            + text[start..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
                .count();
        if end == start {
            continue;
        }
        out.push_str(&text[copied..start]);
        out.push_str(REDACTED);
        copied = end;
        search = end;
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_parse_and_match_only_themselves() {
        let a = issue().unwrap();
        let b = issue().unwrap();
        assert_ne!(a.token.as_str(), b.token.as_str());
        let (id, secret) = parse(&a.token).unwrap();
        assert_eq!(id, a.id);
        assert!(matches(id, secret, &a.hash));
        assert!(!matches(id, secret, &b.hash));
        let (bid, bsecret) = parse(&b.token).unwrap();
        assert!(!matches(id, bsecret, &a.hash));
        assert!(!matches(bid, secret, &a.hash));
    }

    #[test]
    fn redaction_keeps_the_id_and_removes_any_secret_shaped_run() {
        let t = issue().unwrap();
        let redacted = format!("{PREFIX}{}_{REDACTED}", t.id);
        assert_eq!(redact(&t.token), redacted);
        let said = format!(
            "token id {:?} is not a token id; also {}!",
            t.token.as_str(),
            t.token.as_str()
        );
        let out = redact(&said);
        assert!(
            !out.contains(&t.token[PREFIX.len() + ID_LEN + 1..]),
            "{out}"
        );
        assert_eq!(out.matches(REDACTED).count(), 2, "{out}");
        // A cut secret is still a secret's prefix.
        assert_eq!(redact(&t.token[..PREFIX.len() + ID_LEN + 6]), redacted);
        for harmless in [
            "",
            "kmsd_",
            "kmsd_kmsd_",
            "kmsd_0123456789abcdef",
            "kmsd_0123456789ABCDEF_x",
            "é kmsd_é",
        ] {
            assert_eq!(redact(harmless), harmless);
        }
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        let t = issue().unwrap();
        for bad in [
            "",
            "kmsd_",
            &t.token[1..],
            &t.token[..t.token.len() - 1],
            &t.token.replace('_', "-"),
            &format!("{}x", t.token.as_str()),
            &t.token.to_uppercase(),
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
