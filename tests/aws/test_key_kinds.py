"""Signing and HMAC keys over the AWS endpoint, checked by verifiers that are not kmsd's: Python's `cryptography`
verifies every signature kmsd makes, for every spec and algorithm, against the key GetPublicKey gives, and the
`openssl` command line does too for every spec it knows (OpenSSL 3.0 has no ML-DSA)."""

import base64
import hashlib
import os
import shutil
import subprocess

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa, utils

from conftest import REGION

# Every spec with every algorithm AWS KMS gives it, written out here rather than read from kmsd.
SIGNING = [
    (spec, algorithm)
    for spec in ["RSA_2048", "RSA_3072", "RSA_4096"]
    for algorithm in [
        "RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
        "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
    ]
] + [
    ("ECC_NIST_P256", "ECDSA_SHA_256"),
    ("ECC_NIST_P384", "ECDSA_SHA_384"),
    ("ECC_NIST_P521", "ECDSA_SHA_512"),
    ("ECC_SECG_P256K1", "ECDSA_SHA_256"),
    ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512"),
    ("ML_DSA_44", "ML_DSA_SHAKE_256"),
    ("ML_DSA_65", "ML_DSA_SHAKE_256"),
    ("ML_DSA_87", "ML_DSA_SHAKE_256"),
]

HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def hash_of(algorithm):
    """The hash an algorithm applies to the message, or None where it takes the message itself."""
    if algorithm.startswith(("ED25519", "ML_DSA")):
        return None
    return HASHES[algorithm[-3:]]()


@pytest.fixture(scope="module")
def aws(kmsd):
    key_id, secret = kmsd.access_key()
    return boto3.client(
        "kms",
        endpoint_url=kmsd.endpoint_url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def signing_keys(aws):
    """One key per spec, made on first use: (key ARN, its public key as DER)."""
    made = {}

    def key(spec):
        if spec not in made:
            meta = aws.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]
            public = aws.get_public_key(KeyId=meta["Arn"])
            assert public["KeySpec"] == spec and public["KeyUsage"] == "SIGN_VERIFY"
            made[spec] = (meta["Arn"], public["PublicKey"])
        return made[spec]

    return key


def verify_with_cryptography(der, algorithm, message, signature, digest=False):
    """Raises InvalidSignature unless `signature` is the key's over `message` (or, with `digest`, over the message
    whose digest `message` is)."""
    public = serialization.load_der_public_key(der)
    h = hash_of(algorithm)
    data_hash = utils.Prehashed(h) if digest else h
    if isinstance(public, rsa.RSAPublicKey):
        if "PSS" in algorithm:
            pad = padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
        else:
            pad = padding.PKCS1v15()
        public.verify(signature, message, pad, data_hash)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, message, ec.ECDSA(data_hash))
    elif isinstance(public, ed25519.Ed25519PublicKey):
        public.verify(signature, message)
    elif isinstance(public, (mldsa.MLDSA44PublicKey, mldsa.MLDSA65PublicKey, mldsa.MLDSA87PublicKey)):
        public.verify(signature, message)
    else:
        raise AssertionError(f"unexpected public key {public!r}")


def openssl_verifies(tmp_path, der, algorithm, message, signature):
    """Whether `openssl` accepts the signature, with the public key as PEM."""
    pem = tmp_path / "public.pem"
    pem.write_bytes(
        serialization.load_der_public_key(der).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "message").write_bytes(message)
    (tmp_path / "signature").write_bytes(signature)
    files = ["-signature", str(tmp_path / "signature"), str(tmp_path / "message")]
    if algorithm == "ED25519_SHA_512":
        command = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin",
                   "-in", str(tmp_path / "message"), "-sigfile", str(tmp_path / "signature")]
    else:
        command = ["openssl", "dgst", f"-sha{algorithm[-3:]}", "-verify", str(pem)]
        if "PSS" in algorithm:
            command += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]
        command += files
    done = subprocess.run(command, capture_output=True)
    return done.returncode == 0


def aws_error(call):
    with pytest.raises(ClientError) as refused:
        call()
    return refused.value.response["Error"]["Code"]


