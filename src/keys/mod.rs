//! The key domain: identifiers, kinds, states and the rules of a key's life, as plain values.
//!
//! Everything a request names is parsed here once, at the boundary, into types that carry the proof of their
//! validity inward ([`KeyId`], [`AliasName`], [`KeyRef`], [`EncryptionContext`], [`DataKeySize`], [`KeyKind`] and
//! the algorithms of `spec.rs`).
//!
//! Invariant: this module does no I/O and holds no key material; it decides, others act.

mod context;
mod ids;
mod lifecycle;
mod spec;

pub use context::EncryptionContext;
pub use ids::{AliasName, KeyId, KeyRef};
pub use lifecycle::{KeyUpdate, KmsKey, Operation, Origin, Refusal, State, StateError, UsageError};
pub use spec::{
    EncryptionAlgorithm, Hash, KeyKind, KeySpec, KeyUsage, MAX_MESSAGE_BYTES, MacAlgorithm,
    MessageType, SigningAlgorithm, WrappingAlgorithm, check_message, check_signing_message,
    names_of,
};

use std::collections::{BTreeMap, HashMap};

/// Why a request's input was refused. The message is shown to the caller as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

pub(crate) fn invalid(msg: impl Into<String>) -> InvalidInput {
    InvalidInput(msg.into())
}

/// Limits as AWS KMS has them, where it has them.
pub mod limits {
    pub const MAX_DESCRIPTION_CHARS: usize = 8192;
    pub const MAX_TAGS: usize = 50;
    pub const MAX_TAG_KEY_CHARS: usize = 128;
    pub const MAX_TAG_VALUE_CHARS: usize = 256;
    pub const MIN_ROTATION_DAYS: u32 = 1;
    pub const MAX_ROTATION_DAYS: u32 = 2560;
    /// The rotation period EnableKeyRotation sets when it is given none, as AWS's.
    pub const DEFAULT_ROTATION_DAYS: u32 = 365;
    pub const MIN_DELETION_WINDOW_DAYS: u32 = 7;
    pub const MAX_DELETION_WINDOW_DAYS: u32 = 30;
    pub const DEFAULT_DELETION_WINDOW_DAYS: u32 = 30;
    pub const MAX_ENCRYPT_PLAINTEXT: usize = 4096;
    pub const MAX_DATA_KEY_BYTES: u32 = 1024;
    pub const MAX_RANDOM_BYTES: u32 = 1024;
    pub const DEFAULT_PAGE_SIZE: u32 = 100;
    pub const MAX_PAGE_SIZE: u32 = 1000;
}

/// A validated `CreateKey` request.
#[derive(Debug, Clone)]
pub struct NewKeySpec {
    pub description: String,
    pub tags: BTreeMap<String, String>,
    pub alias: Option<AliasName>,
    pub rotation_period_days: Option<u32>,
    pub kind: KeyKind,
    pub origin: Origin,
}

impl NewKeySpec {
    pub fn parse(
        description: String,
        tags: HashMap<String, String>,
        alias: &str,
        rotation_period_days: u32,
        kind: KeyKind,
        origin: Origin,
    ) -> Result<Self, InvalidInput> {
        check_description(&description)?;
        check_tags(tags.iter())?;
        if tags.len() > limits::MAX_TAGS {
            return Err(too_many_tags(tags.len()));
        }
        let alias = if alias.is_empty() {
            None
        } else {
            Some(AliasName::parse(alias)?)
        };
        let rotation_period_days = match rotation_period_days {
            0 => None,
            d if origin == Origin::External => {
                return Err(invalid(format!(
                    "a key of origin EXTERNAL does not rotate; rotation_period_days must be 0 (got {d})"
                )));
            }
            d if !kind.spec.is_symmetric() => {
                return Err(invalid(format!(
                    "{} keys do not rotate; only SYMMETRIC_DEFAULT keys take rotation_period_days (got {d})",
                    kind.spec
                )));
            }
            d => Some(check_rotation_period(d)?),
        };
        Ok(NewKeySpec {
            description,
            tags: tags.into_iter().collect(),
            alias,
            rotation_period_days,
            kind,
            origin,
        })
    }
}

pub(crate) fn check_description(description: &str) -> Result<(), InvalidInput> {
    if description.chars().count() > limits::MAX_DESCRIPTION_CHARS {
        return Err(invalid(format!(
            "description is longer than {} characters",
            limits::MAX_DESCRIPTION_CHARS
        )));
    }
    Ok(())
}

