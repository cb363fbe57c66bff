"""The HTTP/1.1 request handler: a connection's life and the routes of distribution spec v1.1.

One keep-alive handler per connection (``http.server``), with the deadlines of
:mod:`pycrane.registry.connections`. Each request is checked (framing, auth,
read-only mode), routed by its path to one of the route modules, and every
failure is answered as the spec's JSON error; how the request and the response
go over the wire is :mod:`pycrane.registry.exchange`. Request bodies go from
the socket to storage in 1 MiB pieces.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import ssl
import time
import urllib.parse
from typing import Any

from pycrane.registry import blob_routes, listing_routes, manifest_routes, upload_routes
from pycrane.registry.apierrors import ApiError
from pycrane.registry.connections import DeadlineReader
from pycrane.registry.exchange import NAME, Exchange

__all__ = ["RegistryHandler"]

_ROUTES = [
    ("uploads", re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<session>[^/]*)\Z")),
    ("blob", re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)\Z")),
    ("manifest", re.compile(r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)\Z")),
    ("tags", re.compile(r"/v2/(?P<name>.+)/tags/list\Z")),
    ("referrers", re.compile(r"/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)\Z")),
]
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RegistryHandler(Exchange):
    """Serves one connection; the server object carries storage, auth and mode."""

    #: Timeouts come from the server (idle, header, read); see pycrane.registry.connections.
    timeout = None

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile.close()  # replaced by a reader that knows deadlines
        self._reader = DeadlineReader(self.connection, self.server.read_timeout)
        self._buffered = io.BufferedReader(self._reader, 64 * 1024)
        self.rfile = self._buffered

    def handle_one_request(self) -> None:
        """Wait ``idle_timeout`` for a request, then allow ``header_timeout`` for its head."""
        conns, sock, reader = self.server.connections, self.connection, self._reader
        conns.idle(sock)
        reader.deadline = time.monotonic() + self.server.idle_timeout
        try:
            if not self._buffered.peek(1):
                self.close_connection = True
                return
        except (OSError, ValueError):  # timeout, reset, or shut down by the server
            self.close_connection = True
            return
        conns.reading_headers(sock)
        reader.deadline = time.monotonic() + self.server.header_timeout
        try:
            super().handle_one_request()
        finally:
            reader.clear_deadline()

    def parse_request(self) -> bool:
        ok = super().parse_request()
        # The head is in: bodies and responses get the per-read timeout, no deadline.
        self._reader.clear_deadline()
        self.server.connections.busy(self.connection)
        return ok

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def log_error(self, format: str, *args: Any) -> None:
        # Bugs are reported even when requests are not logged.
        if self.server.verbose or format.startswith("internal error"):
            super().log_message(format, *args)

    # -- admission ----------------------------------------------------------------------------

    def handle_expect_100(self) -> bool:
        # Refuse before the client sends a body it would send for nothing.
        refusal = self.framing_error()
        if refusal is not None:
            pass
        elif not self._authorized():
            refusal = self._unauthorized()
        elif self.server.read_only and self.command in _WRITES:
            refusal = self._read_only()
        if refusal is not None:
            self.close_connection = True
            self.respond_error(refusal)
            return False
        return super().handle_expect_100()

    def _read_only(self) -> ApiError:
        return ApiError("UNSUPPORTED", f"{self.command}: the registry is read-only", status=405)

    def _authorized(self) -> bool:
        auth = self.server.htpasswd
        return auth is None or auth.check(self.headers.get("Authorization")) is not None

    def _unauthorized(self) -> ApiError:
        return ApiError(
            "UNAUTHORIZED", headers={"WWW-Authenticate": 'Basic realm="pycrane-registry"'}
        )

    # -- one request --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        self.start_exchange()
        refusal = self.framing_error()
        if refusal is not None:
            with contextlib.suppress(OSError):
                self.respond_error(refusal)
            return
        try:
            self._route()
        except ApiError as err:
            if self.responded:  # failed mid-body: the client sees a short read
                self.close_connection = True
                return
            try:
                self.finish_body()
                self.respond_error(err)
            except OSError:  # the client is gone
                self.close_connection = True
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True
        except Exception as exc:  # a bug: answer 500 rather than drop the connection
            self.log_error("internal error on %s %s: %r", self.command, self.path, exc)
            self.close_connection = True
            if not self.responded:
                internal = ApiError("UNKNOWN", f"internal error: {type(exc).__name__}")
                with contextlib.suppress(OSError):
                    self.respond_error(internal)
        else:
            if self.body_left:
                # The route answered without reading everything; keep the stream in sync.
                self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _dispatch

    def _route(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if not path.startswith("/v2"):
            raise ApiError("NAME_UNKNOWN", f"{path}: not a registry API path", status=404)
        if not self._authorized():
            raise self._unauthorized()
        if self.server.read_only and self.command in _WRITES:
            raise self._read_only()
        if path in ("/v2", "/v2/"):
            self.allow("GET", "HEAD")
            self.respond(200, {"Content-Type": "application/json"}, b"{}")
            return
        if path == "/v2/_catalog":
            self.allow("GET", "HEAD")
            listing_routes.catalog(self, query)
            return
        for kind, rx in _ROUTES:
            m = rx.match(path)
            if m is None:
                continue
            name = m["name"]
            if not NAME.match(name) or len(name) > 255:
                raise ApiError("NAME_INVALID", f"repository name {name!r} is invalid")
            if kind == "uploads":
                upload_routes.uploads(self, name, m["session"], query)
            elif kind == "blob":
                blob_routes.blob(self, name, m["digest"])
            elif kind == "manifest":
                manifest_routes.manifest(self, name, m["reference"])
            elif kind == "tags":
                self.allow("GET", "HEAD")
                listing_routes.tags(self, name, query)
            else:
                self.allow("GET", "HEAD")
                listing_routes.referrers(self, name, m["digest"], query)
            return
        raise ApiError("NAME_UNKNOWN", f"{path}: no such registry endpoint", status=404)
