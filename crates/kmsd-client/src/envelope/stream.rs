//! Streaming encryption and decryption: memory bounded by a few frames, whatever the object's size.
//!
//! Large frames are sealed and opened on the blocking pool, as many at a time as there are cores, and written in
//! order; a frame's plaintext is written only after its tag, and every earlier frame's, verified.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use super::{EnvelopeError, Header, MARKER_FINAL, MARKER_FRAME, TAG_LEN, frame_aad};

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
async fn fill<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Encrypts everything `reader` yields into an envelope written to `writer`, under `data_key` (the plaintext of
/// a data key kmsd made, whose blob is `encrypted_data_key`). Returns the number of plaintext bytes.
pub async fn encrypt_stream<R, W>(
    reader: R,
    writer: W,
    data_key: &[u8],
    kms_key_id: &str,
    encrypted_data_key: &[u8],
    context: &BTreeMap<String, String>,
    frame_size: u32,
) -> Result<u64, EnvelopeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut message_id = [0u8; 16];
    getrandom::fill(&mut message_id)
        .map_err(|e| EnvelopeError::Io(std::io::Error::other(e.to_string())))?;
    encrypt_stream_with_id(
        reader,
        writer,
        data_key,
        kms_key_id,
        encrypted_data_key,
        context,
        frame_size,
        message_id,
    )
    .await
}

/// As [`encrypt_stream`] with a chosen message id: for test vectors only, never for real data.
#[allow(clippy::too_many_arguments)]
pub async fn encrypt_stream_with_id<R, W>(
    mut reader: R,
    mut writer: W,
    data_key: &[u8],
    kms_key_id: &str,
    encrypted_data_key: &[u8],
    context: &BTreeMap<String, String>,
    frame_size: u32,
    message_id: [u8; 16],
) -> Result<u64, EnvelopeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (header, keys) = Header::new(
        kms_key_id,
        encrypted_data_key,
        context,
        frame_size,
        message_id,
        data_key,
    )?;
    writer.write_all(&header.to_bytes()).await?;
    let keys = Arc::new(keys);
    let f = frame_size as usize;
    let mut pipeline = Pipeline::new(f);
    // Plaintext passes through these buffers and is sealed in place; they are zeroized when dropped.
    let mut current = pipeline.buffer();
    let mut len = fill(&mut reader, &mut current[..f]).await?;
    let mut n: u64 = 1;
    let mut total: u64 = 0;
    loop {
        // A full frame is final only if nothing follows it: look ahead one frame.
        let mut next = pipeline.buffer();
        let next_len = if len == f {
            fill(&mut reader, &mut next[..f]).await?
        } else {
            0
        };
        let last = next_len == 0;
        let final_len = last.then_some(len as u32);
        let marker = if last { MARKER_FINAL } else { MARKER_FRAME };
        let aad = frame_aad(&header.message_id, n, marker, final_len);
        let keys = keys.clone();
        pipeline
            .push(&mut writer, move || {
                let tag = keys.seal_frame(n, &aad, &mut current[..len]);
                let mut prefix = vec![marker];
                if let Some(l) = final_len {
                    prefix.extend_from_slice(&l.to_be_bytes());
                }
                Ok(Sealed {
                    prefix,
                    buf: current,
                    len,
                    suffix: Some(tag),
                })
            })
            .await?;
        total += len as u64;
        if last {
            break;
        }
        current = next;
        len = next_len;
        n += 1;
    }
    pipeline.drain(&mut writer).await?;
    writer.flush().await?;
    Ok(total)
}

/// One frame's output, ready to write: `prefix ‖ buf[..len] ‖ suffix` (a sealed frame's marker, ciphertext and
/// tag; or an opened frame's plaintext alone).
struct Sealed {
    prefix: Vec<u8>,
    buf: Zeroizing<Vec<u8>>,
    len: usize,
    suffix: Option<[u8; TAG_LEN]>,
}

