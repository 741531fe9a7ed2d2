//! The gRPC service layer: the only module that knows protobuf types.
//!
//! Each handler opens an audited [`call::Call`], parses its request into domain types (refusing bad input with
//! INVALID_ARGUMENT before anything happens), calls [`Kms`], converts the result back, and lets the auditor make the
//! call's record durable before the response leaves. Errors become statuses in one place, `status.rs`.
//!
//! Invariants: every call of every kmsd service yields exactly one audit record, whatever its outcome; a handler
//! never logs or returns key material, except a data key's or a decryption's plaintext in the response to the caller
//! that asked for it; plaintext received in a request is zeroized when handled.

mod admin;
mod audit_service;
mod audited;
mod call;
mod convert;
mod status;
mod unhandled;

pub use admin::AdminServiceImpl;
pub use audit_service::AuditServiceImpl;
pub use call::{Auditor, REASON_HEADER, REQUEST_ID_HEADER, code_name};
pub use status::ERROR_KIND_HEADER;
pub use unhandled::RecordUnhandledLayer;

use call::BlobRole;

use std::sync::Arc;

use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::auth::policy::{Access, KeyPolicy, Permission};
use crate::auth::{Authenticator, Caller};
use crate::keys::{
    self, AliasName, DataKeySpec, EncryptionContext, InvalidInput, KeyRef, NewKeySpec, Operation,
};
use crate::kms::Kms;
use crate::proto::key_management_service_server::KeyManagementService;
use crate::proto::{self, *};

pub use crate::proto::admin_service_server::AdminServiceServer;
pub use crate::proto::audit_service_server::AuditServiceServer;
pub use crate::proto::key_management_service_server::KeyManagementServiceServer;

/// The fully-qualified service names, as health checks and reflection report them.
pub const SERVICE_NAME: &str = "kms.v1.KeyManagementService";
pub const AUDIT_SERVICE_NAME: &str = "kms.v1.AuditService";
pub const ADMIN_SERVICE_NAME: &str = "kms.v1.AdminService";

pub struct KmsService {
    kms: Arc<Kms>,
    auth: Arc<Authenticator>,
    auditor: Arc<Auditor>,
}

impl KmsService {
    pub fn new(kms: Arc<Kms>, auth: Arc<Authenticator>, auditor: Arc<Auditor>) -> Self {
        KmsService { kms, auth, auditor }
    }

    /// Whether `caller` may use `permission` on `key` under `context`: administrators always, others as the key's
    /// policy says. Returns the key to act on: for everyone but administrators, the id authorization resolved,
    /// so that an alias moved in between cannot redirect the call.
    fn authorize(
        &self,
        call: &call::Call,
        caller: &Caller,
        permission: Permission,
        key: KeyRef,
        context: Option<&EncryptionContext>,
    ) -> Result<KeyRef, Status> {
        if caller.admin {
            return Ok(key);
        }
        let (id, policy) = self.kms.policy_of(&key)?;
        policy.evaluate(
            &Access {
                principal: &caller.principal,
                permission,
                context,
                has_reason: call.has_reason(),
            },
            &id,
        )?;
        Ok(KeyRef::Id(id))
    }

    /// The key a ciphertext blob names, for authorizing its use before it is opened.
    fn blob_key(blob_bytes: &[u8]) -> Result<KeyRef, Status> {
        crate::crypto::blob::parse(blob_bytes)
            .map(|b| KeyRef::Id(b.header.key_id))
            .map_err(|e| Status::from(crate::kms::KmsError::from(e)))
    }
}

fn context(
    pairs: std::collections::HashMap<String, String>,
    field: &str,
) -> Result<EncryptionContext, Status> {
    Ok(EncryptionContext::parse(pairs, field)?)
}

fn key_ref(s: &str) -> Result<KeyRef, Status> {
    Ok(KeyRef::parse(s, "key_id")?)
}

