//! A key version's material: as wrapped at rest ([`Material`]) and as opened for use ([`VersionKey`]).
//!
//! At rest a version is one byte string whatever its spec: a symmetric key's 32 bytes, an HMAC key's bytes, or a
//! key pair's private key as PKCS#8 v1 DER. Opened, it is the type that does that spec's work, checked against the
//! spec on the way in (length, algorithm, curve, modulus size), so a version that opened is a usable key of its
//! spec.

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use super::KeyMaterial;
use super::signing::{InvalidMaterial, KeyPair, SigningFailed};
use crate::keys::{KeySpec, MacAlgorithm};

/// A key version's material as it is wrapped under the root key. Zeroized on drop; no `Debug`.
pub struct Material(Zeroizing<Vec<u8>>);

/// The OS or the key generator refused to make material.
#[derive(Debug, thiserror::Error)]
#[error("could not generate key material: {0}")]
pub struct GenerateError(String);

impl GenerateError {
    pub(crate) fn new(reason: String) -> Self {
        GenerateError(reason)
    }
}

impl Material {
    /// New material for a key of `spec`: random bytes from the OS for symmetric and HMAC keys, a fresh key pair
    /// otherwise.
    pub fn generate(spec: KeySpec) -> Result<Material, GenerateError> {
        if let Some(len) = spec.generated_len() {
            let mut bytes = Zeroizing::new(vec![0u8; len]);
            getrandom::fill(&mut bytes).map_err(|e| GenerateError(e.to_string()))?;
            return Ok(Material(bytes));
        }
        match KeyPair::generate(spec) {
            Some(Ok(pkcs8)) => Ok(Material(pkcs8)),
            Some(Err(SigningFailed)) => Err(GenerateError(format!(
                "the key generator failed for {spec}"
            ))),
            None => Err(GenerateError(format!("no generator for {spec}"))),
        }
    }

    /// Takes bytes that are already material (unwrapped, or imported) without copying them.
    pub(crate) fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Material {
        Material(bytes)
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The raw bytes, outside the crypto module: for tests proving material never reaches the database. Nothing
    /// may log, store or send them.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

/// The lengths an HMAC key of `spec` may have: from its hash's output to its hash's block size, as AWS takes them
/// on import.
fn hmac_lengths(spec: KeySpec) -> Option<std::ops::RangeInclusive<usize>> {
    match spec {
        KeySpec::Hmac224 => Some(28..=64),
        KeySpec::Hmac256 => Some(32..=64),
        KeySpec::Hmac384 => Some(48..=128),
        KeySpec::Hmac512 => Some(64..=128),
        _ => None,
    }
}

/// An HMAC key. Its bytes are kept in a zeroizing buffer; each MAC keys AWS-LC's HMAC afresh.
pub struct HmacKey {
    algorithm: MacAlgorithm,
    bytes: Zeroizing<Vec<u8>>,
}

impl HmacKey {
    fn key(&self) -> hmac::Key {
        let algorithm = match self.algorithm {
            MacAlgorithm::HmacSha224 => hmac::HMAC_SHA224,
            MacAlgorithm::HmacSha256 => hmac::HMAC_SHA256,
            MacAlgorithm::HmacSha384 => hmac::HMAC_SHA384,
            MacAlgorithm::HmacSha512 => hmac::HMAC_SHA512,
        };
        hmac::Key::new(algorithm, &self.bytes)
    }

    pub fn algorithm(&self) -> MacAlgorithm {
        self.algorithm
    }

    pub fn mac(&self, message: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key(), message).as_ref().to_vec()
    }

    /// Whether `mac` is this key's MAC of `message`, compared in constant time.
    pub fn verify(&self, message: &[u8], mac: &[u8]) -> bool {
        hmac::verify(&self.key(), message, mac).is_ok()
    }
}

/// A key version opened for use.
pub enum VersionKey {
    Symmetric(KeyMaterial),
    Hmac(HmacKey),
    Pair(KeyPair),
}

impl VersionKey {
    /// Opens `material` as a key of `spec`, refusing material that is not one.
    pub fn open(spec: KeySpec, material: &Material) -> Result<VersionKey, InvalidMaterial> {
        let bytes = material.expose();
        if spec.is_symmetric() {
            let mut array: [u8; KeyMaterial::LEN] =
                bytes.try_into().map_err(|_| InvalidMaterial(spec))?;
            return Ok(VersionKey::Symmetric(KeyMaterial::from_bytes(&mut array)));
        }
        if let Some(&algorithm) = spec.mac_algorithms().first() {
            if !hmac_lengths(spec).is_some_and(|lengths| lengths.contains(&bytes.len())) {
                return Err(InvalidMaterial(spec));
            }
            return Ok(VersionKey::Hmac(HmacKey {
                algorithm,
                bytes: Zeroizing::new(bytes.to_vec()),
            }));
        }
        KeyPair::open(spec, bytes).map(VersionKey::Pair)
    }

    pub fn symmetric(&self) -> Option<&KeyMaterial> {
        match self {
            VersionKey::Symmetric(k) => Some(k),
            _ => None,
        }
    }

    pub fn hmac(&self) -> Option<&HmacKey> {
        match self {
            VersionKey::Hmac(k) => Some(k),
            _ => None,
        }
    }

    pub fn pair(&self) -> Option<&KeyPair> {
        match self {
            VersionKey::Pair(k) => Some(k),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_opens_as_its_spec_only() {
        for spec in KeySpec::ALL.iter().copied() {
            let material = Material::generate(spec).unwrap();
            let key = VersionKey::open(spec, &material).unwrap();
            assert_eq!(key.symmetric().is_some(), spec.is_symmetric(), "{spec}");
            assert_eq!(key.hmac().is_some(), spec.is_hmac(), "{spec}");
            assert_eq!(key.pair().is_some(), spec.is_asymmetric(), "{spec}");
        }
        let hmac512 = Material::generate(KeySpec::Hmac512).unwrap();
        assert_eq!(hmac512.expose().len(), 64);
        assert!(VersionKey::open(KeySpec::SymmetricDefault, &hmac512).is_err());
        let short = Material::from_bytes(Zeroizing::new(vec![7; 31]));
        assert!(VersionKey::open(KeySpec::Hmac256, &short).is_err());
        assert!(VersionKey::open(KeySpec::Hmac224, &short).is_ok());
    }

    #[test]
    fn hmac_matches_its_definition_and_refuses_a_changed_mac() {
        // RFC 4231 test case 2.
        let key = VersionKey::open(
            KeySpec::Hmac256,
            &Material::from_bytes(Zeroizing::new(
                b"Jefe\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec(),
            )),
        )
        .unwrap();
        let key = key.hmac().unwrap();
        // HMAC pads a short key with zeros, so the RFC's 4-byte key "Jefe" is this 32-byte one.
        let mac = key.mac(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(key.verify(b"what do ya want for nothing?", &mac));
        let mut changed = mac.clone();
        changed[31] ^= 1;
        assert!(!key.verify(b"what do ya want for nothing?", &changed));
        assert!(!key.verify(b"what do ya want for nothing?", &mac[..31]));
    }
}
