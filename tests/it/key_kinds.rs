//! Keys of every kind through a real daemon: signing keys (RSA, ECC, Ed25519, ML-DSA) and HMAC keys, what each
//! reports, what each serves and refuses, what their records keep, and that they survive a restart. Signatures are
//! checked by independent verifiers (Python's `cryptography`, the `openssl` command line) in `tests/aws/`.

use kmsd_client::Error;
use kmsd_proto::pb::admin_service_client::AdminServiceClient;
use kmsd_proto::pb::*;
use sha2::Digest;
use tonic::Code;

use crate::support::*;

/// Each spec with the usage and algorithms AWS KMS gives it, written out here rather than read from kmsd.
const SIGNING: &[(&str, &[&str])] = &[
    (
        "RSA_2048",
        &[
            "RSASSA_PSS_SHA_256",
            "RSASSA_PSS_SHA_384",
            "RSASSA_PSS_SHA_512",
            "RSASSA_PKCS1_V1_5_SHA_256",
            "RSASSA_PKCS1_V1_5_SHA_384",
            "RSASSA_PKCS1_V1_5_SHA_512",
        ],
    ),
    (
        "RSA_3072",
        &["RSASSA_PSS_SHA_384", "RSASSA_PKCS1_V1_5_SHA_256"],
    ),
    ("RSA_4096", &["RSASSA_PSS_SHA_512"]),
    ("ECC_NIST_P256", &["ECDSA_SHA_256"]),
    ("ECC_NIST_P384", &["ECDSA_SHA_384"]),
    ("ECC_NIST_P521", &["ECDSA_SHA_512"]),
    ("ECC_SECG_P256K1", &["ECDSA_SHA_256"]),
    ("ECC_NIST_EDWARDS25519", &["ED25519_SHA_512"]),
    ("ML_DSA_44", &["ML_DSA_SHAKE_256"]),
    ("ML_DSA_65", &["ML_DSA_SHAKE_256"]),
    ("ML_DSA_87", &["ML_DSA_SHAKE_256"]),
];

const MACS: &[(&str, &str, usize)] = &[
    ("HMAC_224", "HMAC_SHA_224", 28),
    ("HMAC_256", "HMAC_SHA_256", 32),
    ("HMAC_384", "HMAC_SHA_384", 48),
    ("HMAC_512", "HMAC_SHA_512", 64),
];