fn data_key_spec(spec: i32, number_of_bytes: Option<u32>) -> Result<DataKeySpec, InvalidInput> {
    let named = match proto::DataKeySpec::try_from(spec) {
        Ok(proto::DataKeySpec::Unspecified) => None,
        Ok(proto::DataKeySpec::Aes256) => Some(DataKeySpec::AES_256),
        Ok(proto::DataKeySpec::Aes128) => Some(DataKeySpec::AES_128),
        Err(_) => {
            return Err(InvalidInput(format!(
                "key_spec {spec} is not a known DataKeySpec (AES_256 or AES_128)"
            )));
        }
    };
    DataKeySpec::parse(named, number_of_bytes)
}

fn spec_name(spec: i32) -> String {
    proto::DataKeySpec::try_from(spec)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| spec.to_string())
}

fn metadata(view: crate::kms::KeyView) -> Option<KeyMetadata> {
    Some(convert::metadata(&view))
}

impl KmsService {
    /// Enable, disable, schedule or cancel deletion: one audited change of state, stored only after its record.
    /// `days` is the deletion window, already validated (or why not).
    async fn change_state<R: call::Audited>(
        &self,
        mut call: call::Call,
        key_id: &str,
        operation: Operation,
        days: Result<u32, Status>,
        respond: fn(Option<KeyMetadata>) -> R,
    ) -> Result<Response<R>, Status> {
        call.key(key_id, &self.kms);
        let gate = self.auditor.gate(&call);
        let result = async {
            let caller = call.admit()?;
            let key = key_ref(key_id)?;
            let key = match Permission::for_operation(operation) {
                Some(permission) => self.authorize(&call, caller, permission, key, None)?,
                // No key policy grants it: administrators only.
                None => {
                    call.admit_admin()?;
                    key
                }
            };
            let view = self.kms.change_state(&key, operation, days?, &gate).await?;
            Ok(respond(metadata(view)))
        }
        .await;
        let recorded = gate.recorded();
        self.auditor.finish_gated(call, recorded, result).await
    }
}

#[tonic::async_trait]
impl KeyManagementService for KmsService {
    async fn create_key(
        &self,
        request: Request<CreateKeyRequest>,
    ) -> Result<Response<CreateKeyResponse>, Status> {
        let mut call = self.auditor.begin("CreateKey", &request);
        let req = request.into_inner();
        call.param("description", &req.description);
        call.map_param("tags", &req.tags);
        call.param("rotation_period_days", req.rotation_period_days);
        if !req.alias.is_empty() {
            call.alias(&req.alias);
        }
        let gate = self.auditor.gate(&call);
        let result = async {
            let caller = call.admit()?;
            if !caller.create_keys {
                return Err(status::permission_denied(format!(
                    "principal {:?} lacks permission kms:CreateKey: only administrators and principals created \
                     with create_keys may create keys",
                    &*caller.principal
                )));
            }
            let spec = NewKeySpec::parse(
                req.description,
                req.tags,
                &req.alias,
                req.rotation_period_days,
            )?;
            let mut policy = KeyPolicy::from(req.policy.unwrap_or_default());
            if !req.grant_creator.is_empty() {
                policy.statements.push(crate::auth::policy::Statement {
                    sid: "creator".to_owned(),
                    principals: vec![caller.principal.to_string()],
                    operations: req.grant_creator,
                    ..Default::default()
                });
            }
            policy.validate(|name| self.auth.principal_exists(name))?;
            let view = self.kms.create_key(spec, policy, &gate).await?;
            Ok(CreateKeyResponse {
                key_metadata: metadata(view),
            })
        }
        .await;
        let recorded = gate.recorded();
        self.auditor.finish_gated(call, recorded, result).await
    }

    async fn describe_key(
        &self,
        request: Request<DescribeKeyRequest>,
    ) -> Result<Response<DescribeKeyResponse>, Status> {
        let mut call = self.auditor.begin("DescribeKey", &request);
        let req = request.into_inner();
        call.key(&req.key_id, &self.kms);
        let result = async {
            let caller = call.admit()?;
            let key = key_ref(&req.key_id)?;
            let key = self.authorize(&call, caller, Permission::DescribeKey, key, None)?;
            let view = self.kms.describe(&key)?;
            Ok(DescribeKeyResponse {
                key_metadata: metadata(view),
            })
        }
        .await;
        self.auditor.finish(call, result).await
    }

