//! Key pairs: signing and verifying with RSA, ECDSA, Ed25519 and ML-DSA, encrypting and decrypting with RSA-OAEP,
//! and the public key they give out.
//!
//! Every primitive is aws-lc-rs's (AWS-LC: constant-time RSA, ECDSA over P-256/384/521 and secp256k1, Ed25519 and
//! FIPS 204 ML-DSA). RSA decryption is AWS-LC's constant-time OAEP, not the `rsa` crate's (RUSTSEC-2023-0071, the
//! Marvin timing attack); a ciphertext that does not decrypt says only that. A private key lives only inside its aws-lc-rs key pair, whose memory AWS-LC cleanses when it is
//! freed, and as PKCS#8 in a zeroizing buffer while it is wrapped or opened.

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPrivateDecryptingKey,
    OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{self as sig, KeyPair as _, VerificationAlgorithm};
use zeroize::Zeroizing;

use super::{InvalidCiphertext, Plaintext};
use crate::keys::{EncryptionAlgorithm, Hash, KeySpec, MessageType, SigningAlgorithm};

/// Why material did not open as a key of its spec. Says nothing of the material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the key material is not a valid {0} key")]
pub struct InvalidMaterial(pub KeySpec);

/// The signing library refused an operation it should not refuse (a mismatched algorithm reached it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the signing library refused the operation")]
pub struct SigningFailed;

enum Private {
    Rsa(sig::RsaKeyPair),
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
    MlDsa(sig::PqdsaKeyPair),
}

/// An asymmetric key version: its private key, and its public key as DER SubjectPublicKeyInfo.
pub struct KeyPair {
    spec: KeySpec,
    private: Private,
    public_der: Vec<u8>,
    /// RSA keys: the same key for OAEP, both halves.
    oaep: Option<(OaepPrivateDecryptingKey, OaepPublicEncryptingKey)>,
}

fn oaep(algorithm: EncryptionAlgorithm) -> Option<&'static OaepAlgorithm> {
    match algorithm {
        EncryptionAlgorithm::RsaesOaepSha1 => Some(&OAEP_SHA1_MGF1SHA1),
        EncryptionAlgorithm::RsaesOaepSha256 => Some(&OAEP_SHA256_MGF1SHA256),
        EncryptionAlgorithm::SymmetricDefault => None,
    }
}

fn ecdsa_signing(spec: KeySpec) -> Option<&'static sig::EcdsaSigningAlgorithm> {
    Some(match spec {
        KeySpec::EccNistP256 => &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
        KeySpec::EccNistP384 => &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
        KeySpec::EccNistP521 => &sig::ECDSA_P521_SHA512_ASN1_SIGNING,
        KeySpec::EccSecgP256k1 => &sig::ECDSA_P256K1_SHA256_ASN1_SIGNING,
        _ => return None,
    })
}

fn ml_dsa_signing(spec: KeySpec) -> Option<&'static sig::PqdsaSigningAlgorithm> {
    Some(match spec {
        KeySpec::MlDsa44 => &sig::ML_DSA_44_SIGNING,
        KeySpec::MlDsa65 => &sig::ML_DSA_65_SIGNING,
        KeySpec::MlDsa87 => &sig::ML_DSA_87_SIGNING,
        _ => return None,
    })
}

fn rsa_bits(spec: KeySpec) -> Option<usize> {
    match spec {
        KeySpec::Rsa2048 => Some(2048),
        KeySpec::Rsa3072 => Some(3072),
        KeySpec::Rsa4096 => Some(4096),
        _ => None,
    }
}

fn rsa_encoding(algorithm: SigningAlgorithm) -> Option<&'static sig::RsaSignatureEncoding> {
    use SigningAlgorithm::*;
    Some(match algorithm {
        RsassaPssSha256 => &sig::RSA_PSS_SHA256,
        RsassaPssSha384 => &sig::RSA_PSS_SHA384,
        RsassaPssSha512 => &sig::RSA_PSS_SHA512,
        RsassaPkcs1V15Sha256 => &sig::RSA_PKCS1_SHA256,
        RsassaPkcs1V15Sha384 => &sig::RSA_PKCS1_SHA384,
        RsassaPkcs1V15Sha512 => &sig::RSA_PKCS1_SHA512,
        _ => return None,
    })
}

