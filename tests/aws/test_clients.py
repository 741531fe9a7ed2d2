"""The AWS CLI and the AWS Encryption SDK CLI, unchanged, pointed at kmsd by their usual settings."""

import base64
import json
import os
import subprocess
import sys

import pytest

BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def aws_env(kmsd):
    key_id, secret = kmsd.access_key()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=key_id,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_DEFAULT_REGION="us-east-1",
        # How SDKs and tools built on botocore are pointed at another KMS, without a flag.
        AWS_ENDPOINT_URL_KMS=kmsd.endpoint_url,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


def run(env, *args, check=True):
    done = subprocess.run(list(args), env=env, capture_output=True)
    if check:
        assert done.returncode == 0, (args, done.stderr.decode())
    return done


def aws(env, *args, check=True):
    return run(env, os.path.join(BIN, "aws"), "kms", *args, "--endpoint-url", env["AWS_ENDPOINT_URL_KMS"],
               "--output", "text", check=check)


def test_the_aws_cli_encrypts_decrypts_and_makes_data_keys(aws_env, tmp_path):
    key = aws(aws_env, "create-key", "--description", "aws cli", "--query", "KeyMetadata.Arn").stdout.decode().strip()
    assert key.startswith("arn:aws:kms:us-east-1:000000000000:key/")
    plain = tmp_path / "plain"
    plain.write_bytes(b"from the AWS CLI")
    blob = aws(aws_env, "encrypt", "--key-id", key, "--plaintext", f"fileb://{plain}",
               "--encryption-context", "app=cli", "--query", "CiphertextBlob").stdout.strip()
    sealed = tmp_path / "sealed"
    sealed.write_bytes(base64.b64decode(blob))
    opened = aws(aws_env, "decrypt", "--ciphertext-blob", f"fileb://{sealed}", "--encryption-context", "app=cli",
                 "--query", "Plaintext").stdout.strip()
    assert base64.b64decode(opened) == b"from the AWS CLI"
    refused = aws(aws_env, "decrypt", "--ciphertext-blob", f"fileb://{sealed}", check=False)
    assert refused.returncode != 0 and b"InvalidCiphertextException" in refused.stderr
    data_key = aws(aws_env, "generate-data-key", "--key-id", key, "--key-spec", "AES_256",
                   "--query", "Plaintext").stdout.strip()
    assert len(base64.b64decode(data_key)) == 32


def test_the_encryption_sdk_wraps_with_a_kmsd_key_across_rotation_until_disabled(kmsd, aws_env, tmp_path):
    arn = aws(aws_env, "create-key", "--description", "esdk", "--query", "KeyMetadata.Arn").stdout.decode().strip()
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(100_000))

    def esdk(mode, source, target, check=True):
        return run(aws_env, os.path.join(BIN, "aws-encryption-cli"), mode, "--input", str(source), "--output",
                   str(target), "--wrapping-keys", f"key={arn}", "--encryption-context", "purpose=test",
                   "--suppress-metadata", check=check)

    esdk("--encrypt", plain, tmp_path / "v1.enc")
    esdk("--decrypt", tmp_path / "v1.enc", tmp_path / "v1.out")
    assert (tmp_path / "v1.out").read_bytes() == plain.read_bytes()

    kmsd.kmsctl("keys", "rotate", arn.rsplit("/", 1)[1])
    esdk("--encrypt", plain, tmp_path / "v2.enc")
    for made in ["v1", "v2"]:
        esdk("--decrypt", tmp_path / f"{made}.enc", tmp_path / f"{made}.again")
        assert (tmp_path / f"{made}.again").read_bytes() == plain.read_bytes()

    key_id = arn.rsplit("/", 1)[1]
    kmsd.kmsctl("keys", "disable", key_id)
    refused = esdk("--decrypt", tmp_path / "v2.enc", tmp_path / "refused", check=False)
    assert refused.returncode != 0
    assert b"Unable to decrypt any data key" in refused.stderr, refused.stderr
    assert not (tmp_path / "refused").exists()
    # The SDK says only that it could not decrypt; kmsd's log says why.
    out = kmsd.kmsctl("--json", "audit", "query", "--key", key_id, "--event", "Decrypt", "--outcome", "error").stdout
    failures = json.loads(out)["events"]
    assert failures and all("DISABLED" in e["error_message"] for e in failures), failures
