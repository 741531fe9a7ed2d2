//! What a connection may hold: how many connections, how long a silent or idle one stays, how many calls are in
//! flight, and how long a request may take to arrive.
//!
//! Connections come from [`accept`], which admits each into a registry: at [`TransportLimits::max_connections`] a
//! new connection evicts the connection with no call in flight that has been quiet longest, preferring those that
//! never sent a byte, and is refused (closed at once) only if every connection is busy. A connection that sends
//! nothing within `handshake_timeout`, or carries no call for `idle_timeout`, is closed by the reaper. Accept
//! errors such as EMFILE back off instead of spinning. [`CallLimitLayer`] sits under every service: it refuses a
//! call beyond `max_calls_in_flight` at once with RESOURCE_EXHAUSTED, tells the registry the connection is busy,
//! and fails a request whose body has not fully arrived within `request_timeout`, so a stream opened with headers
//! and no body is answered and its memory returned.
//!
//! Invariants: the daemon holds at most `max_connections` admitted connections, at most `max_concurrent_streams` streams on
//! each and `max_calls_in_flight` calls in all; no request waits longer than `request_timeout` for its bytes; a
//! call in flight is never cut by the idle timeout (it must exceed `request_timeout`, checked with the settings).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

/// The transport's limits, each a setting (`deploy/kmsd.toml.example` documents them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportLimits {
    /// Connections open at once; at the limit the quietest idle one makes room, or the new one is refused.
    pub max_connections: usize,
    /// HTTP/2 streams (calls) one connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
    /// Calls being served at once over all connections; beyond it, RESOURCE_EXHAUSTED at once.
    pub max_calls_in_flight: usize,
    /// How long a new connection may stay silent before it is closed.
    pub handshake_timeout: Duration,
    /// How long a request's headers and body may take to arrive.
    pub request_timeout: Duration,
    /// How long a connection may carry no call before it is closed.
    pub idle_timeout: Duration,
    /// How often to ping an HTTP/2 connection that is quiet (off by default: `idle_timeout` already closes
    /// connections that carry no call, and hyper's ping bookkeeping costs a lock and a clock read on every frame
    /// received), and how long to wait for the answer.
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Duration,
    /// The largest request message, in bytes.
    pub max_message_bytes: usize,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            max_connections: 1024,
            max_concurrent_streams: 256,
            max_calls_in_flight: 4096,
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: None,
            keepalive_timeout: Duration::from_secs(20),
            max_message_bytes: 4 * 1024 * 1024,
        }
    }
}

impl TransportLimits {
    /// File descriptors the daemon needs beside its connections: the database, its WAL, the listeners, logs.
    pub const RESERVED_FILES: u64 = 64;

    pub fn check(&self) -> Result<(), String> {
        if self.max_connections == 0
            || self.max_concurrent_streams == 0
            || self.max_calls_in_flight == 0
        {
            return Err("max_connections, max_concurrent_streams and max_calls_in_flight must be at least 1".into());
        }
        if self.idle_timeout <= self.request_timeout {
            return Err(format!(
                "idle_timeout ({:?}) must be longer than request_timeout ({:?}), or a connection could be closed \
                 while a request arrives",
                self.idle_timeout, self.request_timeout
            ));
        }
        if self.max_message_bytes < 1024 {
            return Err("max_message_bytes must be at least 1024".into());
        }
        Ok(())
    }
}

/// Raises the soft limit on open files to the hard limit, and returns the connections that fit under it: at most
/// `wanted`, leaving [`TransportLimits::RESERVED_FILES`] for everything else. Without this, connections beyond the
/// soft limit (1024 by default in a shell) would fail accept with EMFILE.
pub fn fit_connections_to_file_limit(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(hard)) = (limit.current, limit.maximum)
        && current < hard
    {
        limit.current = Some(hard);
        if setrlimit(Resource::Nofile, limit).is_err() {
            limit = getrlimit(Resource::Nofile);
        }
    }
    let Some(files) = limit.current else {
        return wanted;
    };
    let fits = files.saturating_sub(TransportLimits::RESERVED_FILES).max(1) as usize;
    if fits < wanted {
        tracing::warn!(
            max_connections = wanted,
            open_file_limit = files,
            using = fits,
            "the open-file limit cannot hold max_connections; raise LimitNOFILE (systemd) or ulimit -n"
        );
        return fits;
    }
    wanted
}

/// The registry of admitted connections.
pub struct Admission {
    limits: TransportLimits,
    epoch: Instant,
    connections: Mutex<HashMap<SocketAddr, Arc<Conn>>>,
    calls: Arc<Semaphore>,
}