/// The verification algorithm for `algorithm` with a key of `spec`.
fn verification(
    spec: KeySpec,
    algorithm: SigningAlgorithm,
) -> Option<&'static dyn VerificationAlgorithm> {
    use SigningAlgorithm::*;
    Some(match (spec, algorithm) {
        (s, RsassaPssSha256) if s.is_rsa() => &sig::RSA_PSS_2048_8192_SHA256,
        (s, RsassaPssSha384) if s.is_rsa() => &sig::RSA_PSS_2048_8192_SHA384,
        (s, RsassaPssSha512) if s.is_rsa() => &sig::RSA_PSS_2048_8192_SHA512,
        (s, RsassaPkcs1V15Sha256) if s.is_rsa() => &sig::RSA_PKCS1_2048_8192_SHA256,
        (s, RsassaPkcs1V15Sha384) if s.is_rsa() => &sig::RSA_PKCS1_2048_8192_SHA384,
        (s, RsassaPkcs1V15Sha512) if s.is_rsa() => &sig::RSA_PKCS1_2048_8192_SHA512,
        (KeySpec::EccNistP256, EcdsaSha256) => &sig::ECDSA_P256_SHA256_ASN1,
        (KeySpec::EccNistP384, EcdsaSha384) => &sig::ECDSA_P384_SHA384_ASN1,
        (KeySpec::EccNistP521, EcdsaSha512) => &sig::ECDSA_P521_SHA512_ASN1,
        (KeySpec::EccSecgP256k1, EcdsaSha256) => &sig::ECDSA_P256K1_SHA256_ASN1,
        (KeySpec::EccNistEdwards25519, Ed25519Sha512) => &sig::ED25519,
        (KeySpec::MlDsa44, MlDsaShake256) => &sig::ML_DSA_44,
        (KeySpec::MlDsa65, MlDsaShake256) => &sig::ML_DSA_65,
        (KeySpec::MlDsa87, MlDsaShake256) => &sig::ML_DSA_87,
        _ => return None,
    })
}

fn digest_of(hash: Hash, bytes: &[u8]) -> Result<digest::Digest, SigningFailed> {
    let algorithm = match hash {
        Hash::Sha256 => &digest::SHA256,
        Hash::Sha384 => &digest::SHA384,
        Hash::Sha512 => &digest::SHA512,
    };
    digest::Digest::import_less_safe(bytes, algorithm).map_err(|_| SigningFailed)
}

fn der<T: AsDer<aws_lc_rs::encoding::PublicKeyX509Der<'static>>>(
    public: &T,
    spec: KeySpec,
) -> Result<Vec<u8>, InvalidMaterial> {
    public
        .as_der()
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| InvalidMaterial(spec))
}

impl KeyPair {
    /// A new private key of `spec`, as PKCS#8 v1 DER. `None` if `spec` is not a key pair's.
    pub fn generate(spec: KeySpec) -> Option<Result<Zeroizing<Vec<u8>>, SigningFailed>> {
        let pkcs8 = |doc: Result<aws_lc_rs::pkcs8::Document, _>| {
            doc.map(|d| Zeroizing::new(d.as_ref().to_vec()))
                .map_err(|_| SigningFailed)
        };
        if let Some(bits) = rsa_bits(spec) {
            let size = match bits {
                2048 => aws_lc_rs::rsa::KeySize::Rsa2048,
                3072 => aws_lc_rs::rsa::KeySize::Rsa3072,
                _ => aws_lc_rs::rsa::KeySize::Rsa4096,
            };
            return Some(
                sig::RsaKeyPair::generate(size)
                    .and_then(|k| k.as_der())
                    .map(|d| Zeroizing::new(d.as_ref().to_vec()))
                    .map_err(|_| SigningFailed),
            );
        }
        if let Some(alg) = ecdsa_signing(spec) {
            return Some(pkcs8(
                sig::EcdsaKeyPair::generate(alg).and_then(|k| k.to_pkcs8v1()),
            ));
        }
        if let Some(alg) = ml_dsa_signing(spec) {
            return Some(pkcs8(
                sig::PqdsaKeyPair::generate(alg).and_then(|k| k.to_pkcs8v1()),
            ));
        }
        if spec == KeySpec::EccNistEdwards25519 {
            return Some(pkcs8(
                sig::Ed25519KeyPair::generate().and_then(|k| k.to_pkcs8v1()),
            ));
        }
        None
    }

