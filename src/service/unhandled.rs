//! The record of a call that no handler saw: a request that failed to decode, was larger than the message limit,
//! named a method that does not exist, arrived too slowly, or was refused at the limit of calls in flight.
//!
//! This layer sits under every service. It puts a [`CallSlot`] in each request's extensions, which a handler marks
//! when it opens the call's record; a call answered with its slot unmarked is recorded here, as the handler would
//! have: who (its credentials are checked, so a token's principal is named), from where, which method (by path),
//! its request id and reason headers, and how it ended, in the same bounded form as every record. The answer
//! leaves only once that record is durable, and becomes UNAVAILABLE if it cannot be written.
//!
//! It also runs every call that may change state on a task of its own (`tokio::spawn`), so a caller that goes away
//! (a timeout, a reset stream) cannot stop it between storing a change and serving it: the change would be stored
//! but the cache, which calls are served from, would still hold the old state until a restart.
//!
//! Invariants: every call to a kmsd service leaves exactly one record; health and reflection are not audited; a
//! call that may change state runs to its end whatever its caller does.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Request, Status};

use super::REQUEST_ID_HEADER;
use super::call::{Auditor, CallSlot};

/// Services whose calls are not audited: they carry no key and no credential.
const UNAUDITED: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Calls that change nothing kmsd stores (only their records, which the audit writer finishes on its own), and carry
/// its hot path: they run in the caller's task. Every other call may change state, and runs on a task of its own, so
/// that a caller going away (a timeout, a reset stream) cannot stop it between storing a change and serving it.
const CHANGE_NOTHING: &[&str] = &[
    "/kms.v1.KeyManagementService/GenerateDataKey",
    "/kms.v1.KeyManagementService/GenerateDataKeyWithoutPlaintext",
    "/kms.v1.KeyManagementService/Encrypt",
    "/kms.v1.KeyManagementService/Decrypt",
    "/kms.v1.KeyManagementService/ReEncrypt",
    "/kms.v1.KeyManagementService/GenerateRandom",
];

/// The headers a record is made of; the rest of a request is not kept past the call.
const RECORDED_HEADERS: [&str; 4] = [
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
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = RecordFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if UNAUDITED.iter().any(|prefix| path.starts_with(prefix)) {
            return RecordFuture::Unaudited {
                inner: self.inner.call(request),
            };
        }
        let changes_nothing = CHANGE_NOTHING.contains(&path);
        let slot = CallSlot::default();
        request.extensions_mut().insert(slot.clone());
        let seen = Seen::of(&request);
        let unhandled = Some((slot, seen, self.auditor.clone()));
        if changes_nothing {
            return RecordFuture::Calling {
                inner: self.inner.call(request),
                unhandled,
            };
        }
        RecordFuture::Detached {
            task: tokio::spawn(self.inner.call(request)),
            unhandled,
        }
    }
}

pin_project_lite::pin_project! {
    /// The call; then, only if no handler recorded it, its record before the answer.
    #[project = RecordProj]
    pub enum RecordFuture<F, E> {
        Unaudited { #[pin] inner: F },
        Calling { #[pin] inner: F, unhandled: Option<(CallSlot, Seen, Arc<Auditor>)> },
        Detached {
            task: tokio::task::JoinHandle<Result<http::Response<Body>, E>>,
            unhandled: Option<(CallSlot, Seen, Arc<Auditor>)>,
        },
        Recording { recording: BoxFuture<Result<http::Response<Body>, E>> },
    }
}

impl<F, E> Future for RecordFuture<F, E>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
    E: Send + 'static,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let recording = match self.as_mut().project() {
            RecordProj::Unaudited { inner } => return inner.poll(cx),
            RecordProj::Recording { recording } => return recording.as_mut().poll(cx),
            RecordProj::Calling { inner, unhandled } => {
                let response = std::task::ready!(inner.poll(cx))?;
                match unhandled.take() {
                    Some((slot, seen, auditor)) if !slot.handled() => {
                        record(response, seen, auditor)
                    }
                    _ => return Poll::Ready(Ok(response)),
                }
            }
            RecordProj::Detached { task, unhandled } => {
                let response = match std::task::ready!(Pin::new(task).poll(cx)) {
                    Ok(answer) => answer?,
                    // The call's task panicked: if its record is missing, it is written below.
                    Err(_) => Status::internal("internal error; see the kmsd log").into_http(),
                };
                match unhandled.take() {
                    Some((slot, seen, auditor)) if !slot.handled() => {
                        record(response, seen, auditor)
                    }
                    _ => return Poll::Ready(Ok(response)),
                }
            }
        };
        self.set(RecordFuture::Recording { recording });
        self.poll(cx)
    }
}

/// Records a call no handler saw, then gives its answer (UNAVAILABLE instead if the record cannot be written).
fn record<E: Send + 'static>(
    mut response: http::Response<Body>,
    seen: Seen,
    auditor: Arc<Auditor>,
) -> BoxFuture<Result<http::Response<Body>, E>> {
    Box::pin(async move {
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

/// What of a request its record needs, kept while the call runs: reference-counted handles, no copies.
pub struct Seen {
    uri: http::Uri,
    headers: [Option<http::HeaderValue>; RECORDED_HEADERS.len()],
    tcp: Option<TcpConnectInfo>,
    tls: Option<TlsConnectInfo<TcpConnectInfo>>,
}

impl Seen {
    fn of(request: &http::Request<Body>) -> Self {
        let extensions = request.extensions();
        Seen {
            uri: request.uri().clone(),
            headers: RECORDED_HEADERS.map(|name| request.headers().get(name).cloned()),
            tcp: extensions.get::<TcpConnectInfo>().cloned(),
            tls: extensions.get::<TlsConnectInfo<TcpConnectInfo>>().cloned(),
        }
    }

    /// The request as a handler would have seen it, the event to record (the method the path names, or
    /// `UnknownMethod` when no such method exists), and the path when it names none.
    fn into_request(self, code: Code) -> (Request<()>, Cow<'static, str>, Option<String>) {
        let path = self.uri.path();
        let method = path.rsplit_once('/').map(|(_, m)| m).filter(|m| {
            (1..=64).contains(&m.len()) && m.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        let (event_name, path) = match method {
            Some(m) if code != Code::Unimplemented && path.starts_with("/kms.v1.") => {
                (Cow::Owned(m.to_owned()), None)
            }
            // The path is caller input: it is bounded with the rest of the record.
            _ => (Cow::Borrowed("UnknownMethod"), Some(path.to_owned())),
        };
        let mut headers = http::HeaderMap::new();
        for (name, value) in RECORDED_HEADERS.iter().zip(self.headers) {
            if let Some(value) = value {
                headers.insert(*name, value);
            }
        }
        let mut extensions = http::Extensions::new();
        if let Some(tcp) = self.tcp {
            extensions.insert(tcp);
        }
        if let Some(tls) = self.tls {
            extensions.insert(tls);
        }
        let request = Request::from_parts(MetadataMap::from_headers(headers), extensions, ());
        (request, event_name, path)
    }
}
