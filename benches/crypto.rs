//! Micro-benchmarks of the per-call crypto on the hot paths: `cargo bench --bench crypto`.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kmsd::crypto::{self, KeyMaterial, blob};
use kmsd::keys::{EncryptionContext, KeyId};

fn blobs(c: &mut Criterion) {
    let key = KeyMaterial::generate().expect("OS randomness");
    let id = KeyId::new_random();
    let context = EncryptionContext::try_from(HashMap::from([
        ("bucket".to_string(), "photos".to_string()),
        ("object".to_string(), "2026/11/cat.jpg".to_string()),
    ]))
    .expect("valid context");
    let data_key = [7u8; 32];

    c.bench_function("seal a 32-byte data key", |b| {
        b.iter(|| crypto::seal(&key, id, 1, black_box(&context), black_box(&data_key)))
    });
    let sealed = crypto::seal(&key, id, 1, &context, &data_key);
    c.bench_function("parse and open a 32-byte data key blob", |b| {
        b.iter(|| {
            let parsed = blob::parse(black_box(&sealed)).expect("valid blob");
            crypto::open(&key, &parsed, black_box(&context)).expect("opens")
        })
    });
    let plaintext = vec![9u8; 4096];
    c.bench_function("seal 4096 bytes (Encrypt's maximum)", |b| {
        b.iter(|| crypto::seal(&key, id, 1, black_box(&context), black_box(&plaintext)))
    });
    c.bench_function("draw a 32-byte data key", |b| {
        b.iter(|| {
            let mut out = [0u8; 32];
            crypto::rng::fill(&mut out);
            black_box(out)
        })
    });
}

/// Authenticating one AWS-endpoint request: SigV4's claim read and checked, then the signature verified (the
/// canonical request rebuilt, the body hashed, the signing key derived, HMAC compared), on a request botocore signed.
fn signatures(c: &mut Criterion) {
    use base64::Engine;
    use kmsd::aws::sigv4;
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../tests/vectors/sigv4/botocore.json"))
            .expect("the committed vectors");
    let v = &vectors["vectors"][0];
    let field = |name: &str| v[name].as_str().expect("a vector's text field");
    let headers: Vec<(String, Vec<u8>)> = v["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| {
            let text = |i: usize| h[i].as_str().expect("a header is two strings");
            (text(0).to_owned(), text(1).as_bytes().to_vec())
        })
        .collect();
    let pairs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let body = base64::engine::general_purpose::STANDARD
        .decode(field("body_base64"))
        .expect("base64 body");
    let request = sigv4::Request {
        method: field("method"),
        path: field("path"),
        query: field("query"),
        headers: &pairs,
        body: &body,
    };
    let now = kmsd::clock::UnixMillis(v["signed_at_unix"].as_i64().expect("a signing time") * 1000);
    let region = field("region");
    let secret = field("secret").as_bytes();
    c.bench_function("verify a SigV4-signed request", |b| {
        b.iter(|| {
            let claim = sigv4::claim(black_box(&request), region, now).expect("a valid claim");
            sigv4::verify(&claim, black_box(&request), secret).expect("a valid signature")
        })
    });
}

/// The envelope client's bulk throughput for a 1 GiB object, in memory, one stream.
fn envelopes(c: &mut Criterion) {
    use kmsd_client::envelope::{decrypt_stream, encrypt_stream};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let data_key = [5u8; 32];
    let context = std::collections::BTreeMap::new();
    let plaintext = vec![0x5au8; 1 << 30];
    let mut group = c.benchmark_group("envelope 1 GiB");
    group.sample_size(10);
    group.throughput(criterion::Throughput::Bytes(plaintext.len() as u64));
    // Output goes to one buffer, touched once and reused: a fresh gigabyte per iteration would measure the kernel
    // zeroing pages for it (a third of the time), not the envelope.
    let mut out = vec![0u8; plaintext.len() + (4 << 20)];
    group.bench_function("encrypt", |b| {
        b.iter(|| {
            out.clear();
            runtime
                .block_on(encrypt_stream(
                    plaintext.as_slice(),
                    &mut out,
                    &data_key,
                    "k",
                    b"edk",
                    &context,
                    1 << 20,
                ))
                .expect("encrypts");
            out.len()
        })
    });
    let mut sealed = Vec::new();
    runtime
        .block_on(encrypt_stream(
            plaintext.as_slice(),
            &mut sealed,
            &data_key,
            "k",
            b"edk",
            &context,
            1 << 20,
        ))
        .expect("encrypts");
    group.bench_function("decrypt", |b| {
        b.iter(|| {
            out.clear();
            runtime
                .block_on(decrypt_stream(
                    sealed.as_slice(),
                    &mut out,
                    &context,
                    |_| async { Ok(zeroize::Zeroizing::new(data_key.to_vec())) },
                ))
                .expect("decrypts");
            out.len()
        })
    });
    group.finish();
}

/// Sign and Verify per spec (a 32-byte message, each spec's first algorithm), and HMAC: the raw operations behind
/// the Sign, Verify and GenerateMac calls, without the call path.
fn key_kinds(c: &mut Criterion) {
    use kmsd::crypto::{Material, VersionKey};
    use kmsd::keys::{KeySpec, MessageType};
    let message = [0x6bu8; 32];
    let mut group = c.benchmark_group("key kinds");
    for spec in KeySpec::ALL.iter().copied().filter(|s| s.is_asymmetric()) {
        let material = Material::generate(spec).expect("a key pair");
        let key = VersionKey::open(spec, &material).expect("opens");
        let pair = key.pair().expect("a key pair");
        let algorithm = spec.signing_algorithms()[0];
        group.bench_function(format!("sign {spec} {algorithm}"), |b| {
            b.iter(|| {
                pair.sign(algorithm, MessageType::Raw, black_box(&message))
                    .expect("signs")
            })
        });
        let signature = pair
            .sign(algorithm, MessageType::Raw, &message)
            .expect("signs");
        group.bench_function(format!("verify {spec} {algorithm}"), |b| {
            b.iter(|| pair.verify(algorithm, MessageType::Raw, black_box(&message), &signature))
        });
    }
    let material = Material::generate(KeySpec::Hmac256).expect("random bytes");
    let key = VersionKey::open(KeySpec::Hmac256, &material).expect("opens");
    let hmac = key.hmac().expect("an HMAC key");
    group.bench_function("mac HMAC_256", |b| b.iter(|| hmac.mac(black_box(&message))));
    group.finish();
}

criterion_group!(benches, blobs, signatures, envelopes, key_kinds);
criterion_main!(benches);
