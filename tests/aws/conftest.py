"""Fixtures for the AWS endpoint's suite: a real kmsd (the binaries cargo built) on ephemeral loopback ports, an
access key for its administrator, and moto's server as the reference the same parity tests run against.

Run by `cargo test` (tests/it/aws.rs), which passes the binaries as TEST_KMSD_BIN and TEST_KMSCTL_BIN."""

import json
import os
import socket
import subprocess
import time

import boto3
import pytest
from botocore.config import Config

REGION = "us-east-1"
KMSD_ACCOUNT = "000000000000"
MOTO_ACCOUNT = "123456789012"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Kmsd:
    """A kmsd process serving gRPC and the AWS endpoint, both on ports the OS chose."""

    def __init__(self, data_dir, tls=None):
        """`tls`: (certificate, key, CA) PEM paths to serve both APIs over TLS."""
        self.data_dir = str(data_dir)
        self.ca = tls[2] if tls else None
        extra = ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])] if tls else []
        self.log = open(os.path.join(self.data_dir + ".log"), "w+")
        # kmsd refuses KMSD_* variables it does not know: give it none but its own.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KMSD_")}
        self.proc = subprocess.Popen(
            [
                os.environ["TEST_KMSD_BIN"], "serve",
                "--data-dir", self.data_dir,
                "--listen", "127.0.0.1:0",
                "--aws-listen", "127.0.0.1:0",
                "--log-format", "json",
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.grpc, self.aws = self._wait_for_addresses()
        scheme = "https" if tls else "http"
        self.endpoint_url = f"{scheme}://{self.aws}"
        self.grpc_url = f"{scheme}://{self.grpc}"

    def _wait_for_addresses(self):
        deadline = time.monotonic() + 60
        grpc = aws = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("kmsd exited: " + self._log_text())
            for line in self._log_text().splitlines():
                try:
                    # kmsd's JSON log lines carry their fields at the top level.
                    fields = json.loads(line)
                except ValueError:
                    continue
                if "AWS KMS's JSON protocol" in fields.get("message", ""):
                    aws = fields["bound"]
                if fields.get("message") == "kmsd is serving":
                    grpc = fields["local_addr"]
            if grpc and aws:
                return grpc, aws
            time.sleep(0.05)
        raise RuntimeError("kmsd did not start: " + self._log_text())

    def _log_text(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def kmsctl(self, *args, check=True, input=None):
        env = dict(os.environ)
        env["KMSD_ENDPOINT"] = self.grpc_url
        if self.ca:
            env["KMSD_CA_CERT"] = str(self.ca)
        env["KMSD_TOKEN_FILE"] = os.path.join(self.data_dir, "admin.token")
        env.pop("KMSD_TOKEN", None)
        done = subprocess.run(
            [os.environ["TEST_KMSCTL_BIN"], *args], env=env, capture_output=True, input=input
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kmsctl {args} failed: {done.stderr.decode()}")
        return done

    def access_key(self, principal="admin"):
        out = self.kmsctl("--json", "access-keys", "create", principal).stdout
        issued = json.loads(out)
        return issued["access_key_id"], issued["secret_access_key"]

    def records(self, request_id):
        """The audit records of one request, by the request id its answer carried (x-amzn-RequestId)."""
        out = self.kmsctl("--json", "audit", "query", "--request-id", request_id).stdout
        return json.loads(out)["events"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Target:
    """Where the parity suite's calls go: kmsd or moto, with credentials and the account its ARNs carry."""

    def __init__(self, name, endpoint_url, key_id, secret, account):
        self.name = name
        self.endpoint_url = endpoint_url
        self.key_id = key_id
        self.secret = secret
        self.account = account

    def client(self, region=REGION, parameter_validation=True):
        return boto3.client(
            "kms",
            endpoint_url=self.endpoint_url,
            region_name=region,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
            config=Config(retries={"max_attempts": 1}, parameter_validation=parameter_validation),
        )


@pytest.fixture(scope="session")
def kmsd(tmp_path_factory):
    daemon = Kmsd(tmp_path_factory.mktemp("kmsd") / "data")
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session", params=["moto", "kmsd"])
def target(request):
    if request.param == "moto":
        return Target("moto", request.getfixturevalue("moto_server"), "testing", "testing", MOTO_ACCOUNT)
    daemon = request.getfixturevalue("kmsd")
    key_id, secret = daemon.access_key()
    return Target("kmsd", daemon.endpoint_url, key_id, secret, KMSD_ACCOUNT)


@pytest.fixture
def kms(target):
    return target.client()