    async fn list_keys(
        &self,
        request: Request<ListKeysRequest>,
    ) -> Result<Response<ListKeysResponse>, Status> {
        let mut call = self.auditor.begin("ListKeys", &request);
        let req = request.into_inner();
        call.param("page_size", req.page_size);
        let result = async {
            call.admit_admin()?;
            let page = self.kms.list_keys(req.page_size, &req.page_token)?;
            Ok(ListKeysResponse {
                keys: page.items.iter().map(convert::metadata).collect(),
                next_page_token: page.next_token.unwrap_or_default(),
            })
        }
        .await;
        self.auditor.finish(call, result).await
    }

    async fn create_alias(
        &self,
        request: Request<CreateAliasRequest>,
    ) -> Result<Response<CreateAliasResponse>, Status> {
        let mut call = self.auditor.begin("CreateAlias", &request);
        let req = request.into_inner();
        call.key(&req.key_id, &self.kms);
        call.alias(&req.alias_name);
        let gate = self.auditor.gate(&call);
        let result = async {
            call.admit_admin()?;
            let name = AliasName::parse(&req.alias_name)?;
            let target = key_ref(&req.key_id)?;
            let alias = self.kms.create_alias(name, &target, &gate).await?;
            Ok(CreateAliasResponse {
                alias: Some(convert::alias(&alias)),
            })
        }
        .await;
        let recorded = gate.recorded();
        self.auditor.finish_gated(call, recorded, result).await
    }

    async fn delete_alias(
        &self,
        request: Request<DeleteAliasRequest>,
    ) -> Result<Response<DeleteAliasResponse>, Status> {
        let mut call = self.auditor.begin("DeleteAlias", &request);
        let req = request.into_inner();
        call.key(&req.alias_name, &self.kms);
        let gate = self.auditor.gate(&call);
        let result = async {
            call.admit_admin()?;
            let name = AliasName::parse(&req.alias_name)?;
            self.kms.delete_alias(name, &gate).await?;
            Ok(DeleteAliasResponse {})
        }
        .await;
        let recorded = gate.recorded();
        self.auditor.finish_gated(call, recorded, result).await
    }

    async fn list_aliases(
        &self,
        request: Request<ListAliasesRequest>,
    ) -> Result<Response<ListAliasesResponse>, Status> {
        let mut call = self.auditor.begin("ListAliases", &request);
        let req = request.into_inner();
        call.key(&req.key_id, &self.kms);
        call.param("page_size", req.page_size);
        let result = async {
            call.admit_admin()?;
            let key = KeyRef::parse_optional(&req.key_id, "key_id")?;
            let page = self
                .kms
                .list_aliases(key.as_ref(), req.page_size, &req.page_token)?;
            Ok(ListAliasesResponse {
                aliases: page.items.iter().map(convert::alias).collect(),
                next_page_token: page.next_token.unwrap_or_default(),
            })
        }
        .await;
        self.auditor.finish(call, result).await
    }

    async fn enable_key(
        &self,
        request: Request<EnableKeyRequest>,
    ) -> Result<Response<EnableKeyResponse>, Status> {
        let call = self.auditor.begin("EnableKey", &request);
        let req = request.into_inner();
        self.change_state(
            call,
            &req.key_id,
            Operation::EnableKey,
            Ok(0),
            |key_metadata| EnableKeyResponse { key_metadata },
        )
        .await
    }

    async fn disable_key(
        &self,
        request: Request<DisableKeyRequest>,
    ) -> Result<Response<DisableKeyResponse>, Status> {
        let call = self.auditor.begin("DisableKey", &request);
        let req = request.into_inner();
        self.change_state(
            call,
            &req.key_id,
            Operation::DisableKey,
            Ok(0),
            |key_metadata| DisableKeyResponse { key_metadata },
        )
        .await
    }

    async fn rotate_key(
        &self,
        request: Request<RotateKeyRequest>,
    ) -> Result<Response<RotateKeyResponse>, Status> {
        let mut call = self.auditor.begin("RotateKey", &request);
        let req = request.into_inner();
        call.key(&req.key_id, &self.kms);
        let gate = self.auditor.gate(&call);
        let result = async {
            let caller = call.admit()?;
            let key = key_ref(&req.key_id)?;
            let key = self.authorize(&call, caller, Permission::RotateKey, key, None)?;
            let view = self.kms.rotate(&key, &gate).await?;
            Ok(RotateKeyResponse {
                key_metadata: metadata(view),
            })
        }
        .await;
        let recorded = gate.recorded();
        self.auditor.finish_gated(call, recorded, result).await
    }

