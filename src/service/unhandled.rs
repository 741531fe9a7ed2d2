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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};

use super::call::{Auditor, CallContext};
use super::grpc::CallSlot;
use super::{REASON_HEADER, REQUEST_ID_HEADER};
use crate::rpc::{Effect, Event, Rpc};

/// Services whose calls are not audited: they carry no key and no credential.
const UNAUDITED: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The headers a record is made of; the rest of a request is not kept past the call.
const RECORDED_HEADERS: [&str; 4] = [
    kmsd_proto::headers::AUTHORIZATION,
    REQUEST_ID_HEADER,
    REASON_HEADER,
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
        // Calls that change nothing kmsd stores (only their records, which the audit writer finishes on its own)
        // carry its hot path: they run in the caller's task. Every other call runs on a task of its own, so that
        // a caller going away (a timeout, a reset stream) cannot stop it between storing a change and serving it.
        let changes_nothing = Rpc::from_path(path).is_some_and(|rpc| rpc.effect() == Effect::Reads);
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
        let (event, path) = seen.event(status.code());
        let mut call = auditor.open(event, seen.context());
        if let Some(path) = path {
            call.param("path", path);
        }
        let request_id = http::HeaderValue::try_from(call.request_id()).ok();
        if let Err(unavailable) = auditor.record::<()>(call, &Err(status)).await {
            response = unavailable.into_http();
        }
        if let Some(value) = request_id {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        Ok(response)
    })
}

/// What of a request its record needs, kept while the call runs: reference-counted handles, no copies.
pub struct Seen {
    uri: http::Uri,
    headers: [Option<http::HeaderValue>; RECORDED_HEADERS.len()],
    source: Option<std::net::SocketAddr>,
    certificates: Option<Arc<Vec<tonic::transport::CertificateDer<'static>>>>,
}

impl Seen {
    fn of(request: &http::Request<Body>) -> Self {
        let extensions = request.extensions();
        Seen {
            uri: request.uri().clone(),
            headers: RECORDED_HEADERS.map(|name| request.headers().get(name).cloned()),
            source: extensions
                .get::<TcpConnectInfo>()
                .and_then(|tcp| tcp.remote_addr())
                .or_else(|| {
                    extensions
                        .get::<TlsConnectInfo<TcpConnectInfo>>()
                        .and_then(|tls| tls.get_ref().remote_addr())
                }),
            certificates: extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|tls| tls.peer_certs()),
        }
    }

    /// The event to record (the RPC the path names, or `UnknownMethod` when it names none), and the path when it
    /// names none.
    fn event(&self, code: Code) -> (Event, Option<String>) {
        let path = self.uri.path();
        match Rpc::from_path(path) {
            Some(rpc) if code != Code::Unimplemented => (Event::Call(rpc), None),
            // The path is caller input: it is bounded with the rest of the record.
            _ => (Event::UnknownMethod, Some(path.to_owned())),
        }
    }

    /// The call's context, as a handler would have seen it.
    fn context(&self) -> CallContext<'_> {
        let [authorization, request_id, reason, user_agent] = self
            .headers
            .each_ref()
            .map(|h| h.as_ref().and_then(|v| v.to_str().ok()));
        CallContext {
            authorization,
            client_certificate: self
                .certificates
                .as_ref()
                .and_then(|certs| certs.first())
                .map(|c| c.as_ref()),
            source: self.source,
            user_agent,
            request_id,
            reason,
            ..CallContext::default()
        }
    }
}
