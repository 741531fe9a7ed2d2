use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// 256 bits of key material: a root key, a symmetric key version's key, or a secret of the daemon's own (the audit
/// signing key's seed, an access key's secret). Other kinds of versions are [`super::Material`].
///
/// Zeroized on drop; deliberately no `Debug`, `Display`, `Clone` or serialization.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct KeyMaterial([u8; KeyMaterial::LEN]);

impl KeyMaterial {
    pub const LEN: usize = 32;

    /// Fresh material from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; Self::LEN];
        getrandom::fill(&mut bytes)?;
        Ok(KeyMaterial(bytes))
    }

    /// Takes ownership of `bytes` and zeroizes the caller's copy.
    pub fn from_bytes(bytes: &mut [u8; Self::LEN]) -> Self {
        let material = KeyMaterial(*bytes);
        bytes.zeroize();
        material
    }

    /// The raw bytes, outside the crypto module. The only callers: writing a new root key to its file once,
    /// seeding the audit checkpoint signing key, encoding an access key's secret, and tests proving material never
    /// reaches the database. Nothing may log, store or send them.
    pub fn expose_secret(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// The raw bytes, for the crypto module's ciphers only: callers must not copy them out of a zeroizing type.
    pub(crate) fn expose(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

/// Secret bytes returned to a caller (a data key, a decrypted plaintext), zeroized when dropped.
/// Deliberately no `Debug` or `Display`.
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    pub fn new(bytes: Vec<u8>) -> Self {
        Plaintext(Zeroizing::new(bytes))
    }

    /// The bytes, to hand to the caller that asked for them or to encrypt again.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
