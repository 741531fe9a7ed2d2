//! AWS KMS's operations in kmsd's terms: each AWS JSON request read into the gRPC request of the same call (with
//! AWS's own validation rules, which are this endpoint's), and each gRPC response written as AWS's JSON response.
//! The handlers themselves are the gRPC service's (`service::KmsService`): what a call does, who may make it and
//! what its record says are decided there, once, for both front ends.
//!
//! Field names and shapes follow botocore's model of KMS (`botocore/data/kms/2014-11-01/service-2.json`): blobs as
//! base64, timestamps as epoch seconds, `KeyId` in responses as the key's ARN where AWS returns one. Requests name
//! their fields in AWS's spelling; a field AWS does not define is refused (ValidationException), as is a field
//! kmsd does not support with a value other than AWS's default.
//!
//! Invariants: no I/O; plaintext read from a request or written into a response lives only in zeroizing buffers
//! here; a refusal is a `Status` carrying the AWS exception name in [`crate::service::AWS_ERROR_METADATA`].

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};
use tonic::Status;
use tonic::metadata::MetadataValue;
use zeroize::Zeroizing;

use super::arn::{ArnError, Home};
use crate::keys::{KeyId, KeyRef};
use crate::proto as pb;
use crate::service::AWS_ERROR_METADATA;

/// The one encryption algorithm a symmetric key has.
const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";
/// Listings: AWS's default and largest page.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// A refusal by AWS's exception name.
pub fn aws_error(name: &'static str, code: tonic::Code, message: impl Into<String>) -> Status {
    let mut status = Status::new(code, message);
    status
        .metadata_mut()
        .insert(AWS_ERROR_METADATA, MetadataValue::from_static(name));
    status
}

fn validation(message: impl Into<String>) -> Status {
    aws_error("ValidationException", tonic::Code::InvalidArgument, message)
}

/// Reads a request body as an operation's input: malformed JSON is AWS's `SerializationException`; an unknown
/// field, a wrong type or bad base64 is a `ValidationException`.
pub fn parse<I: DeserializeOwned>(body: &[u8]) -> Result<I, Status> {
    // AWS SDKs send `{}` for an operation without parameters; some clients send nothing.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => validation(format!("invalid request: {e}")),
        _ => aws_error(
            "SerializationException",
            tonic::Code::InvalidArgument,
            format!("the request body is not valid JSON: {e}"),
        ),
    })
}

/// Bytes sent as base64 (`Plaintext`, `CiphertextBlob`), held in a zeroizing buffer.
#[derive(Default)]
pub struct Blob(Zeroizing<Vec<u8>>);

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        STANDARD
            .decode(text.as_bytes())
            .map(|bytes| Blob(Zeroizing::new(bytes)))
            .map_err(|e| serde::de::Error::custom(format!("a blob must be base64: {e}")))
    }
}

impl Blob {
    /// The bytes, moved into the gRPC request (whose handler zeroizes them).
    fn take(mut self) -> Vec<u8> {
        std::mem::take(&mut *self.0)
    }
}

/// Bytes written as base64 without leaving a copy outside zeroizing buffers.
struct Secret<'a>(&'a [u8]);

impl Serialize for Secret<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Zeroizing::new(STANDARD.encode(self.0)))
    }
}

/// A response body: JSON in a zeroizing buffer (it may hold a data key).
pub fn body(value: &impl Serialize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(1024));
    // Serializing into a Vec fails only for maps with non-string keys, which no response has.
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.clear();
        out.extend_from_slice(b"{}");
    }
    out
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// What a `KeyId` field names, as kmsd's gRPC API spells it (a key id or an alias name).
fn key_id(home: &Home, field: &str, value: &str) -> Result<String, Status> {
    match home.key_ref(value, field) {
        Ok(KeyRef::Id(id)) => Ok(id.to_string()),
        Ok(KeyRef::Alias(alias)) => Ok(alias.to_string()),
        Err(ArnError::Invalid(e)) => Err(validation(e.0)),
        Err(ArnError::Elsewhere(message)) => Err(aws_error(
            "NotFoundException",
            tonic::Code::NotFound,
            message,
        )),
    }
}

fn required_key_id(home: &Home, field: &str, value: Option<String>) -> Result<String, Status> {
    match value {
        Some(v) => key_id(home, field, &v),
        None => Err(validation(format!("{field} is required"))),
    }
}

/// A key id of a response as its ARN (a value that is not a key id is returned as it is).
fn arn(home: &Home, key_id: &str) -> String {
    KeyId::parse(key_id).map_or_else(|_| key_id.to_owned(), |id| home.key_arn(id))
}

fn symmetric_only(field: &str, value: Option<&str>) -> Result<(), Status> {
    match value {
        None | Some(SYMMETRIC_DEFAULT) => Ok(()),
        Some(other) => Err(validation(format!(
            "{field} {other:?} is not supported: kmsd re-encrypts {SYMMETRIC_DEFAULT} blobs only (decrypt and encrypt \
             RSA ciphertexts with Decrypt and Encrypt)"
        ))),
    }
}

fn no_recipient(recipient: &Option<Value>) -> Result<(), Status> {
    match recipient {
        None => Ok(()),
        Some(_) => Err(aws_error(
            "UnsupportedOperationException",
            tonic::Code::Unimplemented,
            "Recipient (Nitro Enclaves attestation) is not supported by kmsd",
        )),
    }
}

fn no_dry_run(dry_run: Option<bool>) -> Result<(), Status> {
    match dry_run {
        None | Some(false) => Ok(()),
        Some(true) => Err(aws_error(
            "UnsupportedOperationException",
            tonic::Code::Unimplemented,
            "DryRun is not supported by kmsd",
        )),
    }
}

fn limit(limit: Option<u32>) -> Result<u32, Status> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(validation(format!(
            "Limit {n} is out of range: 1-{MAX_LIMIT}"
        ))),
    }
}

fn seconds(t: &Option<prost_types::Timestamp>) -> Option<f64> {
    t.as_ref()
        .map(|t| t.seconds as f64 + f64::from(t.nanos) / 1e9)
}

