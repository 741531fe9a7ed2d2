//! The gRPC service layer: the only module that knows protobuf types.
//!
//! Each handler is one call of [`Auditor::serve`] (`grpc.rs`), the gRPC side of the call path in `call.rs`: it
//! says what its request names, for the record, and gives the body that runs once the caller is admitted. A body
//! parses the request into domain types (refusing bad input with INVALID_ARGUMENT before anything happens),
//! authorizes the keys it uses, calls [`Kms`], and converts the result back. Errors become statuses in one place,
//! `status.rs`.
//!
//! Invariants: no handler body runs for a caller the call path did not admit; every call of every kmsd service
//! yields exactly one audit record, whatever its outcome; a handler never logs or returns key material, except a
//! data key's or a decryption's plaintext in the response to the caller that asked for it; plaintext received in a
//! request is zeroized when handled.

mod admin;
mod audit_service;
mod audited;
mod call;
mod convert;
mod grpc;
mod status;
mod unhandled;

pub use admin::AdminServiceImpl;
pub use audit_service::AuditServiceImpl;
pub use call::{
    AWS_ERROR_METADATA, Admitted, Auditor, Call, CallContext, REASON_HEADER, REQUEST_ID_HEADER,
    code_name,
};
pub use grpc::SignedOrigin;
pub use status::{ERROR_KIND_HEADER, KEY_STATE_HEADER, bounded};
pub use unhandled::RecordUnhandledLayer;

use call::BlobRole;

use std::sync::Arc;

use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::auth::Authenticator;
use crate::clock::UnixMillis;
use crate::keys::{
    self, AliasName, DataKeySize, EncryptionAlgorithm, EncryptionContext, InvalidInput, KeyKind,
    KeyRef, KeyUpdate, MacAlgorithm, MessageType, NewKeySpec, Operation, SigningAlgorithm,
};
use crate::kms::Kms;
use crate::proto as pb;
use crate::proto::key_management_service_server::KeyManagementService;
use crate::rpc::{Rpc, Service};
use kmsd_proto::key_policy::PolicyDocument;

pub use crate::proto::admin_service_server::AdminServiceServer;
pub use crate::proto::audit_service_server::AuditServiceServer;
pub use crate::proto::key_management_service_server::KeyManagementServiceServer;

/// The fully-qualified service names, as health checks and reflection report them.
pub const SERVICE_NAME: &str = Service::KeyManagementService.name();
pub const AUDIT_SERVICE_NAME: &str = Service::AuditService.name();
pub const ADMIN_SERVICE_NAME: &str = Service::AdminService.name();

pub struct KmsService {
    kms: Arc<Kms>,
    auth: Arc<Authenticator>,
    auditor: Arc<Auditor>,
}

impl KmsService {
    pub fn new(kms: Arc<Kms>, auth: Arc<Authenticator>, auditor: Arc<Auditor>) -> Self {
        KmsService { kms, auth, auditor }
    }

    /// The key a ciphertext blob names, for authorizing its use before it is opened.
    fn blob_key(blob_bytes: &[u8]) -> Result<KeyRef, Status> {
        crate::crypto::blob::parse(blob_bytes)
            .map(|b| KeyRef::Id(b.header.key_id))
            .map_err(|e| Status::from(crate::kms::KmsError::from(e)))
    }

    /// A data key for GenerateDataKey or GenerateDataKeyWithoutPlaintext: the request parsed, the key authorized
    /// under its context, the data key drawn and sealed.
    fn new_data_key(
        &self,
        admitted: &Admitted<'_>,
        key_id: &str,
        key_spec: i32,
        number_of_bytes: Option<u32>,
        encryption_context: std::collections::HashMap<String, String>,
        operation: Operation,
    ) -> Result<crate::kms::NewDataKey, Status> {
        let key = key_ref(key_id)?;
        let spec = data_key_spec(key_spec, number_of_bytes)?;
        let ctx = context(encryption_context, "encryption_context")?;
        let key = admitted.authorize(&self.kms, key, Some(&ctx))?;
        Ok(self.kms.generate_data_key(&key, spec, &ctx, operation)?)
    }

    async fn new_data_key_pair(
        &self,
        admitted: &Admitted<'_>,
        key_id: &str,
        key_pair_spec: &str,
        encryption_context: std::collections::HashMap<String, String>,
        operation: Operation,
    ) -> Result<crate::kms::NewDataKeyPair, Status> {
        let key = key_ref(key_id)?;
        let spec = keys::KeySpec::parse_data_key_pair(key_pair_spec)?;
        let ctx = context(encryption_context, "encryption_context")?;
        let key = admitted.authorize(&self.kms, key, Some(&ctx))?;
        Ok(self
            .kms
            .generate_data_key_pair(&key, spec, &ctx, operation)
            .await?)
    }

    /// Enable, disable, schedule or cancel deletion: one audited change of state, stored only after its record.
    /// `days` is the deletion window, already validated (or why not).
    async fn change_state<Q, R: call::Audited>(
        &self,
        operation: Operation,
        request: Request<Q>,
        key_id: impl Fn(&Q) -> &str,
        describe: impl FnOnce(&Q, &mut Call),
        days: impl FnOnce(&Q) -> Result<u32, Status>,
        respond: fn(Option<pb::KeyMetadata>) -> R,
    ) -> Result<Response<R>, Status> {
        self.auditor
            .serve(
                operation.rpc(),
                request,
                |req, call| {
                    call.key(key_id(req), &self.kms);
                    describe(req, call);
                },
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(key_id(&req))?, None)?;
                    let days = days(&req)?;
                    let view = self
                        .kms
                        .change_state(&key, operation, days, admitted)
                        .await?;
                    Ok(respond(metadata(view)))
                },
            )
            .await
    }
}

