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

criterion_group!(benches, blobs);
criterion_main!(benches);