    /// Opens PKCS#8 DER as a key pair of `spec`, refusing a key of another type, curve or size.
    pub fn open(spec: KeySpec, pkcs8: &[u8]) -> Result<KeyPair, InvalidMaterial> {
        let bad = |_| InvalidMaterial(spec);
        let mut oaep = None;
        let (private, public_der) = if let Some(bits) = rsa_bits(spec) {
            let k = sig::RsaKeyPair::from_pkcs8(pkcs8).map_err(bad)?;
            if k.public_modulus_len() * 8 != bits {
                return Err(InvalidMaterial(spec));
            }
            let public = der(k.public_key(), spec)?;
            let decrypting = PrivateDecryptingKey::from_pkcs8(pkcs8)
                .map_err(bad)
                .and_then(|k| {
                    OaepPrivateDecryptingKey::new(k).map_err(|_| InvalidMaterial(spec))
                })?;
            let encrypting = PublicEncryptingKey::from_der(&public)
                .map_err(bad)
                .and_then(|k| OaepPublicEncryptingKey::new(k).map_err(|_| InvalidMaterial(spec)))?;
            oaep = Some((decrypting, encrypting));
            (Private::Rsa(k), public)
        } else if let Some(alg) = ecdsa_signing(spec) {
            let k = sig::EcdsaKeyPair::from_pkcs8(alg, pkcs8).map_err(bad)?;
            let public = der(k.public_key(), spec)?;
            (Private::Ecdsa(k), public)
        } else if let Some(alg) = ml_dsa_signing(spec) {
            let k = sig::PqdsaKeyPair::from_pkcs8(alg, pkcs8).map_err(bad)?;
            let public = der(k.public_key(), spec)?;
            (Private::MlDsa(k), public)
        } else if spec == KeySpec::EccNistEdwards25519 {
            let k = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(bad)?;
            let public = der(k.public_key(), spec)?;
            (Private::Ed25519(k), public)
        } else {
            return Err(InvalidMaterial(spec));
        };
        Ok(KeyPair {
            spec,
            private,
            public_der,
            oaep,
        })
    }

    /// An RSA key's modulus length in bytes (the length of its signatures and OAEP ciphertexts).
    pub fn modulus_len(&self) -> Option<usize> {
        self.oaep
            .as_ref()
            .map(|(_, public)| public.ciphertext_size())
    }

    /// The most bytes `algorithm` encrypts with this key (RSA: the modulus's length less OAEP's padding); `None` if
    /// the key does not encrypt with it.
    pub fn max_plaintext(&self, algorithm: EncryptionAlgorithm) -> Option<usize> {
        let (_, public) = self.oaep.as_ref()?;
        Some(public.max_plaintext_size(oaep(algorithm)?))
    }