/// One admitted connection's state, shared by its stream and the calls on it.
struct Conn {
    accepted_ms: u64,
    /// Whether any byte has arrived.
    spoke: AtomicBool,
    calls: AtomicUsize,
    /// When a call last started or ended (milliseconds since the registry's epoch), or when it was accepted.
    last_call_ms: AtomicU64,
    close: CancellationToken,
}

impl Admission {
    pub fn new(limits: TransportLimits) -> Arc<Self> {
        Arc::new(Admission {
            calls: Arc::new(Semaphore::new(limits.max_calls_in_flight)),
            limits,
            epoch: Instant::now(),
            connections: Mutex::new(HashMap::new()),
        })
    }

    pub fn limits(&self) -> &TransportLimits {
        &self.limits
    }

    /// Connections admitted and open.
    pub fn connections(&self) -> usize {
        self.registry().len()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<Conn>>> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent map.
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits `stream`, evicting the quietest idle connection at the limit; `None` if every connection is busy.
    fn admit(self: &Arc<Self>, stream: TcpStream) -> Option<Guarded> {
        let peer = stream.peer_addr().ok()?;
        let now = self.now_ms();
        let conn = Arc::new(Conn {
            accepted_ms: now,
            spoke: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
            last_call_ms: AtomicU64::new(now),
            close: CancellationToken::new(),
        });
        {
            let mut registry = self.registry();
            if registry.len() >= self.limits.max_connections {
                let quietest = registry
                    .iter()
                    .filter(|(_, c)| c.calls.load(Ordering::Acquire) == 0)
                    .min_by_key(|(_, c)| {
                        (
                            c.spoke.load(Ordering::Relaxed),
                            c.last_call_ms.load(Ordering::Relaxed),
                        )
                    })
                    .map(|(addr, _)| *addr)?;
                if let Some(evicted) = registry.remove(&quietest) {
                    tracing::debug!(peer = %quietest, "connection limit reached: closing the quietest idle connection");
                    evicted.close.cancel();
                }
            }
            registry.insert(peer, conn.clone());
        }
        Some(Guarded {
            closed: Box::pin(conn.close.clone().cancelled_owned()),
            inner: stream,
            conn,
            peer,
            admission: self.clone(),
        })
    }

    /// Closes connections silent past the handshake timeout or idle past the idle timeout.
    fn reap(&self) {
        let now = self.now_ms();
        let handshake = self.limits.handshake_timeout.as_millis() as u64;
        let idle = self.limits.idle_timeout.as_millis() as u64;
        self.registry().retain(|_, c| {
            let silent =
                !c.spoke.load(Ordering::Relaxed) && now.saturating_sub(c.accepted_ms) >= handshake;
            let idle = c.calls.load(Ordering::Acquire) == 0
                && now.saturating_sub(c.last_call_ms.load(Ordering::Relaxed)) >= idle;
            if silent || idle {
                c.close.cancel();
            }
            !(silent || idle)
        });
    }

    /// A call begins on the connection from `peer`: a slot among the calls in flight, and the connection marked
    /// busy until the returned guard drops.
    pub(crate) fn call_started(&self, peer: Option<SocketAddr>) -> Result<CallGuard, Status> {
        let permit = self.calls.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "kmsd is serving its limit of {} calls at once; retry with backoff",
                self.limits.max_calls_in_flight
            ))
        })?;
        let conn = peer.and_then(|p| self.registry().get(&p).cloned());
        if let Some(c) = &conn {
            c.calls.fetch_add(1, Ordering::AcqRel);
            c.last_call_ms.store(self.now_ms(), Ordering::Relaxed);
        }
        Ok(CallGuard {
            conn,
            now: self.epoch,
            _permit: permit,
        })
    }
}

