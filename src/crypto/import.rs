//! Importing key material (BYOK): the wrapping key and import token GetParametersForImport gives, and the unwrapping
//! ImportKeyMaterial does.
//!
//! An import token carries its own wrapping key: `0x01 ‖ AES-256-GCM(root key, aad = "kmsd import token v1\0" ‖ key
//! id (16), plaintext = expiry (u64 BE, ms) ‖ algorithm (1) ‖ wrapping key size (1) ‖ RSA private key (PKCS#8))`. Nothing is stored until
//! material is imported, every replica (sharing the root key) honours a token any of them made, and a token is bound
//! to its key, its algorithm and its expiry, none of which its holder can change. The RSA private key is fresh for
//! each token and lives, outside the token, only while a call uses it.
//!
//! Wrapped material is RSA-OAEP (SHA-1 or SHA-256) of the material, or, for the `RSA_AES_KEY_WRAP_*` algorithms,
//! RSA-OAEP of a fresh AES-256 key followed by the material under AES Key Wrap with Padding (RFC 5649), as AWS KMS
//! and `openssl enc -id-aes256-wrap-pad` make it.

use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
use zeroize::Zeroizing;

use super::signing::KeyPair;
use super::{Material, RootKey};
use crate::clock::UnixMillis;
use crate::keys::{KeyId, KeySpec, WrappingAlgorithm};

const TOKEN_VERSION: u8 = 1;
const TOKEN_LABEL: &[u8] = b"kmsd import token v1\0";
/// The wrapping key sizes, by the index a token records.
const SIZES: [KeySpec; 3] = [KeySpec::Rsa2048, KeySpec::Rsa3072, KeySpec::Rsa4096];
/// The most bytes of material an import takes: an RSA-4096 private key's PKCS#8 is about 2.4 KB.
const MAX_MATERIAL: usize = 8192;

/// Why an import was refused. Each says only which check failed, never anything of the material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the import token is not one kmsd issued for this key (or it was altered)")]
    InvalidToken,
    #[error("the import token has expired; get new parameters with GetParametersForImport")]
    ExpiredToken,
    #[error(
        "the wrapped key material does not unwrap with this import token's wrapping key and algorithm"
    )]
    Unwrap,
}

/// What GetParametersForImport gives: the wrapping public key (DER SubjectPublicKeyInfo) and the token.
pub struct ImportParameters {
    pub public_key: Vec<u8>,
    pub token: Vec<u8>,
}

