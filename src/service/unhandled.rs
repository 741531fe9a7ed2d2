//! The record of a call that no handler saw: a request that failed to decode, was larger than the message limit,
//! named a method that does not exist, arrived too slowly, or was refused at the limit of calls in flight.
//!
//! This layer sits under every service. It puts a [`CallSlot`] in each request's extensions, which a handler marks
//! when it opens the call's record; a call answered with its slot unmarked is recorded here, as the handler would
//! have: who (its credentials are checked, so a token's principal is named), from where, which method (by path),
//! its request id and reason headers, and how it ended, in the same bounded form as every record. The answer
//! leaves only once that record is durable, and becomes UNAVAILABLE if it cannot be written.
//!
//! Invariants: every call to a kmsd service leaves exactly one record; health and reflection are not audited.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Status};

use super::REQUEST_ID_HEADER;
use super::call::{Auditor, CallSlot};

/// Services whose calls are not audited: they carry no key and no credential.
const UNAUDITED: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The headers a record is made of; the rest of a request is not kept past the call.
const RECORDED_HEADERS: &[&str] = &[
    "authorization",
    REQUEST_ID_HEADER,
    super::REASON_HEADER,
    "user-agent",
];

#[derive(Clone)]
pub struct RecordUnhandledLayer(pub Arc<Auditor>);

impl<S> tower_layer::Layer<S> for RecordUnhandledLayer {
    type Service = RecordUnhandled<S>;

    fn layer(&self, inner: S) -> RecordUnhandled<S> {
        RecordUnhandled {
            inner,
            auditor: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RecordUnhandled<S> {
    inner: S,
    auditor: Arc<Auditor>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for RecordUnhandled<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if UNAUDITED.iter().any(|prefix| path.starts_with(prefix)) {
            return Box::pin(self.inner.call(request));
        }
        let slot = CallSlot::default();
        request.extensions_mut().insert(slot.clone());
        let seen = Seen::of(&request);
        let response = self.inner.call(request);
        let auditor = self.auditor.clone();
        Box::pin(async move {
            let mut response = response.await?;
            if slot.handled() {
                return Ok(response);
            }
            let status = Status::from_header_map(response.headers()).unwrap_or_else(|| {
                Status::unknown("answered without a handler's record and without a gRPC status")
            });
            let (request, event_name, path) = seen.into_request(status.code());
            let mut call = auditor.open(event_name, &request);
            if let Some(path) = path {
                call.param("path", path);
            }
            let request_id = call.request_id().to_owned();
            if let Err(unavailable) = auditor.record::<()>(call, &Err(status)).await {
                return Ok(unavailable.into_http());
            }
            if let Ok(value) = http::HeaderValue::try_from(request_id) {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            Ok(response)
        })
    }
}

/// What of a request its record needs, kept while the call runs.
struct Seen {
    path: String,
    headers: http::HeaderMap,
    extensions: http::Extensions,
}

impl Seen {
    fn of(request: &http::Request<Body>) -> Self {
        let mut headers = http::HeaderMap::new();
        for name in RECORDED_HEADERS {
            if let Some(value) = request.headers().get(*name) {
                headers.insert(*name, value.clone());
            }
        }
        let mut extensions = http::Extensions::new();
        let from = request.extensions();
        if let Some(info) = from.get::<tonic::transport::server::TcpConnectInfo>() {
            extensions.insert(info.clone());
        }
        type Tls =
            tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>;
        if let Some(info) = from.get::<Tls>() {
            extensions.insert(info.clone());
        }
        Seen {
            path: request.uri().path().to_owned(),
            headers,
            extensions,
        }
    }

    /// The request as a handler would have seen it, the event to record (the method the path names, or
    /// `UnknownMethod` when no such method exists), and the path when it names none.
    fn into_request(self, code: Code) -> (Request<()>, Cow<'static, str>, Option<String>) {
        let method = self.path.rsplit_once('/').map(|(_, m)| m).filter(|m| {
            (1..=64).contains(&m.len()) && m.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        let (event_name, path) = match method {
            Some(m) if code != Code::Unimplemented && self.path.starts_with("/kms.v1.") => {
                (Cow::Owned(m.to_owned()), None)
            }
            // The path is caller input: it is bounded with the rest of the record.
            _ => (Cow::Borrowed("UnknownMethod"), Some(self.path)),
        };
        let metadata = MetadataMap::from_headers(self.headers);
        (
            Request::from_parts(metadata, self.extensions, ()),
            event_name,
            path,
        )
    }
}