@pytest.mark.parametrize("spec,algorithm", SIGNING)
def test_every_signature_verifies_outside_kmsd_and_a_tampered_one_nowhere(
    aws, signing_keys, tmp_path, spec, algorithm
):
    arn, der = signing_keys(spec)
    message = os.urandom(200)
    signed = aws.sign(KeyId=arn, Message=message, MessageType="RAW", SigningAlgorithm=algorithm)
    assert signed["KeyId"] == arn and signed["SigningAlgorithm"] == algorithm
    signature = signed["Signature"]

    verify_with_cryptography(der, algorithm, message, signature)
    with pytest.raises(InvalidSignature):
        verify_with_cryptography(der, algorithm, message + b"!", signature)
    tampered = signature[:-1] + bytes([signature[-1] ^ 1])
    with pytest.raises(InvalidSignature):
        verify_with_cryptography(der, algorithm, message, tampered)

    if not spec.startswith("ML_DSA"):
        assert shutil.which("openssl"), "the openssl command line is needed"
        assert openssl_verifies(tmp_path, der, algorithm, message, signature)
        assert not openssl_verifies(tmp_path, der, algorithm, message + b"!", signature)
        assert not openssl_verifies(tmp_path, der, algorithm, message, tampered)

    verified = aws.verify(KeyId=arn, Message=message, Signature=signature, SigningAlgorithm=algorithm)
    assert verified["SignatureValid"] is True
    assert aws_error(lambda: aws.verify(
        KeyId=arn, Message=message, Signature=tampered, SigningAlgorithm=algorithm
    )) == "KMSInvalidSignatureException"

    h = hash_of(algorithm)
    if h is not None:
        digest = hashlib.new(h.name, message).digest()
        by_digest = aws.sign(KeyId=arn, Message=digest, MessageType="DIGEST", SigningAlgorithm=algorithm)
        verify_with_cryptography(der, algorithm, message, by_digest["Signature"])
        verify_with_cryptography(der, algorithm, digest, signature, digest=True)
        assert aws.verify(
            KeyId=arn, Message=digest, MessageType="DIGEST", Signature=signature, SigningAlgorithm=algorithm
        )["SignatureValid"]