/// A `KeyMetadata` as AWS writes it.
pub fn key_metadata(home: &Home, m: &pb::KeyMetadata) -> Value {
    let state = pb::KeyState::try_from(m.state).unwrap_or(pb::KeyState::Unspecified);
    let mut v = json!({
        "AWSAccountId": home.account(),
        "KeyId": m.key_id,
        "Arn": arn(home, &m.key_id),
        "CreationDate": seconds(&m.creation_time),
        "Enabled": state == pb::KeyState::Enabled,
        "Description": m.description,
        "KeyUsage": m.key_usage,
        // AWS has no state for a destroyed key (it is gone); kmsd keeps its metadata, which AWS's `Unavailable`
        // describes best: no operation can use it.
        "KeyState": match state {
            pb::KeyState::Enabled => "Enabled",
            pb::KeyState::Disabled => "Disabled",
            pb::KeyState::PendingDeletion => "PendingDeletion",
            pb::KeyState::PendingImport => "PendingImport",
            pb::KeyState::Destroyed | pb::KeyState::Unspecified => "Unavailable",
        },
        // kmsd's own material is what AWS calls AWS_KMS.
        "Origin": if m.origin == "EXTERNAL" { "EXTERNAL" } else { "AWS_KMS" },
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": m.key_spec,
        "KeySpec": m.key_spec,
        "MultiRegion": false,
    });
    // As AWS: each list only where it applies to the key.
    for (field, list) in [
        ("EncryptionAlgorithms", &m.encryption_algorithms),
        ("SigningAlgorithms", &m.signing_algorithms),
        ("MacAlgorithms", &m.mac_algorithms),
    ] {
        if !list.is_empty() {
            v[field] = json!(list);
        }
    }
    if let Some(deletion) = seconds(&m.deletion_time) {
        v["DeletionDate"] = json!(deletion);
    }
    if !m.expiration_model.is_empty() {
        v["ExpirationModel"] = json!(m.expiration_model);
    }
    if let Some(valid_to) = seconds(&m.valid_to) {
        v["ValidTo"] = json!(valid_to);
    }
    v
}