    /// RSA-OAEP encryption with the public key. `plaintext` must be at most [`KeyPair::max_plaintext`] bytes.
    pub fn encrypt(
        &self,
        algorithm: EncryptionAlgorithm,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SigningFailed> {
        let (_, public) = self.oaep.as_ref().ok_or(SigningFailed)?;
        let mut out = vec![0; public.ciphertext_size()];
        let n = public
            .encrypt(
                oaep(algorithm).ok_or(SigningFailed)?,
                plaintext,
                &mut out,
                None,
            )
            .map_err(|_| SigningFailed)?
            .len();
        out.truncate(n);
        Ok(out)
    }

    /// RSA-OAEP decryption with the private key; any failure is only [`InvalidCiphertext`].
    pub fn decrypt(
        &self,
        algorithm: EncryptionAlgorithm,
        ciphertext: &[u8],
    ) -> Result<Plaintext, InvalidCiphertext> {
        let (private, _) = self.oaep.as_ref().ok_or(InvalidCiphertext)?;
        let mut out = Zeroizing::new(vec![0; private.min_output_size()]);
        let n = private
            .decrypt(
                oaep(algorithm).ok_or(InvalidCiphertext)?,
                ciphertext,
                &mut out,
                None,
            )
            .map_err(|_| InvalidCiphertext)?
            .len();
        out.truncate(n);
        Ok(Plaintext::new(std::mem::take(&mut *out)))
    }

    pub fn spec(&self) -> KeySpec {
        self.spec
    }

    /// The public key, DER-encoded SubjectPublicKeyInfo (RFC 5280), as GetPublicKey returns it.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }

    /// Signs `message` (or, for `MessageType::Digest`, the digest the caller computed). The algorithm and message
    /// must already have been checked against the key (`keys::check_signing_message`).
    pub fn sign(
        &self,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
    ) -> Result<Vec<u8>, SigningFailed> {
        let digest = match (message_type, algorithm.hash()) {
            (MessageType::Raw, _) => None,
            (MessageType::Digest, Some(hash)) => Some(digest_of(hash, message)?),
            (MessageType::Digest, None) => return Err(SigningFailed),
        };
        match &self.private {
            Private::Rsa(k) => {
                let encoding = rsa_encoding(algorithm).ok_or(SigningFailed)?;
                let mut signature = vec![0; k.public_modulus_len()];
                match &digest {
                    None => k.sign(encoding, &SystemRandom::new(), message, &mut signature),
                    Some(d) => k.sign_digest(encoding, d, &mut signature),
                }
                .map_err(|_| SigningFailed)?;
                Ok(signature)
            }
            Private::Ecdsa(k) => {
                verification(self.spec, algorithm).ok_or(SigningFailed)?;
                let signature = match &digest {
                    None => k.sign(&SystemRandom::new(), message),
                    Some(d) => k.sign_digest(d),
                }
                .map_err(|_| SigningFailed)?;
                Ok(signature.as_ref().to_vec())
            }
            Private::Ed25519(k) if algorithm == SigningAlgorithm::Ed25519Sha512 => Ok(k
                .try_sign(message)
                .map_err(|_| SigningFailed)?
                .as_ref()
                .to_vec()),
            Private::MlDsa(k) if algorithm == SigningAlgorithm::MlDsaShake256 => {
                let mut signature = vec![0; k.algorithm().signature_len()];
                let n = k.sign(message, &mut signature).map_err(|_| SigningFailed)?;
                signature.truncate(n);
                Ok(signature)
            }
            Private::Ed25519(_) | Private::MlDsa(_) => Err(SigningFailed),
        }
    }

    /// Whether `signature` is this key's signature of `message` (or of the digest) under `algorithm`.
    pub fn verify(
        &self,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        let Some(verifier) = verification(self.spec, algorithm) else {
            return false;
        };
        let public = sig::UnparsedPublicKey::new(verifier, &self.public_der);
        match (message_type, algorithm.hash()) {
            (MessageType::Raw, _) => public.verify(message, signature).is_ok(),
            (MessageType::Digest, Some(hash)) => {
                digest_of(hash, message).is_ok_and(|d| public.verify_digest(&d, signature).is_ok())
            }
            (MessageType::Digest, None) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(hash: Hash, message: &[u8]) -> Vec<u8> {
        let alg = match hash {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
        };
        digest::digest(alg, message).as_ref().to_vec()
    }

    #[test]
    fn every_spec_signs_and_verifies_with_every_algorithm_it_allows() {
        for spec in KeySpec::ALL.iter().copied().filter(|s| s.is_asymmetric()) {
            let pkcs8 = KeyPair::generate(spec).unwrap().unwrap();
            let pair = KeyPair::open(spec, &pkcs8).unwrap();
            assert!(!pair.public_key_der().is_empty());
            for algorithm in spec.signing_algorithms().iter().copied() {
                let message = b"kmsd signs this";
                let signature = pair.sign(algorithm, MessageType::Raw, message).unwrap();
                assert!(pair.verify(algorithm, MessageType::Raw, message, &signature));
                assert!(!pair.verify(algorithm, MessageType::Raw, b"kmsd signs that", &signature));
                let mut tampered = signature.clone();
                *tampered.last_mut().unwrap() ^= 1;
                assert!(!pair.verify(algorithm, MessageType::Raw, message, &tampered));
                if let Some(hash) = algorithm.hash() {
                    // A signature of the message is a signature of its digest, either way round.
                    let d = digest(hash, message);
                    assert!(pair.verify(algorithm, MessageType::Digest, &d, &signature));
                    let by_digest = pair.sign(algorithm, MessageType::Digest, &d).unwrap();
                    assert!(pair.verify(algorithm, MessageType::Raw, message, &by_digest));
                }
            }
        }
    }

    #[test]
    fn rsa_keys_encrypt_and_decrypt_with_oaep_up_to_their_limit() {
        use EncryptionAlgorithm::*;
        for (spec, limits) in [
            (KeySpec::Rsa2048, [214, 190]),
            (KeySpec::Rsa3072, [342, 318]),
            (KeySpec::Rsa4096, [470, 446]),
        ] {
            let pair = KeyPair::open(spec, &KeyPair::generate(spec).unwrap().unwrap()).unwrap();
            for (algorithm, limit) in [RsaesOaepSha1, RsaesOaepSha256].into_iter().zip(limits) {
                assert_eq!(
                    pair.max_plaintext(algorithm),
                    Some(limit),
                    "{spec} {algorithm}"
                );
                let plaintext = vec![7u8; limit];
                let ciphertext = pair.encrypt(algorithm, &plaintext).unwrap();
                assert_eq!(
                    pair.decrypt(algorithm, &ciphertext).unwrap().expose(),
                    plaintext
                );
                let other = if algorithm == RsaesOaepSha1 {
                    RsaesOaepSha256
                } else {
                    RsaesOaepSha1
                };
                assert!(pair.decrypt(other, &ciphertext).is_err());
                let mut tampered = ciphertext.clone();
                tampered[5] ^= 1;
                assert!(pair.decrypt(algorithm, &tampered).is_err());
                assert!(pair.encrypt(algorithm, &vec![0u8; limit + 1]).is_err());
            }
        }
        let ec = KeyPair::open(
            KeySpec::EccNistP256,
            &KeyPair::generate(KeySpec::EccNistP256).unwrap().unwrap(),
        )
        .unwrap();
        assert_eq!(ec.max_plaintext(EncryptionAlgorithm::RsaesOaepSha256), None);
    }

    #[test]
    fn material_of_another_spec_is_refused() {
        let p256 = KeyPair::generate(KeySpec::EccNistP256).unwrap().unwrap();
        assert!(KeyPair::open(KeySpec::EccNistP384, &p256).is_err());
        assert!(KeyPair::open(KeySpec::EccSecgP256k1, &p256).is_err());
        assert!(KeyPair::open(KeySpec::Rsa2048, &p256).is_err());
        let rsa = KeyPair::generate(KeySpec::Rsa2048).unwrap().unwrap();
        assert!(KeyPair::open(KeySpec::Rsa3072, &rsa).is_err());
        assert!(KeyPair::open(KeySpec::Rsa2048, &rsa).is_ok());
        let ml = KeyPair::generate(KeySpec::MlDsa44).unwrap().unwrap();
        assert!(KeyPair::open(KeySpec::MlDsa65, &ml).is_err());
        assert!(KeyPair::open(KeySpec::EccNistEdwards25519, b"not a key").is_err());
        assert!(KeyPair::generate(KeySpec::Hmac256).is_none());
    }
}