impl KmsService {
    /// A change of a key's details (description, tags, rotation schedule): one audited update, stored only after
    /// its record.
    async fn update_key<Q, R: call::Audited>(
        &self,
        rpc: Rpc,
        request: Request<Q>,
        key_id: impl Fn(&Q) -> &str,
        describe: impl FnOnce(&Q, &mut Call),
        update: impl FnOnce(Q) -> Result<KeyUpdate, InvalidInput>,
        respond: fn(Option<pb::KeyMetadata>) -> R,
    ) -> Result<Response<R>, Status> {
        self.auditor
            .serve(
                rpc,
                request,
                |req, call| {
                    call.key(key_id(req), &self.kms);
                    describe(req, call);
                },
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(key_id(&req))?, None)?;
                    let update = update(req)?;
                    let view = self.kms.update(&key, &update, admitted).await?;
                    Ok(respond(metadata(view)))
                },
            )
            .await
    }
}

fn context(
    pairs: std::collections::HashMap<String, String>,
    field: &str,
) -> Result<EncryptionContext, Status> {
    Ok(EncryptionContext::parse(pairs, field)?)
}

/// CreateAlias's and UpdateAlias's request read: the alias's name, and the administrator's authority over its target.
fn alias_and_target(
    alias_name: &str,
    key_id: &str,
    admitted: &Admitted<'_>,
) -> Result<(AliasName, crate::auth::policy::Authorized), Status> {
    let name = AliasName::parse(alias_name)?;
    Ok((name, admitted.administer(key_ref(key_id)?)?))
}

fn key_ref(s: &str) -> Result<KeyRef, Status> {
    Ok(KeyRef::parse(s, "key_id")?)
}

/// A message type as requests give it: RAW if empty.
fn message_type(text: &str) -> Result<MessageType, InvalidInput> {
    match text {
        "" => Ok(MessageType::Raw),
        t => MessageType::parse(t),
    }
}

/// A signing algorithm, which Sign and Verify must name (as AWS requires).
fn signing_algorithm(text: &str) -> Result<SigningAlgorithm, InvalidInput> {
    if text.is_empty() {
        return Err(keys::invalid(
            "signing_algorithm is required: name one of the key's signing_algorithms (DescribeKey lists them)",
        ));
    }
    SigningAlgorithm::parse(text)
}

/// An encryption algorithm as requests give it: SYMMETRIC_DEFAULT if empty.
fn encryption_algorithm(text: &str) -> Result<EncryptionAlgorithm, InvalidInput> {
    match text {
        "" => Ok(EncryptionAlgorithm::SymmetricDefault),
        t => EncryptionAlgorithm::parse(t),
    }
}

fn mac_algorithm(text: &str) -> Result<MacAlgorithm, InvalidInput> {
    if text.is_empty() {
        return Err(keys::invalid(
            "mac_algorithm is required: name the key's MAC algorithm (DescribeKey lists it)",
        ));
    }
    MacAlgorithm::parse(text)
}

fn data_key_spec(spec: i32, number_of_bytes: Option<u32>) -> Result<DataKeySize, InvalidInput> {
    let named = match pb::DataKeySpec::try_from(spec) {
        Ok(pb::DataKeySpec::Unspecified) => None,
        Ok(pb::DataKeySpec::Aes256) => Some(DataKeySize::AES_256),
        Ok(pb::DataKeySpec::Aes128) => Some(DataKeySize::AES_128),
        Err(_) => {
            return Err(InvalidInput(format!(
                "key_spec {spec} is not a known DataKeySpec (AES_256 or AES_128)"
            )));
        }
    };
    DataKeySize::parse(named, number_of_bytes)
}

fn spec_name(spec: i32) -> String {
    pb::DataKeySpec::try_from(spec)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| spec.to_string())
}

fn metadata(view: crate::kms::KeyView) -> Option<pb::KeyMetadata> {
    Some(convert::metadata(&view))
}

/// Records a data-key-pair request's key, pair spec and context.
fn describe_data_key_pair(
    call: &mut Call,
    kms: &Kms,
    key_id: &str,
    key_pair_spec: &str,
    context: &std::collections::HashMap<String, String>,
) {
    call.key(key_id, kms);
    call.param("key_pair_spec", key_pair_spec);
    call.context(context);
}

/// Records a data-key request's key, spec and context.
fn describe_data_key(
    call: &mut Call,
    kms: &Kms,
    key_id: &str,
    key_spec: i32,
    number_of_bytes: Option<u32>,
    context: &std::collections::HashMap<String, String>,
) {
    call.key(key_id, kms);
    call.param("key_spec", spec_name(key_spec));
    if let Some(n) = number_of_bytes {
        call.param("number_of_bytes", n);
    }
    call.context(context);
}

