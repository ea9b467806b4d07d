"""The S3 store (``_core.Store`` on ``s3://``) against a real S3 protocol server.

Session fixtures start ``moto_server`` on 127.0.0.1 (free ports): one open to any
credentials, one with IAM authentication enforced so that the server checks SigV4 signatures
and rejects unknown keys. If a server cannot start, the tests FAIL: they never pass without
having talked to S3.

The generic tests run on both the local and the S3 store (one conformance suite, design §6 /
style item 2). The fault-injection test puts a small threaded HTTP proxy between the store and
the server that answers 500/503, resets connections (before or after forwarding, or in the
middle of an upload) and truncates responses for a seeded fraction of requests.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import http.server
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest

from images_to_zarr import _core

pytestmark = pytest.mark.s3

BUCKET = "i2z-test"
MIB = 1 << 20
SECRET_CANARY = "wrong-secret-must-not-leak-0123456789"


# ----------------------------------------------------------------------------------------------
# moto_server fixture


@dataclass
class S3Server:
    endpoint: str
    port: int
    key: str
    secret: str
    bucket: str

    def options(self, **extra: str) -> dict[str, str]:
        opts = {
            "endpoint_url": self.endpoint,
            "key": self.key,
            "secret": self.secret,
            "region": "us-east-1",
            "retry_base_ms": "5",
        }
        opts.update({k: str(v) for k, v in extra.items()})
        return opts

    def store(self, prefix: str, **extra: str):
        return _core.Store.open(f"s3://{self.bucket}/{prefix}", self.options(**extra))

    def boto(self):
        import boto3  # installed with moto[server]

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(proc: subprocess.Popen, url: str, log_path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                pytest.fail(f"moto_server exited with status {proc.returncode}:\n{f.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.2)
    pytest.fail(f"moto_server did not answer at {url} within {timeout:.0f} s")


@contextlib.contextmanager
def _moto_server(tmp_path_factory, enforce_auth: bool):
    exe = shutil.which("moto_server")
    if exe is None:
        pytest.fail("moto_server is not installed: pip install 'moto[server]'")
    try:
        import boto3  # installed with moto[server]
    except ImportError:
        pytest.fail("boto3 is missing: pip install 'moto[server]'")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = str(tmp_path_factory.mktemp("moto") / "moto_server.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_for_server(proc, endpoint + "/moto-api/", log_path)
        # While authentication is off: a user allowed everything, its key, and the bucket.
        anyone = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
        iam = boto3.client("iam", **anyone)
        iam.create_user(UserName="i2z")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="i2z", PolicyName="all", PolicyDocument=json.dumps(policy))
        ak = iam.create_access_key(UserName="i2z")["AccessKey"]
        server = S3Server(endpoint, port, ak["AccessKeyId"], ak["SecretAccessKey"], BUCKET)
        server.boto().create_bucket(Bucket=BUCKET)
        if enforce_auth:
            # From now on every request must carry a valid signature of a known key.
            req = urllib.request.Request(
                endpoint + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                assert json.load(r)["status"] == "ok"
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session", autouse=True)
def _loopback_without_proxy():
    # Loopback only: make sure no proxy from the environment is used by libcurl or urllib.
    saved = {k: os.environ.get(k) for k in ("NO_PROXY", "no_proxy")}
    for k in saved:
        os.environ[k] = "127.0.0.1,localhost" + ("," + saved[k] if saved[k] else "")
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto_server accepting any credentials (it then does not check signatures)."""
    with _moto_server(tmp_path_factory, enforce_auth=False) as server:
        yield server


@pytest.fixture(scope="session")
def s3_auth_server(tmp_path_factory):
    """moto_server with IAM authentication: unknown keys and bad signatures get 403.

    moto recomputes the signature from the URL as its web framework decoded it, so it rejects
    valid signatures of URLs with percent-encoded characters (a query value with '/', a key
    with a space): boto3 fails there too. Tests on this server use plain keys and the bucket
    root; the signer itself is checked against the AWS example vectors in test_s3.cpp.
    """
    with _moto_server(tmp_path_factory, enforce_auth=True) as server:
        yield server


