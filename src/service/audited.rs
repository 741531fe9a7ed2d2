//! What each response tells the audit record about the key it used.

use super::call::Audited;
use crate::proto::*;

macro_rules! key_metadata_response {
    ($($t:ty),*) => {$(
        impl Audited for $t {
            fn key_used(&self) -> Option<(&str, Option<u32>)> {
                self.key_metadata.as_ref().map(|m| (m.key_id.as_str(), None))
            }
        }
    )*};
}

key_metadata_response!(
    DescribeKeyResponse,
    EnableKeyResponse,
    DisableKeyResponse,
    ScheduleKeyDeletionResponse,
    CancelKeyDeletionResponse
);

/// Calls that make a version record the version they made.
macro_rules! new_version_response {
    ($($t:ty),*) => {$(
        impl Audited for $t {
            fn key_used(&self) -> Option<(&str, Option<u32>)> {
                self.key_metadata
                    .as_ref()
                    .map(|m| (m.key_id.as_str(), Some(m.primary_version)))
            }
        }
    )*};
}

new_version_response!(CreateKeyResponse, RotateKeyResponse);

macro_rules! versioned_response {
    ($($t:ty),*) => {$(
        impl Audited for $t {
            fn key_used(&self) -> Option<(&str, Option<u32>)> {
                Some((self.key_id.as_str(), Some(self.key_version)))
            }
        }
    )*};
}

versioned_response!(
    GenerateDataKeyResponse,
    GenerateDataKeyWithoutPlaintextResponse,
    EncryptResponse,
    DecryptResponse
);

impl Audited for ReEncryptResponse {
    fn key_used(&self) -> Option<(&str, Option<u32>)> {
        Some((self.key_id.as_str(), Some(self.key_version)))
    }

    fn parameters(&self) -> Vec<(&'static str, String)> {
        vec![
            ("source_key_id", self.source_key_id.clone()),
            ("source_key_version", self.source_key_version.to_string()),
        ]
    }
}

impl Audited for CreateAliasResponse {
    fn key_used(&self) -> Option<(&str, Option<u32>)> {
        self.alias.as_ref().map(|a| (a.key_id.as_str(), None))
    }
}

impl Audited for ListKeysResponse {}
impl Audited for ListAliasesResponse {}
impl Audited for DeleteAliasResponse {}
impl Audited for ListKeyVersionsResponse {}
impl Audited for GenerateRandomResponse {}
impl Audited for QueryEventsResponse {}
impl Audited for VerifyLogResponse {}
impl Audited for DescribeLogResponse {}
impl Audited for SealArchiveResponse {
    /// The range sealed, to find the archive by.
    fn parameters(&self) -> Vec<(&'static str, String)> {
        vec![
            ("first_sequence", self.first_sequence.to_string()),
            ("last_sequence", self.last_sequence.to_string()),
            ("last_hash", self.last_hash.clone()),
        ]
    }
}
impl Audited for ExportArchiveResponse {}
impl Audited for PruneEventsResponse {}
impl Audited for GetKeyPolicyResponse {
    fn key_used(&self) -> Option<(&str, Option<u32>)> {
        Some((self.key_id.as_str(), None))
    }
}
impl Audited for PutKeyPolicyResponse {
    fn key_used(&self) -> Option<(&str, Option<u32>)> {
        Some((self.key_id.as_str(), None))
    }
}

// The admin service's responses name no key. CreateToken's record names the new token's id (at its gate),
// never the token.
impl Audited for WhoAmIResponse {}
impl Audited for CreatePrincipalResponse {}
impl Audited for ListPrincipalsResponse {}
impl Audited for DisablePrincipalResponse {}
impl Audited for CreateTokenResponse {}
impl Audited for ListTokensResponse {}
impl Audited for RevokeTokenResponse {}

/// A call no handler saw (see `unhandled.rs`) has no response to describe.
impl Audited for () {}
