//! Randomness for salts, nonces, data keys and GenerateRandom.
//!
//! A thread-local ChaCha12 CSPRNG (`rand::rng()`), seeded from and periodically reseeded by the OS, fills these
//! ~15 ns a call instead of ~370 ns for a `getrandom` syscall; that difference is most of a data key's crypto cost.
//! Long-lived key material (root key, key versions) comes from the OS directly (`KeyMaterial::generate`).

use rand::RngCore;

pub fn fill(buf: &mut [u8]) {
    rand::rng().fill_bytes(buf);
}

pub fn array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill(&mut out);
    out
}
