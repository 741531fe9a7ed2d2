//! The one place where errors become gRPC statuses. It matches on variants, never on message text.
//!
//! Beside the code, every status carries an `x-kms-error` header naming the kind of failure (`InvalidCiphertext`,
//! `KeyState`, ...), as AWS KMS names its exceptions, so clients can tell apart failures that share a gRPC code
//! without reading messages.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use kmsd_proto::ErrorKind;

use crate::crypto::import::ImportError;
use crate::keys::InvalidInput;
use crate::kms::KmsError;

/// The response header naming the kind of failure.
pub use kmsd_proto::headers::ERROR_KIND as ERROR_KIND_HEADER;

impl From<KmsError> for Status {
    fn from(err: KmsError) -> Self {
        let (code, kind) = match &err {
            KmsError::InvalidInput(_) => (Code::InvalidArgument, ErrorKind::InvalidArgument),
            KmsError::InvalidCiphertext(_) => (Code::InvalidArgument, ErrorKind::InvalidCiphertext),
            KmsError::IncorrectKey { .. } => (Code::InvalidArgument, ErrorKind::IncorrectKey),
            KmsError::NotFound(_) => (Code::NotFound, ErrorKind::NotFound),
            KmsError::AliasExists(_) => (Code::AlreadyExists, ErrorKind::AlreadyExists),
            KmsError::State(_) => (Code::FailedPrecondition, ErrorKind::KeyState),
            KmsError::Usage(e) if e.is_unsupported() => {
                (Code::FailedPrecondition, ErrorKind::UnsupportedOperation)
            }
            KmsError::Usage(_) | KmsError::Algorithm(_) => {
                (Code::InvalidArgument, ErrorKind::InvalidKeyUsage)
            }
            KmsError::Import(ImportError::InvalidToken) => {
                (Code::InvalidArgument, ErrorKind::InvalidImportToken)
            }
            KmsError::Import(ImportError::ExpiredToken) => {
                (Code::InvalidArgument, ErrorKind::ExpiredImportToken)
            }
            KmsError::Import(ImportError::Unwrap) => {
                (Code::InvalidArgument, ErrorKind::InvalidCiphertext)
            }
            KmsError::IncorrectKeyMaterial(_) => {
                (Code::InvalidArgument, ErrorKind::IncorrectKeyMaterial)
            }
            KmsError::InvalidSignature { mac: false } => {
                (Code::InvalidArgument, ErrorKind::InvalidSignature)
            }
            KmsError::InvalidSignature { mac: true } => {
                (Code::InvalidArgument, ErrorKind::InvalidMac)
            }
            KmsError::Corrupt(_) => (Code::DataLoss, ErrorKind::DataLoss),
            KmsError::AuditUnavailable => (Code::Unavailable, ErrorKind::AuditUnavailable),
            KmsError::Storage(e) if e.is_unavailable() => {
                (Code::Unavailable, ErrorKind::Unavailable)
            }
            KmsError::Storage(_) | KmsError::Internal(_) => return internal(&err),
        };
        let mut status = with_kind(Status::new(code, err.to_string()), kind);
        if let KmsError::State(refused) = &err {
            status.metadata_mut().insert(
                KEY_STATE_HEADER,
                MetadataValue::from_static(refused.state.as_str()),
            );
        }
        status
    }
}

/// Beside kind `KeyState`: the state that refused the call (`DISABLED`, `PENDING_DELETION`, ...), so a front end
/// can tell a disabled key (AWS's `DisabledException`) from the other states without reading the message.
pub const KEY_STATE_HEADER: &str = "x-kms-key-state";

impl From<InvalidInput> for Status {
    fn from(err: InvalidInput) -> Self {
        Status::from(KmsError::from(err))
    }
}

/// The most bytes of an error message a caller receives: messages quote input, and a megabyte `key_id` must not
/// come back as a megabyte `grpc-message` (which gRPC C-core clients reject as RESOURCE_EXHAUSTED).
pub const MAX_MESSAGE_BYTES: usize = 512;

/// `status` with its message bounded and any token secret in it redacted, as every answer leaves.
pub fn bounded(status: Status) -> Status {
    let message = status.message();
    if message.len() <= MAX_MESSAGE_BYTES && !message.contains(crate::auth::token::PREFIX) {
        return status;
    }
    let mut message = message.to_owned();
    crate::audit::bound::bound_text(&mut message, MAX_MESSAGE_BYTES);
    Status::with_details_and_metadata(
        status.code(),
        message,
        status.details().to_vec().into(),
        status.metadata().clone(),
    )
}

/// INTERNAL without the cause, which is for operators, not callers (it may name files or internals): it goes to
/// the daemon's log.
fn internal(err: &dyn std::fmt::Display) -> Status {
    tracing::error!(error = %crate::auth::token::redact(&err.to_string()), "internal error");
    with_kind(
        Status::internal("internal error; the operation did not take effect (see the kmsd log)"),
        ErrorKind::Internal,
    )
}

pub fn with_kind(mut status: Status, kind: ErrorKind) -> Status {
    status
        .metadata_mut()
        .insert(ERROR_KIND_HEADER, MetadataValue::from_static(kind.as_str()));
    status
}

/// A call that cannot proceed in the log's present state (nothing to archive, a range not sealed).
pub fn failed_precondition(message: String) -> Status {
    with_kind(
        Status::failed_precondition(message),
        ErrorKind::FailedPrecondition,
    )
}

/// A replica whose caches may miss changes other replicas made refuses calls until it has caught up.
pub fn behind() -> Status {
    with_kind(
        Status::unavailable(
            "this kmsd replica cannot confirm it has every change made on the other replicas (its database is \
             unreachable or slow); the call was refused so that no revoked access is used; retry, here or on \
             another replica",
        ),
        ErrorKind::Unavailable,
    )
}

pub fn permission_denied(message: String) -> Status {
    with_kind(
        Status::permission_denied(message),
        ErrorKind::PermissionDenied,
    )
}

impl From<crate::auth::policy::Denied> for Status {
    fn from(denied: crate::auth::policy::Denied) -> Self {
        permission_denied(denied.0)
    }
}

impl From<crate::auth::AccessError> for Status {
    fn from(err: crate::auth::AccessError) -> Self {
        use crate::auth::AccessError as E;
        let (code, kind) = match &err {
            E::InvalidInput(_) => (Code::InvalidArgument, ErrorKind::InvalidArgument),
            E::NotFound(_) => (Code::NotFound, ErrorKind::NotFound),
            E::AlreadyExists(_) => (Code::AlreadyExists, ErrorKind::AlreadyExists),
            E::FailedPrecondition(_) => (Code::FailedPrecondition, ErrorKind::FailedPrecondition),
            E::AuditUnavailable => (Code::Unavailable, ErrorKind::AuditUnavailable),
            E::Storage(e) if e.is_unavailable() => (Code::Unavailable, ErrorKind::Unavailable),
            E::Storage(_) | E::Internal(_) => return internal(&err),
        };
        with_kind(Status::new(code, err.to_string()), kind)
    }
}
