//! The one place where errors become gRPC statuses. It matches on variants, never on message text.

use tonic::{Code, Status};

use crate::keys::InvalidInput;
use crate::kms::KmsError;

impl From<KmsError> for Status {
    fn from(err: KmsError) -> Self {
        let code = match &err {
            KmsError::InvalidInput(_)
            | KmsError::InvalidCiphertext(_)
            | KmsError::IncorrectKey { .. } => Code::InvalidArgument,
            KmsError::NotFound(_) => Code::NotFound,
            KmsError::AliasExists(_) => Code::AlreadyExists,
            KmsError::State(_) => Code::FailedPrecondition,
            KmsError::Storage(_) | KmsError::Internal(_) => {
                // The cause is for operators, not callers: it may name files or internals.
                tracing::error!(error = %err, "internal error");
                return Status::internal(
                    "internal error; the operation did not take effect (see the kmsd log)",
                );
            }
        };
        Status::new(code, err.to_string())
    }
}

impl From<InvalidInput> for Status {
    fn from(err: InvalidInput) -> Self {
        Status::from(KmsError::from(err))
    }
}
