//! The envelope format: round trips with data keys from a real daemon, tampering of every kind, test vectors.

use std::collections::BTreeMap;

use kmsd_client::envelope::{
    EnvelopeError, decrypt_stream, encrypt_stream, encrypt_stream_with_id,
};
use kmsd_proto::pb::CreateKeyRequest;
use zeroize::Zeroizing;

use crate::support::*;

const F: u32 = 4096;

fn context(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn seal(
    key: &[u8],
    plaintext: &[u8],
    ctx: &BTreeMap<String, String>,
    id: [u8; 16],
) -> Vec<u8> {
    seal_framed(key, plaintext, ctx, id, F).await
}

async fn seal_framed(
    key: &[u8],
    plaintext: &[u8],
    ctx: &BTreeMap<String, String>,
    id: [u8; 16],
    frame_size: u32,
) -> Vec<u8> {
    let mut out = Vec::new();
    encrypt_stream_with_id(
        plaintext,
        &mut out,
        key,
        "kms-key",
        b"encrypted data key",
        ctx,
        frame_size,
        id,
    )
    .await
    .unwrap();
    out
}

async fn open(
    key: &[u8],
    envelope: &[u8],
    ctx: &BTreeMap<String, String>,
) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    open_into(key, envelope, ctx, &mut out).await?;
    Ok(out)
}

