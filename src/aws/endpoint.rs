//! The AWS-compatible endpoint: AWS KMS's JSON protocol over HTTP/1.1 (`POST /`, `X-Amz-Target:
//! TrentService.<Operation>`, `application/x-amz-json-1.1`), so AWS SDKs, the AWS CLI and the AWS Encryption SDK
//! use kmsd unchanged.
//!
//! It is a thin front end on the one call path. A request is read (its body bounded by `max_message_bytes` and
//! given `request_timeout` to arrive), its operation's input read into the gRPC request of the same call
//! ([`super::ops`]), and handed, with the signed HTTP request in its extensions ([`SignedOrigin`]), to the gRPC
//! service's own handler: the call path authenticates the signature (SigV4, with an access key), admits, runs,
//! gates and records the call exactly as it does a gRPC call. A request refused before it became a gRPC request
//! (malformed JSON, an unknown field, AWS's own validation rules) still reaches that handler, carrying its refusal,
//! so it is recorded under its operation like any refused call; a request naming no operation kmsd serves is
//! recorded as `UnknownMethod`. Answers carry `x-amzn-RequestId`, the call's request id in the audit log.
//!
//! Invariants: every request that names an operation, or names none, is answered with an AWS-shaped JSON error or
//! its result, and recorded once; its answer leaves only after its record is durable; connections and calls count
//! against the same limits as gRPC's (`server::transport`); each call runs on a task of its own, so a client that
//! goes away cannot stop a change between storing it and serving it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use tonic::{Code, Status};
use zeroize::Zeroizing;

use super::arn::Home;
use super::ops;
use crate::proto::key_management_service_server::KeyManagementService;
use crate::rpc::{Event, Rpc};
use crate::server::transport::Admission;
use crate::service::{
    AWS_ERROR_METADATA, Auditor, ERROR_KIND_HEADER, KEY_STATE_HEADER, KmsService,
    REQUEST_ID_HEADER, SignedOrigin,
};

/// The prefix of `X-Amz-Target` for KMS.
const TARGET_PREFIX: &str = "TrentService.";
const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// rustls settings for the AWS endpoint from the gRPC API's PEM files: the same certificate and key. Client
/// certificates are not asked for: AWS clients authenticate by signature.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the certificate {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// What serves the AWS endpoint.
pub struct AwsEndpoint {
    kms: KmsService,
    auditor: Arc<Auditor>,
    home: Home,
    /// `home`'s region, shared by every request's `SignedOrigin` without a copy each.
    region: Arc<str>,
    admission: Arc<Admission>,
    max_body: usize,
    request_timeout: Duration,
}

type Answer = Response<Full<Bytes>>;
type Handled<'a, R> = Pin<Box<dyn Future<Output = Result<tonic::Response<R>, Status>> + Send + 'a>>;

impl AwsEndpoint {
    pub fn new(
        kms: KmsService,
        auditor: Arc<Auditor>,
        home: Home,
        admission: Arc<Admission>,
    ) -> Arc<Self> {
        let limits = admission.limits();
        Arc::new(AwsEndpoint {
            kms,
            auditor,
            region: Arc::from(home.region()),
            home,
            max_body: limits.max_message_bytes,
            request_timeout: limits.request_timeout,
            admission,
        })
    }