def test_describe_key_says_what_each_kind_allows(aws):
    meta = aws.create_key(KeySpec="ECC_NIST_P384", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    assert (meta["KeySpec"], meta["CustomerMasterKeySpec"], meta["KeyUsage"]) == (
        "ECC_NIST_P384", "ECC_NIST_P384", "SIGN_VERIFY")
    assert meta["SigningAlgorithms"] == ["ECDSA_SHA_384"]
    assert "EncryptionAlgorithms" not in meta and "MacAlgorithms" not in meta
    mac = aws.create_key(KeySpec="HMAC_512", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
    assert mac["MacAlgorithms"] == ["HMAC_SHA_512"]
    rsa_encryption = aws.create_key(KeySpec="RSA_3072")["KeyMetadata"]
    assert rsa_encryption["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert rsa_encryption["EncryptionAlgorithms"] == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    public = aws.get_public_key(KeyId=rsa_encryption["Arn"])
    assert public["EncryptionAlgorithms"] == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    assert serialization.load_der_public_key(public["PublicKey"]).key_size == 3072
    symmetric = aws.describe_key(KeyId=aws.create_key()["KeyMetadata"]["Arn"])["KeyMetadata"]
    assert (symmetric["KeySpec"], symmetric["EncryptionAlgorithms"]) == ("SYMMETRIC_DEFAULT", ["SYMMETRIC_DEFAULT"])


def test_operations_a_key_does_not_serve_are_aws_errors(aws, signing_keys):
    arn, _ = signing_keys("ECC_NIST_P256")
    mac_key = aws.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"]
    symmetric = aws.create_key()["KeyMetadata"]["Arn"]
    # As AWS: an ECC key needs its usage said, the default being ENCRYPT_DECRYPT.
    assert aws_error(lambda: aws.create_key(KeySpec="ECC_NIST_P256")) == "ValidationException"
    assert aws_error(lambda: aws.encrypt(KeyId=arn, Plaintext=b"x")) == "InvalidKeyUsageException"
    assert aws_error(lambda: aws.generate_data_key(KeyId=mac_key, KeySpec="AES_256")) == "InvalidKeyUsageException"
    assert aws_error(lambda: aws.sign(
        KeyId=arn, Message=b"m", SigningAlgorithm="ECDSA_SHA_512")) == "InvalidKeyUsageException"
    assert aws_error(lambda: aws.sign(
        KeyId=symmetric, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")) == "InvalidKeyUsageException"
    assert aws_error(lambda: aws.get_public_key(KeyId=symmetric)) == "InvalidKeyUsageException"
    assert aws_error(lambda: aws.generate_mac(
        KeyId=arn, Message=b"m", MacAlgorithm="HMAC_SHA_256")) == "InvalidKeyUsageException"
    assert aws_error(lambda: aws.enable_key_rotation(KeyId=arn)) == "UnsupportedOperationException"
    assert aws_error(lambda: aws.rotate_key_on_demand(KeyId=mac_key)) == "UnsupportedOperationException"
    assert aws_error(lambda: aws.sign(
        KeyId=arn, Message=b"x" * 31, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")) == "ValidationException"
    aws.disable_key(KeyId=arn)
    try:
        assert aws_error(lambda: aws.sign(
            KeyId=arn, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")) == "DisabledException"
    finally:
        aws.enable_key(KeyId=arn)


def test_hmac_keys_generate_and_verify_macs(aws, kmsd):
    for spec, algorithm, length in [("HMAC_224", "HMAC_SHA_224", 28), ("HMAC_256", "HMAC_SHA_256", 32),
                                    ("HMAC_384", "HMAC_SHA_384", 48), ("HMAC_512", "HMAC_SHA_512", 64)]:
        arn = aws.create_key(KeySpec=spec, KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"]
        made = aws.generate_mac(KeyId=arn, Message=b"tokenise me", MacAlgorithm=algorithm)
        assert (made["KeyId"], made["MacAlgorithm"], len(made["Mac"])) == (arn, algorithm, length)
        assert aws.verify_mac(KeyId=arn, Message=b"tokenise me", Mac=made["Mac"], MacAlgorithm=algorithm)["MacValid"]
        changed = bytes([made["Mac"][0] ^ 1]) + made["Mac"][1:]
        assert aws_error(lambda: aws.verify_mac(
            KeyId=arn, Message=b"tokenise me", Mac=changed, MacAlgorithm=algorithm)) == "KMSInvalidMacException"
        assert aws_error(lambda: aws.verify_mac(
            KeyId=arn, Message=b"tokenise me", Mac=made["Mac"][:-1], MacAlgorithm=algorithm)) == "KMSInvalidMacException"


def test_kmsctl_signatures_verify_with_openssl_and_its_pem(kmsd, tmp_path):
    created = kmsd.kmsctl("--json", "keys", "create", "--spec", "ECC_SECG_P256K1").stdout
    key_id = __import__("json").loads(created)["key_id"]
    message = tmp_path / "transaction"
    message.write_bytes(b"send 1 BTC to ...")
    signature = base64.b64decode(kmsd.kmsctl(
        "sign", "--key", key_id, "--algorithm", "ECDSA_SHA_256", "--in", str(message)).stdout)
    (tmp_path / "public.pem").write_bytes(kmsd.kmsctl("public-key", key_id).stdout)
    (tmp_path / "signature").write_bytes(signature)
    done = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "public.pem"), "-signature",
         str(tmp_path / "signature"), str(message)], capture_output=True)
    assert done.returncode == 0, done.stderr
    # And kmsctl verify agrees, exiting 1 for a signature of another message.
    sig_b64 = base64.b64encode(signature).decode()
    kmsd.kmsctl("verify", "--key", key_id, "--algorithm", "ECDSA_SHA_256", "--signature", sig_b64,
                "--in", str(message))
    other = tmp_path / "other"
    other.write_bytes(b"send 2 BTC to ...")
    refused = kmsd.kmsctl("verify", "--key", key_id, "--algorithm", "ECDSA_SHA_256", "--signature", sig_b64,
                          "--in", str(other), check=False)
    assert refused.returncode == 1 and b"NOT valid" in refused.stderr, refused


@pytest.fixture(scope="module")
def rsa_encryption_keys(aws):
    """Two RSA ENCRYPT_DECRYPT keys per size, made on first use."""
    made = {}

    def keys(spec):
        if spec not in made:
            made[spec] = [aws.create_key(KeySpec=spec, KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["Arn"]
                          for _ in range(2)]
        return made[spec]

    return keys


# AWS KMS's documented limits: the modulus's bytes less OAEP's padding (2 * hash length + 2).
OAEP_LIMITS = {("RSA_2048", "sha1"): 214, ("RSA_2048", "sha256"): 190, ("RSA_3072", "sha1"): 342,
               ("RSA_3072", "sha256"): 318, ("RSA_4096", "sha1"): 470, ("RSA_4096", "sha256"): 446}


@pytest.mark.parametrize("spec", ["RSA_2048", "RSA_3072", "RSA_4096"])
@pytest.mark.parametrize("algorithm,md", [("RSAES_OAEP_SHA_1", "sha1"), ("RSAES_OAEP_SHA_256", "sha256")])
def test_openssl_encrypts_to_an_rsa_key_and_only_that_key_decrypts(
    aws, rsa_encryption_keys, tmp_path, spec, algorithm, md
):
    arn, other = rsa_encryption_keys(spec)
    public = aws.get_public_key(KeyId=arn)
    assert public["EncryptionAlgorithms"] == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    pem = tmp_path / "public.pem"
    pem.write_bytes(serialization.load_der_public_key(public["PublicKey"]).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    limit = OAEP_LIMITS[(spec, md)]
    message = os.urandom(limit)
    (tmp_path / "message").write_bytes(message)
    done = subprocess.run(
        ["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", str(pem), "-pkeyopt", "rsa_padding_mode:oaep",
         "-pkeyopt", f"rsa_oaep_md:{md}", "-pkeyopt", f"rsa_mgf1_md:{md}", "-in", str(tmp_path / "message"),
         "-out", str(tmp_path / "ciphertext")], capture_output=True)
    assert done.returncode == 0, done.stderr
    ciphertext = (tmp_path / "ciphertext").read_bytes()

    opened = aws.decrypt(KeyId=arn, CiphertextBlob=ciphertext, EncryptionAlgorithm=algorithm)
    assert (opened["Plaintext"], opened["KeyId"], opened["EncryptionAlgorithm"]) == (message, arn, algorithm)
    assert aws_error(lambda: aws.decrypt(
        KeyId=other, CiphertextBlob=ciphertext, EncryptionAlgorithm=algorithm)) == "InvalidCiphertextException"
    assert aws_error(lambda: aws.decrypt(CiphertextBlob=ciphertext)) == "InvalidCiphertextException"

    # kmsd's own ciphertext, at the limit, with the public key's padding: decrypts under its key only.
    sealed = aws.encrypt(KeyId=arn, Plaintext=message, EncryptionAlgorithm=algorithm)
    assert sealed["EncryptionAlgorithm"] == algorithm
    assert aws.decrypt(KeyId=arn, CiphertextBlob=sealed["CiphertextBlob"], EncryptionAlgorithm=algorithm)[
        "Plaintext"] == message
    assert aws_error(lambda: aws.decrypt(
        KeyId=other, CiphertextBlob=sealed["CiphertextBlob"], EncryptionAlgorithm=algorithm
    )) == "InvalidCiphertextException"
    assert aws_error(lambda: aws.encrypt(
        KeyId=arn, Plaintext=message + b"!", EncryptionAlgorithm=algorithm)) == "ValidationException"


@pytest.mark.parametrize("spec", ["RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384",
                                  "ECC_NIST_P521", "ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519"])
def test_a_data_key_pairs_private_key_matches_its_public_key_and_its_blob(aws, spec):
    sealing = aws.create_key()["KeyMetadata"]["Arn"]
    context = {"tenant": "t-1"}
    pair = aws.generate_data_key_pair(KeyId=sealing, KeyPairSpec=spec, EncryptionContext=context)
    assert (pair["KeyId"], pair["KeyPairSpec"]) == (sealing, spec)
    private = serialization.load_der_private_key(pair["PrivateKeyPlaintext"], password=None)
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert public == pair["PublicKey"]
    if spec.startswith("RSA"):
        assert private.key_size == int(spec[4:])
    # The blob is the same private key, sealed under the symmetric key with the context.
    opened = aws.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext=context)
    assert opened["Plaintext"] == pair["PrivateKeyPlaintext"]
    assert aws_error(lambda: aws.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"])) == \
        "InvalidCiphertextException"

    without = aws.generate_data_key_pair_without_plaintext(KeyId=sealing, KeyPairSpec=spec)
    assert "PrivateKeyPlaintext" not in without
    private = serialization.load_der_private_key(
        aws.decrypt(CiphertextBlob=without["PrivateKeyCiphertextBlob"])["Plaintext"], password=None)
    assert private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == without["PublicKey"]


def openssl(*args, input=None):
    done = subprocess.run(["openssl", *args], capture_output=True, input=input)
    assert done.returncode == 0, done.stderr
    return done.stdout


def wrap_with_openssl(tmp_path, public_der, algorithm, material):
    """Wraps `material` as AWS's documentation shows, with the openssl command line only."""
    pem = tmp_path / "wrapping-key.pem"
    pem.write_bytes(serialization.load_der_public_key(public_der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    md = "sha1" if algorithm.endswith("SHA_1") else "sha256"
    oaep = ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", f"rsa_oaep_md:{md}", "-pkeyopt", f"rsa_mgf1_md:{md}"]
    (tmp_path / "material").write_bytes(material)
    if algorithm.startswith("RSAES_OAEP"):
        return openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", str(pem), *oaep, "-in", str(tmp_path / "material"))
    aes_key = openssl("rand", "32")
    (tmp_path / "aes-key").write_bytes(aes_key)
    wrapped_key = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", str(pem), *oaep, "-in", str(tmp_path / "aes-key"))
    wrapped_material = openssl("enc", "-id-aes256-wrap-pad", "-K", aes_key.hex(), "-iv", "A65959A6",
                               "-in", str(tmp_path / "material"))
    return wrapped_key + wrapped_material


def import_into(aws, tmp_path, key, algorithm, material, wrapping_spec="RSA_2048", **extra):
    params = aws.get_parameters_for_import(KeyId=key, WrappingAlgorithm=algorithm, WrappingKeySpec=wrapping_spec)
    wrapped = wrap_with_openssl(tmp_path, params["PublicKey"], algorithm, material)
    aws.import_key_material(KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped, **extra)
    return params


@pytest.mark.parametrize("algorithm", ["RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_256", "RSAES_OAEP_SHA_1"])
def test_symmetric_material_wrapped_by_openssl_imports(aws, tmp_path, algorithm):
    meta = aws.create_key(Origin="EXTERNAL")["KeyMetadata"]
    assert (meta["KeyState"], meta["Origin"]) == ("PendingImport", "EXTERNAL")
    key = meta["Arn"]
    material = os.urandom(32)
    import_into(aws, tmp_path, key, algorithm, material, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    meta = aws.describe_key(KeyId=key)["KeyMetadata"]
    assert (meta["KeyState"], meta["ExpirationModel"]) == ("Enabled", "KEY_MATERIAL_DOES_NOT_EXPIRE")
    blob = aws.encrypt(KeyId=key, Plaintext=b"byok")["CiphertextBlob"]
    assert aws.decrypt(CiphertextBlob=blob)["Plaintext"] == b"byok"

    # Other material, a changed token, another key's token: each refused as AWS names it.
    params = aws.get_parameters_for_import(KeyId=key, WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_2048")
    other = wrap_with_openssl(tmp_path, params["PublicKey"], algorithm, os.urandom(32))
    assert aws_error(lambda: aws.import_key_material(
        KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=other,
        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")) == "IncorrectKeyMaterialException"
    same = wrap_with_openssl(tmp_path, params["PublicKey"], algorithm, material)
    token = bytearray(params["ImportToken"])
    token[30] ^= 1
    assert aws_error(lambda: aws.import_key_material(
        KeyId=key, ImportToken=bytes(token), EncryptedKeyMaterial=same,
        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")) == "InvalidImportTokenException"
    stranger = aws.create_key(Origin="EXTERNAL")["KeyMetadata"]["Arn"]
    assert aws_error(lambda: aws.import_key_material(
        KeyId=stranger, ImportToken=params["ImportToken"], EncryptedKeyMaterial=same,
        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")) == "InvalidImportTokenException"
    altered = same[:-1] + bytes([same[-1] ^ 1])
    assert aws_error(lambda: aws.import_key_material(
        KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=altered,
        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")) == "InvalidCiphertextException"

    # Deleted, then the same material again: the old blob opens.
    aws.delete_imported_key_material(KeyId=key)
    assert aws.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingImport"
    assert aws_error(lambda: aws.decrypt(CiphertextBlob=blob)) == "KMSInvalidStateException"
    import_into(aws, tmp_path, key, algorithm, material, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert aws.decrypt(CiphertextBlob=blob)["Plaintext"] == b"byok"


def test_an_imported_hmac_key_macs_as_pythons_hmac(aws, tmp_path):
    import hmac

    key = aws.create_key(KeySpec="HMAC_384", KeyUsage="GENERATE_VERIFY_MAC", Origin="EXTERNAL")["KeyMetadata"]["Arn"]
    material = os.urandom(64)
    import_into(aws, tmp_path, key, "RSAES_OAEP_SHA_256", material)
    message = b"card 4111 1111 1111 1111"
    made = aws.generate_mac(KeyId=key, Message=message, MacAlgorithm="HMAC_SHA_384")["Mac"]
    assert made == hmac.new(material, message, hashlib.sha384).digest()
    assert aws.verify_mac(KeyId=key, Message=message, Mac=made, MacAlgorithm="HMAC_SHA_384")["MacValid"]
    changed = made[:-1] + bytes([made[-1] ^ 0x80])
    assert aws_error(lambda: aws.verify_mac(
        KeyId=key, Message=message, Mac=changed, MacAlgorithm="HMAC_SHA_384")) == "KMSInvalidMacException"


@pytest.mark.parametrize("spec,algorithm,private_key", [
    ("ECC_NIST_P256", "ECDSA_SHA_256", lambda: ec.generate_private_key(ec.SECP256R1())),
    ("ECC_NIST_P384", "ECDSA_SHA_384", lambda: ec.generate_private_key(ec.SECP384R1())),
    ("ECC_NIST_P521", "ECDSA_SHA_512", lambda: ec.generate_private_key(ec.SECP521R1())),
    ("ECC_SECG_P256K1", "ECDSA_SHA_256", lambda: ec.generate_private_key(ec.SECP256K1())),
    ("RSA_2048", "RSASSA_PSS_SHA_256", lambda: rsa.generate_private_key(65537, 2048)),
    ("RSA_3072", "RSASSA_PKCS1_V1_5_SHA_384", lambda: rsa.generate_private_key(65537, 3072)),
    ("RSA_4096", "RSASSA_PSS_SHA_512", lambda: rsa.generate_private_key(65537, 4096)),
    ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512", ed25519.Ed25519PrivateKey.generate),
    ("ML_DSA_44", "ML_DSA_SHAKE_256", mldsa.MLDSA44PrivateKey.generate),
    ("ML_DSA_65", "ML_DSA_SHAKE_256", mldsa.MLDSA65PrivateKey.generate),
    ("ML_DSA_87", "ML_DSA_SHAKE_256", mldsa.MLDSA87PrivateKey.generate),
])
def test_signatures_made_by_cryptography_with_an_imported_key_verify_in_kmsd(
    aws, tmp_path, spec, algorithm, private_key
):
    private = private_key()
    pkcs8 = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key = aws.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY", Origin="EXTERNAL")["KeyMetadata"]["Arn"]
    import_into(aws, tmp_path, key, "RSA_AES_KEY_WRAP_SHA_256", pkcs8, wrapping_spec="RSA_3072")
    assert aws.get_public_key(KeyId=key)["PublicKey"] == private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    message = os.urandom(100)
    h = hash_of(algorithm)
    if algorithm.startswith("ECDSA"):
        signature = private.sign(message, ec.ECDSA(h))
    elif algorithm.startswith("RSASSA_PSS"):
        signature = private.sign(message, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
    elif algorithm.startswith("RSASSA_PKCS1"):
        signature = private.sign(message, padding.PKCS1v15(), h)
    else:
        signature = private.sign(message)
    assert aws.verify(KeyId=key, Message=message, Signature=signature, SigningAlgorithm=algorithm)["SignatureValid"]
    assert aws_error(lambda: aws.verify(
        KeyId=key, Message=message + b"?", Signature=signature, SigningAlgorithm=algorithm
    )) == "KMSInvalidSignatureException"
    # And the other way round: what kmsd signs with the imported key, the key's owner verifies.
    made = aws.sign(KeyId=key, Message=message, SigningAlgorithm=algorithm)["Signature"]
    verify_with_cryptography(aws.get_public_key(KeyId=key)["PublicKey"], algorithm, message, made)


def test_kmsctl_imports_material_wrapped_by_openssl(kmsd, tmp_path):
    """The README's BYOK session: kmsctl writes the parameters, openssl wraps, kmsctl imports; other material and a
    second key's token are refused; deleting makes the key wait again."""
    import json

    created = json.loads(kmsd.kmsctl("--json", "keys", "create", "--origin", "EXTERNAL").stdout)
    key_id = created["key_id"]
    assert (created["state"], created["origin"]) == ("PENDING_IMPORT", "EXTERNAL")
    material = tmp_path / "material.bin"
    material.write_bytes(os.urandom(32))

    def wrapped(source):
        kmsd.kmsctl("keys", "import-parameters", key_id, "--out", str(tmp_path))
        out = tmp_path / (source.name + ".wrapped")
        openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", str(tmp_path / "wrapping-key.pem"), "-in", str(source),
                "-out", str(out), "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                "-pkeyopt", "rsa_mgf1_md:sha256")
        return out

    done = kmsd.kmsctl("--json", "keys", "import", key_id, "--import-token", str(tmp_path / "import-token.bin"),
                       "--material", str(wrapped(material)), "--valid-to", "2099-01-01T00:00:00Z", check=False)
    # 2099 is more than 365 days away: refused, as AWS refuses it.
    assert done.returncode == 1 and b"365 days" in done.stderr, done
    imported = json.loads(kmsd.kmsctl("--json", "keys", "import", key_id, "--import-token",
                                      str(tmp_path / "import-token.bin"), "--material",
                                      str(wrapped(material))).stdout)
    assert (imported["state"], imported["expiration_model"]) == ("ENABLED", "KEY_MATERIAL_DOES_NOT_EXPIRE")
    blob = kmsd.kmsctl("encrypt", "--key", key_id, input=b"mine").stdout

    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(32))
    refused = kmsd.kmsctl("keys", "import", key_id, "--import-token", str(tmp_path / "import-token.bin"),
                          "--material", str(wrapped(other)), check=False)
    assert refused.returncode == 1 and b"IncorrectKeyMaterial" in refused.stderr, refused

    deleted = json.loads(kmsd.kmsctl("--json", "keys", "delete-imported", key_id).stdout)
    assert deleted["state"] == "PENDING_IMPORT"
    assert kmsd.kmsctl("decrypt", input=blob, check=False).returncode == 1
    kmsd.kmsctl("keys", "import", key_id, "--import-token", str(tmp_path / "import-token.bin"),
                "--material", str(wrapped(material)))
    assert kmsd.kmsctl("decrypt", input=blob).stdout == b"mine"