type Job = tokio::task::JoinHandle<Result<Sealed, EnvelopeError>>;

/// Frames sealed or opened on the blocking pool, several at a time, and written strictly in order: each frame's
/// output reaches the writer only after every frame before it, and (when opening) only once its own tag verified.
/// Small frames are processed inline, where a thread hand-off would cost more than the cipher.
struct Pipeline {
    frame_size: usize,
    depth: usize,
    jobs: VecDeque<Job>,
    /// Buffers of finished frames, for reuse.
    spare: Vec<Zeroizing<Vec<u8>>>,
}

/// Below this frame size the cipher is cheaper than a hand-off to another thread.
const PARALLEL_FRAME_SIZE: usize = 256 * 1024;

impl Pipeline {
    fn new(frame_size: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let depth = if frame_size >= PARALLEL_FRAME_SIZE {
            cores.clamp(1, 8)
        } else {
            0
        };
        Pipeline {
            frame_size,
            depth,
            jobs: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    /// A frame buffer (with room for a tag), reused when one is free.
    fn buffer(&mut self) -> Zeroizing<Vec<u8>> {
        self.spare
            .pop()
            .unwrap_or_else(|| Zeroizing::new(vec![0u8; self.frame_size + TAG_LEN]))
    }

    /// Runs `work` for the next frame, first writing out the oldest frames if the pipeline is full.
    async fn push<W, F>(&mut self, writer: &mut W, work: F) -> Result<(), EnvelopeError>
    where
        W: AsyncWrite + Unpin,
        F: FnOnce() -> Result<Sealed, EnvelopeError> + Send + 'static,
    {
        if self.depth == 0 {
            let done = work()?;
            return self.write(writer, done).await;
        }
        while self.jobs.len() >= self.depth {
            self.write_oldest(writer).await?;
        }
        self.jobs.push_back(tokio::task::spawn_blocking(work));
        Ok(())
    }

    async fn write_oldest<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
    ) -> Result<(), EnvelopeError> {
        let Some(job) = self.jobs.pop_front() else {
            return Ok(());
        };
        let done = job
            .await
            .map_err(|e| EnvelopeError::Io(std::io::Error::other(e.to_string())))??;
        self.write(writer, done).await
    }

    async fn write<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        done: Sealed,
    ) -> Result<(), EnvelopeError> {
        writer.write_all(&done.prefix).await?;
        writer.write_all(&done.buf[..done.len]).await?;
        if let Some(tag) = &done.suffix {
            writer.write_all(tag).await?;
        }
        self.spare.push(done.buf);
        Ok(())
    }

    /// Stops at `error` in the input: the frames before it, already in flight, are still written (or their own,
    /// earlier, error is returned instead).
    async fn fail<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        error: EnvelopeError,
    ) -> EnvelopeError {
        match self.drain(writer).await {
            Ok(()) => error,
            Err(earlier) => earlier,
        }
    }

    /// Writes every frame still in flight, in order.
    async fn drain<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> Result<(), EnvelopeError> {
        while !self.jobs.is_empty() {
            self.write_oldest(writer).await?;
        }
        Ok(())
    }
}

/// Reads an envelope's header from `reader`.
pub async fn read_header<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Header, EnvelopeError> {
    let mut bytes = Vec::with_capacity(512);
    // Fixed part, then each length-prefixed field as its length becomes known.
    let mut need = 4 + 1 + 1 + 4 + 16 + 2;
    loop {
        let have = bytes.len();
        bytes.resize(need, 0);
        if fill(reader, &mut bytes[have..]).await? < need - have {
            return Err(if have == 0 {
                EnvelopeError::NotAnEnvelope
            } else {
                EnvelopeError::Truncated
            });
        }
        match Header::parse(&bytes)? {
            Some((header, _)) => return Ok(header),
            None => need = next_need(&bytes)?,
        }
    }
}

