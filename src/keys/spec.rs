//! What kind of key a key is, and what it may be used for: AWS KMS's vocabulary, as one table.
//!
//! A key's [`KeySpec`] (what its material is) and [`KeyUsage`] (what it is for) are fixed when it is created. They
//! decide which operations it serves and with which algorithms; every front end names them with AWS's words
//! (`RSA_2048`, `SIGN_VERIFY`, `RSASSA_PSS_SHA_256`), parsed here once.
//!
//! Invariant: no I/O and no key material; the lists here are the only statement of which spec allows which usage
//! and algorithm.

use super::{InvalidInput, invalid};

/// Declares an enum of AWS names: `as_str`, `ALL`, and `parse`, whose error lists every accepted name.
macro_rules! aws_names {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant,)* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            /// Parses AWS's name for it.
            pub fn parse(text: &str) -> Result<Self, InvalidInput> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    invalid(format!(
                        concat!($what, " {:?} is not one of {}"),
                        text,
                        names.join(", ")
                    ))
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

aws_names!(
    /// What a key's material is.
    KeySpec, "key_spec" {
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        Hmac224 = "HMAC_224",
        Hmac256 = "HMAC_256",
        Hmac384 = "HMAC_384",
        Hmac512 = "HMAC_512",
        Rsa2048 = "RSA_2048",
        Rsa3072 = "RSA_3072",
        Rsa4096 = "RSA_4096",
        EccNistP256 = "ECC_NIST_P256",
        EccNistP384 = "ECC_NIST_P384",
        EccNistP521 = "ECC_NIST_P521",
        EccSecgP256k1 = "ECC_SECG_P256K1",
        EccNistEdwards25519 = "ECC_NIST_EDWARDS25519",
        MlDsa44 = "ML_DSA_44",
        MlDsa65 = "ML_DSA_65",
        MlDsa87 = "ML_DSA_87",
    }
);

aws_names!(
    /// What a key is for.
    KeyUsage, "key_usage" {
        EncryptDecrypt = "ENCRYPT_DECRYPT",
        SignVerify = "SIGN_VERIFY",
        GenerateVerifyMac = "GENERATE_VERIFY_MAC",
    }
);

aws_names!(
    /// A signature scheme, as Sign and Verify name it.
    SigningAlgorithm, "signing_algorithm" {
        RsassaPssSha256 = "RSASSA_PSS_SHA_256",
        RsassaPssSha384 = "RSASSA_PSS_SHA_384",
        RsassaPssSha512 = "RSASSA_PSS_SHA_512",
        RsassaPkcs1V15Sha256 = "RSASSA_PKCS1_V1_5_SHA_256",
        RsassaPkcs1V15Sha384 = "RSASSA_PKCS1_V1_5_SHA_384",
        RsassaPkcs1V15Sha512 = "RSASSA_PKCS1_V1_5_SHA_512",
        EcdsaSha256 = "ECDSA_SHA_256",
        EcdsaSha384 = "ECDSA_SHA_384",
        EcdsaSha512 = "ECDSA_SHA_512",
        Ed25519Sha512 = "ED25519_SHA_512",
        MlDsaShake256 = "ML_DSA_SHAKE_256",
    }
);

aws_names!(
    /// A MAC algorithm, as GenerateMac and VerifyMac name it.
    MacAlgorithm, "mac_algorithm" {
        HmacSha224 = "HMAC_SHA_224",
        HmacSha256 = "HMAC_SHA_256",
        HmacSha384 = "HMAC_SHA_384",
        HmacSha512 = "HMAC_SHA_512",
    }
);

aws_names!(
    /// Whether Sign and Verify are given the message or its digest.
    MessageType, "message_type" {
        Raw = "RAW",
        Digest = "DIGEST",
    }
);

aws_names!(
    /// How Encrypt and Decrypt use a key.
    EncryptionAlgorithm, "encryption_algorithm" {
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        RsaesOaepSha1 = "RSAES_OAEP_SHA_1",
        RsaesOaepSha256 = "RSAES_OAEP_SHA_256",
    }
);

