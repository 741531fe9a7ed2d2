use crate::crypto::InvalidCiphertext;
use crate::keys::{AliasName, InvalidInput, KeyId, KeyRef, Refusal, StateError, UsageError};
use crate::storage::StorageError;

/// Why a KMS operation failed. The service layer maps each variant to one gRPC status; nothing else does.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    #[error("{kind} {0} does not exist", kind = if matches!(.0, KeyRef::Alias(_)) { "alias" } else { "key" })]
    NotFound(KeyRef),
    #[error("alias {0} already exists; delete it first or choose another name")]
    AliasExists(AliasName),
    #[error(transparent)]
    State(#[from] StateError),
    /// The key's spec or usage does not serve the operation.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The key's kind serves the operation, but not with the algorithm the request named.
    #[error("{0}")]
    Algorithm(String),
    /// ImportKeyMaterial: the token or the wrapped material was refused.
    #[error(transparent)]
    Import(#[from] crate::crypto::import::ImportError),
    /// ImportKeyMaterial: the material is not a key of the key's spec, or not the material first imported.
    #[error("{0}")]
    IncorrectKeyMaterial(String),
    /// Verify or VerifyMac: the signature or MAC is not the key's for that message.
    #[error("the {} is not valid for this message and key", if *.mac { "MAC" } else { "signature" })]
    InvalidSignature { mac: bool },
    #[error(transparent)]
    InvalidCiphertext(#[from] InvalidCiphertext),
    #[error("the ciphertext was made under key {actual}, not under the requested {requested}")]
    IncorrectKey { requested: KeyRef, actual: KeyId },
    /// The call's audit record could not be made durable, so the change was not made (fail closed).
    #[error(
        "the audit log cannot be written; the call was refused so that no change goes unrecorded (fail closed); \
         retry later"
    )]
    AuditUnavailable,
    /// Storage failed; the operation did not take effect.
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
    /// Stored data that cannot be read back (an audit row edited by hand, say). The message names what.
    #[error("{0}")]
    Corrupt(String),
    /// Something that should not happen (the OS refused randomness, stored material does not unwrap).
    #[error("internal failure: {0}")]
    Internal(String),
}

impl From<Refusal> for KmsError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Usage(e) => KmsError::Usage(e),
            Refusal::State(e) => KmsError::State(e),
        }
    }
}

impl From<crate::audit::Unrecorded> for KmsError {
    fn from(_: crate::audit::Unrecorded) -> Self {
        KmsError::AuditUnavailable
    }
}