#[tonic::async_trait]
impl KeyManagementService for KmsService {
    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        self.auditor
            .serve(
                Rpc::CreateKey,
                request,
                |req, call| {
                    call.param("description", &req.description);
                    call.map_param("tags", &req.tags);
                    call.param("rotation_period_days", req.rotation_period_days);
                    if !req.key_spec.is_empty() {
                        call.param("key_spec", &req.key_spec);
                    }
                    if !req.key_usage.is_empty() {
                        call.param("key_usage", &req.key_usage);
                    }
                    if !req.origin.is_empty() {
                        call.param("origin", &req.origin);
                    }
                    if !req.alias.is_empty() {
                        call.alias(&req.alias);
                    }
                },
                async |req, admitted| {
                    let kind = KeyKind::parse(&req.key_spec, &req.key_usage)?;
                    let spec = NewKeySpec::parse(
                        req.description,
                        req.tags,
                        &req.alias,
                        req.rotation_period_days,
                        kind,
                        keys::Origin::parse(&req.origin)?,
                    )?;
                    let mut policy = PolicyDocument::from(req.policy.unwrap_or_default());
                    if !req.grant_creator.is_empty() {
                        policy.statements.push(kmsd_proto::key_policy::Statement {
                            sid: "creator".to_owned(),
                            principals: vec![admitted.caller().principal().to_string()],
                            operations: req.grant_creator,
                            ..Default::default()
                        });
                    }
                    crate::auth::policy::validate(&policy, |name| {
                        self.auth.principal_exists(name)
                    })?;
                    let view = self.kms.create_key(spec, policy, admitted).await?;
                    Ok(pb::CreateKeyResponse {
                        key_metadata: metadata(view),
                    })
                },
            )
            .await
    }

    async fn describe_key(
        &self,
        request: Request<pb::DescribeKeyRequest>,
    ) -> Result<Response<pb::DescribeKeyResponse>, Status> {
        self.auditor
            .serve(
                Rpc::DescribeKey,
                request,
                |req, call| call.key(&req.key_id, &self.kms),
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(&req.key_id)?, None)?;
                    Ok(pb::DescribeKeyResponse {
                        key_metadata: metadata(self.kms.describe(&key)?),
                    })
                },
            )
            .await
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        self.auditor
            .serve(
                Rpc::ListKeys,
                request,
                |req, call| call.param("page_size", req.page_size),
                async |req, _admitted| {
                    let page = self.kms.list_keys(req.page_size, &req.page_token)?;
                    Ok(pb::ListKeysResponse {
                        keys: page.items.iter().map(convert::metadata).collect(),
                        next_page_token: page.next_token.unwrap_or_default(),
                    })
                },
            )
            .await
    }

    async fn create_alias(
        &self,
        request: Request<pb::CreateAliasRequest>,
    ) -> Result<Response<pb::CreateAliasResponse>, Status> {
        self.auditor
            .serve(
                Rpc::CreateAlias,
                request,
                |req, call| {
                    call.key(&req.key_id, &self.kms);
                    call.alias(&req.alias_name);
                },
                async |req, admitted| {
                    let (name, target) = alias_and_target(&req.alias_name, &req.key_id, admitted)?;
                    let alias = self.kms.create_alias(name, &target, admitted).await?;
                    Ok(pb::CreateAliasResponse {
                        alias: Some(convert::alias(&alias)),
                    })
                },
            )
            .await
    }

    async fn delete_alias(
        &self,
        request: Request<pb::DeleteAliasRequest>,
    ) -> Result<Response<pb::DeleteAliasResponse>, Status> {
        self.auditor
            .serve(
                Rpc::DeleteAlias,
                request,
                |req, call| call.key(&req.alias_name, &self.kms),
                async |req, admitted| {
                    let name = AliasName::parse(&req.alias_name)?;
                    self.kms.delete_alias(name, admitted).await?;
                    Ok(pb::DeleteAliasResponse {})
                },
            )
            .await
    }

    async fn list_aliases(
        &self,
        request: Request<pb::ListAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        self.auditor
            .serve(
                Rpc::ListAliases,
                request,
                |req, call| {
                    call.key(&req.key_id, &self.kms);
                    call.param("page_size", req.page_size);
                },
                async |req, _admitted| {
                    let key = KeyRef::parse_optional(&req.key_id, "key_id")?;
                    let page =
                        self.kms
                            .list_aliases(key.as_ref(), req.page_size, &req.page_token)?;
                    Ok(pb::ListAliasesResponse {
                        aliases: page.items.iter().map(convert::alias).collect(),
                        next_page_token: page.next_token.unwrap_or_default(),
                    })
                },
            )
            .await
    }

    async fn enable_key(
        &self,
        request: Request<pb::EnableKeyRequest>,
    ) -> Result<Response<pb::EnableKeyResponse>, Status> {
        self.change_state(
            Operation::EnableKey,
            request,
            |req| &req.key_id,
            |_, _| {},
            |_| Ok(0),
            |key_metadata| pb::EnableKeyResponse { key_metadata },
        )
        .await
    }

    async fn disable_key(
        &self,
        request: Request<pb::DisableKeyRequest>,
    ) -> Result<Response<pb::DisableKeyResponse>, Status> {
        self.change_state(
            Operation::DisableKey,
            request,
            |req| &req.key_id,
            |_, _| {},
            |_| Ok(0),
            |key_metadata| pb::DisableKeyResponse { key_metadata },
        )
        .await
    }

    async fn rotate_key(
        &self,
        request: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::RotateKeyResponse>, Status> {
        self.auditor
            .serve(
                Rpc::RotateKey,
                request,
                |req, call| call.key(&req.key_id, &self.kms),
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(&req.key_id)?, None)?;
                    let view = self.kms.rotate(&key, admitted).await?;
                    Ok(pb::RotateKeyResponse {
                        key_metadata: metadata(view),
                    })
                },
            )
            .await
    }

    async fn list_key_versions(
        &self,
        request: Request<pb::ListKeyVersionsRequest>,
    ) -> Result<Response<pb::ListKeyVersionsResponse>, Status> {
        self.auditor
            .serve(
                Rpc::ListKeyVersions,
                request,
                |req, call| call.key(&req.key_id, &self.kms),
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(&req.key_id)?, None)?;
                    let versions = self.kms.list_versions(&key)?;
                    Ok(pb::ListKeyVersionsResponse {
                        versions: versions.iter().map(convert::version).collect(),
                    })
                },
            )
            .await
    }

    async fn schedule_key_deletion(
        &self,
        request: Request<pb::ScheduleKeyDeletionRequest>,
    ) -> Result<Response<pb::ScheduleKeyDeletionResponse>, Status> {
        self.change_state(
            Operation::ScheduleKeyDeletion,
            request,
            |req| &req.key_id,
            |req, call| call.param("pending_window_days", req.pending_window_days),
            |req| keys::deletion_window_days(req.pending_window_days).map_err(Status::from),
            |key_metadata| pb::ScheduleKeyDeletionResponse { key_metadata },
        )
        .await
    }

    async fn cancel_key_deletion(
        &self,
        request: Request<pb::CancelKeyDeletionRequest>,
    ) -> Result<Response<pb::CancelKeyDeletionResponse>, Status> {
        self.change_state(
            Operation::CancelKeyDeletion,
            request,
            |req| &req.key_id,
            |_, _| {},
            |_| Ok(0),
            |key_metadata| pb::CancelKeyDeletionResponse { key_metadata },
        )
        .await
    }

    async fn generate_data_key(
        &self,
        request: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyResponse>, Status> {
        self.auditor
            .serve(
                Rpc::GenerateDataKey,
                request,
                |req, call| {
                    describe_data_key(
                        call,
                        &self.kms,
                        &req.key_id,
                        req.key_spec,
                        req.number_of_bytes,
                        &req.encryption_context,
                    )
                },
                async |req, admitted| {
                    let dk = self.new_data_key(
                        admitted,
                        &req.key_id,
                        req.key_spec,
                        req.number_of_bytes,
                        req.encryption_context,
                        Operation::GenerateDataKey,
                    )?;
                    Ok(pb::GenerateDataKeyResponse {
                        key_id: dk.key_id.to_string(),
                        key_version: dk.key_version,
                        // The one place a data key's plaintext leaves the daemon: to the caller that asked for it.
                        plaintext: dk.plaintext.expose().to_vec(),
                        ciphertext_blob: dk.ciphertext_blob,
                    })
                },
            )
            .await
    }

    async fn generate_data_key_without_plaintext(
        &self,
        request: Request<pb::GenerateDataKeyWithoutPlaintextRequest>,
    ) -> Result<Response<pb::GenerateDataKeyWithoutPlaintextResponse>, Status> {
        self.auditor
            .serve(
                Rpc::GenerateDataKeyWithoutPlaintext,
                request,
                |req, call| {
                    describe_data_key(
                        call,
                        &self.kms,
                        &req.key_id,
                        req.key_spec,
                        req.number_of_bytes,
                        &req.encryption_context,
                    )
                },
                async |req, admitted| {
                    let dk = self.new_data_key(
                        admitted,
                        &req.key_id,
                        req.key_spec,
                        req.number_of_bytes,
                        req.encryption_context,
                        Operation::GenerateDataKeyWithoutPlaintext,
                    )?;
                    Ok(pb::GenerateDataKeyWithoutPlaintextResponse {
                        key_id: dk.key_id.to_string(),
                        key_version: dk.key_version,
                        ciphertext_blob: dk.ciphertext_blob,
                    })
                },
            )
            .await
    }

    async fn encrypt(
        &self,
        mut request: Request<pb::EncryptRequest>,
    ) -> Result<Response<pb::EncryptResponse>, Status> {
        let plaintext = Zeroizing::new(std::mem::take(&mut request.get_mut().plaintext));
        self.auditor
            .serve(
                Rpc::Encrypt,
                request,
                |req, call| {
                    call.key(&req.key_id, &self.kms);
                    call.param("plaintext_bytes", plaintext.len());
                    call.context(&req.encryption_context);
                    if !req.encryption_algorithm.is_empty() {
                        call.param("encryption_algorithm", &req.encryption_algorithm);
                    }
                },
                async |req, admitted| {
                    let key = key_ref(&req.key_id)?;
                    let ctx = context(req.encryption_context, "encryption_context")?;
                    let algorithm = encryption_algorithm(&req.encryption_algorithm)?;
                    let key = admitted.authorize(&self.kms, key, Some(&ctx))?;
                    let sealed = self.kms.encrypt(&key, algorithm, &ctx, &plaintext)?;
                    Ok(pb::EncryptResponse {
                        key_id: sealed.key_id.to_string(),
                        key_version: sealed.key_version,
                        ciphertext_blob: sealed.ciphertext_blob,
                        encryption_algorithm: algorithm.to_string(),
                    })
                },
            )
            .await
    }

    async fn decrypt(
        &self,
        request: Request<pb::DecryptRequest>,
    ) -> Result<Response<pb::DecryptResponse>, Status> {
        self.auditor
            .serve(
                Rpc::Decrypt,
                request,
                |req, call| {
                    call.key(&req.key_id, &self.kms);
                    call.blob(&req.ciphertext_blob, BlobRole::Key);
                    call.context(&req.encryption_context);
                    if !req.encryption_algorithm.is_empty() {
                        call.param("encryption_algorithm", &req.encryption_algorithm);
                    }
                },
                async |req, admitted| {
                    let named = KeyRef::parse_optional(&req.key_id, "key_id")?;
                    let ctx = context(req.encryption_context, "encryption_context")?;
                    let algorithm = encryption_algorithm(&req.encryption_algorithm)?;
                    let opened = if algorithm == EncryptionAlgorithm::SymmetricDefault {
                        // Authorized on the key the caller names, or else on the one the blob names; either way
                        // the blob must then be that key's.
                        let access = admitted.authorize_opening(
                            &self.kms,
                            named,
                            || Self::blob_key(&req.ciphertext_blob),
                            &ctx,
                        )?;
                        self.kms.decrypt(&req.ciphertext_blob, &access, &ctx)?
                    } else {
                        // An RSA ciphertext names no key: the caller must.
                        let named = named.ok_or_else(|| {
                            keys::invalid(format!(
                                "key_id is required with encryption_algorithm {algorithm}"
                            ))
                        })?;
                        let key = admitted.authorize(&self.kms, named, Some(&ctx))?;
                        self.kms
                            .decrypt_with_pair(&key, algorithm, &ctx, &req.ciphertext_blob)?
                    };
                    Ok(pb::DecryptResponse {
                        key_id: opened.key_id.to_string(),
                        key_version: opened.key_version,
                        plaintext: opened.plaintext.expose().to_vec(),
                        encryption_algorithm: algorithm.to_string(),
                    })
                },
            )
            .await
    }

    async fn re_encrypt(
        &self,
        request: Request<pb::ReEncryptRequest>,
    ) -> Result<Response<pb::ReEncryptResponse>, Status> {
        self.auditor
            .serve(
                Rpc::ReEncrypt,
                request,
                |req, call| {
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
                },
                async |req, admitted| {
                    let source = KeyRef::parse_optional(&req.source_key_id, "source_key_id")?;
                    let source_ctx =
                        context(req.source_encryption_context, "source_encryption_context")?;
                    let destination =
                        KeyRef::parse_optional(&req.destination_key_id, "destination_key_id")?;
                    let destination_ctx = context(
                        req.destination_encryption_context,
                        "destination_encryption_context",
                    )?;
                    // ReEncrypt is a decryption under the source key and an encryption under the destination key:
                    // the caller needs the permission on both, each under its own context. The destination is the
                    // source key unless named.
                    let source = admitted.authorize_opening(
                        &self.kms,
                        source,
                        || Self::blob_key(&req.ciphertext_blob),
                        &source_ctx,
                    )?;
                    let destination = match (destination, source.key()) {
                        (Some(key), _) => Some(key),
                        (None, Some(source_key)) => Some(source_key.clone()),
                        (None, None) => None,
                    };
                    let destination = admitted.authorize_opening(
                        &self.kms,
                        destination,
                        || {
                            Err(Status::internal(
                                "ReEncrypt's destination is named or the source's",
                            ))
                        },
                        &destination_ctx,
                    )?;
                    let out = self.kms.re_encrypt(
                        &req.ciphertext_blob,
                        &source,
                        &source_ctx,
                        &destination,
                        &destination_ctx,
                    )?;
                    Ok(pb::ReEncryptResponse {
                        source_key_id: out.source_key_id.to_string(),
                        source_key_version: out.source_key_version,
                        key_id: out.key_id.to_string(),
                        key_version: out.key_version,
                        ciphertext_blob: out.ciphertext_blob,
                    })
                },
            )
            .await
    }

    async fn generate_random(
        &self,
        request: Request<pb::GenerateRandomRequest>,
    ) -> Result<Response<pb::GenerateRandomResponse>, Status> {
        self.auditor
            .serve(
                Rpc::GenerateRandom,
                request,
                |req, call| call.param("number_of_bytes", req.number_of_bytes),
                async |req, _admitted| {
                    let len = keys::random_len(req.number_of_bytes)?;
                    let bytes = self.kms.generate_random(len);
                    Ok(pb::GenerateRandomResponse {
                        plaintext: bytes.expose().to_vec(),
                    })
                },
            )
            .await
    }

    async fn get_key_policy(
        &self,
        request: Request<pb::GetKeyPolicyRequest>,
    ) -> Result<Response<pb::GetKeyPolicyResponse>, Status> {
        self.auditor
            .serve(
                Rpc::GetKeyPolicy,
                request,
                |req, call| call.key(&req.key_id, &self.kms),
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(&req.key_id)?, None)?;
                    let (id, policy) = self.kms.policy(&key)?;
                    Ok(pb::GetKeyPolicyResponse {
                        key_id: id.to_string(),
                        policy: Some(pb::KeyPolicy::from(&*policy)),
                    })
                },
            )
            .await
    }

    async fn put_key_policy(
        &self,
        request: Request<pb::PutKeyPolicyRequest>,
    ) -> Result<Response<pb::PutKeyPolicyResponse>, Status> {
        self.auditor
            .serve(
                Rpc::PutKeyPolicy,
                request,
                |req, call| {
                    call.key(&req.key_id, &self.kms);
                    // The whole policy is part of what was asked: it decides who may use the key from now on.
                    let policy = PolicyDocument::from(req.policy.clone().unwrap_or_default());
                    call.param("policy", policy.to_json());
                },
                async |req, admitted| {
                    let key = admitted.administer(key_ref(&req.key_id)?)?;
                    let policy = PolicyDocument::from(req.policy.unwrap_or_default());
                    crate::auth::policy::validate(&policy, |name| {
                        self.auth.principal_exists(name)
                    })?;
                    let stored: PolicyDocument = policy.clone();
                    let id = self.kms.put_policy(&key, policy, admitted).await?;
                    Ok(pb::PutKeyPolicyResponse {
                        key_id: id.to_string(),
                        policy: Some(pb::KeyPolicy::from(&stored)),
                    })
                },
            )
            .await
    }

    async fn update_alias(
        &self,
        request: Request<pb::UpdateAliasRequest>,
    ) -> Result<Response<pb::UpdateAliasResponse>, Status> {
        self.auditor
            .serve(
                Rpc::UpdateAlias,
                request,
                |req, call| {
                    call.key(&req.key_id, &self.kms);
                    call.alias(&req.alias_name);
                },
                async |req, admitted| {
                    let (name, target) = alias_and_target(&req.alias_name, &req.key_id, admitted)?;
                    let alias = self.kms.update_alias(name, &target, admitted).await?;
                    Ok(pb::UpdateAliasResponse {
                        alias: Some(convert::alias(&alias)),
                    })
                },
            )
            .await
    }

    async fn update_key_description(
        &self,
        request: Request<pb::UpdateKeyDescriptionRequest>,
    ) -> Result<Response<pb::UpdateKeyDescriptionResponse>, Status> {
        self.update_key(
            Rpc::UpdateKeyDescription,
            request,
            |req| &req.key_id,
            |req, call| call.param("description", &req.description),
            |req| KeyUpdate::description(req.description),
            |key_metadata| pb::UpdateKeyDescriptionResponse { key_metadata },
        )
        .await
    }

    async fn tag_resource(
        &self,
        request: Request<pb::TagResourceRequest>,
    ) -> Result<Response<pb::TagResourceResponse>, Status> {
        self.update_key(
            Rpc::TagResource,
            request,
            |req| &req.key_id,
            |req, call| call.map_param("tags", &req.tags),
            |req| KeyUpdate::tag(req.tags),
            |key_metadata| pb::TagResourceResponse { key_metadata },
        )
        .await
    }

    async fn untag_resource(
        &self,
        request: Request<pb::UntagResourceRequest>,
    ) -> Result<Response<pb::UntagResourceResponse>, Status> {
        self.update_key(
            Rpc::UntagResource,
            request,
            |req| &req.key_id,
            |req, call| call.param("tag_keys", req.tag_keys.join(" ")),
            |req| KeyUpdate::untag(req.tag_keys),
            |key_metadata| pb::UntagResourceResponse { key_metadata },
        )
        .await
    }

    async fn list_resource_tags(
        &self,
        request: Request<pb::ListResourceTagsRequest>,
    ) -> Result<Response<pb::ListResourceTagsResponse>, Status> {
        self.auditor
            .serve(
                Rpc::ListResourceTags,
                request,
                |req, call| call.key(&req.key_id, &self.kms),
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(&req.key_id)?, None)?;
                    let view = self.kms.describe(&key)?;
                    Ok(pb::ListResourceTagsResponse {
                        key_id: view.record.id.to_string(),
                        tags: view.record.tags.into_iter().collect(),
                    })
                },
            )
            .await
    }

    async fn enable_key_rotation(
        &self,
        request: Request<pb::EnableKeyRotationRequest>,
    ) -> Result<Response<pb::EnableKeyRotationResponse>, Status> {
        self.update_key(
            Rpc::EnableKeyRotation,
            request,
            |req| &req.key_id,
            |req, call| {
                if req.rotation_period_days > 0 {
                    call.param("rotation_period_days", req.rotation_period_days);
                }
            },
            |req| KeyUpdate::enable_rotation(req.rotation_period_days),
            |key_metadata| pb::EnableKeyRotationResponse { key_metadata },
        )
        .await
    }

    async fn disable_key_rotation(
        &self,
        request: Request<pb::DisableKeyRotationRequest>,
    ) -> Result<Response<pb::DisableKeyRotationResponse>, Status> {
        self.update_key(
            Rpc::DisableKeyRotation,
            request,
            |req| &req.key_id,
            |_, _| {},
            |_| Ok(KeyUpdate::DisableRotation),
            |key_metadata| pb::DisableKeyRotationResponse { key_metadata },
        )
        .await
    }

    async fn get_key_rotation_status(
        &self,
        request: Request<pb::GetKeyRotationStatusRequest>,
    ) -> Result<Response<pb::GetKeyRotationStatusResponse>, Status> {
        self.auditor
            .serve(
                Rpc::GetKeyRotationStatus,
                request,
                |req, call| call.key(&req.key_id, &self.kms),
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(&req.key_id)?, None)?;
                    let record = self.kms.describe(&key)?.record;
                    Ok(pb::GetKeyRotationStatusResponse {
                        key_id: record.id.to_string(),
                        rotation_enabled: record.rotation_period_days.is_some(),
                        rotation_period_days: record.rotation_period_days.unwrap_or(0),
                        next_rotation_time: record.next_rotation_at.map(|t| t.to_timestamp()),
                    })
                },
            )
            .await
    }

    async fn generate_data_key_pair(
        &self,
        request: Request<pb::GenerateDataKeyPairRequest>,
    ) -> Result<Response<pb::GenerateDataKeyPairResponse>, Status> {
        self.auditor
            .serve(
                Rpc::GenerateDataKeyPair,
                request,
                |req, call| {
                    describe_data_key_pair(
                        call,
                        &self.kms,
                        &req.key_id,
                        &req.key_pair_spec,
                        &req.encryption_context,
                    )
                },
                async |req, admitted| {
                    let pair = self
                        .new_data_key_pair(
                            admitted,
                            &req.key_id,
                            &req.key_pair_spec,
                            req.encryption_context,
                            Operation::GenerateDataKeyPair,
                        )
                        .await?;
                    Ok(pb::GenerateDataKeyPairResponse {
                        key_id: pair.key_id.to_string(),
                        key_version: pair.key_version,
                        private_key_ciphertext_blob: pair.private_key_ciphertext_blob,
                        // As a data key's plaintext: to the caller that asked for it, and nowhere else.
                        private_key_plaintext: pair.private_key.expose().to_vec(),
                        public_key: pair.public_key,
                        key_pair_spec: req.key_pair_spec,
                    })
                },
            )
            .await
    }

    async fn generate_data_key_pair_without_plaintext(
        &self,
        request: Request<pb::GenerateDataKeyPairWithoutPlaintextRequest>,
    ) -> Result<Response<pb::GenerateDataKeyPairWithoutPlaintextResponse>, Status> {
        self.auditor
            .serve(
                Rpc::GenerateDataKeyPairWithoutPlaintext,
                request,
                |req, call| {
                    describe_data_key_pair(
                        call,
                        &self.kms,
                        &req.key_id,
                        &req.key_pair_spec,
                        &req.encryption_context,
                    )
                },
                async |req, admitted| {
                    let pair = self
                        .new_data_key_pair(
                            admitted,
                            &req.key_id,
                            &req.key_pair_spec,
                            req.encryption_context,
                            Operation::GenerateDataKeyPairWithoutPlaintext,
                        )
                        .await?;
                    Ok(pb::GenerateDataKeyPairWithoutPlaintextResponse {
                        key_id: pair.key_id.to_string(),
                        key_version: pair.key_version,
                        private_key_ciphertext_blob: pair.private_key_ciphertext_blob,
                        public_key: pair.public_key,
                        key_pair_spec: req.key_pair_spec,
                    })
                },
            )
            .await
    }

    async fn get_parameters_for_import(
        &self,
        request: Request<pb::GetParametersForImportRequest>,
    ) -> Result<Response<pb::GetParametersForImportResponse>, Status> {
        self.auditor
            .serve(
                Rpc::GetParametersForImport,
                request,
                |req, call| {
                    call.key(&req.key_id, &self.kms);
                    call.param("wrapping_algorithm", &req.wrapping_algorithm);
                    call.param("wrapping_key_spec", &req.wrapping_key_spec);
                },
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(&req.key_id)?, None)?;
                    let algorithm = match req.wrapping_algorithm.as_str() {
                        "" => keys::WrappingAlgorithm::RsaesOaepSha256,
                        text => keys::WrappingAlgorithm::parse(text)?,
                    };
                    let spec = match req.wrapping_key_spec.as_str() {
                        "" => keys::KeySpec::Rsa2048,
                        text => match keys::KeySpec::parse(text)? {
                            spec if spec.is_rsa() => spec,
                            _ => {
                                return Err(keys::invalid(
                                    "wrapping_key_spec must be RSA_2048, RSA_3072 or RSA_4096",
                                )
                                .into());
                            }
                        },
                    };
                    let issued = self.kms.import_parameters(&key, algorithm, spec).await?;
                    Ok(pb::GetParametersForImportResponse {
                        key_id: issued.key_id.to_string(),
                        import_token: issued.parameters.token,
                        public_key: issued.parameters.public_key,
                        parameters_valid_to: Some(issued.valid_to.to_timestamp()),
                    })
                },
            )
            .await
    }

    async fn import_key_material(
        &self,
        request: Request<pb::ImportKeyMaterialRequest>,
    ) -> Result<Response<pb::ImportKeyMaterialResponse>, Status> {
        self.auditor
            .serve(
                Rpc::ImportKeyMaterial,
                request,
                |req, call| {
                    call.key(&req.key_id, &self.kms);
                    call.param(
                        "encrypted_key_material_bytes",
                        req.encrypted_key_material.len(),
                    );
                    if !req.expiration_model.is_empty() {
                        call.param("expiration_model", &req.expiration_model);
                    }
                    if let Some(at) = &req.valid_to {
                        call.param("valid_to", UnixMillis::from_timestamp(at).rfc3339_millis());
                    }
                },
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(&req.key_id)?, None)?;
                    let valid_to = match (req.expiration_model.as_str(), &req.valid_to) {
                        ("" | "KEY_MATERIAL_EXPIRES", Some(at)) => {
                            Some(UnixMillis::from_timestamp(at))
                        }
                        ("" | "KEY_MATERIAL_DOES_NOT_EXPIRE", None) => None,
                        ("KEY_MATERIAL_EXPIRES", None) => {
                            return Err(keys::invalid("KEY_MATERIAL_EXPIRES needs valid_to").into());
                        }
                        ("KEY_MATERIAL_DOES_NOT_EXPIRE", Some(_)) => {
                            return Err(keys::invalid(
                                "valid_to applies only with expiration_model KEY_MATERIAL_EXPIRES",
                            )
                            .into());
                        }
                        (other, _) => {
                            return Err(keys::invalid(format!(
                                "expiration_model {other:?} is not KEY_MATERIAL_EXPIRES or \
                                 KEY_MATERIAL_DOES_NOT_EXPIRE"
                            ))
                            .into());
                        }
                    };
                    let key_id = self
                        .kms
                        .import_material(
                            &key,
                            &req.import_token,
                            &req.encrypted_key_material,
                            valid_to,
                            admitted,
                        )
                        .await?;
                    Ok(pb::ImportKeyMaterialResponse {
                        key_id: key_id.to_string(),
                    })
                },
            )
            .await
    }

    async fn delete_imported_key_material(
        &self,
        request: Request<pb::DeleteImportedKeyMaterialRequest>,
    ) -> Result<Response<pb::DeleteImportedKeyMaterialResponse>, Status> {
        self.auditor
            .serve(
                Rpc::DeleteImportedKeyMaterial,
                request,
                |req, call| call.key(&req.key_id, &self.kms),
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(&req.key_id)?, None)?;
                    let key_id = self.kms.delete_imported_material(&key, admitted).await?;
                    Ok(pb::DeleteImportedKeyMaterialResponse {
                        key_id: key_id.to_string(),
                    })
                },
            )
            .await
    }

    async fn sign(
        &self,
        request: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        self.auditor
            .serve(
                Rpc::Sign,
                request,
                |req, call| {
                    call.key(&req.key_id, &self.kms);
                    call.param("signing_algorithm", &req.signing_algorithm);
                    call.message(&req.message, Some(&req.message_type));
                },
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(&req.key_id)?, None)?;
                    let algorithm = signing_algorithm(&req.signing_algorithm)?;
                    let (key_id, signature) = self.kms.sign(
                        &key,
                        algorithm,
                        message_type(&req.message_type)?,
                        &req.message,
                    )?;
                    Ok(pb::SignResponse {
                        key_id: key_id.to_string(),
                        signature,
                        signing_algorithm: algorithm.to_string(),
                    })
                },
            )
            .await
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        self.auditor
            .serve(
                Rpc::Verify,
                request,
                |req, call| {
                    call.key(&req.key_id, &self.kms);
                    call.param("signing_algorithm", &req.signing_algorithm);
                    call.message(&req.message, Some(&req.message_type));
                },
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(&req.key_id)?, None)?;
                    let algorithm = signing_algorithm(&req.signing_algorithm)?;
                    let key_id = self.kms.verify(
                        &key,
                        algorithm,
                        message_type(&req.message_type)?,
                        &req.message,
                        &req.signature,
                    )?;
                    Ok(pb::VerifyResponse {
                        key_id: key_id.to_string(),
                        signature_valid: true,
                        signing_algorithm: algorithm.to_string(),
                    })
                },
            )
            .await
    }

    async fn get_public_key(
        &self,
        request: Request<pb::GetPublicKeyRequest>,
    ) -> Result<Response<pb::GetPublicKeyResponse>, Status> {
        self.auditor
            .serve(
                Rpc::GetPublicKey,
                request,
                |req, call| call.key(&req.key_id, &self.kms),
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(&req.key_id)?, None)?;
                    let public = self.kms.public_key(&key)?;
                    Ok(pb::GetPublicKeyResponse {
                        key_id: public.key_id.to_string(),
                        public_key: public.der,
                        key_spec: public.kind.spec.to_string(),
                        key_usage: public.kind.usage.to_string(),
                        encryption_algorithms: convert::names(public.kind.encryption_algorithms()),
                        signing_algorithms: convert::names(public.kind.signing_algorithms()),
                    })
                },
            )
            .await
    }

    async fn generate_mac(
        &self,
        request: Request<pb::GenerateMacRequest>,
    ) -> Result<Response<pb::GenerateMacResponse>, Status> {
        self.auditor
            .serve(
                Rpc::GenerateMac,
                request,
                |req, call| {
                    call.key(&req.key_id, &self.kms);
                    call.param("mac_algorithm", &req.mac_algorithm);
                    call.message(&req.message, None);
                },
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(&req.key_id)?, None)?;
                    let algorithm = mac_algorithm(&req.mac_algorithm)?;
                    let (key_id, mac) = self.kms.generate_mac(&key, algorithm, &req.message)?;
                    Ok(pb::GenerateMacResponse {
                        key_id: key_id.to_string(),
                        mac,
                        mac_algorithm: algorithm.to_string(),
                    })
                },
            )
            .await
    }

    async fn verify_mac(
        &self,
        request: Request<pb::VerifyMacRequest>,
    ) -> Result<Response<pb::VerifyMacResponse>, Status> {
        self.auditor
            .serve(
                Rpc::VerifyMac,
                request,
                |req, call| {
                    call.key(&req.key_id, &self.kms);
                    call.param("mac_algorithm", &req.mac_algorithm);
                    call.message(&req.message, None);
                },
                async |req, admitted| {
                    let key = admitted.authorize(&self.kms, key_ref(&req.key_id)?, None)?;
                    let algorithm = mac_algorithm(&req.mac_algorithm)?;
                    let key_id = self
                        .kms
                        .verify_mac(&key, algorithm, &req.message, &req.mac)?;
                    Ok(pb::VerifyMacResponse {
                        key_id: key_id.to_string(),
                        mac_valid: true,
                        mac_algorithm: algorithm.to_string(),
                    })
                },
            )
            .await
    }
}
