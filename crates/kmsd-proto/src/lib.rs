//! kmsd's wire contract, shared by the daemon and every client: the gRPC types and stubs generated from
//! `proto/kms/v1/kms.proto` ([`pb`]), the headers a call carries ([`headers`]), the kinds of failure the daemon
//! names in `x-kms-error` ([`ErrorKind`]), the canonical encoding of an encryption context ([`canonical`]) and the
//! key-policy document ([`key_policy`]).
//!
//! Invariants: the generated code in `src/gen/` is exactly what `proto/` compiles to (a test regenerates it and
//! fails on any difference); nothing here does I/O.
#![forbid(unsafe_code)]

pub mod canonical;
pub mod key_policy;

/// The gRPC API, generated from `proto/kms/v1/kms.proto` and checked in (`tests/generated.rs` keeps it fresh).
pub mod pb {
    include!("gen/kms.v1.rs");

    /// The encoded descriptor set of `proto/`, for server reflection and for tests that walk every method.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("gen/kms_descriptor.bin");
}

/// The metadata a kmsd call carries besides its message.
pub mod headers {
    /// A bearer token: `Bearer kmsd_<id>_<secret>`.
    pub const AUTHORIZATION: &str = "authorization";
    /// The caller's id for the call (1-128 characters), echoed in the answer and kept in its audit record; the
    /// daemon makes one when the caller sends none.
    pub const REQUEST_ID: &str = "x-request-id";
    /// Why the caller makes the call (at most 1024 characters), kept in its audit record; policies may require one.
    pub const REASON: &str = "x-kms-reason";
    /// On an error answer, the kind of failure ([`super::ErrorKind`]).
    pub const ERROR_KIND: &str = "x-kms-error";
}

macro_rules! error_kinds {
    ($($(#[$doc:meta])* $kind:ident,)*) => {
        /// The kind of failure an error answer names in its `x-kms-error` header, finer than its gRPC code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $($(#[$doc])* $kind,)*
        }

        impl ErrorKind {
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind,)*];

            /// The header's value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorKind::$kind => stringify!($kind),)*
                }
            }

            /// The kind a header value names, if it is one this version knows.
            pub fn parse(value: &str) -> Option<ErrorKind> {
                ErrorKind::ALL.iter().copied().find(|k| k.as_str() == value)
            }
        }
    };
}

error_kinds! {
    /// The request itself is wrong (sizes, names, formats).
    InvalidArgument,
    /// The ciphertext is malformed, was tampered with, or was made with another encryption context.
    InvalidCiphertext,
    /// The ciphertext belongs to another key than the one the call named.
    IncorrectKey,
    /// The key's spec or usage does not serve the call, or not with the algorithm it named (AWS's
    /// `InvalidKeyUsageException`).
    InvalidKeyUsage,
    /// Verify: the signature is not the key's for the message.
    InvalidSignature,
    /// VerifyMac: the MAC is not the key's for the message.
    InvalidMac,
    /// The call does not apply to a key of this kind at all (rotating a key pair or an HMAC key, importing into a
    /// key whose material kmsd made).
    UnsupportedOperation,
    /// ImportKeyMaterial: the import token is not one kmsd issued for this key.
    InvalidImportToken,
    /// ImportKeyMaterial: the import token's 24 hours are over.
    ExpiredImportToken,
    /// ImportKeyMaterial: the material is not a key of the key's spec, or not the material first imported into it.
    IncorrectKeyMaterial,
    NotFound,
    AlreadyExists,
    /// The key's state forbids the call (disabled, pending deletion, destroyed).
    KeyState,
    FailedPrecondition,
    Unauthenticated,
    PermissionDenied,
    /// The call's audit record could not be made durable, so the call was refused (fail closed): retry later.
    AuditUnavailable,
    /// Stored data could not be read back as written.
    DataLoss,
    /// This replica cannot reach its database, or has fallen behind the changes other replicas made: retry, here
    /// or on another replica.
    Unavailable,
    Internal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_round_trip() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(ErrorKind::parse("Nope"), None);
    }
}
