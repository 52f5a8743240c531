"""A fault-injecting HTTP proxy on 127.0.0.1, put in front of the moto server.

Each request is forwarded to the upstream server unless a fault is drawn for it (seeded, so a
run is repeatable). Faults, as S3 and networks produce them:

* ``500``: InternalError; ``503``: ServiceUnavailable; ``slowdown``: 503 SlowDown (throttling);
* ``drop``: the connection is closed without an answer, before the request reaches the server;
* ``lost``: the request reaches the server and takes effect, but the answer is lost (the
  connection is closed). A retried conditional write then meets its own first attempt.

``only`` limits the faults to requests whose path contains that string (say ``_MANIFEST.json``).
``drop_headers`` removes request headers before forwarding, as a server that does not support
them would ignore them (``{"If-None-Match"}``: a store without conditional writes).
"""

from __future__ import annotations

import http.client
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

_ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "ServiceUnavailable", "Service is unable to handle request."),
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
}
FAULTS = (*_ERRORS, "drop", "lost")


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        rates: dict[str, float] | None = None,
        *,
        seed: int = 0,
        only: str = "",
        drop_headers: set[str] = frozenset(),
    ):
        self.upstream = urlparse(upstream)
        self.drop_headers = {"connection", "expect", *(h.lower() for h in drop_headers)}
        self.rates = dict(rates or {})
        unknown = set(self.rates) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
        self.only = only
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()  # "forwarded" and each fault injected
        self.paths: list[str] = []  # of every request received, in order
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def configure(self, rates: dict[str, float], only: str = "") -> None:
        with self.lock:
            self.rates, self.only = dict(rates), only

    def _draw(self, path: str) -> str | None:
        with self.lock:
            if self.only and self.only not in path:
                return None
            x = self.rng.random()
            for fault, rate in self.rates.items():
                if x < rate:
                    self.counts[fault] += 1
                    return fault
                x -= rate
            return None

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    del self.headers["Transfer-Encoding"]
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _relay(self):
                body = self._body()
                with proxy.lock:
                    proxy.paths.append(self.path)
                    proxy.requests.append((self.command, self.path))
                fault = proxy._draw(self.path)
                if fault in _ERRORS:
                    status, code, message = _ERRORS[fault]
                    payload = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                if fault == "drop":
                    self.close_connection = True
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in proxy.drop_headers}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                if fault == "lost":
                    self.close_connection = True
                    return
                with proxy.lock:
                    proxy.counts["forwarded"] += 1
                    if self.command == "GET":
                        proxy.counts["bytes_sent"] += len(data)  # what the client downloaded
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        return Handler

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