    async fn list_key_versions(
        &self,
        request: Request<ListKeyVersionsRequest>,
    ) -> Result<Response<ListKeyVersionsResponse>, Status> {
        let mut call = self.auditor.begin("ListKeyVersions", &request);
        let req = request.into_inner();
        call.key(&req.key_id, &self.kms);
        let result = async {
            let caller = call.admit()?;
            let key = key_ref(&req.key_id)?;
            let key = self.authorize(&call, caller, Permission::ListKeyVersions, key, None)?;
            let versions = self.kms.list_versions(&key)?;
            Ok(ListKeyVersionsResponse {
                versions: versions.iter().map(convert::version).collect(),
            })
        }
        .await;
        self.auditor.finish(call, result).await
    }

    async fn schedule_key_deletion(
        &self,
        request: Request<ScheduleKeyDeletionRequest>,
    ) -> Result<Response<ScheduleKeyDeletionResponse>, Status> {
        let mut call = self.auditor.begin("ScheduleKeyDeletion", &request);
        let req = request.into_inner();
        call.param("pending_window_days", req.pending_window_days);
        let days = keys::deletion_window_days(req.pending_window_days).map_err(Status::from);
        self.change_state(
            call,
            &req.key_id,
            Operation::ScheduleKeyDeletion,
            days,
            |key_metadata| ScheduleKeyDeletionResponse { key_metadata },
        )
        .await
    }

    async fn cancel_key_deletion(
        &self,
        request: Request<CancelKeyDeletionRequest>,
    ) -> Result<Response<CancelKeyDeletionResponse>, Status> {
        let call = self.auditor.begin("CancelKeyDeletion", &request);
        let req = request.into_inner();
        self.change_state(
            call,
            &req.key_id,
            Operation::CancelKeyDeletion,
            Ok(0),
            |key_metadata| CancelKeyDeletionResponse { key_metadata },
        )
        .await
    }

    async fn generate_data_key(
        &self,
        request: Request<GenerateDataKeyRequest>,
    ) -> Result<Response<GenerateDataKeyResponse>, Status> {
        let mut call = self.auditor.begin("GenerateDataKey", &request);
        let req = request.into_inner();
        call.key(&req.key_id, &self.kms);
        call.param("key_spec", spec_name(req.key_spec));
        if let Some(n) = req.number_of_bytes {
            call.param("number_of_bytes", n);
        }
        call.context(&req.encryption_context);
        let result = async {
            let caller = call.admit()?;
            let key = key_ref(&req.key_id)?;
            let spec = data_key_spec(req.key_spec, req.number_of_bytes)?;
            let ctx = context(req.encryption_context, "encryption_context")?;
            let key =
                self.authorize(&call, caller, Permission::GenerateDataKey, key, Some(&ctx))?;
            let dk = self
                .kms
                .generate_data_key(&key, spec, &ctx, Operation::GenerateDataKey)?;
            Ok(GenerateDataKeyResponse {
                key_id: dk.key_id.to_string(),
                key_version: dk.key_version,
                // The one place a data key's plaintext leaves the daemon: to the caller that asked for it.
                plaintext: dk.plaintext.expose().to_vec(),
                ciphertext_blob: dk.ciphertext_blob,
            })
        }
        .await;
        self.auditor.finish(call, result).await
    }