pub struct CallGuard {
    conn: Option<Arc<Conn>>,
    now: Instant,
    _permit: OwnedSemaphorePermit,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(c) = &self.conn {
            c.last_call_ms
                .store(self.now.elapsed().as_millis() as u64, Ordering::Relaxed);
            c.calls.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Accepts connections on `listener` until the returned stream is dropped, admitting each (or closing it at once
/// when refused), and reaps silent and idle connections.
pub fn accept(
    listener: TcpListener,
    admission: Arc<Admission>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Guarded>> {
    let (tx, rx) = mpsc::channel(16);
    let tick = (admission.limits.handshake_timeout / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    tokio::spawn(async move {
        let mut reaper = tokio::time::interval(tick);
        reaper.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_warning: Option<Instant> = None;
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                _ = reaper.tick() => {
                    admission.reap();
                    continue;
                }
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    // Unary calls are small request/response pairs: Nagle's algorithm only adds latency.
                    let _ = stream.set_nodelay(true);
                    match admission.admit(stream) {
                        Some(guarded) => {
                            if tx.send(Ok(guarded)).await.is_err() {
                                return;
                            }
                        }
                        None => tracing::debug!(
                            "connection limit reached and every connection busy: refused one"
                        ),
                    }
                }
                // Out of file descriptors or memory: the pending connection stays queued, so retrying at once
                // would spin. Close idle connections and wait a little.
                Err(e) if is_resource_error(&e) => {
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(error = %e, connections = admission.connections(), "cannot accept connections; backing off");
                        last_warning = Some(Instant::now());
                    }
                    admission.reap();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // The peer gave up before accept (ECONNABORTED and the like): nothing to do.
                Err(e) => tracing::debug!(error = %e, "accept failed"),
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

fn is_resource_error(e: &io::Error) -> bool {
    use rustix::io::Errno;
    Errno::from_io_error(e).is_some_and(|errno| {
        [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM].contains(&errno)
    })
}

/// An admitted connection: it reads and writes until the registry closes it.
pub struct Guarded {
    inner: TcpStream,
    conn: Arc<Conn>,
    peer: SocketAddr,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    admission: Arc<Admission>,
}

impl Guarded {
    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        self.closed.as_mut().poll(cx).map(|()| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed by kmsd: silent, idle, or evicted at the limit",
            )
        })
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let mut registry = self.admission.registry();
        if registry
            .get(&self.peer)
            .is_some_and(|c| Arc::ptr_eq(c, &self.conn))
        {
            registry.remove(&self.peer);
        }
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Poll::Ready(e) = self.poll_closed(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && !self.conn.spoke.load(Ordering::Relaxed) {
            self.conn.spoke.store(true, Ordering::Relaxed);
        }
        read
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Poll::Ready(e) = self.poll_closed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The layer under every service that enforces the call limits (see the module documentation).
#[derive(Clone)]
pub struct CallLimitLayer(pub Arc<Admission>);

impl<S> tower_layer::Layer<S> for CallLimitLayer {
    type Service = CallLimit<S>;

    fn layer(&self, inner: S) -> CallLimit<S> {
        CallLimit {
            inner,
            admission: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CallLimit<S> {
    inner: S,
    admission: Arc<Admission>,
}

/// The peer of the connection a request came on.
pub fn peer_of<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
}

impl<S> tower_service::Service<http::Request<Body>> for CallLimit<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = CallLimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let guard = match self.admission.call_started(peer_of(&request)) {
            Ok(guard) => guard,
            Err(status) => {
                return CallLimitFuture::Refused {
                    response: Some(status.into_http()),
                };
            }
        };
        // A body that has already ended (a unary request usually arrives whole with its headers) needs no deadline.
        let request = if http_body::Body::is_end_stream(request.body()) {
            request
        } else {
            let limit = self.admission.limits.request_timeout;
            request.map(|body| Body::new(ReadDeadline::new(body, limit)))
        };
        CallLimitFuture::Running {
            inner: self.inner.call(request),
            guard: Some(guard),
        }
    }
}

pin_project_lite::pin_project! {
    /// The call, holding its slot among the calls in flight until it is answered; or the refusal.
    #[project = CallLimitProj]
    pub enum CallLimitFuture<F> {
        Refused { response: Option<http::Response<Body>> },
        Running { #[pin] inner: F, guard: Option<CallGuard> },
    }
}

impl<F, E> Future for CallLimitFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CallLimitProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            CallLimitProj::Running { inner, guard } => {
                let answer = std::task::ready!(inner.poll(cx));
                drop(guard.take());
                Poll::Ready(answer)
            }
        }
    }
}

/// A request body that fails if it has not ended within its deadline. The timer is armed only if the body is not
/// all there when first read: a unary request usually arrives whole with its headers, and then costs no timer.
struct ReadDeadline {
    inner: Body,
    started: Instant,
    limit: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    ended: bool,
}

impl ReadDeadline {
    fn new(inner: Body, limit: Duration) -> Self {
        ReadDeadline {
            inner,
            started: Instant::now(),
            limit,
            deadline: None,
            ended: false,
        }
    }
}

impl http_body::Body for ReadDeadline {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame)),
            Poll::Pending if this.ended => Poll::Pending,
            Poll::Pending => {
                let (started, limit) = (this.started, this.limit);
                let deadline = this.deadline.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until((started + limit).into()))
                });
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.ended = true;
                        Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                            "the request did not arrive within {limit:?} (request_timeout)"
                        )))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