/// Names joined for a message: `A, B or C`.
pub fn names_of<T: std::fmt::Display>(items: &[T]) -> String {
    let names: Vec<String> = items.iter().map(T::to_string).collect();
    match names.split_last() {
        None => "none".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

aws_names!(
    /// How key material to import is wrapped (GetParametersForImport): with RSA-OAEP alone, or with RSA-OAEP
    /// wrapping an AES-256 key that wraps the material (AES Key Wrap with Padding, RFC 5649), for material larger
    /// than RSA-OAEP takes (private keys).
    WrappingAlgorithm, "wrapping_algorithm" {
        RsaesOaepSha1 = "RSAES_OAEP_SHA_1",
        RsaesOaepSha256 = "RSAES_OAEP_SHA_256",
        RsaAesKeyWrapSha1 = "RSA_AES_KEY_WRAP_SHA_1",
        RsaAesKeyWrapSha256 = "RSA_AES_KEY_WRAP_SHA_256",
    }
);

impl WrappingAlgorithm {
    /// The OAEP hash the RSA part uses.
    pub const fn oaep(self) -> EncryptionAlgorithm {
        match self {
            WrappingAlgorithm::RsaesOaepSha1 | WrappingAlgorithm::RsaAesKeyWrapSha1 => {
                EncryptionAlgorithm::RsaesOaepSha1
            }
            WrappingAlgorithm::RsaesOaepSha256 | WrappingAlgorithm::RsaAesKeyWrapSha256 => {
                EncryptionAlgorithm::RsaesOaepSha256
            }
        }
    }

    pub const fn uses_aes_key_wrap(self) -> bool {
        matches!(
            self,
            WrappingAlgorithm::RsaAesKeyWrapSha1 | WrappingAlgorithm::RsaAesKeyWrapSha256
        )
    }

    pub const fn code(self) -> u8 {
        match self {
            WrappingAlgorithm::RsaesOaepSha1 => 1,
            WrappingAlgorithm::RsaesOaepSha256 => 2,
            WrappingAlgorithm::RsaAesKeyWrapSha1 => 3,
            WrappingAlgorithm::RsaAesKeyWrapSha256 => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.code() == code)
    }
}

/// The hash a signing algorithm applies to a message, where it applies one the caller can apply instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub const fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}

/// The largest message Sign, Verify, GenerateMac and VerifyMac take, as AWS's.
pub const MAX_MESSAGE_BYTES: usize = 4096;

impl KeySpec {
    pub const fn is_symmetric(self) -> bool {
        matches!(self, KeySpec::SymmetricDefault)
    }

    pub const fn is_hmac(self) -> bool {
        matches!(
            self,
            KeySpec::Hmac224 | KeySpec::Hmac256 | KeySpec::Hmac384 | KeySpec::Hmac512
        )
    }

    pub const fn is_rsa(self) -> bool {
        matches!(self, KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096)
    }

    /// A key pair: it has a public key to give out.
    pub const fn is_asymmetric(self) -> bool {
        !self.is_symmetric() && !self.is_hmac()
    }

    /// Whether GenerateDataKeyPair makes pairs of this spec (AWS's DataKeyPairSpec: RSA and ECC, Ed25519 included).
    pub const fn is_data_key_pair(self) -> bool {
        matches!(
            self,
            KeySpec::Rsa2048
                | KeySpec::Rsa3072
                | KeySpec::Rsa4096
                | KeySpec::EccNistP256
                | KeySpec::EccNistP384
                | KeySpec::EccNistP521
                | KeySpec::EccSecgP256k1
                | KeySpec::EccNistEdwards25519
        )
    }

    /// A `key_pair_spec` of GenerateDataKeyPair.
    pub fn parse_data_key_pair(text: &str) -> Result<KeySpec, InvalidInput> {
        let pairs: Vec<KeySpec> = KeySpec::ALL
            .iter()
            .copied()
            .filter(|s| s.is_data_key_pair())
            .collect();
        match KeySpec::parse(text) {
            Ok(spec) if spec.is_data_key_pair() => Ok(spec),
            _ => Err(invalid(format!(
                "key_pair_spec {text:?} is not one of {}",
                names_of(&pairs)
            ))),
        }
    }

    /// The usages a key of this spec may have.
    pub const fn usages(self) -> &'static [KeyUsage] {
        match self {
            KeySpec::SymmetricDefault => &[KeyUsage::EncryptDecrypt],
            KeySpec::Hmac224 | KeySpec::Hmac256 | KeySpec::Hmac384 | KeySpec::Hmac512 => {
                &[KeyUsage::GenerateVerifyMac]
            }
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
                &[KeyUsage::EncryptDecrypt, KeyUsage::SignVerify]
            }
            _ => &[KeyUsage::SignVerify],
        }
    }

    /// The usage a key gets when CreateKey names none: the spec's only one, or ENCRYPT_DECRYPT for RSA (AWS's
    /// default).
    pub const fn default_usage(self) -> KeyUsage {
        self.usages()[0]
    }

    /// The signing algorithms a SIGN_VERIFY key of this spec allows, in AWS's order.
    pub const fn signing_algorithms(self) -> &'static [SigningAlgorithm] {
        use SigningAlgorithm::*;
        match self {
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => &[
                RsassaPssSha256,
                RsassaPssSha384,
                RsassaPssSha512,
                RsassaPkcs1V15Sha256,
                RsassaPkcs1V15Sha384,
                RsassaPkcs1V15Sha512,
            ],
            KeySpec::EccNistP256 | KeySpec::EccSecgP256k1 => &[EcdsaSha256],
            KeySpec::EccNistP384 => &[EcdsaSha384],
            KeySpec::EccNistP521 => &[EcdsaSha512],
            KeySpec::EccNistEdwards25519 => &[Ed25519Sha512],
            KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87 => &[MlDsaShake256],
            _ => &[],
        }
    }

    /// The MAC algorithm of an HMAC key (one; a list, as DescribeKey gives it).
    pub const fn mac_algorithms(self) -> &'static [MacAlgorithm] {
        match self {
            KeySpec::Hmac224 => &[MacAlgorithm::HmacSha224],
            KeySpec::Hmac256 => &[MacAlgorithm::HmacSha256],
            KeySpec::Hmac384 => &[MacAlgorithm::HmacSha384],
            KeySpec::Hmac512 => &[MacAlgorithm::HmacSha512],
            _ => &[],
        }
    }

    /// The encryption algorithms an ENCRYPT_DECRYPT key of this spec allows.
    pub const fn encryption_algorithms(self) -> &'static [EncryptionAlgorithm] {
        match self {
            KeySpec::SymmetricDefault => &[EncryptionAlgorithm::SymmetricDefault],
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => &[
                EncryptionAlgorithm::RsaesOaepSha1,
                EncryptionAlgorithm::RsaesOaepSha256,
            ],
            _ => &[],
        }
    }

    /// The length of the material a new key of this spec is given, where it is random bytes (symmetric and HMAC
    /// keys); `None` for key pairs. HMAC keys are as long as their hash's output, as AWS's.
    pub const fn generated_len(self) -> Option<usize> {
        match self {
            KeySpec::SymmetricDefault | KeySpec::Hmac256 => Some(32),
            KeySpec::Hmac224 => Some(28),
            KeySpec::Hmac384 => Some(48),
            KeySpec::Hmac512 => Some(64),
            _ => None,
        }
    }
}

