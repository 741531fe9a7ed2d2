//! The gRPC service layer: the only module that knows protobuf types.
//!
//! Each handler parses its request into domain types (refusing bad input with INVALID_ARGUMENT before anything
//! happens), calls [`Kms`], and converts the result back. Errors become statuses in one place, `status.rs`.
//!
//! Invariant: a handler never logs or returns key material, except a data key's or a decryption's plaintext in
//! the response to the caller that asked for it; plaintext received in a request is zeroized when handled.

mod convert;
mod status;

use std::sync::Arc;

use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::keys::{
    self, AliasName, DataKeySpec, EncryptionContext, InvalidInput, KeyRef, NewKeySpec, Operation,
};
use crate::kms::Kms;
use crate::proto::key_management_service_server::KeyManagementService;
use crate::proto::{self, *};

pub use crate::proto::key_management_service_server::KeyManagementServiceServer;

/// The fully-qualified service name, as health checks and reflection report it.
pub const SERVICE_NAME: &str = "kms.v1.KeyManagementService";

pub struct KmsService {
    kms: Arc<Kms>,
}

impl KmsService {
    pub fn new(kms: Arc<Kms>) -> Self {
        KmsService { kms }
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

fn metadata_response<T>(
    view: crate::kms::KeyView,
    wrap: impl FnOnce(Option<KeyMetadata>) -> T,
) -> Response<T> {
    Response::new(wrap(Some(convert::metadata(&view))))
}

#[tonic::async_trait]
impl KeyManagementService for KmsService {
    async fn create_key(
        &self,
        request: Request<CreateKeyRequest>,
    ) -> Result<Response<CreateKeyResponse>, Status> {
        let req = request.into_inner();
        let spec = NewKeySpec::parse(
            req.description,
            req.tags,
            &req.alias,
            req.rotation_period_days,
        )?;
        let view = self.kms.create_key(spec).await?;
        Ok(metadata_response(view, |key_metadata| CreateKeyResponse {
            key_metadata,
        }))
    }

    async fn describe_key(
        &self,
        request: Request<DescribeKeyRequest>,
    ) -> Result<Response<DescribeKeyResponse>, Status> {
        let key = key_ref(&request.get_ref().key_id)?;
        let view = self.kms.describe(&key)?;
        Ok(metadata_response(view, |key_metadata| {
            DescribeKeyResponse { key_metadata }
        }))
    }

    async fn list_keys(
        &self,
        request: Request<ListKeysRequest>,
    ) -> Result<Response<ListKeysResponse>, Status> {
        let req = request.into_inner();
        let page = self.kms.list_keys(req.page_size, &req.page_token)?;
        Ok(Response::new(ListKeysResponse {
            keys: page.items.iter().map(convert::metadata).collect(),
            next_page_token: page.next_token.unwrap_or_default(),
        }))
    }

    async fn create_alias(
        &self,
        request: Request<CreateAliasRequest>,
    ) -> Result<Response<CreateAliasResponse>, Status> {
        let req = request.into_inner();
        let name = AliasName::parse(&req.alias_name)?;
        let target = key_ref(&req.key_id)?;
        let alias = self.kms.create_alias(name, &target).await?;
        Ok(Response::new(CreateAliasResponse {
            alias: Some(convert::alias(&alias)),
        }))
    }

    async fn delete_alias(
        &self,
        request: Request<DeleteAliasRequest>,
    ) -> Result<Response<DeleteAliasResponse>, Status> {
        let name = AliasName::parse(&request.get_ref().alias_name)?;
        self.kms.delete_alias(name).await?;
        Ok(Response::new(DeleteAliasResponse {}))
    }

    async fn list_aliases(
        &self,
        request: Request<ListAliasesRequest>,
    ) -> Result<Response<ListAliasesResponse>, Status> {
        let req = request.into_inner();
        let key = KeyRef::parse_optional(&req.key_id, "key_id")?;
        let page = self
            .kms
            .list_aliases(key.as_ref(), req.page_size, &req.page_token)?;
        Ok(Response::new(ListAliasesResponse {
            aliases: page.items.iter().map(convert::alias).collect(),
            next_page_token: page.next_token.unwrap_or_default(),
        }))
    }

    async fn enable_key(
        &self,
        request: Request<EnableKeyRequest>,
    ) -> Result<Response<EnableKeyResponse>, Status> {
        let key = key_ref(&request.get_ref().key_id)?;
        let view = self.kms.change_state(&key, Operation::EnableKey, 0).await?;
        Ok(metadata_response(view, |key_metadata| EnableKeyResponse {
            key_metadata,
        }))
    }

    async fn disable_key(
        &self,
        request: Request<DisableKeyRequest>,
    ) -> Result<Response<DisableKeyResponse>, Status> {
        let key = key_ref(&request.get_ref().key_id)?;
        let view = self
            .kms
            .change_state(&key, Operation::DisableKey, 0)
            .await?;
        Ok(metadata_response(view, |key_metadata| DisableKeyResponse {
            key_metadata,
        }))
    }

    async fn rotate_key(
        &self,
        request: Request<RotateKeyRequest>,
    ) -> Result<Response<RotateKeyResponse>, Status> {
        let key = key_ref(&request.get_ref().key_id)?;
        let view = self.kms.rotate(&key).await?;
        Ok(metadata_response(view, |key_metadata| RotateKeyResponse {
            key_metadata,
        }))
    }

    async fn list_key_versions(
        &self,
        request: Request<ListKeyVersionsRequest>,
    ) -> Result<Response<ListKeyVersionsResponse>, Status> {
        let key = key_ref(&request.get_ref().key_id)?;
        let versions = self.kms.list_versions(&key)?;
        Ok(Response::new(ListKeyVersionsResponse {
            versions: versions.iter().map(convert::version).collect(),
        }))
    }

    async fn schedule_key_deletion(
        &self,
        request: Request<ScheduleKeyDeletionRequest>,
    ) -> Result<Response<ScheduleKeyDeletionResponse>, Status> {
        let req = request.into_inner();
        let key = key_ref(&req.key_id)?;
        let days = keys::deletion_window_days(req.pending_window_days)?;
        let view = self
            .kms
            .change_state(&key, Operation::ScheduleKeyDeletion, days)
            .await?;
        Ok(metadata_response(view, |key_metadata| {
            ScheduleKeyDeletionResponse { key_metadata }
        }))
    }

    async fn cancel_key_deletion(
        &self,
        request: Request<CancelKeyDeletionRequest>,
    ) -> Result<Response<CancelKeyDeletionResponse>, Status> {
        let key = key_ref(&request.get_ref().key_id)?;
        let view = self
            .kms
            .change_state(&key, Operation::CancelKeyDeletion, 0)
            .await?;
        Ok(metadata_response(view, |key_metadata| {
            CancelKeyDeletionResponse { key_metadata }
        }))
    }

    async fn generate_data_key(
        &self,
        request: Request<GenerateDataKeyRequest>,
    ) -> Result<Response<GenerateDataKeyResponse>, Status> {
        let req = request.into_inner();
        let key = key_ref(&req.key_id)?;
        let spec = data_key_spec(req.key_spec, req.number_of_bytes)?;
        let ctx = context(req.encryption_context, "encryption_context")?;
        let dk = self
            .kms
            .generate_data_key(&key, spec, &ctx, Operation::GenerateDataKey)?;
        Ok(Response::new(GenerateDataKeyResponse {
            key_id: dk.key_id.to_string(),
            key_version: dk.key_version,
            // The one place a data key's plaintext leaves the daemon: to the caller that asked for it.
            plaintext: dk.plaintext.expose().to_vec(),
            ciphertext_blob: dk.ciphertext_blob,
        }))
    }

    async fn generate_data_key_without_plaintext(
        &self,
        request: Request<GenerateDataKeyWithoutPlaintextRequest>,
    ) -> Result<Response<GenerateDataKeyWithoutPlaintextResponse>, Status> {
        let req = request.into_inner();
        let key = key_ref(&req.key_id)?;
        let spec = data_key_spec(req.key_spec, req.number_of_bytes)?;
        let ctx = context(req.encryption_context, "encryption_context")?;
        let dk = self.kms.generate_data_key(
            &key,
            spec,
            &ctx,
            Operation::GenerateDataKeyWithoutPlaintext,
        )?;
        Ok(Response::new(GenerateDataKeyWithoutPlaintextResponse {
            key_id: dk.key_id.to_string(),
            key_version: dk.key_version,
            ciphertext_blob: dk.ciphertext_blob,
        }))
    }

    async fn encrypt(
        &self,
        request: Request<EncryptRequest>,
    ) -> Result<Response<EncryptResponse>, Status> {
        let mut req = request.into_inner();
        let plaintext = Zeroizing::new(std::mem::take(&mut req.plaintext));
        let key = key_ref(&req.key_id)?;
        let ctx = context(req.encryption_context, "encryption_context")?;
        let sealed = self.kms.encrypt(&key, &ctx, &plaintext)?;
        Ok(Response::new(EncryptResponse {
            key_id: sealed.key_id.to_string(),
            key_version: sealed.key_version,
            ciphertext_blob: sealed.ciphertext_blob,
        }))
    }

    async fn decrypt(
        &self,
        request: Request<DecryptRequest>,
    ) -> Result<Response<DecryptResponse>, Status> {
        let req = request.into_inner();
        let expected = KeyRef::parse_optional(&req.key_id, "key_id")?;
        let ctx = context(req.encryption_context, "encryption_context")?;
        let opened = self
            .kms
            .decrypt(&req.ciphertext_blob, expected.as_ref(), &ctx)?;
        Ok(Response::new(DecryptResponse {
            key_id: opened.key_id.to_string(),
            key_version: opened.key_version,
            plaintext: opened.plaintext.expose().to_vec(),
        }))
    }

    async fn re_encrypt(
        &self,
        request: Request<ReEncryptRequest>,
    ) -> Result<Response<ReEncryptResponse>, Status> {
        let req = request.into_inner();
        let source = KeyRef::parse_optional(&req.source_key_id, "source_key_id")?;
        let source_ctx = context(req.source_encryption_context, "source_encryption_context")?;
        let destination = KeyRef::parse_optional(&req.destination_key_id, "destination_key_id")?;
        let destination_ctx = context(
            req.destination_encryption_context,
            "destination_encryption_context",
        )?;
        let out = self.kms.re_encrypt(
            &req.ciphertext_blob,
            source.as_ref(),
            &source_ctx,
            destination.as_ref(),
            &destination_ctx,
        )?;
        Ok(Response::new(ReEncryptResponse {
            source_key_id: out.source_key_id.to_string(),
            source_key_version: out.source_key_version,
            key_id: out.key_id.to_string(),
            key_version: out.key_version,
            ciphertext_blob: out.ciphertext_blob,
        }))
    }

    async fn generate_random(
        &self,
        request: Request<GenerateRandomRequest>,
    ) -> Result<Response<GenerateRandomResponse>, Status> {
        let len = keys::random_len(request.get_ref().number_of_bytes)?;
        let bytes = self.kms.generate_random(len);
        Ok(Response::new(GenerateRandomResponse {
            plaintext: bytes.expose().to_vec(),
        }))
    }
}
