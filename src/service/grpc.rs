//! The gRPC front end's side of the call path: a tonic request becomes a [`CallContext`] and a described
//! [`Call`], [`Auditor::run`] does the rest, and the result becomes a tonic response carrying the call's request
//! id. Each handler in the gRPC services is one [`Auditor::serve`]: what its request names, then its body.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::call::{
    Admitted, Audited, Auditor, Call, CallContext, REASON_HEADER, REQUEST_ID_HEADER,
};
use crate::rpc::Rpc;

/// Put in a request's extensions by the layer that records calls no handler saw ([`super::unhandled`]); set when
/// a handler opens the call's record, so that layer knows the call is recorded.
#[derive(Clone, Default)]
pub struct CallSlot(Arc<AtomicBool>);

impl CallSlot {
    pub fn handled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A request that arrived through the AWS endpoint rather than over gRPC, carried in the extensions of the request
/// that endpoint hands to the same handler: what its caller is authenticated by (the signed HTTP request as it
/// arrived), where it came from, and the endpoint's own refusal, if it refused the request before it became a
/// request of the common form.
#[derive(Clone)]
pub struct SignedOrigin {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
    pub region: Arc<str>,
    pub source: Option<std::net::SocketAddr>,
    pub refusal: Option<Status>,
}

impl SignedOrigin {
    /// The headers as the signature verifier reads them.
    pub fn header_pairs(&self) -> Vec<(&str, &[u8])> {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect()
    }

    /// The call's context: the signed request, and the recorded headers.
    pub fn context<'a>(&'a self, headers: &'a [(&'a str, &'a [u8])]) -> CallContext<'a> {
        let header = |name: &str| self.headers.get(name).and_then(|v| v.to_str().ok());
        CallContext {
            signed: Some(crate::auth::SignedRequest {
                request: crate::aws::sigv4::Request {
                    method: self.method.as_str(),
                    path: self.uri.path(),
                    query: self.uri.query().unwrap_or(""),
                    headers,
                    body: &self.body,
                },
                region: &self.region,
            }),
            source: self.source,
            user_agent: header("user-agent"),
            request_id: header(REQUEST_ID_HEADER),
            reason: header(REASON_HEADER),
            refusal: self.refusal.as_ref(),
            ..CallContext::default()
        }
    }
}

/// What the call path needs of a gRPC request's metadata and connection.
pub(super) fn context_of<'a>(
    metadata: &'a tonic::metadata::MetadataMap,
    source: Option<std::net::SocketAddr>,
    certificate: Option<&'a [u8]>,
) -> CallContext<'a> {
    let header = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok());
    CallContext {
        authorization: header(kmsd_proto::headers::AUTHORIZATION),
        client_certificate: certificate,
        source,
        user_agent: header("user-agent"),
        request_id: header(REQUEST_ID_HEADER),
        reason: header(REASON_HEADER),
        ..CallContext::default()
    }
}

impl Auditor {
    /// Serves one gRPC call of `rpc`: `describe` records what the request names (for every caller, admitted or
    /// not), then [`Auditor::run`] admits the caller and runs `body`, and the answer carries the request id.
    pub async fn serve<Q, R: Audited>(
        &self,
        rpc: Rpc,
        mut request: Request<Q>,
        describe: impl FnOnce(&Q, &mut Call),
        body: impl AsyncFnOnce(Q, &Admitted<'_>) -> Result<R, Status>,
    ) -> Result<Response<R>, Status> {
        if let Some(slot) = request.extensions().get::<CallSlot>() {
            slot.0.store(true, Ordering::Release);
        }
        let mut call = match request.extensions_mut().remove::<SignedOrigin>() {
            Some(origin) => self.open(rpc.into(), origin.context(&origin.header_pairs())),
            None => {
                let certificates = request.peer_certs();
                self.open(
                    rpc.into(),
                    context_of(
                        request.metadata(),
                        request.remote_addr(),
                        certificates
                            .as_ref()
                            .and_then(|c| c.first())
                            .map(|c| c.as_ref()),
                    ),
                )
            }
        };
        let message = request.into_inner();
        describe(&message, &mut call);
        let (result, request_id) = self
            .run(rpc, call, async |admitted| body(message, admitted).await)
            .await;
        respond(&request_id, result)
    }
}

/// The response, or the error, with the call's request id attached.
pub(super) fn respond<R>(
    request_id: &str,
    result: Result<R, Status>,
) -> Result<Response<R>, Status> {
    let value = MetadataValue::try_from(request_id).ok();
    match result {
        Ok(body) => {
            let mut response = Response::new(body);
            if let Some(v) = value {
                response.metadata_mut().insert(REQUEST_ID_HEADER, v);
            }
            Ok(response)
        }
        Err(status) => {
            let mut status = super::status::bounded(status);
            if let Some(v) = value {
                status.metadata_mut().insert(REQUEST_ID_HEADER, v);
            }
            Err(status)
        }
    }
}