pub(crate) fn check_tags<'a>(
    tags: impl Iterator<Item = (&'a String, &'a String)>,
) -> Result<(), InvalidInput> {
    for (k, v) in tags {
        check_tag_key(k)?;
        if v.chars().count() > limits::MAX_TAG_VALUE_CHARS {
            return Err(invalid(format!(
                "the value of tag {k:?} is longer than {} characters",
                limits::MAX_TAG_VALUE_CHARS
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_tag_key(k: &str) -> Result<(), InvalidInput> {
    let n = k.chars().count();
    if n == 0 || n > limits::MAX_TAG_KEY_CHARS {
        return Err(invalid(format!(
            "tag key {k:?} must be 1-{} characters",
            limits::MAX_TAG_KEY_CHARS
        )));
    }
    Ok(())
}

pub(crate) fn too_many_tags(n: usize) -> InvalidInput {
    invalid(format!(
        "a key takes at most {} tags, got {n}",
        limits::MAX_TAGS
    ))
}

pub(crate) fn check_rotation_period(days: u32) -> Result<u32, InvalidInput> {
    if (limits::MIN_ROTATION_DAYS..=limits::MAX_ROTATION_DAYS).contains(&days) {
        return Ok(days);
    }
    Err(invalid(format!(
        "rotation_period_days must be {}-{} (or 0 for no automatic rotation), got {days}",
        limits::MIN_ROTATION_DAYS,
        limits::MAX_ROTATION_DAYS
    )))
}

/// How many bytes a data key has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataKeySize(u32);

impl DataKeySize {
    pub const AES_256: DataKeySize = DataKeySize(32);
    pub const AES_128: DataKeySize = DataKeySize(16);

    /// `named` is the key spec if the caller gave one; `number_of_bytes` the explicit length if given.
    pub fn parse(
        named: Option<DataKeySize>,
        number_of_bytes: Option<u32>,
    ) -> Result<Self, InvalidInput> {
        match (named, number_of_bytes) {
            (Some(_), Some(_)) => Err(invalid("give key_spec or number_of_bytes, not both")),
            (Some(spec), None) => Ok(spec),
            (None, None) => Ok(Self::AES_256),
            (None, Some(n)) if (1..=limits::MAX_DATA_KEY_BYTES).contains(&n) => Ok(DataKeySize(n)),
            (None, Some(n)) => Err(invalid(format!(
                "number_of_bytes must be 1-{}, got {n}",
                limits::MAX_DATA_KEY_BYTES
            ))),
        }
    }

    pub fn byte_len(self) -> usize {
        self.0 as usize
    }
}

/// Page tokens: opaque to callers, `base64url(prefix ‖ last item)` inside, the prefix naming the listing so a token
/// from one listing is refused by another.
pub mod page_token {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::InvalidInput;

    pub fn encode(prefix: &str, last: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("{prefix}{last}"))
    }

    /// The last item of the previous page, or `None` for the first page (an empty token).
    pub fn decode(token: &str, prefix: &str) -> Result<Option<String>, InvalidInput> {
        if token.is_empty() {
            return Ok(None);
        }
        URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix(prefix).map(str::to_owned))
            .map(Some)
            .ok_or_else(|| {
                InvalidInput(
                    "page_token is not one this listing issued; pass next_page_token from the previous response \
                     unchanged"
                        .into(),
                )
            })
    }
}

/// A validated page size.
pub fn page_size(requested: u32) -> Result<u32, InvalidInput> {
    match requested {
        0 => Ok(limits::DEFAULT_PAGE_SIZE),
        n if n <= limits::MAX_PAGE_SIZE => Ok(n),
        n => Err(invalid(format!(
            "page_size must be 1-{} (or 0 for the default {}), got {n}",
            limits::MAX_PAGE_SIZE,
            limits::DEFAULT_PAGE_SIZE
        ))),
    }
}

/// A validated deletion window.
pub fn deletion_window_days(requested: u32) -> Result<u32, InvalidInput> {
    match requested {
        0 => Ok(limits::DEFAULT_DELETION_WINDOW_DAYS),
        d if (limits::MIN_DELETION_WINDOW_DAYS..=limits::MAX_DELETION_WINDOW_DAYS).contains(&d) => {
            Ok(d)
        }
        d => Err(invalid(format!(
            "pending_window_days must be {}-{} (or 0 for the default {}), got {d}",
            limits::MIN_DELETION_WINDOW_DAYS,
            limits::MAX_DELETION_WINDOW_DAYS,
            limits::DEFAULT_DELETION_WINDOW_DAYS
        ))),
    }
}

/// A validated `GenerateRandom` length.
pub fn random_len(requested: u32) -> Result<usize, InvalidInput> {
    if (1..=limits::MAX_RANDOM_BYTES).contains(&requested) {
        Ok(requested as usize)
    } else {
        Err(invalid(format!(
            "number_of_bytes must be 1-{}, got {requested}",
            limits::MAX_RANDOM_BYTES
        )))
    }
}

/// Checks the length of an `Encrypt` plaintext.
pub fn check_encrypt_plaintext(plaintext: &[u8]) -> Result<(), InvalidInput> {
    match plaintext.len() {
        0 => Err(invalid("plaintext is empty; Encrypt takes 1-4096 bytes")),
        n if n > limits::MAX_ENCRYPT_PLAINTEXT => Err(invalid(format!(
            "plaintext is {n} bytes; Encrypt takes at most {} (use GenerateDataKey and encrypt larger data locally)",
            limits::MAX_ENCRYPT_PLAINTEXT
        ))),
        _ => Ok(()),
    }
}
