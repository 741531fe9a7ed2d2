use kmsd_proto::ErrorKind;
use tonic::{Code, Status};

/// Why a call failed, as a caller acts on it. Decided from the gRPC code and kmsd's `x-kms-error` header, never
/// from message text. Every variant keeps the server's message and the call's request id, when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key or alias does not exist.
    #[error("not found: {0}")]
    NotFound(Details),
    /// The key exists but its state forbids the call (disabled, pending deletion, destroyed).
    #[error("key state: {0}")]
    KeyState(Details),
    /// The ciphertext is malformed, was tampered with, or was made with another encryption context.
    #[error("invalid ciphertext: {0}")]
    InvalidCiphertext(Details),
    /// The ciphertext belongs to another key than the one the call named.
    #[error("incorrect key: {0}")]
    IncorrectKey(Details),
    /// The key's spec or usage does not serve the call, or not with the algorithm it named (a signing key asked to
    /// encrypt, an ECC_NIST_P256 key asked for RSASSA_PSS_SHA_256, ...).
    #[error("invalid key usage: {0}")]
    InvalidKeyUsage(Details),
    /// Verify: the signature is not the key's for the message. [`crate::Client::verify`] answers `Ok(false)`.
    #[error("invalid signature: {0}")]
    InvalidSignature(Details),
    /// VerifyMac: the MAC is not the key's for the message. [`crate::Client::verify_mac`] answers `Ok(false)`.
    #[error("invalid MAC: {0}")]
    InvalidMac(Details),
    /// The call does not apply to a key of this kind at all (rotating a key pair or an HMAC key).
    #[error("unsupported: {0}")]
    Unsupported(Details),
    /// The request itself is wrong (sizes, names, formats).
    #[error("invalid argument: {0}")]
    InvalidArgument(Details),
    #[error("already exists: {0}")]
    AlreadyExists(Details),
    #[error("unauthenticated: {0}")]
    Unauthenticated(Details),
    #[error("permission denied: {0}")]
    PermissionDenied(Details),
    /// The daemon cannot serve now (its audit log cannot be written, it is shutting down, ...): retry later.
    #[error("unavailable: {0}")]
    Unavailable(Details),
    /// The call's deadline passed.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(Details),
    /// The daemon could not be reached at all.
    #[error("cannot reach kmsd: {0}")]
    Transport(String),
    /// Anything else the daemon answered (internal errors, data loss, ...).
    #[error("{code:?}: {details}")]
    Other { code: Code, details: Details },
}

/// The server's message, the kind of failure it named, and the call's request id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Details {
    pub message: String,
    /// The `x-kms-error` header's kind, when the daemon named one this version knows.
    pub kind: Option<ErrorKind>,
    pub request_id: Option<String>,
}

impl std::fmt::Display for Details {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl Error {
    /// The gRPC code the call ended with (UNAVAILABLE when the daemon could not be reached).
    pub fn code(&self) -> Code {
        match self {
            Error::NotFound(_) => Code::NotFound,
            Error::KeyState(_) | Error::Unsupported(_) => Code::FailedPrecondition,
            Error::InvalidCiphertext(_)
            | Error::IncorrectKey(_)
            | Error::InvalidKeyUsage(_)
            | Error::InvalidSignature(_)
            | Error::InvalidMac(_)
            | Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Unavailable(_) | Error::Transport(_) => Code::Unavailable,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Other { code, .. } => *code,
        }
    }

    /// What the daemon said, when it answered.
    pub fn details(&self) -> Option<&Details> {
        match self {
            Error::NotFound(d)
            | Error::KeyState(d)
            | Error::InvalidCiphertext(d)
            | Error::IncorrectKey(d)
            | Error::InvalidKeyUsage(d)
            | Error::InvalidSignature(d)
            | Error::InvalidMac(d)
            | Error::Unsupported(d)
            | Error::InvalidArgument(d)
            | Error::AlreadyExists(d)
            | Error::Unauthenticated(d)
            | Error::PermissionDenied(d)
            | Error::Unavailable(d)
            | Error::DeadlineExceeded(d)
            | Error::Other { details: d, .. } => Some(d),
            Error::Transport(_) => None,
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Transport(_))
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        let header = |name: &str| {
            status
                .metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let kind = header(kmsd_proto::headers::ERROR_KIND).and_then(|k| ErrorKind::parse(&k));
        let details = Details {
            message: status.message().to_owned(),
            kind,
            request_id: header(kmsd_proto::headers::REQUEST_ID),
        };
        match (status.code(), kind) {
            (Code::NotFound, _) => Error::NotFound(details),
            (Code::FailedPrecondition, Some(ErrorKind::UnsupportedOperation)) => {
                Error::Unsupported(details)
            }
            (Code::FailedPrecondition, _) => Error::KeyState(details),
            (Code::InvalidArgument, Some(ErrorKind::InvalidCiphertext)) => {
                Error::InvalidCiphertext(details)
            }
            (Code::InvalidArgument, Some(ErrorKind::IncorrectKey)) => Error::IncorrectKey(details),
            (Code::InvalidArgument, Some(ErrorKind::InvalidKeyUsage)) => {
                Error::InvalidKeyUsage(details)
            }
            (Code::InvalidArgument, Some(ErrorKind::InvalidSignature)) => {
                Error::InvalidSignature(details)
            }
            (Code::InvalidArgument, Some(ErrorKind::InvalidMac)) => Error::InvalidMac(details),
            (Code::InvalidArgument, _) => Error::InvalidArgument(details),
            (Code::AlreadyExists, _) => Error::AlreadyExists(details),
            (Code::Unauthenticated, _) => Error::Unauthenticated(details),
            (Code::PermissionDenied, _) => Error::PermissionDenied(details),
            (Code::Unavailable, _) => {
                // tonic reports a connection that could not be made as UNAVAILABLE with no server headers.
                if kind.is_none() && details.request_id.is_none() {
                    Error::Transport(details.message)
                } else {
                    Error::Unavailable(details)
                }
            }
            (Code::DeadlineExceeded, _) | (Code::Cancelled, _) => Error::DeadlineExceeded(details),
            (code, _) => Error::Other { code, details },
        }
    }
}