    /// Serves connections from `incoming` (the transport's admitted connections) until it ends.
    pub async fn serve(
        self: Arc<Self>,
        mut incoming: tokio_stream::wrappers::ReceiverStream<
            std::io::Result<crate::server::transport::Guarded>,
        >,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) {
        use tokio_stream::StreamExt;
        while let Some(Ok(connection)) = incoming.next().await {
            let endpoint = self.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let peer = connection.peer();
                match tls {
                    None => endpoint.serve_connection(connection, peer).await,
                    Some(acceptor) => {
                        // The handshake, like a request, must arrive within the request timeout.
                        let timeout = endpoint.request_timeout;
                        match tokio::time::timeout(timeout, acceptor.accept(connection)).await {
                            Ok(Ok(stream)) => endpoint.serve_connection(stream, peer).await,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, %peer, "AWS endpoint TLS handshake failed")
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "AWS endpoint TLS handshake timed out")
                            }
                        }
                    }
                }
            });
        }
    }

    /// Serves HTTP/1.1 requests on one connection until it closes.
    async fn serve_connection<I>(self: Arc<Self>, io: I, peer: SocketAddr)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        // A request's head, like its body, must arrive within the transport's request timeout.
        let head_timeout = self.request_timeout;
        let endpoint = self;
        let service = hyper::service::service_fn(move |request| {
            let endpoint = endpoint.clone();
            async move {
                // A task of its own: a client that goes away cannot stop a change half-way.
                let answer = tokio::spawn(async move { endpoint.answer(request, peer).await })
                    .await
                    .unwrap_or_else(|_| internal_error());
                Ok::<_, Infallible>(answer)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(head_timeout)
            .max_buf_size(64 * 1024)
            .serve_connection(hyper_util::rt::TokioIo::new(io), service);
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "AWS endpoint connection ended");
        }
    }

    /// One request's answer.
    async fn answer(self: Arc<Self>, request: http::Request<Incoming>, peer: SocketAddr) -> Answer {
        let (parts, body) = request.into_parts();
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _call = match self.admission.call_started(Some(peer)) {
            Ok(guard) => guard,
            Err(refused) => {
                // Not admitted: its body is not read (so its signature cannot be checked), and the refusal is
                // recorded like any other, under the operation it named.
                let origin = self.origin(parts, Bytes::new(), peer, None);
                return self
                    .refuse(origin, target.as_deref(), refused, Check::BodyIncomplete)
                    .await;
            }
        };
        let body = match tokio::time::timeout(
            self.request_timeout,
            Limited::new(body, self.max_body).collect(),
        )
        .await
        {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) => {
                let status = if e.is::<http_body_util::LengthLimitError>() {
                    ops::aws_error(
                        "ValidationException",
                        Code::InvalidArgument,
                        format!("the request body is larger than {} bytes", self.max_body),
                    )
                } else {
                    ops::aws_error(
                        "SerializationException",
                        Code::InvalidArgument,
                        format!("the request body could not be read: {e}"),
                    )
                };
                let origin = self.origin(parts, Bytes::new(), peer, None);
                return self
                    .refuse(origin, target.as_deref(), status, Check::BodyIncomplete)
                    .await;
            }
            Err(_) => {
                let status = ops::aws_error(
                    "RequestTimeoutException",
                    Code::DeadlineExceeded,
                    format!(
                        "the request body did not arrive within {:?}",
                        self.request_timeout
                    ),
                );
                let origin = self.origin(parts, Bytes::new(), peer, None);
                return self
                    .refuse(origin, target.as_deref(), status, Check::BodyIncomplete)
                    .await;
            }
        };
        let refusal = request_refusal(&parts);
        let origin = self.origin(parts, body, peer, refusal);
        let Some(operation) = target
            .as_deref()
            .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        else {
            let status = ops::aws_error(
                "UnknownOperationException",
                Code::Unimplemented,
                "the request names no operation: X-Amz-Target must be TrentService.<Operation>",
            );
            return self.unhandled(origin, target.as_deref(), status).await;
        };
        self.dispatch(operation, origin).await
    }

    fn origin(
        &self,
        parts: http::request::Parts,
        body: Bytes,
        peer: SocketAddr,
        refusal: Option<Status>,
    ) -> SignedOrigin {
        SignedOrigin {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            region: self.region.clone(),
            source: Some(peer),
            refusal,
        }
    }

    /// Runs `operation` through its gRPC handler.
    async fn dispatch(&self, operation: &str, origin: SignedOrigin) -> Answer {
        use KeyManagementService as K;
        let home = &self.home;
        macro_rules! op {
            ($input:ty, $read:path, $handler:path, $write:path) => {
                self.run::<$input, _, _>(
                    origin,
                    |i: $input| $read(i, home),
                    |k, r| $handler(k, r),
                    |r| ops::body(&$write(home, r)),
                )
                .await
            };
            (secret $input:ty, $read:path, $handler:path, $write:path) => {
                self.run::<$input, _, _>(
                    origin,
                    |i: $input| $read(i, home),
                    |k, r| $handler(k, r),
                    |r| $write(home, r),
                )
                .await
            };
        }
        match operation {
            "CreateKey" => op!(
                ops::CreateKeyInput,
                ops::CreateKeyInput::into_pb,
                K::create_key,
                ops::create_key_response
            ),
            "DescribeKey" => op!(
                ops::KeyIdInput,
                ops::KeyIdInput::describe,
                K::describe_key,
                ops::describe_key_response
            ),
            "ListKeys" => op!(
                ops::ListInput,
                ops::ListInput::keys,
                K::list_keys,
                ops::list_keys_response
            ),
            "ListAliases" => op!(
                ops::ListInput,
                ops::ListInput::aliases,
                K::list_aliases,
                ops::list_aliases_response
            ),
            "CreateAlias" => op!(
                ops::AliasInput,
                ops::AliasInput::create,
                K::create_alias,
                ops::empty
            ),
            "DeleteAlias" => op!(
                ops::AliasInput,
                ops::AliasInput::delete,
                K::delete_alias,
                ops::empty
            ),
            "EnableKey" => op!(
                ops::KeyIdInput,
                ops::KeyIdInput::enable,
                K::enable_key,
                ops::empty
            ),
            "DisableKey" => op!(
                ops::KeyIdInput,
                ops::KeyIdInput::disable,
                K::disable_key,
                ops::empty
            ),
            "ScheduleKeyDeletion" => op!(
                ops::ScheduleKeyDeletionInput,
                ops::ScheduleKeyDeletionInput::into_pb,
                K::schedule_key_deletion,
                ops::schedule_deletion_response
            ),
            "CancelKeyDeletion" => op!(
                ops::KeyIdInput,
                ops::KeyIdInput::cancel_deletion,
                K::cancel_key_deletion,
                ops::cancel_deletion_response
            ),
            "Encrypt" => op!(
                ops::EncryptInput,
                ops::EncryptInput::into_pb,
                K::encrypt,
                ops::encrypt_response
            ),
            "Decrypt" => op!(
                secret ops::DecryptInput,
                ops::DecryptInput::into_pb,
                K::decrypt,
                ops::decrypt_response
            ),
            "ReEncrypt" => op!(
                ops::ReEncryptInput,
                ops::ReEncryptInput::into_pb,
                K::re_encrypt,
                ops::re_encrypt_response
            ),
            "GenerateDataKey" => op!(
                secret ops::GenerateDataKeyInput,
                ops::GenerateDataKeyInput::into_pb,
                K::generate_data_key,
                ops::generate_data_key_response
            ),
            "GenerateDataKeyWithoutPlaintext" => op!(
                ops::GenerateDataKeyInput,
                ops::GenerateDataKeyInput::without_plaintext,
                K::generate_data_key_without_plaintext,
                ops::generate_data_key_without_plaintext_response
            ),
            "GenerateRandom" => op!(
                secret ops::GenerateRandomInput,
                ops::GenerateRandomInput::into_pb,
                K::generate_random,
                ops::generate_random_response
            ),
            "GetKeyPolicy" => op!(
                ops::KeyPolicyInput,
                ops::KeyPolicyInput::get,
                K::get_key_policy,
                ops::get_key_policy_response
            ),
            "PutKeyPolicy" => op!(
                ops::KeyPolicyInput,
                ops::KeyPolicyInput::put,
                K::put_key_policy,
                ops::empty
            ),
            "UpdateAlias" => op!(
                ops::UpdateAliasInput,
                ops::UpdateAliasInput::into_pb,
                K::update_alias,
                ops::empty
            ),
            "UpdateKeyDescription" => op!(
                ops::UpdateKeyDescriptionInput,
                ops::UpdateKeyDescriptionInput::into_pb,
                K::update_key_description,
                ops::empty
            ),
            "TagResource" => op!(
                ops::TagResourceInput,
                ops::TagResourceInput::into_pb,
                K::tag_resource,
                ops::empty
            ),
            "UntagResource" => op!(
                ops::UntagResourceInput,
                ops::UntagResourceInput::into_pb,
                K::untag_resource,
                ops::empty
            ),
            "ListResourceTags" => op!(
                ops::ListInput,
                ops::ListInput::tags,
                K::list_resource_tags,
                ops::list_resource_tags_response
            ),
            "EnableKeyRotation" => op!(
                ops::EnableKeyRotationInput,
                ops::EnableKeyRotationInput::into_pb,
                K::enable_key_rotation,
                ops::empty
            ),
            "DisableKeyRotation" => op!(
                ops::KeyIdInput,
                ops::KeyIdInput::disable_rotation,
                K::disable_key_rotation,
                ops::empty
            ),
            "GetKeyRotationStatus" => op!(
                ops::KeyIdInput,
                ops::KeyIdInput::rotation_status,
                K::get_key_rotation_status,
                ops::rotation_status_response
            ),
            "GenerateDataKeyPair" => op!(
                secret ops::DataKeyPairInput,
                ops::DataKeyPairInput::with_plaintext,
                K::generate_data_key_pair,
                ops::data_key_pair_response
            ),
            "GenerateDataKeyPairWithoutPlaintext" => op!(
                ops::DataKeyPairInput,
                ops::DataKeyPairInput::without_plaintext,
                K::generate_data_key_pair_without_plaintext,
                ops::data_key_pair_without_plaintext_response
            ),
            "GetParametersForImport" => op!(
                ops::ImportParametersInput,
                ops::ImportParametersInput::into_pb,
                K::get_parameters_for_import,
                ops::import_parameters_response
            ),
            "ImportKeyMaterial" => op!(
                ops::ImportInput,
                ops::ImportInput::into_pb,
                K::import_key_material,
                ops::import_response
            ),
            "DeleteImportedKeyMaterial" => op!(
                ops::DeleteImportedInput,
                ops::DeleteImportedInput::into_pb,
                K::delete_imported_key_material,
                ops::delete_imported_response
            ),
            "Sign" => op!(
                ops::SignInput,
                ops::SignInput::sign,
                K::sign,
                ops::sign_response
            ),
            "Verify" => op!(
                ops::SignInput,
                ops::SignInput::verify,
                K::verify,
                ops::verify_response
            ),
            "GetPublicKey" => op!(
                ops::KeyIdInput,
                ops::KeyIdInput::public_key,
                K::get_public_key,
                ops::public_key_response
            ),
            "GenerateMac" => op!(
                ops::MacInput,
                ops::MacInput::generate,
                K::generate_mac,
                ops::generate_mac_response
            ),
            "VerifyMac" => op!(
                ops::MacInput,
                ops::MacInput::verify,
                K::verify_mac,
                ops::verify_mac_response
            ),
            "RotateKeyOnDemand" => op!(
                ops::KeyIdInput,
                ops::KeyIdInput::rotate,
                K::rotate_key,
                ops::rotate_response
            ),
            "ListKeyRotations" => op!(
                ops::ListInput,
                ops::ListInput::rotations,
                K::list_key_versions,
                ops::list_key_rotations_response
            ),
            "ListKeyPolicies" => op!(
                ops::ListInput,
                ops::ListInput::policies,
                K::get_key_policy,
                ops::list_key_policies_response
            ),
            other => {
                let status = ops::aws_error(
                    "UnsupportedOperationException",
                    Code::Unimplemented,
                    format!("kmsd does not support the operation {other}"),
                );
                let target = format!("{TARGET_PREFIX}{other}");
                self.unhandled(origin, Some(&target), status).await
            }
        }
    }

    /// One operation: its input read into the gRPC request (or refused, which the handler then records), the
    /// handler run, its response or error written as AWS's.
    async fn run<I, Q, R>(
        &self,
        mut origin: SignedOrigin,
        read: impl FnOnce(I) -> Result<Q, Status>,
        handler: impl for<'a> FnOnce(&'a KmsService, tonic::Request<Q>) -> Handled<'a, R>,
        write: impl FnOnce(R) -> Zeroizing<Vec<u8>>,
    ) -> Answer
    where
        I: DeserializeOwned,
        Q: Default,
    {
        let message = match origin.refusal {
            Some(_) => Q::default(),
            None => match ops::parse::<I>(&origin.body).and_then(read) {
                Ok(message) => message,
                Err(refused) => {
                    origin.refusal = Some(refused);
                    Q::default()
                }
            },
        };
        let mut request = tonic::Request::new(message);
        request.extensions_mut().insert(origin);
        match handler(&self.kms, request).await {
            Ok(response) => {
                let request_id = request_id_of(response.metadata());
                let body = write(response.into_inner());
                answer(StatusCode::OK, Bytes::from_owner(body), request_id)
            }
            Err(status) => error_answer(&status),
        }
    }

    /// Records a request that reached no handler (it named no operation kmsd serves) and answers it: the caller's
    /// authentication failure if it did not authenticate, else `refusal`.
    async fn unhandled(
        &self,
        origin: SignedOrigin,
        target: Option<&str>,
        refusal: Status,
    ) -> Answer {
        self.refuse(origin, target, refusal, Check::SignatureFirst)
            .await
    }

    /// Records and answers a request that reached no handler; `check` says which answer wins when the caller did
    /// not authenticate either. A request whose body did not arrive whole cannot have its signature checked (the
    /// signature covers the body): it is answered `refusal`, and recorded with whatever of its credentials could be
    /// read.
    async fn refuse(
        &self,
        origin: SignedOrigin,
        target: Option<&str>,
        refusal: Status,
        check: Check,
    ) -> Answer {
        let pairs = origin.header_pairs();
        let rpc = target
            .and_then(|t| t.strip_prefix(TARGET_PREFIX))
            .and_then(|op| Rpc::ALL.iter().copied().find(|r| r.name() == op));
        let event = match rpc {
            Some(rpc) if refusal.code() != Code::Unimplemented => Event::Call(rpc),
            _ => Event::UnknownMethod,
        };
        let mut call = self.auditor.open(event, origin.context(&pairs));
        if event == Event::UnknownMethod {
            call.param("target", target.unwrap_or(""));
        }
        let request_id = call.request_id().to_owned();
        let status = match check {
            Check::SignatureFirst => call.unauthenticated().unwrap_or(refusal),
            Check::BodyIncomplete => refusal,
        };
        let mut status = match self.auditor.record::<()>(call, &Err(status.clone())).await {
            Ok(()) => status,
            Err(unavailable) => unavailable,
        };
        if let Ok(v) = request_id.parse() {
            status.metadata_mut().insert(REQUEST_ID_HEADER, v);
        }
        error_answer(&status)
    }
}

