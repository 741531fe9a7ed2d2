"""kmsd's AWS endpoint beyond what moto can be compared on: SigV4 refusals, bad input, the audit records of both,
and blobs shared with the gRPC API."""

import base64
import datetime
import json
import subprocess
import uuid
from unittest import mock

import botocore.auth
import pytest
import urllib3
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

JSON = "application/x-amz-json-1.1"
http = urllib3.PoolManager(retries=False)


def send(kmsd, operation, body, key=None, secret=None, region="us-east-1", at=None, edit=None, headers=None):
    """Sends one request as an SDK would, signed with (key, secret) unless key is None; `edit` may change the signed
    request (its headers and body) before it leaves. Returns (HTTP status, JSON body, the request id)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = AWSRequest(
        method="POST",
        url=kmsd.endpoint_url + "/",
        data=raw,
        headers={"Content-Type": JSON, **({"X-Amz-Target": f"TrentService.{operation}"} if operation else {}),
                 **(headers or {})},
    )
    if key is not None:
        when = at or datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: when):
            botocore.auth.SigV4Auth(Credentials(key, secret), "kms", region).add_auth(request)
    prepared = request.prepare()
    out_headers, out_body = dict(prepared.headers), prepared.body
    if edit:
        out_headers, out_body = edit(out_headers, out_body)
    response = http.request("POST", prepared.url, body=out_body, headers=out_headers)
    return response.status, json.loads(response.data or b"{}"), response.headers.get("x-amzn-RequestId")


@pytest.fixture(scope="module")
def admin(kmsd):
    return kmsd.access_key()


@pytest.fixture(scope="module")
def key_arn(kmsd, admin):
    status, created, _ = send(kmsd, "CreateKey", {"Description": "kmsd-only"}, *admin)
    assert status == 200, created
    return created["KeyMetadata"]["Arn"]


def only_record(kmsd, request_id):
    records = kmsd.records(request_id)
    assert len(records) == 1, records
    return records[0]


def test_a_signed_call_is_recorded_with_its_principal_and_access_key(kmsd, admin, key_arn):
    status, out, request_id = send(kmsd, "GenerateDataKey", {"KeyId": key_arn, "KeySpec": "AES_256"}, *admin)
    assert status == 200, out
    assert len(base64.b64decode(out["Plaintext"])) == 32
    record = only_record(kmsd, request_id)
    assert record["event_name"] == "GenerateDataKey"
    assert record["principal"] == "admin"
    assert record["parameters"]["access_key_id"] == admin[0]
    assert record["outcome"] == "success"
    assert out["Plaintext"] not in json.dumps(record)


def test_signature_refusals_are_aws_errors_and_recorded(kmsd, admin, key_arn):
    key, secret = admin
    revoked_key, revoked_secret = kmsd.access_key()
    kmsd.kmsctl("access-keys", "revoke", revoked_key)
    body = {"KeyId": key_arn, "Plaintext": base64.b64encode(b"x").decode()}
    past = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=20)

    def unsign_host(headers, data):
        headers["Authorization"] = headers["Authorization"].replace("SignedHeaders=", "SignedHeaders=x-").replace(
            "host;", "")
        return headers, data

    def tamper(headers, data):
        # The same length, so Content-Length still holds: "x" becomes "y".
        assert b'"eA=="' in data
        return headers, data.replace(b'"eA=="', b'"eQ=="')

    cases = [
        ("wrong secret", dict(key=key, secret="x" * 40), "InvalidSignatureException", key),
        ("unknown access key", dict(key="KMSDAAAAAAAAAAAAAAAA", secret=secret), "UnrecognizedClientException",
         "KMSDAAAAAAAAAAAAAAAA"),
        ("revoked access key", dict(key=revoked_key, secret=revoked_secret), "UnrecognizedClientException",
         revoked_key),
        ("another region", dict(key=key, secret=secret, region="eu-west-1"), "InvalidSignatureException", None),
        ("a clock 20 minutes slow", dict(key=key, secret=secret, at=past), "InvalidSignatureException", None),
        ("host not signed", dict(key=key, secret=secret, edit=unsign_host), "IncompleteSignatureException", None),
        ("body changed after signing", dict(key=key, secret=secret, edit=tamper), "InvalidSignatureException", key),
        ("not signed at all", dict(), "MissingAuthenticationTokenException", None),
    ]
    for name, how, expected, recorded_key in cases:
        status, out, request_id = send(kmsd, "Encrypt", body, **how)
        assert (status, out.get("__type")) == (400, expected), (name, out)
        record = only_record(kmsd, request_id)
        assert record["event_name"] == "Encrypt", name
        assert record["outcome"] == "denied", (name, record)
        assert record["principal"] == "anonymous", name
        if recorded_key:
            assert record["parameters"]["access_key_id"] == recorded_key, (name, record)


@pytest.mark.parametrize(
    "operation, body, expected",
    [
        ("Encrypt", b"{not json", "SerializationException"),
        ("Encrypt", {"KeyId": "alias/x", "Plaintext": "eA==", "Bogus": 1}, "ValidationException"),
        ("Encrypt", {"KeyId": 7, "Plaintext": "eA=="}, "ValidationException"),
        ("Encrypt", {"KeyId": "alias/x", "Plaintext": "not base64!"}, "ValidationException"),
        ("GenerateDataKey", {"KeyId": "alias/x"}, "ValidationException"),
        (None, {}, "UnknownOperationException"),
        ("CreateGrant", {}, "UnsupportedOperationException"),
        ("NoSuchOperation", {}, "UnsupportedOperationException"),
    ],
)
def test_bad_input_is_an_aws_error_and_recorded(kmsd, admin, operation, body, expected):
    status, out, request_id = send(kmsd, operation, body, *admin)
    assert (status, out.get("__type")) == (400, expected), out
    assert out["message"]
    record = only_record(kmsd, request_id)
    assert record["principal"] == "admin"
    assert record["outcome"] == "error"
    if expected == "UnsupportedOperationException":
        assert operation in out["message"]
        assert record["event_name"] == "UnknownMethod"
        assert record["parameters"]["target"] == f"TrentService.{operation}"


def test_an_oversized_body_is_refused_and_recorded(kmsd, admin):
    huge = {"KeyId": "alias/x", "Plaintext": base64.b64encode(b"\0" * (5 << 20)).decode()}
    status, out, request_id = send(kmsd, "Encrypt", huge, *admin)
    assert (status, out.get("__type")) == (400, "ValidationException"), out
    assert "larger than" in out["message"]
    assert only_record(kmsd, request_id)["event_name"] == "Encrypt"
    # The endpoint still serves.
    status, out, _ = send(kmsd, "GenerateRandom", {"NumberOfBytes": 8}, *admin)
    assert status == 200, out


def test_blobs_cross_between_the_grpc_and_aws_apis(kmsd, admin, key_arn, tmp_path):
    key_id = key_arn.rsplit("/", 1)[1]
    plain = tmp_path / "plain"
    plain.write_bytes(b"made over gRPC")
    blob = kmsd.kmsctl("encrypt", "--key", key_id, "--context", "app=interop", "--in", str(plain)).stdout.strip()
    status, out, _ = send(kmsd, "Decrypt", {"CiphertextBlob": blob.decode(), "EncryptionContext": {"app": "interop"}},
                          *admin)
    assert status == 200, out
    assert base64.b64decode(out["Plaintext"]) == b"made over gRPC"
    assert out["KeyId"] == key_arn

    status, out, _ = send(kmsd, "Encrypt", {"KeyId": key_arn, "Plaintext": base64.b64encode(b"made over AWS").decode(),
                                            "EncryptionContext": {"app": "interop"}}, *admin)
    assert status == 200, out
    opened = kmsd.kmsctl("decrypt", "--context", "app=interop", input=out["CiphertextBlob"].encode()).stdout
    assert opened == b"made over AWS"


def make_tls(directory):
    """A CA and a server certificate for 127.0.0.1 and localhost, made with `cryptography`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, issuer, public, signer, ca, names=()):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kmsd test CA")])
    ca = cert(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    server = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), ca_name, key.public_key(),
                  ca_key, False,
                  [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    paths = [directory / "server.crt", directory / "server.key", directory / "ca.crt"]
    paths[0].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


def test_the_aws_endpoint_serves_tls_with_the_grpc_apis_certificate(tmp_path):
    import boto3
    from conftest import Kmsd

    daemon = Kmsd(tmp_path / "data", tls=make_tls(tmp_path))
    try:
        key_id, secret = daemon.access_key()
        assert daemon.endpoint_url.startswith("https://")
        kms = boto3.client("kms", endpoint_url=daemon.endpoint_url, region_name="us-east-1",
                           aws_access_key_id=key_id, aws_secret_access_key=secret, verify=str(daemon.ca))
        meta = kms.create_key()["KeyMetadata"]
        sealed = kms.encrypt(KeyId=meta["Arn"], Plaintext=b"over TLS")
        assert kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"])["Plaintext"] == b"over TLS"
        # Plain HTTP on the TLS port is not served.
        with pytest.raises(Exception):
            urllib3.PoolManager(retries=False, timeout=5).request("POST", f"http://{daemon.aws}/", body=b"{}")
    finally:
        daemon.stop()


def test_cloudtrail_export_names_the_key_by_arn_and_the_access_key(kmsd, admin, key_arn):
    status, out, request_id = send(kmsd, "Encrypt", {"KeyId": key_arn, "Plaintext": "eA=="}, *admin)
    assert status == 200, out
    exported = kmsd.kmsctl("audit", "export", "--format", "cloudtrail", "--request-id", request_id).stdout
    (record,) = json.loads(exported)["Records"]
    assert record["eventName"] == "Encrypt"
    assert record["resources"] == [{"ARN": key_arn, "accountId": "000000000000", "type": "AWS::KMS::Key"}]
    assert record["userIdentity"]["accessKeyId"] == admin[0]
    assert record["userIdentity"]["principalId"] == "admin"
    assert record["awsRegion"] == "us-east-1" and record["recipientAccountId"] == "000000000000"


def test_a_principal_uses_keys_only_as_their_policies_allow(kmsd, admin, key_arn):
    kmsd.kmsctl("principals", "create", "svc")
    svc = kmsd.access_key("svc")
    body = {"KeyId": key_arn, "Plaintext": "eA=="}
    status, out, request_id = send(kmsd, "Encrypt", body, *svc)
    assert (status, out.get("__type")) == (400, "AccessDeniedException"), out
    record = only_record(kmsd, request_id)
    assert (record["principal"], record["outcome"]) == ("svc", "denied")
    status, out, _ = send(kmsd, "ListKeys", {}, *svc)
    assert (status, out.get("__type")) == (400, "AccessDeniedException"), out
    policy = {"statements": [{"principals": ["svc"], "operations": ["Encrypt"]}]}
    status, out, _ = send(kmsd, "PutKeyPolicy", {"KeyId": key_arn, "PolicyName": "default",
                                                 "Policy": json.dumps(policy)}, *admin)
    assert status == 200, out
    status, out, _ = send(kmsd, "Encrypt", body, *svc)
    assert status == 200, out
    status, out, _ = send(kmsd, "Decrypt", {"CiphertextBlob": out["CiphertextBlob"]}, *svc)
    assert (status, out.get("__type")) == (400, "AccessDeniedException"), out
    status, out, _ = send(kmsd, "PutKeyPolicy", {"KeyId": key_arn, "Policy": "{\"Version\": \"2012-10-17\"}"},
                          *admin)
    assert (status, out.get("__type")) == (400, "MalformedPolicyDocumentException"), out