    async fn generate_data_key_without_plaintext(
        &self,
        request: Request<GenerateDataKeyWithoutPlaintextRequest>,
    ) -> Result<Response<GenerateDataKeyWithoutPlaintextResponse>, Status> {
        let mut call = self
            .auditor
            .begin("GenerateDataKeyWithoutPlaintext", &request);
        let req = request.into_inner();
        call.key(&req.key_id, &self.kms);
        call.param("key_spec", spec_name(req.key_spec));
        if let Some(n) = req.number_of_bytes {
            call.param("number_of_bytes", n);
        }
        call.context(&req.encryption_context);
        let result = async {
            let caller = call.admit()?;
            let key = key_ref(&req.key_id)?;
            let spec = data_key_spec(req.key_spec, req.number_of_bytes)?;
            let ctx = context(req.encryption_context, "encryption_context")?;
            let key = self.authorize(
                &call,
                caller,
                Permission::GenerateDataKeyWithoutPlaintext,
                key,
                Some(&ctx),
            )?;
            let dk = self.kms.generate_data_key(
                &key,
                spec,
                &ctx,
                Operation::GenerateDataKeyWithoutPlaintext,
            )?;
            Ok(GenerateDataKeyWithoutPlaintextResponse {
                key_id: dk.key_id.to_string(),
                key_version: dk.key_version,
                ciphertext_blob: dk.ciphertext_blob,
            })
        }
        .await;
        self.auditor.finish(call, result).await
    }

    async fn encrypt(
        &self,
        request: Request<EncryptRequest>,
    ) -> Result<Response<EncryptResponse>, Status> {
        let mut call = self.auditor.begin("Encrypt", &request);
        let mut req = request.into_inner();
        let plaintext = Zeroizing::new(std::mem::take(&mut req.plaintext));
        call.key(&req.key_id, &self.kms);
        call.param("plaintext_bytes", plaintext.len());
        call.context(&req.encryption_context);
        let result = async {
            let caller = call.admit()?;
            let key = key_ref(&req.key_id)?;
            let ctx = context(req.encryption_context, "encryption_context")?;
            let key = self.authorize(&call, caller, Permission::Encrypt, key, Some(&ctx))?;
            let sealed = self.kms.encrypt(&key, &ctx, &plaintext)?;
            Ok(EncryptResponse {
                key_id: sealed.key_id.to_string(),
                key_version: sealed.key_version,
                ciphertext_blob: sealed.ciphertext_blob,
            })
        }
        .await;
        self.auditor.finish(call, result).await
    }

    async fn decrypt(
        &self,
        request: Request<DecryptRequest>,
    ) -> Result<Response<DecryptResponse>, Status> {
        let mut call = self.auditor.begin("Decrypt", &request);
        let req = request.into_inner();
        call.key(&req.key_id, &self.kms);
        call.blob(&req.ciphertext_blob, BlobRole::Key);
        call.context(&req.encryption_context);
        let result = async {
            let caller = call.admit()?;
            let expected = KeyRef::parse_optional(&req.key_id, "key_id")?;
            let ctx = context(req.encryption_context, "encryption_context")?;
            let expected = match (caller.admin, expected) {
                (true, expected) => expected,
                // Authorized on the key the caller names, or else on the one the blob names; either way the blob
                // must then be that key's.
                (false, expected) => {
                    let key = match expected {
                        Some(key) => key,
                        None => Self::blob_key(&req.ciphertext_blob)?,
                    };
                    Some(self.authorize(&call, caller, Permission::Decrypt, key, Some(&ctx))?)
                }
            };
            let opened = self
                .kms
                .decrypt(&req.ciphertext_blob, expected.as_ref(), &ctx)?;
            Ok(DecryptResponse {
                key_id: opened.key_id.to_string(),
                key_version: opened.key_version,
                plaintext: opened.plaintext.expose().to_vec(),
            })
        }
        .await;
        self.auditor.finish(call, result).await
    }