/// How many header bytes are needed to parse further, given the bytes so far.
fn next_need(bytes: &[u8]) -> Result<usize, EnvelopeError> {
    let at = |i: usize, n: usize| -> Option<u64> {
        bytes
            .get(i..i + n)
            .map(|b| b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x)))
    };
    let k = at(26, 2).ok_or(EnvelopeError::Truncated)? as usize;
    let after_key = 28 + k;
    let Some(e) = at(after_key, 2) else {
        return Ok(after_key + 2);
    };
    let after_edk = after_key + 2 + e as usize;
    let Some(c) = at(after_edk, 4) else {
        return Ok(after_edk + 4);
    };
    if c > 1 << 20 {
        return Err(EnvelopeError::Malformed(
            "encryption context larger than 1 MiB",
        ));
    }
    Ok(after_edk + 4 + c as usize + 32 + TAG_LEN)
}

/// Decrypts an envelope from `reader` to `writer`. The header's encryption context must equal `expected_context`;
/// `data_key` is asked (once, after that check) for the plaintext of the header's encrypted data key, normally by
/// kmsd Decrypt with that context. Plaintext reaches `writer` one verified frame at a time: until this returns `Ok`,
/// treat what was written as unconfirmed (a truncated envelope is detected only at its end).
pub async fn decrypt_stream<R, W, F, Fut>(
    mut reader: R,
    mut writer: W,
    expected_context: &BTreeMap<String, String>,
    data_key: F,
) -> Result<(Header, u64), EnvelopeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    F: FnOnce(&Header) -> Fut,
    Fut: Future<Output = Result<Zeroizing<Vec<u8>>, EnvelopeError>>,
{
    let header = read_header(&mut reader).await?;
    if &header.encryption_context != expected_context {
        return Err(EnvelopeError::ContextMismatch);
    }
    let key = data_key(&header).await?;
    let keys = Arc::new(header.open(&key)?);
    drop(key);
    let f = header.frame_size as usize;
    let mut pipeline = Pipeline::new(f);
    let mut n: u64 = 1;
    let mut total: u64 = 0;
    loop {
        let mut marker = [0u8; 1];
        if fill(&mut reader, &mut marker).await? == 0 {
            return Err(pipeline.fail(&mut writer, EnvelopeError::Truncated).await);
        }
        let (len, final_len) = match marker[0] {
            MARKER_FRAME => (f, None),
            MARKER_FINAL => {
                let mut l = [0u8; 4];
                if fill(&mut reader, &mut l).await? < 4 {
                    return Err(pipeline.fail(&mut writer, EnvelopeError::Truncated).await);
                }
                let l = u32::from_be_bytes(l);
                if l as usize > f {
                    return Err(pipeline
                        .fail(&mut writer, EnvelopeError::FrameTampered(n))
                        .await);
                }
                (l as usize, Some(l))
            }
            _ => {
                return Err(pipeline
                    .fail(&mut writer, EnvelopeError::FrameTampered(n))
                    .await);
            }
        };
        let mut buf = pipeline.buffer();
        if fill(&mut reader, &mut buf[..len + TAG_LEN]).await? < len + TAG_LEN {
            return Err(pipeline.fail(&mut writer, EnvelopeError::Truncated).await);
        }
        let aad = frame_aad(&header.message_id, n, marker[0], final_len);
        let keys = keys.clone();
        pipeline
            .push(&mut writer, move || {
                let (data, tag) = buf[..len + TAG_LEN].split_at_mut(len);
                keys.open_frame(n, &aad, data, tag)?;
                Ok(Sealed {
                    prefix: Vec::new(),
                    buf,
                    len,
                    suffix: None,
                })
            })
            .await?;
        total += len as u64;
        if final_len.is_some() {
            break;
        }
        n += 1;
    }
    pipeline.drain(&mut writer).await?;
    let mut extra = [0u8; 1];
    if fill(&mut reader, &mut extra).await? != 0 {
        return Err(EnvelopeError::TrailingData);
    }
    writer.flush().await?;
    Ok((header, total))
}
