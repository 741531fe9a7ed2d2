//! What each response tells the audit record about the key it used.

use super::call::Audited;
use crate::proto as pb;

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
    pb::DescribeKeyResponse,
    pb::EnableKeyResponse,
    pb::DisableKeyResponse,
    pb::ScheduleKeyDeletionResponse,
    pb::CancelKeyDeletionResponse,
    pb::UpdateKeyDescriptionResponse,
    pb::TagResourceResponse,
    pb::UntagResourceResponse,
    pb::EnableKeyRotationResponse,
    pb::DisableKeyRotationResponse
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

new_version_response!(pb::CreateKeyResponse, pb::RotateKeyResponse);

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
    pb::GenerateDataKeyResponse,
    pb::GenerateDataKeyWithoutPlaintextResponse,
    pb::EncryptResponse,
    pb::DecryptResponse,
    pb::GenerateDataKeyPairResponse,
    pb::GenerateDataKeyPairWithoutPlaintextResponse
);

impl Audited for pb::ReEncryptResponse {
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

impl Audited for pb::CreateAliasResponse {
    fn key_used(&self) -> Option<(&str, Option<u32>)> {
        self.alias.as_ref().map(|a| (a.key_id.as_str(), None))
    }
}

impl Audited for pb::UpdateAliasResponse {
    fn key_used(&self) -> Option<(&str, Option<u32>)> {
        self.alias.as_ref().map(|a| (a.key_id.as_str(), None))
    }
}

/// Responses that name the key they used (a key pair or HMAC key has one version, so none is named).
macro_rules! key_id_response {
    ($($t:ty),*) => {$(
        impl Audited for $t {
            fn key_used(&self) -> Option<(&str, Option<u32>)> {
                Some((self.key_id.as_str(), None))
            }
        }
    )*};
}

key_id_response!(
    pb::ListResourceTagsResponse,
    pb::GetKeyRotationStatusResponse,
    pb::SignResponse,
    pb::VerifyResponse,
    pb::GetPublicKeyResponse,
    pb::GenerateMacResponse,
    pb::VerifyMacResponse,
    pb::GetParametersForImportResponse,
    pb::ImportKeyMaterialResponse,
    pb::DeleteImportedKeyMaterialResponse
);

impl Audited for pb::ListKeysResponse {}
impl Audited for pb::ListAliasesResponse {}
impl Audited for pb::DeleteAliasResponse {}
impl Audited for pb::ListKeyVersionsResponse {}
impl Audited for pb::GenerateRandomResponse {}
impl Audited for pb::QueryEventsResponse {}
impl Audited for pb::VerifyLogResponse {}
impl Audited for pb::DescribeLogResponse {}
impl Audited for pb::SealArchiveResponse {
    /// The range sealed, to find the archive by.
    fn parameters(&self) -> Vec<(&'static str, String)> {
        vec![
            ("first_sequence", self.first_sequence.to_string()),
            ("last_sequence", self.last_sequence.to_string()),
            ("last_hash", self.last_hash.clone()),
        ]
    }
}
impl Audited for pb::ExportArchiveResponse {}
impl Audited for pb::PruneEventsResponse {}
impl Audited for pb::GetKeyPolicyResponse {
    fn key_used(&self) -> Option<(&str, Option<u32>)> {
        Some((self.key_id.as_str(), None))
    }
}
impl Audited for pb::PutKeyPolicyResponse {
    fn key_used(&self) -> Option<(&str, Option<u32>)> {
        Some((self.key_id.as_str(), None))
    }
}

// The admin service's responses name no key. CreateToken's record names the new token's id (at its gate),
// never the token.
impl Audited for pb::WhoAmIResponse {}
impl Audited for pb::CreatePrincipalResponse {}
impl Audited for pb::ListPrincipalsResponse {}
impl Audited for pb::DisablePrincipalResponse {}
impl Audited for pb::CreateTokenResponse {}
impl Audited for pb::ListTokensResponse {}
impl Audited for pb::RevokeTokenResponse {}
impl Audited for pb::CreateAccessKeyResponse {}
impl Audited for pb::ListAccessKeysResponse {}
impl Audited for pb::RevokeAccessKeyResponse {}

/// A call no handler saw (see `unhandled.rs`) has no response to describe.
impl Audited for () {}
