#!/usr/bin/env python3
"""Signs AWS KMS requests with botocore's own SigV4 signer, for the verifier's tests (src/aws/sigv4.rs).

    python3 -m venv /tmp/v && /tmp/v/bin/pip install botocore
    /tmp/v/bin/python tests/vectors/sigv4/generate.py > tests/vectors/sigv4/botocore.json

Each vector is a request as it crosses the wire (method, raw path and query, headers, body) with the key that
signed it and the time it was signed at. The output is committed, so the tests need no Python; regenerate it only
to add cases. The credentials are made up.
"""
import base64
import datetime
import json

import botocore
import botocore.auth
import botocore.awsrequest
import botocore.credentials

SIGNED_AT = datetime.datetime(2026, 11, 30, 21, 45, 7)
botocore.auth.get_current_datetime = lambda *args, **kwargs: SIGNED_AT

ACCESS_KEY = "AKIAKMSDEXAMPLE00001"
SECRET = "kmsdExampleSecretKey0000000000000000000a"

CASES = [
    {
        "name": "Encrypt with an alias",
        "target": "TrentService.Encrypt",
        "body": {"KeyId": "alias/app", "Plaintext": base64.b64encode(b"hello").decode()},
    },
    {
        "name": "GenerateDataKey in another region, on another port",
        "target": "TrentService.GenerateDataKey",
        "body": {"KeyId": "arn:aws:kms:eu-west-3:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                 "KeySpec": "AES_256", "EncryptionContext": {"tenant": "t-1", "purpose": "ünïcode"}},
        "region": "eu-west-3",
        "host": "kms.internal:9443",
    },
    {
        "name": "an empty body",
        "target": "TrentService.ListKeys",
        "body": None,
    },
    {
        "name": "a path and a query to canonicalize",
        "target": "TrentService.DescribeKey",
        "body": {"KeyId": "alias/x"},
        "path": "/a%20b/./c/../d~e",
        "query": "b=2&a=1&a=0&c=%2F",
    },
    {
        "name": "extra signed headers, with runs of spaces and a repeated header",
        "target": "TrentService.Decrypt",
        "body": {"CiphertextBlob": base64.b64encode(b"\x01" * 40).decode()},
        "headers": [("X-Kmsd-Note", "  several   spaces  here "), ("X-Kmsd-Multi", "one"), ("X-Kmsd-Multi", "two")],
    },
    {
        "name": "the body's hash as a header",
        "target": "TrentService.GenerateRandom",
        "body": {"NumberOfBytes": 32},
        "content_sha256": True,
    },
]


def vector(case):
    region = case.get("region", "us-east-1")
    host = case.get("host", "127.0.0.1:4599")
    path = case.get("path", "/")
    query = case.get("query", "")
    body = b"" if case["body"] is None else json.dumps(case["body"], separators=(",", ":")).encode()
    headers = botocore.awsrequest.HTTPHeaders()
    headers["Host"] = host
    headers["Content-Type"] = "application/x-amz-json-1.1"
    headers["X-Amz-Target"] = case["target"]
    for name, value in case.get("headers", []):
        headers.add_header(name, value)
    if case.get("content_sha256"):
        import hashlib
        headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    url = f"http://{host}{path}" + (f"?{query}" if query else "")
    request = botocore.awsrequest.AWSRequest(method="POST", url=url, data=body, headers=headers)
    credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET)
    botocore.auth.SigV4Auth(credentials, "kms", region).add_auth(request)
    return {
        "name": case["name"],
        "method": "POST",
        "path": path,
        "query": query,
        "headers": [[name, value] for name, value in request.headers.items()],
        "body_base64": base64.b64encode(body).decode(),
        "access_key_id": ACCESS_KEY,
        "secret": SECRET,
        "region": region,
        "signed_at_unix": int(SIGNED_AT.replace(tzinfo=datetime.timezone.utc).timestamp()),
    }


print(json.dumps({"botocore": botocore.__version__, "vectors": [vector(c) for c in CASES]}, indent=2,
                 ensure_ascii=False))