async fn create(client: &kmsd_client::Client, spec: &str, usage: &str) -> KeyMetadata {
    client
        .create_key(CreateKeyRequest {
            key_spec: spec.into(),
            key_usage: usage.into(),
            description: format!("a {spec} key"),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// The digest of `message` under the hash an algorithm names (`..._SHA_256`, ...), if it names one.
fn digest_for(algorithm: &str, message: &[u8]) -> Option<Vec<u8>> {
    if algorithm.ends_with("SHA_256") {
        Some(sha2::Sha256::digest(message).to_vec())
    } else if algorithm.ends_with("SHA_384") {
        Some(sha2::Sha384::digest(message).to_vec())
    } else if algorithm.ends_with("SHA_512") && !algorithm.starts_with("ED25519") {
        Some(sha2::Sha512::digest(message).to_vec())
    } else {
        None
    }
}

fn kind_of(e: &Error) -> Option<kmsd_proto::ErrorKind> {
    e.details().and_then(|d| d.kind)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_spec_says_what_it_is_and_signs_verifies_or_macs() {
    let server = TestServer::start().await;
    let client = server.kms_client().await;
    let message = b"release v1.2.3 sha256=...".to_vec();
    let mut signed = Vec::new();

    for (spec, algorithms) in SIGNING {
        let usage = if spec.starts_with("RSA") {
            "SIGN_VERIFY"
        } else {
            ""
        };
        let key = create(&client, spec, usage).await;
        assert_eq!(
            (key.key_spec.as_str(), key.key_usage.as_str()),
            (*spec, "SIGN_VERIFY")
        );
        for algorithm in *algorithms {
            assert!(key.signing_algorithms.iter().any(|a| a == algorithm));
        }
        assert!(key.encryption_algorithms.is_empty() && key.mac_algorithms.is_empty());
        let public = client.get_public_key(&key.key_id).await.unwrap();
        assert_eq!(public.key_spec, *spec);
        assert_eq!(public.signing_algorithms, key.signing_algorithms);
        // DER SubjectPublicKeyInfo: a SEQUENCE.
        assert_eq!(public.public_key[0], 0x30, "{spec}");

        for algorithm in *algorithms {
            let s = client.sign(&key.key_id, &message, algorithm).await.unwrap();
            assert_eq!(
                (s.key_id.as_str(), s.signing_algorithm.as_str()),
                (key.key_id.as_str(), *algorithm)
            );
            assert!(
                client
                    .verify(&key.key_id, &message, &s.signature, algorithm)
                    .await
                    .unwrap(),
                "{spec} {algorithm}"
            );
            let mut tampered = s.signature.clone();
            let last = tampered.len() - 1;
            tampered[last] ^= 0x01;
            assert!(
                !client
                    .verify(&key.key_id, &message, &tampered, algorithm)
                    .await
                    .unwrap(),
                "{spec} {algorithm}: a changed signature"
            );
            assert!(
                !client
                    .verify(&key.key_id, b"release v1.2.4", &s.signature, algorithm)
                    .await
                    .unwrap(),
                "{spec} {algorithm}: another message"
            );
            if let Some(digest) = digest_for(algorithm, &message) {
                // Signing the digest is signing the message: each verifies as the other.
                let by_digest = client
                    .sign_digest(&key.key_id, &digest, algorithm)
                    .await
                    .unwrap();
                assert!(
                    client
                        .verify(&key.key_id, &message, &by_digest.signature, algorithm)
                        .await
                        .unwrap()
                );
                assert!(
                    client
                        .verify_digest(&key.key_id, &digest, &s.signature, algorithm)
                        .await
                        .unwrap()
                );
            }
            signed.push((
                key.key_id.clone(),
                algorithm,
                s.signature,
                public.public_key.clone(),
            ));
        }
    }

    let mut macs = Vec::new();
    for (spec, algorithm, len) in MACS {
        let key = create(&client, spec, "").await;
        assert_eq!(
            (key.key_usage.as_str(), key.mac_algorithms.as_slice()),
            ("GENERATE_VERIFY_MAC", &[algorithm.to_string()][..])
        );
        let mac = client
            .generate_mac(&key.key_id, &message, algorithm)
            .await
            .unwrap();
        assert_eq!(mac.mac.len(), *len, "{spec}");
        assert!(
            client
                .verify_mac(&key.key_id, &message, &mac.mac, algorithm)
                .await
                .unwrap()
        );
        let mut changed = mac.mac.clone();
        changed[0] ^= 0x80;
        assert!(
            !client
                .verify_mac(&key.key_id, &message, &changed, algorithm)
                .await
                .unwrap()
        );
        // HMAC is deterministic: the same key and message give the same MAC.
        let again = client
            .generate_mac(&key.key_id, &message, algorithm)
            .await
            .unwrap();
        assert_eq!(again.mac, mac.mac);
        macs.push((key.key_id, algorithm, mac.mac));
    }

    // After a restart every key opens from its wrapped material: the same public keys, the same MACs.
    let server = server.restart().await;
    let client = server.kms_client().await;
    for (key_id, algorithm, signature, public) in signed {
        assert!(
            client
                .verify(&key_id, &message, &signature, algorithm)
                .await
                .unwrap()
        );
        assert_eq!(
            client.get_public_key(&key_id).await.unwrap().public_key,
            public
        );
    }
    for (key_id, algorithm, mac) in macs {
        let again = client
            .generate_mac(&key_id, &message, algorithm)
            .await
            .unwrap();
        assert_eq!(again.mac, mac);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_refuse_what_their_kind_does_not_serve() {
    let server = TestServer::start().await;
    let client = server.kms_client().await;
    let ecc = create(&client, "ECC_NIST_P256", "").await.key_id;
    let hmac = create(&client, "HMAC_256", "").await.key_id;
    let rsa_encryption = create(&client, "RSA_2048", "").await;
    assert_eq!(rsa_encryption.key_usage, "ENCRYPT_DECRYPT");
    assert_eq!(
        rsa_encryption.encryption_algorithms,
        ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    );
    let symmetric = create(&client, "", "").await.key_id;
    let usage = Some(kmsd_proto::ErrorKind::InvalidKeyUsage);

    let e = client.encrypt(&ecc, b"x", &[]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidKeyUsage(_)), "{e}");
    assert!(e.to_string().contains("SIGN_VERIFY"), "{e}");
    let e = client.generate_data_key(&hmac, &[]).await.unwrap_err();
    assert_eq!(kind_of(&e), usage, "{e}");
    let e = client
        .encrypt(&rsa_encryption.key_id, b"x", &[])
        .await
        .unwrap_err();
    assert_eq!(kind_of(&e), usage, "{e}");
    assert!(e.to_string().contains("RSAES_OAEP_SHA_256"), "{e}");
    let e = client.sign(&hmac, b"m", "ECDSA_SHA_256").await.unwrap_err();
    assert_eq!(kind_of(&e), usage, "{e}");
    let e = client
        .sign(&rsa_encryption.key_id, b"m", "RSASSA_PSS_SHA_256")
        .await
        .unwrap_err();
    assert_eq!(kind_of(&e), usage, "{e}");
    let e = client.sign(&ecc, b"m", "ECDSA_SHA_384").await.unwrap_err();
    assert_eq!(kind_of(&e), usage, "{e}");
    assert!(
        e.to_string().contains("ECDSA_SHA_256"),
        "names what it allows: {e}"
    );
    let e = client
        .generate_mac(&hmac, b"m", "HMAC_SHA_512")
        .await
        .unwrap_err();
    assert_eq!(kind_of(&e), usage, "{e}");
    let e = client.get_public_key(&symmetric).await.unwrap_err();
    assert_eq!(kind_of(&e), usage, "{e}");
    let e = client
        .generate_mac(&symmetric, b"m", "HMAC_SHA_256")
        .await
        .unwrap_err();
    assert_eq!(kind_of(&e), usage, "{e}");

    // Key pairs and HMAC keys do not rotate, as in AWS KMS.
    for key in [&ecc, &hmac] {
        let e = client.rotate_key(key).await.unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
        let e = client.enable_key_rotation(key, 0).await.unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
        assert!(
            !client
                .get_key_rotation_status(key)
                .await
                .unwrap()
                .rotation_enabled
        );
    }

    // Bad requests are refused with the reason.
    for (spec, usage, rotation, expect) in [
        ("ECC_NIST_P256", "ENCRYPT_DECRYPT", 0, "SIGN_VERIFY"),
        ("HMAC_256", "SIGN_VERIFY", 0, "GENERATE_VERIFY_MAC"),
        ("RSA_1024", "", 0, "RSA_2048"),
        ("SYMMETRIC_DEFAULT", "KEY_AGREEMENT", 0, "ENCRYPT_DECRYPT"),
        ("ECC_NIST_P256", "", 90, "do not rotate"),
    ] {
        let e = client
            .create_key(CreateKeyRequest {
                key_spec: spec.into(),
                key_usage: usage.into(),
                rotation_period_days: rotation,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{spec}/{usage}: {e}");
        assert!(e.to_string().contains(expect), "{spec}/{usage}: {e}");
    }
    for (message, algorithm, digest, expect) in [
        (vec![1u8; 4097], "ECDSA_SHA_256", false, "4096"),
        (vec![], "ECDSA_SHA_256", false, "empty"),
        (vec![1u8; 31], "ECDSA_SHA_256", true, "32 bytes"),
        (vec![1u8; 32], "", false, "signing_algorithm is required"),
        (vec![1u8; 32], "ECDSA_SHA256", false, "ECDSA_SHA_256"),
    ] {
        let e = if digest {
            client.sign_digest(&ecc, &message, algorithm).await
        } else {
            client.sign(&ecc, &message, algorithm).await
        }
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        assert!(e.to_string().contains(expect), "{expect}: {e}");
    }

    // A disabled key says so, as for encryption keys.
    client.disable_key(&ecc).await.unwrap();
    let e = client.sign(&ecc, b"m", "ECDSA_SHA_256").await.unwrap_err();
    assert!(matches!(e, Error::KeyState(_)), "{e}");
    let e = client.get_public_key(&ecc).await.unwrap_err();
    assert!(matches!(e, Error::KeyState(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn records_keep_the_algorithm_and_a_fingerprint_never_the_message() {
    let server = TestServer::start().await;
    let client = server.kms_client().await;
    let ecc = create(&client, "ECC_NIST_P384", "").await.key_id;
    let hmac = create(&client, "HMAC_384", "").await.key_id;
    let mut raw = server.client().await;
    let message = b"a message the log must not hold".to_vec();
    let fingerprint = hex::encode(sha2::Sha256::digest(&message));

    let signature = raw
        .sign(tagged(
            SignRequest {
                key_id: ecc.clone(),
                message: message.clone(),
                signing_algorithm: "ECDSA_SHA_384".into(),
                ..Default::default()
            },
            "kinds-sign",
        ))
        .await
        .unwrap()
        .into_inner()
        .signature;
    let e = one_event(&server, "kinds-sign").await;
    assert_eq!(
        (e.event_name.as_str(), e.key_id.as_str()),
        ("Sign", ecc.as_str())
    );
    assert_eq!(outcome(&e), Outcome::Success);
    let p = &e.parameters;
    assert_eq!(p["signing_algorithm"], "ECDSA_SHA_384");
    assert_eq!(p["message_type"], "RAW");
    assert_eq!(p["message_bytes"], message.len().to_string());
    assert_eq!(p["message_sha256"], fingerprint);

    let mut bad = signature.clone();
    bad[10] ^= 1;
    let refused = raw
        .verify(tagged(
            VerifyRequest {
                key_id: ecc.clone(),
                message: message.clone(),
                signature: bad,
                signing_algorithm: "ECDSA_SHA_384".into(),
                ..Default::default()
            },
            "kinds-verify-bad",
        ))
        .await
        .unwrap_err();
    assert_status(
        Err::<(), _>(refused.clone()),
        Code::InvalidArgument,
        &["signature is not valid"],
    );
    assert_eq!(
        refused.metadata().get("x-kms-error").unwrap(),
        "InvalidSignature"
    );
    let e = one_event(&server, "kinds-verify-bad").await;
    assert_eq!(outcome(&e), Outcome::Error);
    assert_eq!(e.parameters["message_sha256"], fingerprint);

    let mac = raw
        .generate_mac(tagged(
            GenerateMacRequest {
                key_id: hmac.clone(),
                message: message.clone(),
                mac_algorithm: "HMAC_SHA_384".into(),
            },
            "kinds-mac",
        ))
        .await
        .unwrap()
        .into_inner()
        .mac;
    let e = one_event(&server, "kinds-mac").await;
    assert_eq!(e.parameters["mac_algorithm"], "HMAC_SHA_384");
    assert_eq!(e.parameters["message_sha256"], fingerprint);
    assert!(!e.parameters.contains_key("message_type"));

    // Nothing of the message, the signature or the MAC is in any record.
    let log = format!(
        "{:?}",
        events_for(&server, "kinds-sign")
            .await
            .into_iter()
            .chain(events_for(&server, "kinds-mac").await)
            .collect::<Vec<_>>()
    );
    assert!(!log.contains("must not hold"));
    let files = database_files(server.data_dir());
    let found = |needle: &[u8]| files.windows(needle.len()).any(|w| w == needle);
    assert!(!found(&message), "the message");
    assert!(!found(&mac), "the MAC");
    assert!(!found(&signature), "the signature");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_principal_allowed_only_to_verify_cannot_sign() {
    let server = TestServer::start().await;
    let admin = server.kms_client().await;
    let key = create(&admin, "ECC_NIST_P256", "").await.key_id;
    let mac_key = create(&admin, "HMAC_256", "").await.key_id;
    let mut admin_rpc = AdminServiceClient::new(server.channel().await);
    admin_rpc
        .create_principal(CreatePrincipalRequest {
            name: "verifier".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let token = admin_rpc
        .create_token(CreateTokenRequest {
            principal: "verifier".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    for k in [&key, &mac_key] {
        admin
            .put_key_policy(
                k,
                KeyPolicy {
                    statements: vec![PolicyStatement {
                        principals: vec!["verifier".into()],
                        operations: vec![
                            "Verify".into(),
                            "GetPublicKey".into(),
                            "VerifyMac".into(),
                        ],
                        ..Default::default()
                    }],
                },
            )
            .await
            .unwrap();
    }
    let verifier = kmsd_client::ClientBuilder::new(server.endpoint())
        .token(token)
        .connect()
        .await
        .unwrap();

    let signed = admin.sign(&key, b"m", "ECDSA_SHA_256").await.unwrap();
    assert!(
        verifier
            .verify(&key, b"m", &signed.signature, "ECDSA_SHA_256")
            .await
            .unwrap()
    );
    verifier.get_public_key(&key).await.unwrap();
    let e = verifier
        .sign(&key, b"m", "ECDSA_SHA_256")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PermissionDenied(_)), "{e}");
    assert!(e.to_string().contains("kms:Sign"), "{e}");

    let mac = admin
        .generate_mac(&mac_key, b"m", "HMAC_SHA_256")
        .await
        .unwrap();
    assert!(
        verifier
            .verify_mac(&mac_key, b"m", &mac.mac, "HMAC_SHA_256")
            .await
            .unwrap()
    );
    let e = verifier
        .generate_mac(&mac_key, b"m", "HMAC_SHA_256")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("kms:GenerateMac"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rsa_keys_encrypt_with_oaep_up_to_their_own_limit() {
    let server = TestServer::start().await;
    let client = server.kms_client().await;
    let rsa = create(&client, "RSA_2048", "ENCRYPT_DECRYPT").await.key_id;
    let other = create(&client, "RSA_2048", "").await.key_id;
    let symmetric = create(&client, "", "").await.key_id;
    let signing = create(&client, "RSA_3072", "SIGN_VERIFY").await.key_id;

    for (algorithm, limit) in [("RSAES_OAEP_SHA_1", 214), ("RSAES_OAEP_SHA_256", 190)] {
        let plaintext = vec![0x5a; limit];
        let sealed = client
            .encrypt_with(&rsa, &plaintext, algorithm)
            .await
            .unwrap();
        assert_eq!(sealed.ciphertext_blob.len(), 256, "the modulus's length");
        let opened = client
            .decrypt_with(&rsa, &sealed.ciphertext_blob, algorithm)
            .await
            .unwrap();
        assert_eq!(&opened.plaintext[..], &plaintext[..]);
        assert_eq!(opened.key_id, rsa);
        // One byte over the key's own limit is refused, naming it.
        let e = client
            .encrypt_with(&rsa, &vec![0x5a; limit + 1], algorithm)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        assert!(e.to_string().contains(&format!("1-{limit}")), "{e}");
        // Not under another key, nor with the other algorithm.
        let e = client
            .decrypt_with(&other, &sealed.ciphertext_blob, algorithm)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidCiphertext(_)), "{e}");
        let swapped = if limit == 214 {
            "RSAES_OAEP_SHA_256"
        } else {
            "RSAES_OAEP_SHA_1"
        };
        let e = client
            .decrypt_with(&rsa, &sealed.ciphertext_blob, swapped)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidCiphertext(_)), "{e}");
    }

    let usage = Some(kmsd_proto::ErrorKind::InvalidKeyUsage);
    // An RSA ciphertext names no key, so Decrypt must be told which, and with what.
    let sealed = client
        .encrypt_with(&rsa, b"secret", "RSAES_OAEP_SHA_256")
        .await
        .unwrap();
    let e = client
        .decrypt(&sealed.ciphertext_blob, &[], None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidCiphertext(_)), "{e}");
    let e = client
        .decrypt(&sealed.ciphertext_blob, &[], Some(&rsa))
        .await
        .unwrap_err();
    assert_eq!(kind_of(&e), usage, "{e}");
    assert!(e.to_string().contains("RSAES_OAEP_SHA_1"), "{e}");
    let mut raw = server.client().await;
    let e = raw
        .decrypt(DecryptRequest {
            ciphertext_blob: sealed.ciphertext_blob.clone(),
            encryption_algorithm: "RSAES_OAEP_SHA_256".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(
        Err::<(), _>(e),
        Code::InvalidArgument,
        &["key_id is required"],
    );
    // RSA encryption takes no encryption context.
    let e = raw
        .encrypt(EncryptRequest {
            key_id: rsa.clone(),
            plaintext: b"x".to_vec(),
            encryption_context: ctx(&[("a", "b")]),
            encryption_algorithm: "RSAES_OAEP_SHA_256".into(),
        })
        .await
        .unwrap_err();
    assert_status(
        Err::<(), _>(e),
        Code::InvalidArgument,
        &["encryption context"],
    );
    // Algorithms and keys that do not go together.
    let e = client
        .encrypt_with(&symmetric, b"x", "RSAES_OAEP_SHA_256")
        .await
        .unwrap_err();
    assert_eq!(kind_of(&e), usage, "{e}");
    assert!(e.to_string().contains("SYMMETRIC_DEFAULT"), "{e}");
    let e = client
        .encrypt_with(&signing, b"x", "RSAES_OAEP_SHA_256")
        .await
        .unwrap_err();
    assert_eq!(kind_of(&e), usage, "{e}");
    assert!(e.to_string().contains("SIGN_VERIFY"), "{e}");
    let e = client
        .encrypt_with(&rsa, b"x", "RSAES_OAEP_SHA_512")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn data_key_pairs_come_sealed_under_a_symmetric_key() {
    let server = TestServer::start().await;
    let client = server.kms_client().await;
    let sealing = create(&client, "", "").await.key_id;
    let context = [("purpose", "device-identity")];
    for spec in ["ECC_NIST_P256", "RSA_2048", "ECC_NIST_EDWARDS25519"] {
        let pair = client
            .generate_data_key_pair(&sealing, spec, &context)
            .await
            .unwrap();
        assert_eq!(pair.key_id, sealing);
        assert!(!format!("{pair:?}").contains(&format!("{:?}", &pair.private_key[..8])));
        // The private key is PKCS#8 of that spec, and the public key is its public half.
        let opened = kmsd::crypto::KeyPair::open(
            kmsd::keys::KeySpec::parse(spec).unwrap(),
            &pair.private_key,
        )
        .unwrap();
        assert_eq!(opened.public_key_der(), pair.public_key.as_slice());
        // The blob is an ordinary blob of the sealing key: Decrypt with the context gives the same bytes.
        let decrypted = client
            .decrypt(&pair.private_key_ciphertext_blob, &context, Some(&sealing))
            .await
            .unwrap();
        assert_eq!(&decrypted.plaintext[..], &pair.private_key[..]);
        let e = client
            .decrypt(&pair.private_key_ciphertext_blob, &[], None)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidCiphertext(_)), "{e}");

        let without = client
            .generate_data_key_pair_without_plaintext(&sealing, spec, &[])
            .await
            .unwrap();
        let private = client
            .decrypt(&without.private_key_ciphertext_blob, &[], None)
            .await
            .unwrap()
            .plaintext;
        let opened =
            kmsd::crypto::KeyPair::open(kmsd::keys::KeySpec::parse(spec).unwrap(), &private)
                .unwrap();
        assert_eq!(opened.public_key_der(), without.public_key.as_slice());
    }

    let hmac = create(&client, "HMAC_256", "").await.key_id;
    let e = client
        .generate_data_key_pair(&hmac, "ECC_NIST_P256", &[])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidKeyUsage(_)), "{e}");
    for spec in ["ML_DSA_44", "HMAC_256", "SYMMETRIC_DEFAULT", "RSA_1024"] {
        let e = client
            .generate_data_key_pair(&sealing, spec, &[])
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{spec}: {e}");
        assert!(
            e.to_string().contains("ECC_SECG_P256K1"),
            "lists the pair specs: {e}"
        );
    }

    let mut raw = server.client().await;
    raw.generate_data_key_pair_without_plaintext(tagged(
        GenerateDataKeyPairWithoutPlaintextRequest {
            key_id: sealing.clone(),
            key_pair_spec: "ECC_NIST_P384".into(),
            encryption_context: ctx(&[("device", "7")]),
        },
        "pair-record",
    ))
    .await
    .unwrap();
    let e = one_event(&server, "pair-record").await;
    assert_eq!(
        (e.event_name.as_str(), e.key_id.as_str(), e.key_version),
        ("GenerateDataKeyPairWithoutPlaintext", sealing.as_str(), 1)
    );
    assert_eq!(e.parameters["key_pair_spec"], "ECC_NIST_P384");
    assert_eq!(e.encryption_context["device"], "7");
}