    async fn re_encrypt(
        &self,
        request: Request<ReEncryptRequest>,
    ) -> Result<Response<ReEncryptResponse>, Status> {
        let mut call = self.auditor.begin("ReEncrypt", &request);
        let req = request.into_inner();
        call.blob(&req.ciphertext_blob, BlobRole::Source);
        if !req.source_key_id.is_empty() {
            call.param("source_key_named", &req.source_key_id);
        }
        if req.destination_key_id.is_empty() {
            // The destination is the source key's primary version; the response names it on success.
            call.blob(&req.ciphertext_blob, BlobRole::Key);
            call.param("destination", "primary version of the source key");
        } else {
            call.key(&req.destination_key_id, &self.kms);
        }
        call.map_param("source_encryption_context", &req.source_encryption_context);
        call.context(&req.destination_encryption_context);
        let result = async {
            let caller = call.admit()?;
            let source = KeyRef::parse_optional(&req.source_key_id, "source_key_id")?;
            let source_ctx = context(req.source_encryption_context, "source_encryption_context")?;
            let destination =
                KeyRef::parse_optional(&req.destination_key_id, "destination_key_id")?;
            let destination_ctx = context(
                req.destination_encryption_context,
                "destination_encryption_context",
            )?;
            // ReEncrypt is a decryption under the source key and an encryption under the destination key: the
            // caller needs the permission on both, each under its own context.
            let (source, destination) = if caller.admin {
                (source, destination)
            } else {
                let source_key = match source {
                    Some(key) => key,
                    None => Self::blob_key(&req.ciphertext_blob)?,
                };
                let source_key = self.authorize(
                    &call,
                    caller,
                    Permission::ReEncrypt,
                    source_key,
                    Some(&source_ctx),
                )?;
                let destination_key = destination.unwrap_or_else(|| source_key.clone());
                let destination_key = self.authorize(
                    &call,
                    caller,
                    Permission::ReEncrypt,
                    destination_key,
                    Some(&destination_ctx),
                )?;
                (Some(source_key), Some(destination_key))
            };
            let out = self.kms.re_encrypt(
                &req.ciphertext_blob,
                source.as_ref(),
                &source_ctx,
                destination.as_ref(),
                &destination_ctx,
            )?;
            Ok(ReEncryptResponse {
                source_key_id: out.source_key_id.to_string(),
                source_key_version: out.source_key_version,
                key_id: out.key_id.to_string(),
                key_version: out.key_version,
                ciphertext_blob: out.ciphertext_blob,
            })
        }
        .await;
        self.auditor.finish(call, result).await
    }

    async fn generate_random(
        &self,
        request: Request<GenerateRandomRequest>,
    ) -> Result<Response<GenerateRandomResponse>, Status> {
        let mut call = self.auditor.begin("GenerateRandom", &request);
        let req = request.into_inner();
        call.param("number_of_bytes", req.number_of_bytes);
        let result = async {
            call.admit()?;
            let len = keys::random_len(req.number_of_bytes)?;
            let bytes = self.kms.generate_random(len);
            Ok(GenerateRandomResponse {
                plaintext: bytes.expose().to_vec(),
            })
        }
        .await;
        self.auditor.finish(call, result).await
    }

    async fn get_key_policy(
        &self,
        request: Request<GetKeyPolicyRequest>,
    ) -> Result<Response<GetKeyPolicyResponse>, Status> {
        let mut call = self.auditor.begin("GetKeyPolicy", &request);
        let req = request.into_inner();
        call.key(&req.key_id, &self.kms);
        let result = async {
            let caller = call.admit()?;
            let key = key_ref(&req.key_id)?;
            let key = self.authorize(&call, caller, Permission::GetKeyPolicy, key, None)?;
            let (id, policy) = self.kms.policy_of(&key)?;
            Ok(GetKeyPolicyResponse {
                key_id: id.to_string(),
                policy: Some(proto::KeyPolicy::from(&*policy)),
            })
        }
        .await;
        self.auditor.finish(call, result).await
    }

    async fn put_key_policy(
        &self,
        request: Request<PutKeyPolicyRequest>,
    ) -> Result<Response<PutKeyPolicyResponse>, Status> {
        let mut call = self.auditor.begin("PutKeyPolicy", &request);
        let req = request.into_inner();
        call.key(&req.key_id, &self.kms);
        let policy = KeyPolicy::from(req.policy.unwrap_or_default());
        // The whole policy is part of what was asked: it decides who may use the key from now on.
        call.param("policy", policy.to_json());
        let gate = self.auditor.gate(&call);
        let result = async {
            call.admit_admin()?;
            let key = key_ref(&req.key_id)?;
            policy.validate(|name| self.auth.principal_exists(name))?;
            let stored: KeyPolicy = policy.clone();
            let id = self.kms.put_policy(&key, policy, &gate).await?;
            Ok(PutKeyPolicyResponse {
                key_id: id.to_string(),
                policy: Some(proto::KeyPolicy::from(&stored)),
            })
        }
        .await;
        let recorded = gate.recorded();
        self.auditor.finish_gated(call, recorded, result).await
    }
}
