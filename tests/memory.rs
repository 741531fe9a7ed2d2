//! A 256 MiB object through the storage client's put and get, measuring the process's peak memory: streaming must
//! hold a few frames and the upload buffer, never the object. A test binary of its own, with one test, so that the
//! process's peak resident set is this test's alone.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const OBJECT: u64 = 256 << 20;
const LIMIT: u64 = 64 << 20;

/// Yields `remaining` bytes of a deterministic pattern, hashing what it yields.
struct Source {
    remaining: u64,
    counter: u64,
    hash: Sha256,
}

impl AsyncRead for Source {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.remaining).min(64 * 1024) as usize;
        let mut chunk = vec![0u8; n];
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = ((self.counter + i as u64).wrapping_mul(2654435761) >> 13) as u8;
        }
        self.counter += n as u64;
        self.remaining -= n as u64;
        self.hash.update(&chunk);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

/// Hashes and counts what is written to it.
#[derive(Default)]
struct Sink {
    bytes: u64,
    hash: Sha256,
}

impl AsyncWrite for Sink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.bytes += data.len() as u64;
        self.hash.update(data);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Resets the peak resident set (VmHWM) to the current one.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_256_mib_object_streams_through_put_and_get_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = kmsd::server::start(
        &kmsd::config::Config::new(dir.path().join("data")),
        listener,
        Arc::new(kmsd::clock::SystemClock),
    )
    .await
    .unwrap();
    let token = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    let kms = kmsd_client::ClientBuilder::new(format!("http://{}", server.local_addr()))
        .token(token.trim())
        .connect()
        .await
        .unwrap();
    let store =
        kmsd_client::objects::open_store(dir.path().join("store").to_str().unwrap()).unwrap();
    let objects = kmsd_client::objects::ObjectClient::new(store, kms);
    // Warm up every path once (connections, the store key, thread pools), then measure from here.
    objects
        .put(
            "big",
            "warm",
            &b"x"[..],
            kmsd_client::objects::Encryption::ServiceManaged,
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    let baseline = status_bytes("VmRSS:");
    reset_peak();

    let mut source = Source {
        remaining: OBJECT,
        counter: 0,
        hash: Sha256::new(),
    };
    objects
        .put(
            "big",
            "object",
            &mut source,
            kmsd_client::objects::Encryption::ServiceManaged,
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    let mut sink = Sink::default();
    objects.get("big", "object", &mut sink, None).await.unwrap();
    let peak = status_bytes("VmHWM:");
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "256 MiB put and get: peak resident set {} MiB, {} MiB above the {} MiB before",
        peak >> 20,
        growth >> 20,
        baseline >> 20
    );
    assert_eq!(sink.bytes, OBJECT);
    assert_eq!(
        sink.hash.finalize(),
        source.hash.finalize(),
        "what came out is what went in"
    );
    assert!(
        growth < LIMIT,
        "streaming 256 MiB grew the process by {} MiB",
        growth >> 20
    );
    server.shutdown().await;
}
