"""An HTTP proxy on 127.0.0.1 that injects faults between a client and a registry.

Point the client at ``proxy.host`` instead of the registry; requests are
forwarded (Host header unchanged, so the registry's Location URLs point back at
the proxy) and responses streamed back, unless a rule matches:

```python
proxy = FaultProxy(upstream="127.0.0.1:5000").start()
proxy.add(Fault("drop", match=r"/blobs/sha256:", after=1000))   # close mid-body once
proxy.add(Fault("status", status=503, count=2))                 # two 503s
proxy.add(Fault("status", status=429, retry_after="1"))
proxy.add(Fault("corrupt", match=r"/blobs/"))                   # flip one byte
proxy.add(Fault("truncate", match=r"/blobs/", after=10))        # short body, honest length
proxy.add(Fault("ignore_range"))                                # answer 200 to Range requests
```

Every request is recorded in ``proxy.log`` (method, path, Range header, status).
"""

from __future__ import annotations

import contextlib
import http.client
import random
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Fault", "FaultProxy", "Logged"]

_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}
)


class _QuietServer(ThreadingHTTPServer):
    """Dropped and reset connections are what this proxy is for: do not print them."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


@dataclass
class Fault:
    """One fault: ``kind`` applies to the next ``count`` requests matching ``method``/``match``.

    kinds: ``status`` (answer ``status`` without forwarding, with ``retry_after``),
    ``drop`` (send headers and ``after`` body bytes, then close the connection),
    ``truncate`` (send only ``after`` body bytes with a matching Content-Length),
    ``corrupt`` (flip the byte at ``after`` of the body), ``ignore_range`` (strip the
    request's Range header so the registry answers 200), ``reset`` (close the
    connection without answering), ``cut_request`` (forward the request with only
    ``after`` bytes of its body, then close both connections: the registry saw part of
    an upload), ``redirect`` (answer 307 to a fake blob storage on
    another port, which logs the headers it receives in ``storage_log``), ``add_header``
    (add ``header`` to the forwarded response), ``strip_header`` (remove the header
    named ``header[0]`` from it).
    """

    kind: str
    match: str = ""
    method: str | None = None
    count: int = 1  # -1: forever
    status: int = 503
    retry_after: str | None = None
    after: int = 0
    #: For ``add_header``: a response header to add, e.g. ``("OCI-Chunk-Min-Length", "65536")``.
    header: tuple[str, str] | None = None
    #: What ``corrupt`` XORs the byte with (1 keeps ASCII text valid UTF-8).
    xor: int = 0xFF
    #: Let this many matching requests through before the fault starts.
    skip: int = 0
    #: Chance that a matching request is hit (the proxy's RNG is seeded: reproducible).
    probability: float = 1.0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.count == 0:
            return False
        if self.method and self.method != method:
            return False
        return re.search(self.match, path) is not None


@dataclass
class Logged:
    method: str
    path: str
    range: str | None
    status: int | None = None
    fault: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Response body bytes sent to the client (to count what a client downloaded).
    sent: int = 0


@dataclass
class FaultProxy:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    log: list[Logged] = field(default_factory=list)
    #: Requests the fake blob storage (another port: another host) received, with headers.
    storage_log: list[dict[str, str]] = field(default_factory=list)
    seed: int = 0
    #: Port to listen on (0: any free port).
    listen_port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)
        self._httpd: ThreadingHTTPServer | None = None
        self._storage: ThreadingHTTPServer | None = None
        self._stored: dict[str, tuple[bytes, list[tuple[str, str]]]] = {}

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.log.clear()

    def _take(
        self, method: str, path: str, kinds: tuple[str, ...], body_len: int | None = None
    ) -> Fault | None:
        with self._lock:
            for f in self.faults:
                # Body faults only apply to bodies long enough to be cut at ``after``.
                if body_len is not None and f.kind in ("drop", "truncate") and body_len <= f.after:
                    continue
                if f.kind in kinds and f.matches(method, path):
                    if f.skip > 0:
                        f.skip -= 1
                        continue
                    if f.probability < 1.0 and self._rng.random() >= f.probability:
                        continue
                    if f.count > 0:
                        f.count -= 1
                    f.hits += 1
                    return f
        return None

    def requests(self, method: str | None = None, match: str = "") -> list[Logged]:
        with self._lock:
            return [
                e
                for e in self.log
                if (method is None or e.method == method) and re.search(match, e.path)
            ]

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self._httpd = _QuietServer(("127.0.0.1", self.listen_port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        for srv in (self._httpd, self._storage):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
        self._httpd = self._storage = None

    def _storage_url(self, key: str) -> str:
        """Start the fake blob storage on first use; the URL that serves ``key``."""
        with self._lock:
            if self._storage is None:
                proxy = self

                class Storage(BaseHTTPRequestHandler):
                    protocol_version = "HTTP/1.1"

                    def log_message(self, format: str, *args: object) -> None:
                        pass

                    def do_GET(self) -> None:
                        with proxy._lock:
                            proxy.storage_log.append(dict(self.headers.items()))
                            item = proxy._stored.get(self.path.rsplit("/", 1)[-1])
                        if item is None:
                            self.send_response(404)
                            self.send_header("Content-Length", "0")
                            self.end_headers()
                            return
                        data, headers = item
                        rng = self.headers.get("Range")
                        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                        self.send_response(206 if rng else 200)
                        for k, v in headers:
                            self.send_header(k, v)
                        if rng:
                            self.send_header(
                                "Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"
                            )
                        self.send_header("Content-Length", str(len(data) - start))
                        self.end_headers()
                        self.wfile.write(data[start:])

                self._storage = _QuietServer(("127.0.0.1", 0), Storage)
                self._storage.daemon_threads = True
                threading.Thread(
                    target=self._storage.serve_forever,
                    kwargs={"poll_interval": 0.05},
                    daemon=True,
                ).start()
            port = self._storage.server_address[1]
        return f"http://127.0.0.1:{port}/_storage/{key}"

    # -- request handling ------------------------------------------------------------

    def _read_body(self, h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                line = h.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(h.rfile.read(size))
                h.rfile.readline()
            return b"".join(parts)
        n = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(n) if n else b""

    def _forward_part(
        self, h: BaseHTTPRequestHandler, method: str, path: str, body: bytes, n: int
    ) -> None:
        """Send the request upstream with its full Content-Length but ``n`` body bytes."""
        host, _, port = self.upstream.rpartition(":")
        head = [f"{method} {path} HTTP/1.1"]
        for k, v in h.headers.items():
            if k.lower() not in _HOP and k.lower() != "content-length":
                head.append(f"{k}: {v}")
        head.append(f"Content-Length: {len(body)}")
        with socket.create_connection((host, int(port)), timeout=30) as up:
            up.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body[:n])
            # Give the registry time to take in what it got before the connection drops.
            with contextlib.suppress(OSError):
                up.settimeout(0.3)
                up.recv(1)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        method, path = h.command, h.path
        entry = Logged(method, path, h.headers.get("Range"), headers=dict(h.headers.items()))
        with self._lock:
            self.log.append(entry)
        body = self._read_body(h)

        if self._take(method, path, ("reset",)):
            entry.fault = "reset"
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        cut = self._take(method, path, ("cut_request",))
        if cut is not None:
            entry.fault = "cut_request"
            self._forward_part(h, method, path, body, cut.after)
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        fault = self._take(method, path, ("status",))
        if fault is not None:
            entry.status, entry.fault = fault.status, "status"
            payload = (
                b'{"errors":[{"code":"UNAVAILABLE","message":"injected by faultproxy"}]}'
                if fault.status != 429
                else b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
            )
            h.send_response(fault.status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            if fault.retry_after is not None:
                h.send_header("Retry-After", fault.retry_after)
            h.end_headers()
            if method != "HEAD":
                h.wfile.write(payload)
            return

        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        if self._take(method, path, ("ignore_range",)) and "Range" in headers:
            headers.pop("Range")
            entry.fault = "ignore_range"
        headers["Content-Length"] = str(len(body))
        if method in ("GET", "HEAD", "DELETE") and not body:
            headers.pop("Content-Length")
        up_host, _, up_port = self.upstream.rpartition(":")
        conn = http.client.HTTPConnection(up_host, int(up_port), timeout=60)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            entry.status = resp.status
            length = resp.getheader("Content-Length")
            data = resp.read() if method != "HEAD" else b""
            mutate = (
                None
                if method == "HEAD"
                else self._take(method, path, ("drop", "truncate", "corrupt"), len(data))
            )
            redirecting = (
                mutate is None
                and resp.status == 200
                and method == "GET"
                and any(f.kind == "redirect" and f.matches(method, path) for f in self.faults)
            )
            if redirecting:
                h.send_response_only(307, "Temporary Redirect")
            else:
                h.send_response_only(resp.status, resp.reason)
            extra = self._take(method, path, ("add_header",))
            if extra is not None and extra.header is not None:
                h.send_header(*extra.header)
            strip = self._take(method, path, ("strip_header",))
            stripped = strip.header[0].lower() if strip is not None and strip.header else None
            for k, v in resp.getheaders():
                if redirecting:
                    break
                if k.lower() == stripped:
                    continue
                if k.lower() in _HOP or k.lower() == "content-length":
                    continue
                h.send_header(k, v)
            if mutate is not None:
                entry.fault = mutate.kind
                if mutate.kind == "truncate":
                    data = data[: mutate.after]
                elif mutate.kind == "corrupt" and data:
                    i = min(mutate.after, len(data) - 1)
                    data = data[:i] + bytes([data[i] ^ mutate.xor]) + data[i + 1 :]
            if mutate is None and resp.status == 200 and method == "GET":
                redirect = self._take(method, path, ("redirect",))
                if redirect is not None:
                    entry.fault = "redirect"
                    key = f"{len(self._stored)}-{abs(hash(path))}"
                    kept = [(k, v) for k, v in resp.getheaders() if k.lower() == "content-type"]
                    with self._lock:
                        self._stored[key] = (data, kept)
                    h.send_header("Location", self._storage_url(key))
                    h.send_header("Content-Length", "0")
                    h.end_headers()
                    return
            if method == "HEAD":
                h.send_header("Content-Length", length or "0")
            else:
                h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if mutate is not None and mutate.kind == "drop":
                h.wfile.write(data[: mutate.after])
                entry.sent = len(data[: mutate.after])
                h.wfile.flush()
                h.close_connection = True
                with contextlib.suppress(OSError):
                    h.connection.shutdown(socket.SHUT_RDWR)
                return
            if data:
                h.wfile.write(data)
                entry.sent = len(data)
        finally:
            conn.close()