/// What a key was made for: its spec and its usage, checked against each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyKind {
    pub spec: KeySpec,
    pub usage: KeyUsage,
}

impl KeyKind {
    pub const SYMMETRIC: KeyKind = KeyKind {
        spec: KeySpec::SymmetricDefault,
        usage: KeyUsage::EncryptDecrypt,
    };

    /// `spec` and `usage` as CreateKey gives them: empty for the default.
    pub fn parse(spec: &str, usage: &str) -> Result<Self, InvalidInput> {
        let spec = match spec {
            "" => KeySpec::SymmetricDefault,
            s => KeySpec::parse(s)?,
        };
        let usage = match usage {
            "" => spec.default_usage(),
            u => KeyUsage::parse(u)?,
        };
        Self::new(spec, usage)
    }

    pub fn new(spec: KeySpec, usage: KeyUsage) -> Result<Self, InvalidInput> {
        if !spec.usages().contains(&usage) {
            let allowed: Vec<&str> = spec.usages().iter().map(|u| u.as_str()).collect();
            return Err(invalid(format!(
                "key spec {spec} cannot have key usage {usage}; it may have {}",
                allowed.join(" or ")
            )));
        }
        Ok(KeyKind { spec, usage })
    }

    pub fn signing_algorithms(self) -> &'static [SigningAlgorithm] {
        match self.usage {
            KeyUsage::SignVerify => self.spec.signing_algorithms(),
            _ => &[],
        }
    }

    pub fn encryption_algorithms(self) -> &'static [EncryptionAlgorithm] {
        match self.usage {
            KeyUsage::EncryptDecrypt => self.spec.encryption_algorithms(),
            _ => &[],
        }
    }

    pub fn mac_algorithms(self) -> &'static [MacAlgorithm] {
        self.spec.mac_algorithms()
    }
}

impl SigningAlgorithm {
    /// The hash the algorithm applies to a RAW message, which a DIGEST message must already be; `None` where the
    /// algorithm takes only the message (Ed25519, ML-DSA).
    pub const fn hash(self) -> Option<Hash> {
        use SigningAlgorithm::*;
        match self {
            RsassaPssSha256 | RsassaPkcs1V15Sha256 | EcdsaSha256 => Some(Hash::Sha256),
            RsassaPssSha384 | RsassaPkcs1V15Sha384 | EcdsaSha384 => Some(Hash::Sha384),
            RsassaPssSha512 | RsassaPkcs1V15Sha512 | EcdsaSha512 => Some(Hash::Sha512),
            Ed25519Sha512 | MlDsaShake256 => None,
        }
    }
}