def _prefix(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}/x.zarr"


@pytest.fixture(params=["local", "s3"])
def any_store(request, tmp_path):
    """A fresh, empty store of each backend."""
    if request.param == "local":
        return _core.Store.open(str(tmp_path / "x.zarr"))
    return request.getfixturevalue("s3_server").store(_prefix(request.node.name[:20]), list_max_keys=7)


def _payload(n: int, seed: int) -> bytes:
    """Smooth-ish bytes (a ramp plus noise): not all-random, not all-equal."""
    rng = random.Random(seed)
    return bytes(((i * 7) // 5 + rng.randrange(8)) & 0xFF for i in range(n))


# ----------------------------------------------------------------------------------------------
# Conformance: the same behaviour from every store

KEYS = [
    "zarr.json",
    "images/zarr.json",
    "images/c/0/0/0/0",
    "images/c/1/0/0/0",
    "dir with space/\u00e9t\u00e9 \u20ac.bin",
    "odd/a+b=c&d;e,f@g$h~i!'()*",
    "odd/percent%20not-decoded",
]


def test_set_get_size_exists(any_store):
    s = any_store
    for i, k in enumerate(KEYS):
        s.set(k, _payload(100 + 37 * i, i))
    s.set("empty", b"")
    for i, k in enumerate(KEYS):
        assert s.get(k) == _payload(100 + 37 * i, i), k
        assert s.size(k) == 100 + 37 * i
        assert s.exists(k)
    assert s.get("empty") == b""
    assert s.size("empty") == 0
    assert s.get("missing") is None
    assert s.get("images/c/9/0/0/0") is None
    assert s.size("missing") is None
    assert not s.exists("missing")


def test_overwrite_and_erase(any_store):
    s = any_store
    s.set("k", b"old value")
    s.set("k", b"new")
    assert s.get("k") == b"new"
    s.erase("k")
    assert s.get("k") is None
    s.erase("k")  # missing: no error
    s.erase("never/existed")


def test_ranges_and_suffixes(any_store):
    s = any_store
    data = _payload(1000, 1)
    s.set("obj", data)
    s.set("empty", b"")
    assert s.get_range("obj", 0, 10) == data[:10]
    assert s.get_range("obj", 123, 456) == data[123:579]
    assert s.get_range("obj", 990, 100) == data[990:]
    assert s.get_range("obj", 999, 1) == data[999:]
    assert s.get_range("obj", 1000, 5) == b""
    assert s.get_range("obj", 5000, 5) == b""
    assert s.get_range("obj", 5, 0) == b""
    assert s.get_range("obj", 7, 2**64 - 1) == data[7:]
    assert s.get_suffix("obj", 10) == data[-10:]
    assert s.get_suffix("obj", 1000) == data
    assert s.get_suffix("obj", 5000) == data
    assert s.get_suffix("obj", 0) == b""
    assert s.get_range("empty", 0, 10) == b""
    assert s.get_suffix("empty", 3) == b""
    assert s.get_range("missing", 0, 10) is None
    assert s.get_range("missing", 0, 0) is None
    assert s.get_suffix("missing", 10) is None
    assert s.get_suffix("missing", 0) is None


def test_list_is_recursive_sorted_and_relative(any_store):
    s = any_store
    keys = [f"images/c/{i}/0/0/0" for i in range(23)] + KEYS + ["imagesX/not-under-images"]
    for k in keys:
        s.set(k, k.encode())
    assert s.list("") == sorted(set(keys))
    assert s.list() == sorted(set(keys))
    assert s.list("images") == sorted(k for k in set(keys) if k.startswith("images/"))
    assert s.list("images/") == s.list("images")
    assert s.list("images/c/1") == ["images/c/1/0/0/0"]
    assert s.list("nothing-here") == []
    assert s.list("zarr.json") == []  # an object is not a folder


def test_writer_streams_and_is_invisible_until_commit(any_store):
    s = any_store
    w = s.open_writer("images/c/0/0/0/0")
    w.write(b"abc")
    w.write(b"")
    w.write(_payload(5000, 2))
    assert w.size == 5003
    assert not s.exists("images/c/0/0/0/0")
    assert s.list("images") == []
    w.commit()
    assert s.get("images/c/0/0/0/0") == b"abc" + _payload(5000, 2)
    w2 = s.open_writer("discarded")
    w2.write(b"x" * 100)
    w2.discard()
    assert s.get("discarded") is None


# ----------------------------------------------------------------------------------------------
# S3 specifics


def test_store_root_prefix_and_describe(s3_server):
    pre = _prefix("root")
    s = s3_server.store(pre)
    assert s.describe() == f"s3://{BUCKET}/{pre}"
    s.set("a/b", b"1")
    sibling = s3_server.store(pre + "2")  # ".../x.zarr2" shares the string prefix, not the folder
    sibling.set("a/c", b"2")
    assert s.list() == ["a/b"]
    assert sibling.list() == ["a/c"]
    obj = s3_server.boto().get_object(Bucket=BUCKET, Key=f"{pre}/a/b")
    assert obj["Body"].read() == b"1"
    # A trailing slash in the URL names the same root.
    assert s3_server.store(pre + "/").get("a/b") == b"1"


def test_listing_paginates(s3_server):
    s = s3_server.store(_prefix("pages"), list_max_keys=3)
    keys = [f"c/{i:03d}" for i in range(20)]
    for k in keys:
        s.set(k, b"")
    assert s.list() == keys
    assert s3_server.store(s.describe().split("/", 3)[3], list_max_keys=1000).list("c") == keys


def _upload_count(srv: S3Server, key: str) -> int:
    """Unfinished multipart uploads of one key, asked of the server with its own client."""
    return sum(1 for u in srv.boto().list_multipart_uploads(Bucket=srv.bucket).get("Uploads", []) if u["Key"] == key)


def test_multipart_upload_through_writer(s3_server):
    pre = _prefix("multipart")
    s = s3_server.store(pre, part_size=5 * MIB, max_concurrency=2)
    data = _payload(3 * MIB, 3) * 4 + b"tail"  # 12 MiB + 4 bytes: parts of 5, 5 and 2 MiB
    w = s.open_writer("images/c/0/0/0/0")
    step = MIB + 3  # writes that do not line up with part boundaries
    for i in range(0, len(data), step):
        w.write(data[i : i + step])
    assert w.size == len(data)
    assert not s.exists("images/c/0/0/0/0")
    w.commit()
    assert s.size("images/c/0/0/0/0") == len(data)
    assert s.get("images/c/0/0/0/0") == data
    assert s.get_range("images/c/0/0/0/0", 5 * MIB - 10, 20) == data[5 * MIB - 10 : 5 * MIB + 10]
    assert s.get_suffix("images/c/0/0/0/0", 100) == data[-100:]
    head = s3_server.boto().head_object(Bucket=BUCKET, Key=f"{pre}/images/c/0/0/0/0")
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # really a 3-part upload
    # set() of a large value is a multipart upload too, and still atomic.
    s.set("big", data[: 6 * MIB])
    assert s.get("big") == data[: 6 * MIB]


def test_small_object_through_writer_is_one_put(s3_server):
    pre = _prefix("small")
    s = s3_server.store(pre)
    w = s.open_writer("zarr.json")
    w.write(b'{"zarr_format": 3}')
    w.commit()
    etag = s3_server.boto().head_object(Bucket=BUCKET, Key=f"{pre}/zarr.json")["ETag"]
    assert "-" not in etag


def test_discarded_multipart_writer_aborts_its_upload(s3_server):
    pre = _prefix("abort")
    s = s3_server.store(pre, part_size=5 * MIB)
    w = s.open_writer("shard")
    w.write(_payload(MIB, 4) * 11)  # two parts sent, one buffered
    assert _upload_count(s3_server, f"{pre}/shard") == 1
    w.discard()
    assert s.get("shard") is None
    assert _upload_count(s3_server, f"{pre}/shard") == 0


def test_remove_incomplete_aborts_dead_uploads_under_the_root_only(s3_server):
    pre = _prefix("dead")
    b = s3_server.boto()
    mine = b.create_multipart_upload(Bucket=BUCKET, Key=f"{pre}/images/c/0/0/0/0")["UploadId"]
    other = b.create_multipart_upload(Bucket=BUCKET, Key=f"{pre}-other/shard")["UploadId"]
    s3_server.store(pre, list_max_keys=1).remove_incomplete()
    assert _upload_count(s3_server, f"{pre}/images/c/0/0/0/0") == 0
    assert _upload_count(s3_server, f"{pre}-other/shard") == 1
    b.abort_multipart_upload(Bucket=BUCKET, Key=f"{pre}-other/shard", UploadId=other)
    del mine


def test_missing_bucket_is_file_not_found(s3_server):
    s = _core.Store.open("s3://no-such-bucket-i2z/x.zarr", s3_server.options())
    with pytest.raises(FileNotFoundError, match="no-such-bucket-i2z"):
        s.set("zarr.json", b"{}")
    with pytest.raises(FileNotFoundError, match="no-such-bucket-i2z"):
        s.get("zarr.json")


# ----------------------------------------------------------------------------------------------
# Fault injection


class FaultProxy:
    """HTTP proxy on loopback that misbehaves for a seeded fraction of requests."""

    KINDS = ("http500", "http503", "reset_before", "reset_after", "truncate", "reset_mid_upload")

    def __init__(self, upstream_port: int, fault_rate: float, seed: int, deny: bool = False):
        self.upstream_port = upstream_port
        self.deny = deny
        self.fault_rate = fault_rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = 0
        self.faults: Counter[str] = Counter()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reset(self):
                # Close with RST: the client sees "connection reset" / "empty reply".
                self.close_connection = True
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()

            def _reply(self, status, headers, body, truncate=False):
                self.send_response_only(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body[: len(body) // 2] if truncate else body)
                self.wfile.flush()
                if truncate:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                kind = proxy.decide(self.command, length)
                if kind == "reset_mid_upload":
                    self.rfile.read(length // 2)
                    return self._reset()
                body = self.rfile.read(length) if length else b""
                if proxy.deny:
                    kind = "http403"
                if kind in ("http500", "http503", "http403"):
                    status, code = {"http500": (500, "InternalError"), "http503": (503, "SlowDown"), "http403": (403, "AccessDenied")}[kind]
                    err = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>injected</Message></Error>"
                    payload = err.encode()
                    return self._reply(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(payload)))], payload)
                if kind == "reset_before":
                    return self._reset()
                status, headers, rbody = proxy.forward(self.command, self.path, self.headers.items(), body)
                if kind == "reset_after":  # the server did the work; the client never hears of it
                    return self._reset()
                out = [(k, v) for k, v in headers if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length")]
                if self.command == "HEAD":
                    out += [(k, v) for k, v in headers if k.lower() == "content-length"]
                else:
                    out.append(("Content-Length", str(len(rbody))))
                self._reply(status, out, rbody, truncate=(kind == "truncate"))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def _eligible(kind: str, method: str, body_length: int) -> bool:
        if kind == "reset_mid_upload":
            return body_length >= 64 * 1024
        if kind == "truncate":
            return method == "GET"  # a response with a body to cut
        return True

    def decide(self, method: str, body_length: int):
        with self.lock:
            self.requests += 1
            if self.fault_rate == 0:
                return None
            # Every kind of fault happens at least once (on the first request it fits), then
            # faults hit a seeded random fraction of the requests.
            for kind in self.KINDS:
                if self.faults[kind] == 0 and self._eligible(kind, method, body_length):
                    break
            else:
                if self.rng.random() >= self.fault_rate:
                    return None
                kinds = [k for k in self.KINDS if self._eligible(k, method, body_length)]
                kind = self.rng.choice(kinds)
            self.faults[kind] += 1
            return kind

    def forward(self, method, path, headers, body):
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=120)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers:
                conn.putheader(k, v)
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            rbody = resp.read()
            return resp.status, resp.getheaders(), rbody
        finally:
            conn.close()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fault_proxy():
    proxies = []

    def make(upstream: S3Server, fault_rate: float, seed: int, deny: bool = False) -> FaultProxy:
        p = FaultProxy(upstream.port, fault_rate, seed, deny)
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.close()


def test_faults_are_retried_and_bytes_stay_exact(s3_server, fault_proxy):
    proxy = fault_proxy(s3_server, fault_rate=0.25, seed=20261129)
    pre = _prefix("faults")
    opts = dict(part_size=5 * MIB, max_concurrency=3, list_max_keys=5, max_retries=14)
    flaky = _core.Store.open(
        f"s3://{BUCKET}/{pre}", s3_server.options(**opts) | {"endpoint_url": f"http://127.0.0.1:{proxy.port}"}
    )
    direct = s3_server.store(pre)
    rng = random.Random(7)
    objects = {f"images/c/{i}/0/0/0": _payload(rng.choice([0, 1, 100, 4096, 70_000, 300_000]), i) for i in range(40)}
    objects["big/a"] = _payload(MIB, 1) * 11 + b"!"  # multipart: 3 parts
    objects["big/b"] = _payload(MIB, 2) * 6

    def put(item):
        k, v = item
        if len(v) > 5 * MIB:
            w = flaky.open_writer(k)
            for i in range(0, len(v), 700_001):
                w.write(v[i : i + 700_001])
            w.commit()
        else:
            flaky.set(k, v)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(put, objects.items()))
        assert flaky.list() == sorted(objects)
        got = dict(zip(objects, pool.map(flaky.get, objects)))
    for k, v in objects.items():
        assert got[k] == v, k
        assert direct.get(k) == v, k
        assert flaky.size(k) == len(v)
        assert flaky.get_range(k, 3, 5000) == v[3:5003]
        assert flaky.get_suffix(k, 777) == v[-777:] if v else flaky.get_suffix(k, 777) == b""
    for k in list(objects)[:10]:
        flaky.erase(k)
        assert direct.get(k) is None
    # The test only means something if the proxy really misbehaved, in every way.
    assert proxy.requests > 150, proxy.requests
    assert sum(proxy.faults.values()) > 30, proxy.faults
    assert set(proxy.faults) == set(FaultProxy.KINDS), proxy.faults


# ----------------------------------------------------------------------------------------------
# Credentials (server checks signatures)


def test_signed_requests_are_accepted_by_a_verifying_server(s3_auth_server):
    root = _core.Store.open(f"s3://{BUCKET}", s3_auth_server.options(part_size=5 * MIB))
    s = s3_auth_server.store("signed/x.zarr", part_size=5 * MIB)
    data = _payload(300_000, 9)
    s.set("images/c/0/0/0/0", data)
    assert s.get("images/c/0/0/0/0") == data
    assert s.get_range("images/c/0/0/0/0", 10, 20) == data[10:30]
    assert s.get_suffix("images/c/0/0/0/0", 20) == data[-20:]
    assert s.size("images/c/0/0/0/0") == len(data)
    assert s.get("missing") is None
    big = _payload(MIB, 10) * 6
    w = s.open_writer("images/c/1/0/0/0")
    w.write(big)
    w.commit()
    assert s.get("images/c/1/0/0/0") == big
    assert root.list() == ["signed/x.zarr/images/c/0/0/0/0", "signed/x.zarr/images/c/1/0/0/0"]
    s.erase("images/c/0/0/0/0")
    assert s.get("images/c/0/0/0/0") is None


@pytest.mark.parametrize("which", ["unknown key", "wrong secret"])
def test_wrong_credentials_one_clear_error_no_retry_no_secret(s3_auth_server, fault_proxy, which):
    srv = s3_auth_server
    proxy = fault_proxy(srv, fault_rate=0.0, seed=0)  # counts requests
    o = srv.options(part_size=5 * MIB) | {"endpoint_url": f"http://127.0.0.1:{proxy.port}", "secret": SECRET_CANARY}
    if which == "unknown key":
        o["key"] = "AKIAI2ZWRONGKEY00000"
    pre = _prefix("creds")
    bad = _core.Store.open(f"s3://{BUCKET}/{pre}", o)
    for call in (lambda: bad.set("images/zarr.json", b"{}"), lambda: bad.get("images/zarr.json")):
        before = proxy.requests
        with pytest.raises(OSError) as e:
            call()
        msg = str(e.value)
        assert f"s3://{BUCKET}/{pre}/images/zarr.json" in msg, msg
        assert "access denied" in msg and "credentials" in msg, msg
        assert SECRET_CANARY not in msg and srv.secret not in msg, msg
        assert proxy.requests - before == 1  # 403 is not retried
    with pytest.raises(OSError, match="access denied"):
        bad.size("images/zarr.json")
    w = bad.open_writer("images/c/0/0/0/0")
    with pytest.raises(OSError, match="access denied"):
        w.write(_payload(MIB, 11) * 6)  # the multipart upload cannot even start
    with pytest.raises(OSError, match="already failed"):
        w.commit()
    w.discard()
    # Nothing was written.
    assert srv.store(pre).get("images/zarr.json") is None
    assert srv.store(pre).size("images/c/0/0/0/0") is None


def test_anonymous_reads(s3_server, fault_proxy):
    pre = _prefix("anon")
    s3_server.store(pre).set("zarr.json", b'{"zarr_format": 3}')
    s3_server.store(pre).set("private", b"secret data")
    s3_server.boto().put_object_acl(Bucket=BUCKET, Key=f"{pre}/zarr.json", ACL="public-read")
    anon = {"endpoint_url": s3_server.endpoint, "anon": True}
    with pytest.raises(OSError, match="access denied.*anonymous"):
        _core.Store.open(f"s3://{BUCKET}/{pre}", anon).get("private")
    assert _core.Store.open(f"s3://{BUCKET}/{pre}", anon).get("zarr.json") == b'{"zarr_format": 3}'
    # A private bucket answers 403: the message says the request was anonymous.
    denier = fault_proxy(s3_server, fault_rate=0.0, seed=0, deny=True)
    s = _core.Store.open(f"s3://{BUCKET}/{pre}", anon | {"endpoint_url": f"http://127.0.0.1:{denier.port}"})
    with pytest.raises(OSError, match="access denied.*anonymous.*AccessDenied"):
        s.get("zarr.json")


def test_storage_options_errors():
    with pytest.raises(ValueError, match="unknown storage_options key 'colour'"):
        _core.Store.open("s3://b/x.zarr", {"colour": "blue"})
    with pytest.raises(ValueError, match="storage_options apply only to s3://"):
        _core.Store.open("/tmp/x.zarr", {"anon": True})
    with pytest.raises(ValueError, match="s3://bucket"):
        _core.Store.open("gs://b/x.zarr")
    # s3fs spellings are understood.
    s = _core.Store.open(
        "s3://b/x.zarr", {"anon": True, "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-1"}}
    )
    assert s.describe() == "s3://b/x.zarr"