/// Which answer a request that reached no handler gets when its caller also failed to authenticate.
#[derive(Clone, Copy)]
enum Check {
    /// The authentication failure, as for any call.
    SignatureFirst,
    /// The refusal: the body was not read whole (too large, too slow, or the call was not admitted), so the
    /// signature, which covers it, could not be checked.
    BodyIncomplete,
}

/// What is wrong with a request's line and headers, if anything: AWS's JSON protocol is `POST /` with a JSON body.
fn request_refusal(parts: &http::request::Parts) -> Option<Status> {
    if parts.method != Method::POST || parts.uri.path() != "/" {
        return Some(ops::aws_error(
            "UnknownOperationException",
            Code::Unimplemented,
            "AWS KMS's JSON protocol is POST / with X-Amz-Target: TrentService.<Operation>",
        ));
    }
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match content_type.as_deref() {
        Some(JSON_CONTENT_TYPE) | Some("application/json") => None,
        other => Some(ops::aws_error(
            "SerializationException",
            Code::InvalidArgument,
            format!(
                "Content-Type must be {JSON_CONTENT_TYPE} (or application/json), not {}",
                other.unwrap_or("absent")
            ),
        )),
    }
}

fn request_id_of(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn answer(status: StatusCode, body: Bytes, request_id: Option<String>) -> Answer {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    if let Some(value) = request_id.and_then(|id| HeaderValue::try_from(id).ok()) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}

fn internal_error() -> Answer {
    let status = ops::aws_error(
        "KMSInternalException",
        Code::Internal,
        "internal error; the operation did not take effect (see the kmsd log)",
    );
    error_answer(&status)
}

/// An error as AWS's JSON protocol writes one: `{"__type": ..., "message": ...}` with the HTTP status botocore's
/// model declares for that exception.
fn error_answer(status: &Status) -> Answer {
    let status = crate::service::bounded(status.clone());
    let (name, http) = aws_error_of(&status);
    let body = serde_json::json!({ "__type": name, "message": status.message() });
    answer(
        http,
        Bytes::from(body.to_string()),
        request_id_of(status.metadata()),
    )
}

/// The AWS exception a status is, and its HTTP status: the name the endpoint or the call path put on it, else one
/// read from its code and kind (`x-kms-error`), never from its message.
fn aws_error_of(status: &Status) -> (&'static str, StatusCode) {
    let meta = |name: &str| status.metadata().get(name).and_then(|v| v.to_str().ok());
    let named = meta(AWS_ERROR_METADATA).and_then(|n| {
        KNOWN_ERRORS
            .iter()
            .find(|(known, _)| *known == n)
            .map(|(known, _)| *known)
    });
    let kind = meta(ERROR_KIND_HEADER).and_then(kmsd_proto::ErrorKind::parse);
    use kmsd_proto::ErrorKind as K;
    let name = named.unwrap_or_else(|| match (status.code(), kind) {
        (_, Some(K::InvalidCiphertext)) => "InvalidCiphertextException",
        (_, Some(K::IncorrectKey)) => "IncorrectKeyException",
        (_, Some(K::InvalidKeyUsage)) => "InvalidKeyUsageException",
        (_, Some(K::InvalidSignature)) => "KMSInvalidSignatureException",
        (_, Some(K::InvalidMac)) => "KMSInvalidMacException",
        (_, Some(K::UnsupportedOperation)) => "UnsupportedOperationException",
        (_, Some(K::InvalidImportToken)) => "InvalidImportTokenException",
        (_, Some(K::ExpiredImportToken)) => "ExpiredImportTokenException",
        (_, Some(K::IncorrectKeyMaterial)) => "IncorrectKeyMaterialException",
        (_, Some(K::NotFound)) => "NotFoundException",
        (_, Some(K::AlreadyExists)) => "AlreadyExistsException",
        (_, Some(K::KeyState)) if meta(KEY_STATE_HEADER) == Some("DISABLED") => "DisabledException",
        (_, Some(K::KeyState)) => "KMSInvalidStateException",
        (Code::InvalidArgument, _) => "ValidationException",
        (Code::NotFound, _) => "NotFoundException",
        (Code::AlreadyExists, _) => "AlreadyExistsException",
        (Code::PermissionDenied, _) => "AccessDeniedException",
        (Code::Unauthenticated, _) => "UnrecognizedClientException",
        (Code::ResourceExhausted, _) => "LimitExceededException",
        (Code::Unimplemented, _) => "UnsupportedOperationException",
        (Code::DeadlineExceeded, _) => "DependencyTimeoutException",
        // Fail closed (the audit log or the database unavailable, a replica behind): a fault botocore retries.
        _ => "KMSInternalException",
    });
    let http = KNOWN_ERRORS
        .iter()
        .find(|(known, _)| *known == name)
        .map_or(StatusCode::INTERNAL_SERVER_ERROR, |(_, code)| *code);
    (name, http)
}

/// The exceptions this endpoint answers with, and their HTTP statuses: botocore's KMS model declares no status, only
/// which exceptions are faults (500, retried by SDKs); every other is the client's (400).
const KNOWN_ERRORS: &[(&str, StatusCode)] = &[
    ("AccessDeniedException", StatusCode::BAD_REQUEST),
    ("AlreadyExistsException", StatusCode::BAD_REQUEST),
    (
        "DependencyTimeoutException",
        StatusCode::INTERNAL_SERVER_ERROR,
    ),
    ("DisabledException", StatusCode::BAD_REQUEST),
    ("ExpiredImportTokenException", StatusCode::BAD_REQUEST),
    ("IncompleteSignatureException", StatusCode::BAD_REQUEST),
    ("IncorrectKeyException", StatusCode::BAD_REQUEST),
    ("IncorrectKeyMaterialException", StatusCode::BAD_REQUEST),
    ("InvalidCiphertextException", StatusCode::BAD_REQUEST),
    ("InvalidImportTokenException", StatusCode::BAD_REQUEST),
    ("InvalidKeyUsageException", StatusCode::BAD_REQUEST),
    ("InvalidSignatureException", StatusCode::BAD_REQUEST),
    ("KMSInternalException", StatusCode::INTERNAL_SERVER_ERROR),
    ("KMSInvalidMacException", StatusCode::BAD_REQUEST),
    ("KMSInvalidSignatureException", StatusCode::BAD_REQUEST),
    ("KMSInvalidStateException", StatusCode::BAD_REQUEST),
    ("LimitExceededException", StatusCode::BAD_REQUEST),
    ("MalformedPolicyDocumentException", StatusCode::BAD_REQUEST),
    (
        "MissingAuthenticationTokenException",
        StatusCode::BAD_REQUEST,
    ),
    ("NotAuthorizedException", StatusCode::BAD_REQUEST),
    ("NotFoundException", StatusCode::BAD_REQUEST),
    ("RequestTimeoutException", StatusCode::BAD_REQUEST),
    ("SerializationException", StatusCode::BAD_REQUEST),
    ("UnknownOperationException", StatusCode::BAD_REQUEST),
    ("UnrecognizedClientException", StatusCode::BAD_REQUEST),
    ("UnsupportedOperationException", StatusCode::BAD_REQUEST),
    ("ValidationException", StatusCode::BAD_REQUEST),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyId, State, StateError};
    use crate::kms::KmsError;

    fn named(status: Status) -> (&'static str, StatusCode) {
        aws_error_of(&status)
    }

    fn state(state: State) -> Status {
        Status::from(KmsError::State(StateError {
            key_id: KeyId::new_random(),
            state,
            operation: crate::keys::Operation::Encrypt,
        }))
    }

    #[test]
    fn kmsd_errors_become_the_aws_exceptions_botocore_knows() {
        assert_eq!(
            named(state(State::Disabled)),
            ("DisabledException", StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            named(state(State::PendingDeletion)),
            ("KMSInvalidStateException", StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            named(Status::from(KmsError::AuditUnavailable)),
            ("KMSInternalException", StatusCode::INTERNAL_SERVER_ERROR),
            "failing closed is a fault SDKs retry"
        );
        assert_eq!(
            named(Status::unavailable("this replica is behind")),
            ("KMSInternalException", StatusCode::INTERNAL_SERVER_ERROR)
        );
        assert_eq!(
            named(Status::from(crate::keys::InvalidInput("bad".into()))),
            ("ValidationException", StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            named(Status::permission_denied("no")),
            ("AccessDeniedException", StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            named(Status::resource_exhausted("busy")),
            ("LimitExceededException", StatusCode::BAD_REQUEST)
        );
        // A name put on the status by the endpoint or the call path wins; an unknown one is not passed on.
        let mut signed = Status::unauthenticated("bad signature");
        signed.metadata_mut().insert(
            AWS_ERROR_METADATA,
            "InvalidSignatureException".parse().unwrap(),
        );
        assert_eq!(
            named(signed),
            ("InvalidSignatureException", StatusCode::BAD_REQUEST)
        );
        let mut odd = Status::internal("x");
        odd.metadata_mut()
            .insert(AWS_ERROR_METADATA, "MadeUpException".parse().unwrap());
        assert_eq!(named(odd).0, "KMSInternalException");
    }

    #[test]
    fn errors_are_aws_json_with_the_request_id() {
        let mut status = Status::not_found("key k does not exist");
        status
            .metadata_mut()
            .insert(REQUEST_ID_HEADER, "req-1".parse().unwrap());
        let answer = error_answer(&status);
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        assert_eq!(answer.headers()["x-amzn-requestid"], "req-1");
        assert_eq!(answer.headers()["content-type"], JSON_CONTENT_TYPE);
    }
}