/// A validated message for Sign or Verify.
pub fn check_signing_message(
    algorithm: SigningAlgorithm,
    message_type: MessageType,
    message: &[u8],
) -> Result<(), InvalidInput> {
    match message_type {
        MessageType::Raw => check_message(message),
        MessageType::Digest => match algorithm.hash() {
            Some(hash) if message.len() == hash.output_len() => Ok(()),
            Some(hash) => Err(invalid(format!(
                "a DIGEST message for {algorithm} must be {} bytes, got {}",
                hash.output_len(),
                message.len()
            ))),
            None => Err(invalid(format!(
                "{algorithm} signs the message itself; give message_type RAW"
            ))),
        },
    }
}

/// A validated message for Sign, Verify, GenerateMac or VerifyMac: 1-4096 bytes.
pub fn check_message(message: &[u8]) -> Result<(), InvalidInput> {
    match message.len() {
        0 => Err(invalid("message is empty; it must be 1-4096 bytes")),
        n if n > MAX_MESSAGE_BYTES => Err(invalid(format!(
            "message is {n} bytes; it must be at most {MAX_MESSAGE_BYTES} (sign or MAC a digest of larger data)"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for spec in KeySpec::ALL {
            assert_eq!(KeySpec::parse(spec.as_str()).unwrap(), *spec);
        }
        let err = KeySpec::parse("RSA_1024").unwrap_err().0;
        assert!(err.contains("RSA_1024") && err.contains("RSA_2048") && err.contains("ML_DSA_87"));
        assert!(
            SigningAlgorithm::parse("ecdsa_sha_256").is_err(),
            "names are exact"
        );
    }

    #[test]
    fn spec_and_usage_must_agree() {
        assert_eq!(KeyKind::parse("", "").unwrap(), KeyKind::SYMMETRIC);
        assert_eq!(
            KeyKind::parse("RSA_2048", "").unwrap().usage,
            KeyUsage::EncryptDecrypt
        );
        assert_eq!(
            KeyKind::parse("ECC_NIST_P256", "").unwrap().usage,
            KeyUsage::SignVerify
        );
        assert_eq!(
            KeyKind::parse("HMAC_384", "").unwrap().usage,
            KeyUsage::GenerateVerifyMac
        );
        let err = KeyKind::parse("ECC_NIST_P256", "ENCRYPT_DECRYPT")
            .unwrap_err()
            .0;
        assert!(err.contains("SIGN_VERIFY"), "{err}");
        assert!(KeyKind::parse("SYMMETRIC_DEFAULT", "SIGN_VERIFY").is_err());
        assert!(KeyKind::parse("HMAC_256", "ENCRYPT_DECRYPT").is_err());
    }

    #[test]
    fn every_asymmetric_signing_spec_has_algorithms_and_no_other_does() {
        for spec in KeySpec::ALL {
            let signs = spec.usages().contains(&KeyUsage::SignVerify);
            assert_eq!(signs, !spec.signing_algorithms().is_empty(), "{spec}");
            assert_eq!(spec.is_hmac(), !spec.mac_algorithms().is_empty(), "{spec}");
            assert_eq!(
                spec.is_asymmetric(),
                spec.generated_len().is_none(),
                "{spec}"
            );
        }
        let rsa_encrypt = KeyKind::new(KeySpec::Rsa2048, KeyUsage::EncryptDecrypt).unwrap();
        assert!(rsa_encrypt.signing_algorithms().is_empty());
        assert_eq!(rsa_encrypt.encryption_algorithms().len(), 2);
    }

    #[test]
    fn digests_must_fit_their_algorithm() {
        use SigningAlgorithm::*;
        assert!(check_signing_message(EcdsaSha256, MessageType::Digest, &[0; 32]).is_ok());
        assert!(check_signing_message(EcdsaSha384, MessageType::Digest, &[0; 32]).is_err());
        assert!(check_signing_message(RsassaPssSha512, MessageType::Digest, &[0; 64]).is_ok());
        assert!(check_signing_message(Ed25519Sha512, MessageType::Digest, &[0; 64]).is_err());
        assert!(check_signing_message(MlDsaShake256, MessageType::Raw, &[0; 4096]).is_ok());
        assert!(check_signing_message(MlDsaShake256, MessageType::Raw, &[0; 4097]).is_err());
        assert!(check_signing_message(EcdsaSha256, MessageType::Raw, &[]).is_err());
    }
}
