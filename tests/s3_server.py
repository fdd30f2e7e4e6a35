"""A real S3 endpoint for tests: moto's server on 127.0.0.1, optionally behind a fault injector.

Why a server and not `mock_aws`: the job runs code in subprocesses and Ray workers, which only see
an S3 that listens on a socket, configured the way production is (environment variables read by
botocore). The proxy lets tests make that S3 misbehave the way real S3 does (503 SlowDown, dropped
connections, AccessDenied) deterministically, and count what it injected.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging
import random
import re
import socket
import struct
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable, Literal, NamedTuple

from moto.server import ThreadedMotoServer

REGION = "us-east-1"
DUMMY_KEY = "testing"

SLOW_DOWN_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>fault</RequestId></Error>"
)
ACCESS_DENIED_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message><RequestId>fault</RequestId></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
_NOT_FORWARDED = {"connection", "keep-alive", "proxy-connection", "expect"}

FaultKind = Literal["slowdown", "reset", "forbidden"]


class S3Env(NamedTuple):
    """What the `s3_env` fixture yields: a fresh bucket on the test endpoint."""

    bucket: str
    endpoint: str

    def url(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *(p.strip("/") for p in parts)])

    def env_vars(self) -> dict[str, str]:
        """The variables the job needs (e.g. for a Ray `runtime_env={'env_vars': ...}`)."""
        return s3_env_vars(self.endpoint)


def s3_env_vars(endpoint: str) -> dict[str, str]:
    """Dummy credentials and the endpoint, as botocore (and so s3fs and boto3) read them."""
    return {
        "AWS_ACCESS_KEY_ID": DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
    }


class MotoServer:
    """moto's threaded server on 127.0.0.1 on a free port."""

    def __init__(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> "MotoServer":
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()


@dataclasses.dataclass
class FaultRule:
    """Which requests get which fault.

    A request matches when its method is in `methods` (None: any) and `path_regex` searches its
    path with query string ('/bucket/key?uploadId=...'). Of the matching requests, the first
    `skip` pass, then each is faulted with probability `fraction` (seeded by the proxy) until
    `max_faults` have been injected (None: no limit; use it for permanent faults).
    """

    kind: FaultKind
    methods: frozenset[str] | None = None
    path_regex: str | None = None
    fraction: float = 1.0
    max_faults: int | None = None
    skip: int = 0
    seen: int = 0
    injected: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.path_regex is None or re.search(self.path_regex, path) is not None


class FaultProxy:
    """A threaded HTTP proxy in front of an S3 endpoint that injects faults by rule."""

    def __init__(self, upstream: str, rules: Iterable[FaultRule] = (), seed: int = 0) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.rules: list[FaultRule] = list(rules)
        self.counts: Counter[str] = Counter()
        self.requests = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def set_rules(self, *rules: FaultRule) -> None:
        with self._lock:
            self.rules = list(rules)

    def decide(self, method: str, path: str) -> FaultKind | None:
        """The fault for this request, if any (first matching rule wins); counts it."""
        with self._lock:
            self.requests += 1
            for rule in self.rules:
                if not rule.matches(method, path):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    return None
                if rule.max_faults is not None and rule.injected >= rule.max_faults:
                    return None
                if rule.fraction < 1.0 and self._rng.random() >= rule.fraction:
                    return None
                rule.injected += 1
                self.counts[rule.kind] += 1
                return rule.kind
            return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    raw = bytearray()
                    while True:
                        line = self.rfile.readline()
                        raw += line
                        n = int(line.split(b";")[0].strip(), 16)
                        chunk = self.rfile.read(n + 2)
                        raw += chunk
                        if n == 0:
                            while chunk not in (b"\r\n", b""):
                                chunk = self.rfile.readline()
                                raw += chunk
                            return bytes(raw)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _reset(self) -> None:
                """Close with RST (SO_LINGER 0): the client sees 'connection reset by peer'."""
                self.close_connection = True
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                except OSError:
                    pass

            def _forward(self, body: bytes) -> None:
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    self._relay(conn, body)
                except OSError:
                    self._reset()  # upstream gone (e.g. session teardown): the client sees a reset
                finally:
                    conn.close()

            def _relay(self, conn: http.client.HTTPConnection, body: bytes) -> None:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in _NOT_FORWARDED:
                        conn.putheader(name, value)
                conn.endheaders()
                if body:
                    conn.send(body)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for name, value in resp.getheaders():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _handle(self) -> None:
                body = self._read_body()
                fault = proxy.decide(self.command, self.path)
                if fault == "reset":
                    self._reset()
                elif fault == "slowdown":
                    self._reply(503, SLOW_DOWN_XML)
                elif fault == "forbidden":
                    self._reply(403, ACCESS_DENIED_XML)
                else:
                    self._forward(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler
