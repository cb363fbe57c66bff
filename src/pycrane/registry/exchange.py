"""One request and its response on the wire: what every route of the registry uses.

:class:`Exchange` is the base of the HTTP handler. It reads the request body
through the strict framing of :mod:`pycrane.registry.framing` and writes every
response with a Content-Length and ``Docker-Distribution-API-Version:
registry/2.0``; every client error is an
:class:`~pycrane.registry.apierrors.ApiError` rendered as the spec's JSON body.
The route modules (``blob_routes``, ``upload_routes``, ``manifest_routes``,
``listing_routes``) are functions of an exchange.

:class:`HandlerServer` declares what a handler reads from its server; the
server (:class:`~pycrane.registry.server.RegistryHTTPServer`) derives from it
and sets those attributes, so neither the handler nor the routes import the
server module.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pycrane.errors import InvalidDigest
from pycrane.registry.apierrors import ApiError
from pycrane.registry.auth import Htpasswd
from pycrane.registry.body import RequestBody
from pycrane.registry.connections import Connections
from pycrane.registry.framing import body_framing
from pycrane.registry.storage import Storage
from pycrane.v1.digest import Digest

__all__ = ["DRAIN_LIMIT", "NAME", "Exchange", "HandlerServer", "parse_digest"]

#: A repository name, as the distribution spec's grammar has it.
NAME = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*\Z"
)
#: A leftover request body up to this size is drained to keep the connection; above, close.
DRAIN_LIMIT = 1024 * 1024
#: A header value may hold visible ASCII, spaces and tabs, and obs-text; never CR, LF or NUL.
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")


def parse_digest(value: str, code: str = "DIGEST_INVALID") -> Digest:
    """A digest from a URL or query, or the spec's error ``code``."""
    try:
        return Digest.parse(value)
    except InvalidDigest as e:
        raise ApiError(code, str(e), detail={"digest": value}) from None


class HandlerServer(ThreadingHTTPServer):
    """The server as its handlers see it: storage, auth, mode, timeouts, connection state."""

    storage: Storage
    htpasswd: Htpasswd | None
    read_only: bool
    verbose: bool
    header_timeout: float
    idle_timeout: float
    read_timeout: float
    connections: Connections

    def track(self, sock: socket.socket, alive: bool) -> None:
        """A connection opened (``alive``) or closed."""
        self.connections.track(sock, alive)


class Exchange(BaseHTTPRequestHandler):
    """Reading one request's body and writing its response (the handler adds the routes)."""

    server: HandlerServer
    protocol_version = "HTTP/1.1"
    server_version = "pycrane-registry"
    _body: RequestBody | None
    _responded: bool

    @property
    def storage(self) -> Storage:
        return self.server.storage

    def respond(
        self,
        status: int,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        length: int | None = None,
    ) -> None:
        """Status line, headers and a small body in one write (the body is skipped for HEAD)."""
        for k, v in (headers or {}).items():
            if not _HEADER_VALUE.match(v) or not _HEADER_VALUE.match(k):
                raise ValueError(f"refusing to send header {k!r}: control characters")
        self._responded = True
        self.log_request(status)
        n = len(body) if length is None else length
        lines = [
            f"{self.protocol_version} {status} {self.responses.get(status, ('',))[0]}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            "Docker-Distribution-API-Version: registry/2.0",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
            f"Content-Length: {n}",
        ]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if body and self.command != "HEAD":
            self.wfile.write(head + body if len(body) <= 256 * 1024 else head)
            if len(body) > 256 * 1024:
                self.wfile.write(body)
        else:
            self.wfile.write(head)

    def respond_json(
        self, obj: Any, headers: dict[str, str] | None = None, ctype: str = ""
    ) -> None:
        body = json.dumps(obj).encode()
        self.respond(200, {"Content-Type": ctype or "application/json", **(headers or {})}, body)

    def respond_error(self, err: ApiError) -> None:
        headers = {"Content-Type": "application/json", **err.headers}
        self.respond(err.status, headers, err.body())

    def allow(self, *methods: str) -> None:
        """Refuse (405, with ``Allow``) a method this route does not serve."""
        if self.command not in methods:
            raise ApiError(
                "UNSUPPORTED",
                f"{self.command} is not allowed here",
                status=405,
                headers={"Allow": ", ".join(methods)},
            )

    def not_modified(self, etag: str) -> bool:
        """``If-None-Match`` names this (immutable, content-addressed) representation."""
        wanted = self.headers.get("If-None-Match")
        if not wanted:
            return False
        tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
        return "*" in tags or etag in tags

    # -- the request body -----------------------------------------------------------------

    def framing_error(self) -> ApiError | None:
        """The request's framing problem, if any (then the connection closes after the answer)."""
        if getattr(self, "_framed", None) is not self.headers:
            self._framed = self.headers
            self._framing_refusal: ApiError | None = None
            try:
                self._framing = body_framing(self.headers)
            except ApiError as err:
                self._framing_refusal = err
        if self._framing_refusal is not None:
            self.close_connection = True
        return self._framing_refusal

    @property
    def content_length(self) -> int | None:
        """The body's declared length (None when chunked or absent)."""
        return self._framing[0]

    def request_body(self) -> RequestBody:
        """The request body, opened once per request."""
        if self._body is None:
            length, chunked = self._framing
            self._body = RequestBody(self.rfile, length, chunked)  # type: ignore[arg-type]
        return self._body

    def start_exchange(self) -> None:
        """A new request on the connection: no body opened, nothing answered yet."""
        self._body = None
        self._responded = False

    @property
    def responded(self) -> bool:
        """A response head went out for this request."""
        return self._responded

    @property
    def body_left(self) -> bool:
        """The body was opened but not read to its end."""
        return self._body is not None and not self._body.done

    def finish_body(self) -> None:
        """Before an error response: drain a small leftover body or give up the connection."""
        try:
            body = self.request_body()
        except ApiError:
            self.close_connection = True
            return
        if not body.done and not body.drain(DRAIN_LIMIT):
            self.close_connection = True