fn tags_of(tags: Vec<Tag>) -> HashMap<String, String> {
    tags.into_iter().map(|t| (t.tag_key, t.tag_value)).collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Tag {
    tag_key: String,
    tag_value: String,
}

// --- The operations: each input, read into its gRPC request, and each response, written as AWS's. ---

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct CreateKeyInput {
    description: Option<String>,
    key_usage: Option<String>,
    key_spec: Option<String>,
    customer_master_key_spec: Option<String>,
    origin: Option<String>,
    policy: Option<String>,
    tags: Option<Vec<Tag>>,
    bypass_policy_lockout_safety_check: Option<bool>,
    multi_region: Option<bool>,
    custom_key_store_id: Option<String>,
    xks_key_id: Option<String>,
}

impl CreateKeyInput {
    pub fn into_pb(self, _home: &Home) -> Result<pb::CreateKeyRequest, Status> {
        let key_spec = match (self.key_spec, self.customer_master_key_spec) {
            (Some(_), Some(_)) => {
                return Err(validation(
                    "give KeySpec or its deprecated name CustomerMasterKeySpec, not both",
                ));
            }
            (spec, deprecated) => spec.or(deprecated).unwrap_or_default(),
        };
        // AWS's default usage is ENCRYPT_DECRYPT whatever the spec, so a signing or MAC key must say so.
        let key_usage = self
            .key_usage
            .unwrap_or_else(|| "ENCRYPT_DECRYPT".to_owned());
        let origin = match self.origin.as_deref() {
            None | Some("AWS_KMS") => "",
            Some("EXTERNAL") => "EXTERNAL",
            Some(other) => {
                return Err(aws_error(
                    "UnsupportedOperationException",
                    tonic::Code::Unimplemented,
                    format!("Origin {other} is not supported by kmsd: AWS_KMS or EXTERNAL"),
                ));
            }
        };
        if self.multi_region == Some(true)
            || self.custom_key_store_id.is_some()
            || self.xks_key_id.is_some()
        {
            return Err(aws_error(
                "UnsupportedOperationException",
                tonic::Code::Unimplemented,
                "multi-Region keys and custom key stores are not supported by kmsd",
            ));
        }
        let _ = self.bypass_policy_lockout_safety_check;
        let policy = match self.policy.as_deref() {
            None => None,
            Some(text) => Some(policy_document(text)?),
        };
        Ok(pb::CreateKeyRequest {
            description: self.description.unwrap_or_default(),
            tags: tags_of(self.tags.unwrap_or_default()),
            // As AWS's default key policy gives the account every right on a new key, a key made here without a
            // policy gives its creator every right on it (nothing more for an administrator, who has them anyway).
            grant_creator: if policy.is_none() {
                vec![crate::auth::policy::WILDCARD.to_owned()]
            } else {
                Vec::new()
            },
            policy,
            key_spec,
            key_usage,
            origin: origin.to_owned(),
            ..Default::default()
        })
    }
}

/// A key policy sent as AWS sends one, a JSON string: kmsd's policy document (`kmsctl keys policy get` shows one).
fn policy_document(text: &str) -> Result<pb::KeyPolicy, Status> {
    kmsd_proto::key_policy::PolicyDocument::from_json(text)
        .map(|document| pb::KeyPolicy::from(&document))
        .map_err(|e| {
            aws_error(
                "MalformedPolicyDocumentException",
                tonic::Code::InvalidArgument,
                format!("the policy is not a kmsd key policy document: {e}"),
            )
        })
}

pub fn create_key_response(home: &Home, r: pb::CreateKeyResponse) -> Value {
    json!({ "KeyMetadata": key_metadata(home, &r.key_metadata.unwrap_or_default()) })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct KeyIdInput {
    key_id: Option<String>,
    grant_tokens: Option<Vec<String>>,
}

impl KeyIdInput {
    fn key(self, home: &Home) -> Result<String, Status> {
        let _ = self.grant_tokens;
        required_key_id(home, "KeyId", self.key_id)
    }

    pub fn describe(self, home: &Home) -> Result<pb::DescribeKeyRequest, Status> {
        Ok(pb::DescribeKeyRequest {
            key_id: self.key(home)?,
        })
    }

    pub fn enable(self, home: &Home) -> Result<pb::EnableKeyRequest, Status> {
        Ok(pb::EnableKeyRequest {
            key_id: self.key(home)?,
        })
    }

    pub fn disable(self, home: &Home) -> Result<pb::DisableKeyRequest, Status> {
        Ok(pb::DisableKeyRequest {
            key_id: self.key(home)?,
        })
    }

    pub fn cancel_deletion(self, home: &Home) -> Result<pb::CancelKeyDeletionRequest, Status> {
        Ok(pb::CancelKeyDeletionRequest {
            key_id: self.key(home)?,
        })
    }
}

pub fn describe_key_response(home: &Home, r: pb::DescribeKeyResponse) -> Value {
    json!({ "KeyMetadata": key_metadata(home, &r.key_metadata.unwrap_or_default()) })
}

pub fn empty<R>(_home: &Home, _r: R) -> Value {
    json!({})
}

pub fn cancel_deletion_response(home: &Home, r: pb::CancelKeyDeletionResponse) -> Value {
    let m = r.key_metadata.unwrap_or_default();
    json!({ "KeyId": arn(home, &m.key_id) })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ScheduleKeyDeletionInput {
    key_id: Option<String>,
    pending_window_in_days: Option<u32>,
}

impl ScheduleKeyDeletionInput {
    pub fn into_pb(self, home: &Home) -> Result<pb::ScheduleKeyDeletionRequest, Status> {
        let days = self.pending_window_in_days.unwrap_or(30);
        if !(7..=30).contains(&days) {
            return Err(validation(format!(
                "PendingWindowInDays {days} is out of range: 7-30"
            )));
        }
        Ok(pb::ScheduleKeyDeletionRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
            pending_window_days: days,
        })
    }
}

pub fn schedule_deletion_response(home: &Home, r: pb::ScheduleKeyDeletionResponse) -> Value {
    let m = r.key_metadata.unwrap_or_default();
    json!({
        "KeyId": arn(home, &m.key_id),
        "DeletionDate": seconds(&m.deletion_time),
        "KeyState": "PendingDeletion",
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ListInput {
    key_id: Option<String>,
    limit: Option<u32>,
    marker: Option<String>,
}

impl ListInput {
    pub fn keys(self, _home: &Home) -> Result<pb::ListKeysRequest, Status> {
        if self.key_id.is_some() {
            return Err(validation("ListKeys has no KeyId"));
        }
        Ok(pb::ListKeysRequest {
            page_size: limit(self.limit)?,
            page_token: self.marker.unwrap_or_default(),
        })
    }

    pub fn aliases(self, home: &Home) -> Result<pb::ListAliasesRequest, Status> {
        Ok(pb::ListAliasesRequest {
            key_id: match self.key_id {
                Some(k) => key_id(home, "KeyId", &k)?,
                None => String::new(),
            },
            page_size: limit(self.limit)?,
            page_token: self.marker.unwrap_or_default(),
        })
    }
}

fn page(mut v: Value, next: String) -> Value {
    v["Truncated"] = json!(!next.is_empty());
    if !next.is_empty() {
        v["NextMarker"] = json!(next);
    }
    v
}

pub fn list_keys_response(home: &Home, r: pb::ListKeysResponse) -> Value {
    let keys: Vec<Value> = r
        .keys
        .iter()
        .map(|k| json!({ "KeyId": k.key_id, "KeyArn": arn(home, &k.key_id) }))
        .collect();
    page(json!({ "Keys": keys }), r.next_page_token)
}

pub fn list_aliases_response(home: &Home, r: pb::ListAliasesResponse) -> Value {
    let aliases: Vec<Value> = r
        .aliases
        .iter()
        .map(|a| {
            let arn = crate::keys::AliasName::parse(&a.alias_name)
                .map_or_else(|_| a.alias_name.clone(), |name| home.alias_arn(&name));
            json!({
                "AliasName": a.alias_name,
                "AliasArn": arn,
                "TargetKeyId": a.key_id,
                "CreationDate": seconds(&a.creation_time),
                "LastUpdatedDate": seconds(&a.creation_time),
            })
        })
        .collect();
    page(json!({ "Aliases": aliases }), r.next_page_token)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct AliasInput {
    alias_name: Option<String>,
    target_key_id: Option<String>,
}

/// `alias/aws/` names AWS managed keys, which no one may create or delete.
fn alias_name(name: Option<String>) -> Result<String, Status> {
    let name = name.ok_or_else(|| validation("AliasName is required"))?;
    if name.starts_with("alias/aws/") {
        return Err(aws_error(
            "NotAuthorizedException",
            tonic::Code::PermissionDenied,
            "the alias/aws/ prefix is reserved for AWS managed keys",
        ));
    }
    Ok(name)
}

impl AliasInput {
    pub fn create(self, home: &Home) -> Result<pb::CreateAliasRequest, Status> {
        Ok(pb::CreateAliasRequest {
            alias_name: alias_name(self.alias_name)?,
            key_id: required_key_id(home, "TargetKeyId", self.target_key_id)?,
        })
    }

    pub fn delete(self, _home: &Home) -> Result<pb::DeleteAliasRequest, Status> {
        if self.target_key_id.is_some() {
            return Err(validation("DeleteAlias has no TargetKeyId"));
        }
        Ok(pb::DeleteAliasRequest {
            alias_name: alias_name(self.alias_name)?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct EncryptInput {
    key_id: Option<String>,
    #[serde(default)]
    plaintext: Option<Blob>,
    encryption_context: Option<HashMap<String, String>>,
    grant_tokens: Option<Vec<String>>,
    encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
}

impl EncryptInput {
    pub fn into_pb(self, home: &Home) -> Result<pb::EncryptRequest, Status> {
        let _ = self.grant_tokens;
        no_dry_run(self.dry_run)?;
        Ok(pb::EncryptRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
            plaintext: self
                .plaintext
                .ok_or_else(|| validation("Plaintext is required"))?
                .take(),
            encryption_context: self.encryption_context.unwrap_or_default(),
            encryption_algorithm: self.encryption_algorithm.unwrap_or_default(),
        })
    }
}

pub fn encrypt_response(home: &Home, r: pb::EncryptResponse) -> Value {
    json!({
        "CiphertextBlob": b64(&r.ciphertext_blob),
        "KeyId": arn(home, &r.key_id),
        "EncryptionAlgorithm": r.encryption_algorithm,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct DecryptInput {
    #[serde(default)]
    ciphertext_blob: Option<Blob>,
    encryption_context: Option<HashMap<String, String>>,
    grant_tokens: Option<Vec<String>>,
    key_id: Option<String>,
    encryption_algorithm: Option<String>,
    recipient: Option<Value>,
    dry_run: Option<bool>,
}

impl DecryptInput {
    pub fn into_pb(self, home: &Home) -> Result<pb::DecryptRequest, Status> {
        let _ = self.grant_tokens;
        no_recipient(&self.recipient)?;
        no_dry_run(self.dry_run)?;
        Ok(pb::DecryptRequest {
            ciphertext_blob: self
                .ciphertext_blob
                .ok_or_else(|| validation("CiphertextBlob is required"))?
                .take(),
            key_id: match self.key_id {
                Some(k) => key_id(home, "KeyId", &k)?,
                None => String::new(),
            },
            encryption_context: self.encryption_context.unwrap_or_default(),
            encryption_algorithm: self.encryption_algorithm.unwrap_or_default(),
        })
    }
}

/// Decrypt's response: the plaintext only in zeroizing buffers.
pub fn decrypt_response(home: &Home, r: pb::DecryptResponse) -> Zeroizing<Vec<u8>> {
    let r = ZeroizeOnDrop(r);
    body(&DecryptOutput {
        key_id: arn(home, &r.0.key_id),
        plaintext: Secret(&r.0.plaintext),
        encryption_algorithm: &r.0.encryption_algorithm,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptOutput<'a> {
    key_id: String,
    plaintext: Secret<'a>,
    encryption_algorithm: &'a str,
}

/// A gRPC response holding plaintext, zeroized when dropped.
struct ZeroizeOnDrop<T: PlaintextHolder>(T);

trait PlaintextHolder {
    fn plaintext(&mut self) -> &mut Vec<u8>;
}

impl<T: PlaintextHolder> Drop for ZeroizeOnDrop<T> {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self.0.plaintext());
    }
}

impl PlaintextHolder for pb::DecryptResponse {
    fn plaintext(&mut self) -> &mut Vec<u8> {
        &mut self.plaintext
    }
}

impl PlaintextHolder for pb::GenerateDataKeyPairResponse {
    fn plaintext(&mut self) -> &mut Vec<u8> {
        &mut self.private_key_plaintext
    }
}

impl PlaintextHolder for pb::GenerateDataKeyResponse {
    fn plaintext(&mut self) -> &mut Vec<u8> {
        &mut self.plaintext
    }
}

impl PlaintextHolder for pb::GenerateRandomResponse {
    fn plaintext(&mut self) -> &mut Vec<u8> {
        &mut self.plaintext
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ReEncryptInput {
    #[serde(default)]
    ciphertext_blob: Option<Blob>,
    source_encryption_context: Option<HashMap<String, String>>,
    source_key_id: Option<String>,
    destination_key_id: Option<String>,
    destination_encryption_context: Option<HashMap<String, String>>,
    source_encryption_algorithm: Option<String>,
    destination_encryption_algorithm: Option<String>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
}

impl ReEncryptInput {
    pub fn into_pb(self, home: &Home) -> Result<pb::ReEncryptRequest, Status> {
        let _ = self.grant_tokens;
        symmetric_only(
            "SourceEncryptionAlgorithm",
            self.source_encryption_algorithm.as_deref(),
        )?;
        symmetric_only(
            "DestinationEncryptionAlgorithm",
            self.destination_encryption_algorithm.as_deref(),
        )?;
        no_dry_run(self.dry_run)?;
        Ok(pb::ReEncryptRequest {
            ciphertext_blob: self
                .ciphertext_blob
                .ok_or_else(|| validation("CiphertextBlob is required"))?
                .take(),
            source_key_id: match self.source_key_id {
                Some(k) => key_id(home, "SourceKeyId", &k)?,
                None => String::new(),
            },
            source_encryption_context: self.source_encryption_context.unwrap_or_default(),
            destination_key_id: required_key_id(home, "DestinationKeyId", self.destination_key_id)?,
            destination_encryption_context: self.destination_encryption_context.unwrap_or_default(),
        })
    }
}

pub fn re_encrypt_response(home: &Home, r: pb::ReEncryptResponse) -> Value {
    json!({
        "CiphertextBlob": b64(&r.ciphertext_blob),
        "SourceKeyId": arn(home, &r.source_key_id),
        "KeyId": arn(home, &r.key_id),
        "SourceEncryptionAlgorithm": SYMMETRIC_DEFAULT,
        "DestinationEncryptionAlgorithm": SYMMETRIC_DEFAULT,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct GenerateDataKeyInput {
    key_id: Option<String>,
    encryption_context: Option<HashMap<String, String>>,
    number_of_bytes: Option<u32>,
    key_spec: Option<String>,
    grant_tokens: Option<Vec<String>>,
    recipient: Option<Value>,
    dry_run: Option<bool>,
}

/// GenerateDataKey's key, spec or size, and context, read as AWS reads them: exactly one of KeySpec and
/// NumberOfBytes.
type DataKeyFields = (String, i32, Option<u32>, HashMap<String, String>);

impl GenerateDataKeyInput {
    fn fields(self, home: &Home) -> Result<DataKeyFields, Status> {
        let _ = self.grant_tokens;
        no_recipient(&self.recipient)?;
        no_dry_run(self.dry_run)?;
        let spec = match (self.key_spec.as_deref(), self.number_of_bytes) {
            (None, None) => {
                return Err(validation(
                    "Please specify either number of bytes or key spec.",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(validation(
                    "Please specify either number of bytes or key spec, not both.",
                ));
            }
            (Some("AES_256"), None) => pb::DataKeySpec::Aes256,
            (Some("AES_128"), None) => pb::DataKeySpec::Aes128,
            (Some(other), None) => {
                return Err(validation(format!(
                    "KeySpec {other:?} is not AES_256 or AES_128"
                )));
            }
            (None, Some(_)) => pb::DataKeySpec::Unspecified,
        };
        Ok((
            required_key_id(home, "KeyId", self.key_id)?,
            spec as i32,
            self.number_of_bytes,
            self.encryption_context.unwrap_or_default(),
        ))
    }

    pub fn into_pb(self, home: &Home) -> Result<pb::GenerateDataKeyRequest, Status> {
        let (key_id, key_spec, number_of_bytes, encryption_context) = self.fields(home)?;
        Ok(pb::GenerateDataKeyRequest {
            key_id,
            key_spec,
            number_of_bytes,
            encryption_context,
        })
    }

    pub fn without_plaintext(
        self,
        home: &Home,
    ) -> Result<pb::GenerateDataKeyWithoutPlaintextRequest, Status> {
        let (key_id, key_spec, number_of_bytes, encryption_context) = self.fields(home)?;
        Ok(pb::GenerateDataKeyWithoutPlaintextRequest {
            key_id,
            key_spec,
            number_of_bytes,
            encryption_context,
        })
    }
}

/// GenerateDataKey's response: the data key only in zeroizing buffers.
pub fn generate_data_key_response(
    home: &Home,
    r: pb::GenerateDataKeyResponse,
) -> Zeroizing<Vec<u8>> {
    let r = ZeroizeOnDrop(r);
    body(&DataKeyOutput {
        ciphertext_blob: b64(&r.0.ciphertext_blob),
        plaintext: Secret(&r.0.plaintext),
        key_id: arn(home, &r.0.key_id),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DataKeyOutput<'a> {
    ciphertext_blob: String,
    plaintext: Secret<'a>,
    key_id: String,
}

pub fn generate_data_key_without_plaintext_response(
    home: &Home,
    r: pb::GenerateDataKeyWithoutPlaintextResponse,
) -> Value {
    json!({
        "CiphertextBlob": b64(&r.ciphertext_blob),
        "KeyId": arn(home, &r.key_id),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct GenerateRandomInput {
    number_of_bytes: Option<u32>,
    custom_key_store_id: Option<String>,
    recipient: Option<Value>,
}

impl GenerateRandomInput {
    pub fn into_pb(self, _home: &Home) -> Result<pb::GenerateRandomRequest, Status> {
        no_recipient(&self.recipient)?;
        if self.custom_key_store_id.is_some() {
            return Err(aws_error(
                "UnsupportedOperationException",
                tonic::Code::Unimplemented,
                "custom key stores are not supported by kmsd",
            ));
        }
        Ok(pb::GenerateRandomRequest {
            number_of_bytes: self
                .number_of_bytes
                .ok_or_else(|| validation("NumberOfBytes is required"))?,
        })
    }
}

pub fn generate_random_response(_home: &Home, r: pb::GenerateRandomResponse) -> Zeroizing<Vec<u8>> {
    let r = ZeroizeOnDrop(r);
    body(&RandomOutput {
        plaintext: Secret(&r.0.plaintext),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RandomOutput<'a> {
    plaintext: Secret<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct KeyPolicyInput {
    key_id: Option<String>,
    policy_name: Option<String>,
    policy: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
}

/// A key has one policy, named `default`, as in AWS.
fn default_policy_name(name: Option<&str>) -> Result<(), Status> {
    match name {
        None | Some("default") => Ok(()),
        Some(other) => Err(aws_error(
            "NotFoundException",
            tonic::Code::NotFound,
            format!("a key's only policy is named default, not {other:?}"),
        )),
    }
}

impl KeyPolicyInput {
    pub fn get(self, home: &Home) -> Result<pb::GetKeyPolicyRequest, Status> {
        default_policy_name(self.policy_name.as_deref())?;
        if self.policy.is_some() {
            return Err(validation("GetKeyPolicy has no Policy"));
        }
        Ok(pb::GetKeyPolicyRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
        })
    }

    pub fn put(self, home: &Home) -> Result<pb::PutKeyPolicyRequest, Status> {
        default_policy_name(self.policy_name.as_deref())?;
        let _ = self.bypass_policy_lockout_safety_check;
        let policy = self
            .policy
            .ok_or_else(|| validation("Policy is required"))?;
        Ok(pb::PutKeyPolicyRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
            policy: Some(policy_document(&policy)?),
        })
    }
}

pub fn get_key_policy_response(_home: &Home, r: pb::GetKeyPolicyResponse) -> Value {
    let document = kmsd_proto::key_policy::PolicyDocument::from(r.policy.unwrap_or_default());
    json!({ "Policy": document.to_json(), "PolicyName": "default" })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct UpdateAliasInput {
    alias_name: Option<String>,
    target_key_id: Option<String>,
}

impl UpdateAliasInput {
    pub fn into_pb(self, home: &Home) -> Result<pb::UpdateAliasRequest, Status> {
        Ok(pb::UpdateAliasRequest {
            alias_name: alias_name(self.alias_name)?,
            key_id: required_key_id(home, "TargetKeyId", self.target_key_id)?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct UpdateKeyDescriptionInput {
    key_id: Option<String>,
    description: Option<String>,
}

impl UpdateKeyDescriptionInput {
    pub fn into_pb(self, home: &Home) -> Result<pb::UpdateKeyDescriptionRequest, Status> {
        Ok(pb::UpdateKeyDescriptionRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
            description: self
                .description
                .ok_or_else(|| validation("Description is required"))?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct TagResourceInput {
    key_id: Option<String>,
    tags: Option<Vec<Tag>>,
}

impl TagResourceInput {
    pub fn into_pb(self, home: &Home) -> Result<pb::TagResourceRequest, Status> {
        Ok(pb::TagResourceRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
            tags: tags_of(self.tags.ok_or_else(|| validation("Tags is required"))?),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct UntagResourceInput {
    key_id: Option<String>,
    tag_keys: Option<Vec<String>>,
}

impl UntagResourceInput {
    pub fn into_pb(self, home: &Home) -> Result<pb::UntagResourceRequest, Status> {
        Ok(pb::UntagResourceRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
            tag_keys: self
                .tag_keys
                .ok_or_else(|| validation("TagKeys is required"))?,
        })
    }
}

impl ListInput {
    /// A key's tags (at most 50, so one page whatever the Limit).
    pub fn tags(self, home: &Home) -> Result<pb::ListResourceTagsRequest, Status> {
        limit(self.limit)?;
        Ok(pb::ListResourceTagsRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
        })
    }

    /// A key's rotations: its versions after the first.
    pub fn rotations(self, home: &Home) -> Result<pb::ListKeyVersionsRequest, Status> {
        limit(self.limit)?;
        Ok(pb::ListKeyVersionsRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
        })
    }

    /// A key's policy names: `default`, read through GetKeyPolicy (whose permission it needs).
    pub fn policies(self, home: &Home) -> Result<pb::GetKeyPolicyRequest, Status> {
        limit(self.limit)?;
        Ok(pb::GetKeyPolicyRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
        })
    }
}

pub fn list_resource_tags_response(_home: &Home, r: pb::ListResourceTagsResponse) -> Value {
    let tags: std::collections::BTreeMap<String, String> = r.tags.into_iter().collect();
    let tags: Vec<Value> = tags
        .into_iter()
        .map(|(k, v)| json!({ "TagKey": k, "TagValue": v }))
        .collect();
    json!({ "Tags": tags, "Truncated": false })
}

pub fn list_key_rotations_response(_home: &Home, r: pb::ListKeyVersionsResponse) -> Value {
    // kmsd's versions do not say whether a rotation was automatic or on demand, so RotationType is left out.
    let mut versions = r.versions;
    versions.sort_by_key(|v| v.version);
    let rotations: Vec<Value> = versions
        .iter()
        .filter(|v| v.version > 1)
        .map(|v| json!({ "RotationDate": seconds(&v.creation_time) }))
        .collect();
    json!({ "Rotations": rotations, "Truncated": false })
}

pub fn list_key_policies_response(_home: &Home, _r: pb::GetKeyPolicyResponse) -> Value {
    json!({ "PolicyNames": ["default"], "Truncated": false })
}

/// The rotation periods AWS accepts, in days (kmsd's gRPC API accepts 1-2560).
const ROTATION_DAYS: std::ops::RangeInclusive<u32> = 90..=2560;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct EnableKeyRotationInput {
    key_id: Option<String>,
    rotation_period_in_days: Option<u32>,
}

impl EnableKeyRotationInput {
    pub fn into_pb(self, home: &Home) -> Result<pb::EnableKeyRotationRequest, Status> {
        let days = self.rotation_period_in_days.unwrap_or(365);
        if !ROTATION_DAYS.contains(&days) {
            return Err(validation(format!(
                "RotationPeriodInDays {days} is out of range: 90-2560"
            )));
        }
        Ok(pb::EnableKeyRotationRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
            rotation_period_days: days,
        })
    }
}

impl KeyIdInput {
    pub fn disable_rotation(self, home: &Home) -> Result<pb::DisableKeyRotationRequest, Status> {
        Ok(pb::DisableKeyRotationRequest {
            key_id: self.key(home)?,
        })
    }

    pub fn rotation_status(self, home: &Home) -> Result<pb::GetKeyRotationStatusRequest, Status> {
        Ok(pb::GetKeyRotationStatusRequest {
            key_id: self.key(home)?,
        })
    }

    pub fn rotate(self, home: &Home) -> Result<pb::RotateKeyRequest, Status> {
        Ok(pb::RotateKeyRequest {
            key_id: self.key(home)?,
        })
    }
}

pub fn rotation_status_response(home: &Home, r: pb::GetKeyRotationStatusResponse) -> Value {
    let mut v = json!({
        "KeyId": arn(home, &r.key_id),
        "KeyRotationEnabled": r.rotation_enabled,
    });
    if r.rotation_enabled {
        v["RotationPeriodInDays"] = json!(r.rotation_period_days);
        if let Some(next) = seconds(&r.next_rotation_time) {
            v["NextRotationDate"] = json!(next);
        }
    }
    v
}

pub fn rotate_response(home: &Home, r: pb::RotateKeyResponse) -> Value {
    let m = r.key_metadata.unwrap_or_default();
    json!({ "KeyId": arn(home, &m.key_id) })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct DataKeyPairInput {
    key_id: Option<String>,
    key_pair_spec: Option<String>,
    encryption_context: Option<HashMap<String, String>>,
    grant_tokens: Option<Vec<String>>,
    recipient: Option<Value>,
    dry_run: Option<bool>,
}

impl DataKeyPairInput {
    fn read(self, home: &Home) -> Result<pb::GenerateDataKeyPairWithoutPlaintextRequest, Status> {
        let _ = self.grant_tokens;
        no_recipient(&self.recipient)?;
        no_dry_run(self.dry_run)?;
        Ok(pb::GenerateDataKeyPairWithoutPlaintextRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
            key_pair_spec: self
                .key_pair_spec
                .ok_or_else(|| validation("KeyPairSpec is required"))?,
            encryption_context: self.encryption_context.unwrap_or_default(),
        })
    }

    pub fn with_plaintext(self, home: &Home) -> Result<pb::GenerateDataKeyPairRequest, Status> {
        let r = self.read(home)?;
        Ok(pb::GenerateDataKeyPairRequest {
            key_id: r.key_id,
            key_pair_spec: r.key_pair_spec,
            encryption_context: r.encryption_context,
        })
    }

    pub fn without_plaintext(
        self,
        home: &Home,
    ) -> Result<pb::GenerateDataKeyPairWithoutPlaintextRequest, Status> {
        self.read(home)
    }
}

/// GenerateDataKeyPair's response: the private key only in zeroizing buffers.
pub fn data_key_pair_response(
    home: &Home,
    r: pb::GenerateDataKeyPairResponse,
) -> Zeroizing<Vec<u8>> {
    let r = ZeroizeOnDrop(r);
    body(&DataKeyPairOutput {
        private_key_ciphertext_blob: b64(&r.0.private_key_ciphertext_blob),
        private_key_plaintext: Secret(&r.0.private_key_plaintext),
        public_key: b64(&r.0.public_key),
        key_id: arn(home, &r.0.key_id),
        key_pair_spec: &r.0.key_pair_spec,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DataKeyPairOutput<'a> {
    private_key_ciphertext_blob: String,
    private_key_plaintext: Secret<'a>,
    public_key: String,
    key_id: String,
    key_pair_spec: &'a str,
}

pub fn data_key_pair_without_plaintext_response(
    home: &Home,
    r: pb::GenerateDataKeyPairWithoutPlaintextResponse,
) -> Value {
    json!({
        "PrivateKeyCiphertextBlob": b64(&r.private_key_ciphertext_blob),
        "PublicKey": b64(&r.public_key),
        "KeyId": arn(home, &r.key_id),
        "KeyPairSpec": r.key_pair_spec,
    })
}

// --- Imported key material. ---

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ImportParametersInput {
    key_id: Option<String>,
    wrapping_algorithm: Option<String>,
    wrapping_key_spec: Option<String>,
}

impl ImportParametersInput {
    pub fn into_pb(self, home: &Home) -> Result<pb::GetParametersForImportRequest, Status> {
        Ok(pb::GetParametersForImportRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
            wrapping_algorithm: self
                .wrapping_algorithm
                .ok_or_else(|| validation("WrappingAlgorithm is required"))?,
            wrapping_key_spec: self
                .wrapping_key_spec
                .ok_or_else(|| validation("WrappingKeySpec is required"))?,
        })
    }
}

pub fn import_parameters_response(home: &Home, r: pb::GetParametersForImportResponse) -> Value {
    json!({
        "KeyId": arn(home, &r.key_id),
        "ImportToken": b64(&r.import_token),
        "PublicKey": b64(&r.public_key),
        "ParametersValidTo": seconds(&r.parameters_valid_to),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ImportInput {
    key_id: Option<String>,
    #[serde(default)]
    import_token: Option<Blob>,
    #[serde(default)]
    encrypted_key_material: Option<Blob>,
    valid_to: Option<f64>,
    expiration_model: Option<String>,
    import_type: Option<String>,
    key_material_description: Option<String>,
    key_material_id: Option<String>,
}

impl ImportInput {
    pub fn into_pb(self, home: &Home) -> Result<pb::ImportKeyMaterialRequest, Status> {
        let _ = self.key_material_description;
        if self.key_material_id.is_some()
            || self
                .import_type
                .as_deref()
                .is_some_and(|t| t != "EXISTING_KEY_MATERIAL")
        {
            return Err(aws_error(
                "UnsupportedOperationException",
                tonic::Code::Unimplemented,
                "kmsd keeps one key material per imported key: KeyMaterialId and ImportType NEW_KEY_MATERIAL \
                 (rotating imported material) are not supported",
            ));
        }
        let valid_to = match self.valid_to {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 && s < 253_402_300_800.0 => {
                Some(prost_types::Timestamp {
                    seconds: s.trunc() as i64,
                    nanos: (s.fract() * 1e9) as i32,
                })
            }
            Some(s) => return Err(validation(format!("ValidTo {s} is not a time"))),
        };
        Ok(pb::ImportKeyMaterialRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
            import_token: self
                .import_token
                .ok_or_else(|| validation("ImportToken is required"))?
                .take(),
            encrypted_key_material: self
                .encrypted_key_material
                .ok_or_else(|| validation("EncryptedKeyMaterial is required"))?
                .take(),
            expiration_model: self.expiration_model.unwrap_or_default(),
            valid_to,
        })
    }
}

pub fn import_response(home: &Home, r: pb::ImportKeyMaterialResponse) -> Value {
    json!({ "KeyId": arn(home, &r.key_id) })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct DeleteImportedInput {
    key_id: Option<String>,
    key_material_id: Option<String>,
}

impl DeleteImportedInput {
    pub fn into_pb(self, home: &Home) -> Result<pb::DeleteImportedKeyMaterialRequest, Status> {
        if self.key_material_id.is_some() {
            return Err(aws_error(
                "UnsupportedOperationException",
                tonic::Code::Unimplemented,
                "kmsd keeps one key material per imported key: KeyMaterialId is not supported",
            ));
        }
        Ok(pb::DeleteImportedKeyMaterialRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
        })
    }
}

pub fn delete_imported_response(home: &Home, r: pb::DeleteImportedKeyMaterialResponse) -> Value {
    json!({ "KeyId": arn(home, &r.key_id) })
}

// --- Key pairs and HMAC keys. ---

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct SignInput {
    key_id: Option<String>,
    #[serde(default)]
    message: Option<Blob>,
    message_type: Option<String>,
    #[serde(default)]
    signature: Option<Blob>,
    signing_algorithm: Option<String>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
}

impl SignInput {
    /// Everything Sign and Verify share, as a Verify request (whose signature is empty if none was given).
    fn read(self, home: &Home) -> Result<pb::VerifyRequest, Status> {
        let _ = self.grant_tokens;
        no_dry_run(self.dry_run)?;
        Ok(pb::VerifyRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
            message: self
                .message
                .ok_or_else(|| validation("Message is required"))?
                .take(),
            message_type: self.message_type.unwrap_or_default(),
            signature: self.signature.map(Blob::take).unwrap_or_default(),
            signing_algorithm: self
                .signing_algorithm
                .ok_or_else(|| validation("SigningAlgorithm is required"))?,
        })
    }

    pub fn sign(self, home: &Home) -> Result<pb::SignRequest, Status> {
        if self.signature.is_some() {
            return Err(validation("Sign takes no Signature"));
        }
        let r = self.read(home)?;
        Ok(pb::SignRequest {
            key_id: r.key_id,
            message: r.message,
            message_type: r.message_type,
            signing_algorithm: r.signing_algorithm,
        })
    }

    pub fn verify(self, home: &Home) -> Result<pb::VerifyRequest, Status> {
        if self.signature.is_none() {
            return Err(validation("Signature is required"));
        }
        self.read(home)
    }
}

pub fn sign_response(home: &Home, r: pb::SignResponse) -> Value {
    json!({
        "KeyId": arn(home, &r.key_id),
        "Signature": b64(&r.signature),
        "SigningAlgorithm": r.signing_algorithm,
    })
}

pub fn verify_response(home: &Home, r: pb::VerifyResponse) -> Value {
    json!({
        "KeyId": arn(home, &r.key_id),
        "SignatureValid": r.signature_valid,
        "SigningAlgorithm": r.signing_algorithm,
    })
}

impl KeyIdInput {
    pub fn public_key(self, home: &Home) -> Result<pb::GetPublicKeyRequest, Status> {
        Ok(pb::GetPublicKeyRequest {
            key_id: self.key(home)?,
        })
    }
}

pub fn public_key_response(home: &Home, r: pb::GetPublicKeyResponse) -> Value {
    let mut v = json!({
        "KeyId": arn(home, &r.key_id),
        "PublicKey": b64(&r.public_key),
        "CustomerMasterKeySpec": r.key_spec,
        "KeySpec": r.key_spec,
        "KeyUsage": r.key_usage,
    });
    for (field, list) in [
        ("EncryptionAlgorithms", &r.encryption_algorithms),
        ("SigningAlgorithms", &r.signing_algorithms),
    ] {
        if !list.is_empty() {
            v[field] = json!(list);
        }
    }
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct MacInput {
    key_id: Option<String>,
    #[serde(default)]
    message: Option<Blob>,
    mac_algorithm: Option<String>,
    #[serde(default)]
    mac: Option<Blob>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
}

impl MacInput {
    /// Everything GenerateMac and VerifyMac share, as a VerifyMac request (whose MAC is empty if none was given).
    fn read(self, home: &Home) -> Result<pb::VerifyMacRequest, Status> {
        let _ = self.grant_tokens;
        no_dry_run(self.dry_run)?;
        Ok(pb::VerifyMacRequest {
            key_id: required_key_id(home, "KeyId", self.key_id)?,
            message: self
                .message
                .ok_or_else(|| validation("Message is required"))?
                .take(),
            mac_algorithm: self
                .mac_algorithm
                .ok_or_else(|| validation("MacAlgorithm is required"))?,
            mac: self.mac.map(Blob::take).unwrap_or_default(),
        })
    }

    pub fn generate(self, home: &Home) -> Result<pb::GenerateMacRequest, Status> {
        if self.mac.is_some() {
            return Err(validation("GenerateMac takes no Mac"));
        }
        let r = self.read(home)?;
        Ok(pb::GenerateMacRequest {
            key_id: r.key_id,
            message: r.message,
            mac_algorithm: r.mac_algorithm,
        })
    }

    pub fn verify(self, home: &Home) -> Result<pb::VerifyMacRequest, Status> {
        if self.mac.is_none() {
            return Err(validation("Mac is required"));
        }
        self.read(home)
    }
}

pub fn generate_mac_response(home: &Home, r: pb::GenerateMacResponse) -> Value {
    json!({
        "KeyId": arn(home, &r.key_id),
        "Mac": b64(&r.mac),
        "MacAlgorithm": r.mac_algorithm,
    })
}

pub fn verify_mac_response(home: &Home, r: pb::VerifyMacResponse) -> Value {
    json!({
        "KeyId": arn(home, &r.key_id),
        "MacValid": r.mac_valid,
        "MacAlgorithm": r.mac_algorithm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> Home {
        Home::new("eu-west-1", "111122223333").unwrap()
    }

    fn name(status: &Status) -> &str {
        status
            .metadata()
            .get(AWS_ERROR_METADATA)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[test]
    fn bad_bodies_are_refused_by_aws_names() {
        let e = parse::<EncryptInput>(b"{not json").err().unwrap();
        assert_eq!(name(&e), "SerializationException");
        let e = parse::<EncryptInput>(br#"{"KeyId": 3}"#).err().unwrap();
        assert_eq!(name(&e), "ValidationException");
        let e = parse::<EncryptInput>(br#"{"Bogus": 1}"#).err().unwrap();
        assert_eq!(name(&e), "ValidationException");
        assert!(e.message().contains("Bogus"), "{}", e.message());
        let e = parse::<EncryptInput>(br#"{"Plaintext": "not base64!"}"#)
            .err()
            .unwrap();
        assert_eq!(name(&e), "ValidationException");
        assert!(
            parse::<ListInput>(b"").is_ok(),
            "an empty body is no parameters"
        );
    }

    #[test]
    fn key_ids_are_read_in_every_form_aws_accepts() {
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        for form in [
            id.to_owned(),
            format!("arn:aws:kms:eu-west-1:111122223333:key/{id}"),
        ] {
            assert_eq!(key_id(&home(), "KeyId", &form).unwrap(), id);
        }
        assert_eq!(
            key_id(
                &home(),
                "KeyId",
                "arn:aws:kms:eu-west-1:111122223333:alias/app"
            )
            .unwrap(),
            "alias/app"
        );
        let elsewhere = key_id(
            &home(),
            "KeyId",
            &format!("arn:aws:kms:us-east-1:111122223333:key/{id}"),
        )
        .unwrap_err();
        assert_eq!(name(&elsewhere), "NotFoundException");
    }

    #[test]
    fn generate_data_key_needs_exactly_one_of_spec_and_size() {
        let read = |body: &str| {
            parse::<GenerateDataKeyInput>(body.as_bytes())
                .unwrap()
                .into_pb(&home())
        };
        let none = read(r#"{"KeyId": "alias/a"}"#).unwrap_err();
        assert_eq!(name(&none), "ValidationException");
        let both = read(r#"{"KeyId": "alias/a", "KeySpec": "AES_256", "NumberOfBytes": 32}"#);
        assert_eq!(name(&both.unwrap_err()), "ValidationException");
        let spec = read(r#"{"KeyId": "alias/a", "KeySpec": "AES_128"}"#).unwrap();
        assert_eq!(spec.key_spec, pb::DataKeySpec::Aes128 as i32);
        let size = read(r#"{"KeyId": "alias/a", "NumberOfBytes": 64}"#).unwrap();
        assert_eq!(size.number_of_bytes, Some(64));
    }

    #[test]
    fn rotation_periods_are_aws_s() {
        let read = |body: &str| {
            parse::<EnableKeyRotationInput>(body.as_bytes())
                .unwrap()
                .into_pb(&home())
        };
        for bad in [89, 2561] {
            let e = read(&format!(
                r#"{{"KeyId": "alias/a", "RotationPeriodInDays": {bad}}}"#
            ));
            assert_eq!(name(&e.unwrap_err()), "ValidationException");
        }
        assert_eq!(
            read(r#"{"KeyId": "alias/a"}"#)
                .unwrap()
                .rotation_period_days,
            365
        );
        assert_eq!(
            read(r#"{"KeyId": "alias/a", "RotationPeriodInDays": 90}"#)
                .unwrap()
                .rotation_period_days,
            90
        );
    }

    #[test]
    fn reserved_aliases() {
        let e = parse::<AliasInput>(br#"{"AliasName": "alias/aws/s3", "TargetKeyId": "alias/a"}"#)
            .unwrap()
            .create(&home())
            .unwrap_err();
        assert_eq!(name(&e), "NotAuthorizedException");
    }

    #[test]
    fn plaintext_responses_are_base64_json() {
        let r = pb::GenerateDataKeyResponse {
            key_id: "1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            key_version: 1,
            plaintext: vec![1, 2, 3],
            ciphertext_blob: vec![9],
        };
        let out: Value = serde_json::from_slice(&generate_data_key_response(&home(), r)).unwrap();
        assert_eq!(out["Plaintext"], "AQID");
        assert_eq!(out["CiphertextBlob"], "CQ==");
        assert_eq!(
            out["KeyId"],
            "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        );
    }
}