/// Opens into `out`, which keeps whatever was written before a failure.
async fn open_into(
    key: &[u8],
    envelope: &[u8],
    ctx: &BTreeMap<String, String>,
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    let key = key.to_vec();
    decrypt_stream(
        envelope,
        out,
        ctx,
        |_| async move { Ok(Zeroizing::new(key)) },
    )
    .await
    .map(drop)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trips_through_a_real_daemon_at_every_frame_boundary() {
    let server = TestServer::start().await;
    let kms = server.kms_client().await;
    kms.create_key(CreateKeyRequest {
        alias: "alias/objects".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let ctx = context(&[("bucket", "b"), ("key", "photos/cat.jpg")]);
    let pairs = [("bucket", "b"), ("key", "photos/cat.jpg")];
    let f = F as usize;
    for len in [0, 1, f - 1, f, f + 1, 3 * f, 3 * f + 5] {
        let data_key = kms
            .generate_data_key("alias/objects", &pairs)
            .await
            .unwrap();
        let plaintext = pattern(len);
        let mut envelope = Vec::new();
        let n = encrypt_stream(
            plaintext.as_slice(),
            &mut envelope,
            &data_key.plaintext,
            &data_key.key_id,
            &data_key.ciphertext_blob,
            &ctx,
            F,
        )
        .await
        .unwrap();
        assert_eq!(n, len as u64);
        drop(data_key);
        let mut out = Vec::new();
        let (header, n) = decrypt_stream(envelope.as_slice(), &mut out, &ctx, |h| {
            let kms = kms.clone();
            let blob = h.encrypted_data_key.clone();
            async move {
                kms.decrypt(&blob, &pairs, None)
                    .await
                    .map(|d| d.plaintext)
                    .map_err(|e| EnvelopeError::Io(std::io::Error::other(e.to_string())))
            }
        })
        .await
        .unwrap();
        assert_eq!((out, n), (plaintext, len as u64), "length {len}");
        assert!(header.kms_key_id.len() == 36);
    }
}

#[tokio::test]
async fn every_kind_of_tampering_is_detected() {
    tampering_is_detected_with_frames_of(F).await;
}

/// Frames this large are sealed and opened several at a time on other threads: the same guarantees must hold.
#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_tampering_is_detected_in_parallel_frames() {
    tampering_is_detected_with_frames_of(256 * 1024).await;
}

async fn tampering_is_detected_with_frames_of(frame_size: u32) {
    let key = [7u8; 32];
    let ctx = context(&[("object", "o1")]);
    let f = frame_size as usize;
    let plaintext = pattern(3 * f + 100);
    let envelope = seal_framed(&key, &plaintext, &ctx, [1; 16], frame_size).await;
    assert_eq!(open(&key, &envelope, &ctx).await.unwrap(), plaintext);
    let header_len = kmsd_client::envelope::Header::parse(&envelope)
        .unwrap()
        .unwrap()
        .1;
    let frame = 1 + f + 16;

    // Any flipped bit, anywhere (every 97th byte of small envelopes, some 60 places in large ones).
    for at in (0..envelope.len())
        .step_by(97.max(envelope.len() / 60))
        .chain([envelope.len() - 1, header_len, header_len + 1])
    {
        let mut bad = envelope.clone();
        bad[at] ^= 0x40;
        assert!(
            open(&key, &bad, &ctx).await.is_err(),
            "flip at {at} went unnoticed"
        );
    }
    // Truncation anywhere after the header, including exactly between frames.
    for cut in [
        header_len,
        header_len + frame,
        header_len + 2 * frame,
        envelope.len() - 1,
    ] {
        let err = open(&key, &envelope[..cut], &ctx).await.unwrap_err();
        assert!(
            matches!(err, EnvelopeError::Truncated),
            "cut at {cut}: {err:?}"
        );
    }
    // A dropped frame, a reordered pair, a frame from another envelope.
    let frames = |e: &[u8]| -> Vec<Vec<u8>> {
        e[header_len..header_len + 3 * frame]
            .chunks(frame)
            .map(<[u8]>::to_vec)
            .collect()
    };
    let head = &envelope[..header_len];
    let tail = &envelope[header_len + 3 * frame..];
    let ours = frames(&envelope);
    let dropped = [head, &ours[0], &ours[2], tail].concat();
    assert!(matches!(
        open(&key, &dropped, &ctx).await.unwrap_err(),
        EnvelopeError::FrameTampered(2)
    ));
    let reordered = [head, &ours[1], &ours[0], &ours[2], tail].concat();
    assert!(matches!(
        open(&key, &reordered, &ctx).await.unwrap_err(),
        EnvelopeError::FrameTampered(1)
    ));
    let other = seal_framed(&key, &plaintext, &ctx, [2; 16], frame_size).await;
    let theirs = frames(&other);
    let swapped = [head, &ours[0], &theirs[1], &ours[2], tail].concat();
    assert!(matches!(
        open(&key, &swapped, &ctx).await.unwrap_err(),
        EnvelopeError::FrameTampered(2)
    ));
    // Nothing of a bad frame, or of any frame after it, reaches the writer; the frames before it do.
    let mut bad = envelope.clone();
    bad[header_len + 2 * frame + 7] ^= 1;
    let mut out = Vec::new();
    let err = open_into(&key, &bad, &ctx, &mut out).await.unwrap_err();
    assert!(matches!(err, EnvelopeError::FrameTampered(3)), "{err:?}");
    assert_eq!(out, plaintext[..2 * f]);
    // Data after the final frame.
    let trailing = [envelope.as_slice(), b"x"].concat();
    assert!(matches!(
        open(&key, &trailing, &ctx).await.unwrap_err(),
        EnvelopeError::TrailingData
    ));
    // The wrong context is refused before any key is asked for; the wrong key fails the commitment.
    let asked = std::sync::atomic::AtomicBool::new(false);
    let err = decrypt_stream(
        envelope.as_slice(),
        Vec::new(),
        &context(&[("object", "o2")]),
        |_| {
            asked.store(true, std::sync::atomic::Ordering::SeqCst);
            async { Ok(Zeroizing::new(key.to_vec())) }
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EnvelopeError::ContextMismatch));
    assert!(!asked.load(std::sync::atomic::Ordering::SeqCst));
    assert!(matches!(
        open(&[8u8; 32], &envelope, &ctx).await.unwrap_err(),
        EnvelopeError::WrongKey
    ));
    // An edited header field (the key id's first byte) breaks the header tag.
    let mut edited = envelope.clone();
    edited[28] ^= 1;
    assert!(matches!(
        open(&key, &edited, &ctx).await.unwrap_err(),
        EnvelopeError::HeaderTampered
    ));
    assert!(matches!(
        open(&key, b"not an envelope", &ctx).await.unwrap_err(),
        EnvelopeError::NotAnEnvelope
    ));
}

/// The vectors in tests/vectors/envelope-v1.json are what this implementation writes and must keep reading.
/// Regenerate deliberately with `KMSD_WRITE_VECTORS=1 cargo test envelope_test_vectors`.
#[tokio::test]
async fn envelope_test_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/envelope-v1.json"
    );
    let key =
        hex::decode("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f").unwrap();
    let mut cases = Vec::new();
    for (name, len, pairs) in [
        ("empty", 0usize, vec![]),
        ("one frame", 100, vec![("purpose", "vector")]),
        (
            "two full frames exactly",
            2 * F as usize,
            vec![("a", "1"), ("b", "2")],
        ),
        (
            "three frames and a bit",
            3 * F as usize + 7,
            vec![("bucket", "b"), ("key", "k")],
        ),
    ] {
        let ctx = context(&pairs);
        let plaintext = pattern(len);
        let envelope = seal(&key, &plaintext, &ctx, [9; 16]).await;
        cases.push(serde_json::json!({
            "name": name,
            "data_key": hex::encode(&key),
            "message_id": hex::encode([9u8; 16]),
            "kms_key_id": "kms-key",
            "encrypted_data_key": hex::encode(b"encrypted data key"),
            "encryption_context": ctx,
            "frame_size": F,
            "plaintext": hex::encode(&plaintext),
            "envelope": hex::encode(&envelope),
        }));
    }
    let made = serde_json::to_string_pretty(&serde_json::json!({ "version": 1, "cases": cases }))
        .unwrap()
        + "\n";
    if std::env::var_os("KMSD_WRITE_VECTORS").is_some() {
        std::fs::write(path, &made).unwrap();
    }
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in stored["cases"].as_array().unwrap() {
        let envelope = hex::decode(case["envelope"].as_str().unwrap()).unwrap();
        let ctx: BTreeMap<String, String> =
            serde_json::from_value(case["encryption_context"].clone()).unwrap();
        let key = hex::decode(case["data_key"].as_str().unwrap()).unwrap();
        let opened = open(&key, &envelope, &ctx).await.unwrap();
        assert_eq!(
            hex::encode(opened),
            case["plaintext"].as_str().unwrap(),
            "{}",
            case["name"]
        );
    }
    assert_eq!(
        made,
        std::fs::read_to_string(path).unwrap(),
        "this implementation no longer writes the vectors"
    );
}