fn aad(key_id: KeyId) -> Vec<u8> {
    let mut aad = TOKEN_LABEL.to_vec();
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

/// A fresh RSA wrapping key of `spec` (RSA_2048|3072|4096) and its token for `key_id`, valid until `expires`.
pub fn parameters(
    root: &RootKey,
    key_id: KeyId,
    algorithm: WrappingAlgorithm,
    spec: KeySpec,
    expires: UnixMillis,
) -> Result<ImportParameters, super::GenerateError> {
    let size = SIZES
        .iter()
        .position(|s| *s == spec)
        .ok_or_else(|| super::GenerateError::new(format!("{spec} is not a wrapping key size")))?;
    let pkcs8 = Material::generate(spec)?;
    let pair = KeyPair::open(spec, pkcs8.expose())
        .map_err(|e| super::GenerateError::new(e.to_string()))?;
    let mut plain = Zeroizing::new(Vec::with_capacity(10 + pkcs8.expose().len()));
    plain.extend_from_slice(&(expires.0 as u64).to_be_bytes());
    plain.push(algorithm.code());
    plain.push(size as u8);
    plain.extend_from_slice(pkcs8.expose());
    let mut token = vec![TOKEN_VERSION];
    token.extend_from_slice(&root.seal(&aad(key_id), &plain));
    Ok(ImportParameters {
        public_key: pair.public_key_der().to_vec(),
        token,
    })
}

/// Opens `token` for `key_id` at `now` and unwraps `wrapped` with it: the material, not yet checked against the
/// key's spec.
pub fn unwrap_material(
    root: &RootKey,
    key_id: KeyId,
    token: &[u8],
    wrapped: &[u8],
    now: UnixMillis,
) -> Result<Material, ImportError> {
    let sealed = match token.split_first() {
        Some((&TOKEN_VERSION, sealed)) => sealed,
        _ => return Err(ImportError::InvalidToken),
    };
    let plain = Zeroizing::new(
        root.open(&aad(key_id), sealed)
            .map_err(|_| ImportError::InvalidToken)?,
    );
    if plain.len() < 11 {
        return Err(ImportError::InvalidToken);
    }
    let (expires, rest) = plain.split_at(8);
    let expires = u64::from_be_bytes(expires.try_into().map_err(|_| ImportError::InvalidToken)?);
    if now.0 < 0 || now.0 as u64 >= expires {
        return Err(ImportError::ExpiredToken);
    }
    let algorithm = WrappingAlgorithm::from_code(rest[0]).ok_or(ImportError::InvalidToken)?;
    let spec = *SIZES
        .get(usize::from(rest[1]))
        .ok_or(ImportError::InvalidToken)?;
    let wrapping = KeyPair::open(spec, &rest[2..]).map_err(|_| ImportError::InvalidToken)?;
    if wrapped.len() > MAX_MATERIAL + 1024 {
        return Err(ImportError::Unwrap);
    }
    let oaep = algorithm.oaep();
    if !algorithm.uses_aes_key_wrap() {
        let material = wrapping
            .decrypt(oaep, wrapped)
            .map_err(|_| ImportError::Unwrap)?;
        return Ok(Material::from_bytes(Zeroizing::new(
            material.expose().to_vec(),
        )));
    }
    let modulus = wrapping.modulus_len().ok_or(ImportError::InvalidToken)?;
    if wrapped.len() <= modulus {
        return Err(ImportError::Unwrap);
    }
    let (rsa_part, wrapped_material) = wrapped.split_at(modulus);
    let aes_key = wrapping
        .decrypt(oaep, rsa_part)
        .map_err(|_| ImportError::Unwrap)?;
    let kek = AesKek::new(&AES_256, aes_key.expose()).map_err(|_| ImportError::Unwrap)?;
    let mut out = Zeroizing::new(vec![0u8; wrapped_material.len()]);
    let n = kek
        .unwrap_with_padding(wrapped_material, &mut out)
        .map_err(|_| ImportError::Unwrap)?
        .len();
    out.truncate(n);
    Ok(Material::from_bytes(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyMaterial;
    use crate::keys::EncryptionAlgorithm;

    fn wrap(public_der: &[u8], algorithm: WrappingAlgorithm, material: &[u8]) -> Vec<u8> {
        use aws_lc_rs::rsa::{
            OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey,
            PublicEncryptingKey,
        };
        let public =
            OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(public_der).unwrap())
                .unwrap();
        let oaep = match algorithm.oaep() {
            EncryptionAlgorithm::RsaesOaepSha1 => &OAEP_SHA1_MGF1SHA1,
            _ => &OAEP_SHA256_MGF1SHA256,
        };
        let mut rsa_out = vec![0; public.ciphertext_size()];
        if !algorithm.uses_aes_key_wrap() {
            return public
                .encrypt(oaep, material, &mut rsa_out, None)
                .unwrap()
                .to_vec();
        }
        let aes_key = [9u8; 32];
        let mut out = public
            .encrypt(oaep, &aes_key, &mut rsa_out, None)
            .unwrap()
            .to_vec();
        let mut wrapped = vec![0; material.len() + 16];
        let kek = AesKek::new(&AES_256, &aes_key).unwrap();
        out.extend_from_slice(kek.wrap_with_padding(material, &mut wrapped).unwrap());
        out
    }

    proptest::proptest! {
        /// Whatever a caller sends as token and material, the answer is a refusal, never a panic.
        #[test]
        fn arbitrary_tokens_and_material_are_refused(
            token in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700),
            wrapped in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700),
        ) {
            let root = RootKey::new(KeyMaterial::from_bytes(&mut [3u8; 32]));
            proptest::prop_assert!(
                unwrap_material(&root, KeyId::new_random(), &token, &wrapped, UnixMillis(0)).is_err()
            );
        }
    }

    #[test]
    fn material_wrapped_for_a_token_unwraps_only_with_it_and_only_in_time() {
        let root = RootKey::new(KeyMaterial::generate().unwrap());
        let key = KeyId::new_random();
        let expires = UnixMillis(1_000_000);
        let material = [42u8; 32];
        for algorithm in WrappingAlgorithm::ALL.iter().copied() {
            let p = parameters(&root, key, algorithm, KeySpec::Rsa2048, expires).unwrap();
            let wrapped = wrap(&p.public_key, algorithm, &material);
            let opened =
                unwrap_material(&root, key, &p.token, &wrapped, UnixMillis(999_999)).unwrap();
            assert_eq!(opened.expose(), material, "{algorithm}");
            assert_eq!(
                unwrap_material(&root, key, &p.token, &wrapped, expires).err(),
                Some(ImportError::ExpiredToken)
            );
            assert_eq!(
                unwrap_material(
                    &root,
                    KeyId::new_random(),
                    &p.token,
                    &wrapped,
                    UnixMillis(0)
                )
                .err(),
                Some(ImportError::InvalidToken),
                "another key's token"
            );
            let mut altered = p.token.clone();
            altered[20] ^= 1;
            assert_eq!(
                unwrap_material(&root, key, &altered, &wrapped, UnixMillis(0)).err(),
                Some(ImportError::InvalidToken)
            );
            let mut tampered = wrapped.clone();
            *tampered.last_mut().unwrap() ^= 1;
            assert_eq!(
                unwrap_material(&root, key, &p.token, &tampered, UnixMillis(0)).err(),
                Some(ImportError::Unwrap)
            );
            let other = parameters(&root, key, algorithm, KeySpec::Rsa2048, expires).unwrap();
            assert_eq!(
                unwrap_material(&root, key, &other.token, &wrapped, UnixMillis(0)).err(),
                Some(ImportError::Unwrap),
                "material wrapped for another token's key"
            );
        }
        // A private key is too large for RSA-OAEP alone, and fits under AES Key Wrap.
        let p = parameters(
            &root,
            key,
            WrappingAlgorithm::RsaAesKeyWrapSha256,
            KeySpec::Rsa3072,
            expires,
        )
        .unwrap();
        let pkcs8 = KeyPair::generate(KeySpec::Rsa2048).unwrap().unwrap();
        let wrapped = wrap(
            &p.public_key,
            WrappingAlgorithm::RsaAesKeyWrapSha256,
            &pkcs8,
        );
        let opened = unwrap_material(&root, key, &p.token, &wrapped, UnixMillis(0)).unwrap();
        assert_eq!(opened.expose(), pkcs8.as_slice());
        assert_eq!(
            unwrap_material(&root, key, &[], &wrapped, UnixMillis(0)).err(),
            Some(ImportError::InvalidToken)
        );
    }
}
