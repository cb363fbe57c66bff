"""The HTTP/1.1 request handler: routes of the OCI distribution spec v1.1 over a Storage.

One keep-alive handler per connection (``http.server``). Every response has a
Content-Length and ``Docker-Distribution-API-Version: registry/2.0``; every
client error is an :class:`~pycrane.registry.apierrors.ApiError` rendered as the
spec's JSON body. Request bodies go from the socket to storage in 1 MiB pieces;
blobs go from disk to the socket with ``sendfile`` when the connection is plain
TCP, and in 1 MiB pieces otherwise.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, BinaryIO

from pycrane.errors import InvalidDigest
from pycrane.registry.apierrors import ApiError
from pycrane.registry.body import RequestBody
from pycrane.registry.connections import DeadlineReader
from pycrane.registry.framing import body_framing
from pycrane.registry.manifests import (
    MAX_MANIFEST_SIZE,
    PushedManifest,
    inspect_manifest,
    is_media_type,
)
from pycrane.registry.storage import CHUNK, StoredManifest, upload_location
from pycrane.v1 import mediatypes as mt
from pycrane.v1.digest import Digest

if TYPE_CHECKING:
    from pycrane.registry.server import RegistryHTTPServer

__all__ = ["RegistryHandler"]

_NAME = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*\Z"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
_ROUTES = [
    ("uploads", re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<session>[^/]*)\Z")),
    ("blob", re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)\Z")),
    ("manifest", re.compile(r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)\Z")),
    ("tags", re.compile(r"/v2/(?P<name>.+)/tags/list\Z")),
    ("referrers", re.compile(r"/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)\Z")),
]
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: A leftover request body up to this size is drained to keep the connection; above, close.
_DRAIN_LIMIT = 1024 * 1024
#: Unknown blobs listed one by one in a manifest PUT's error body; checking stops after.
MAX_LISTED = 10
#: A header value may hold visible ASCII, spaces and tabs, and obs-text; never CR, LF or NUL.
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?\Z")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)\Z")
#: Without os.sendfile (Windows), socket.sendfile falls back to 8 KiB sends: use 1 MiB ones.
_SENDFILE = hasattr(os, "sendfile")


def _parse_digest(value: str, code: str = "DIGEST_INVALID") -> Digest:
    try:
        return Digest.parse(value)
    except InvalidDigest as e:
        raise ApiError(code, str(e), detail={"digest": value}) from None


def _page(items: list[str], query: Mapping[str, list[str]]) -> tuple[list[str], bool, int | None]:
    """Apply ``n`` and ``last`` to a sorted list; return the page, whether more follow, n."""
    last = query.get("last", [None])[-1]
    if last is not None:
        items = [i for i in items if i > last]
    raw_n = query.get("n", [None])[-1]
    if raw_n is None or raw_n == "":
        return items, False, None
    try:
        n = int(raw_n)
    except ValueError:
        n = -1
    if n < 0:
        raise ApiError("PAGINATION_NUMBER_INVALID", f"n={raw_n!r}: expected a non-negative integer")
    return items[:n], n > 0 and len(items) > n, n


class RegistryHandler(BaseHTTPRequestHandler):
    """Serves one connection; the server object carries storage, auth and mode."""

    server: RegistryHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "pycrane-registry"
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

    # -- plumbing ---------------------------------------------------------------------------

    def handle_expect_100(self) -> bool:
        # Refuse before the client sends a body it would send for nothing.
        refusal = self._framing_error()
        if refusal is not None:
            pass
        elif not self._authorized():
            refusal = self._unauthorized()
        elif self.server.read_only and self.command in _WRITES:
            refusal = self._read_only()
        if refusal is not None:
            self.close_connection = True
            self._error(refusal)
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

    def _send(
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

    def _error(self, err: ApiError) -> None:
        headers = {"Content-Type": "application/json", **err.headers}
        self._send(err.status, headers, err.body())

    def _framing_error(self) -> ApiError | None:
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

    def _dispatch(self) -> None:
        self._body: RequestBody | None = None
        self._responded = False
        refusal = self._framing_error()
        if refusal is not None:
            with contextlib.suppress(OSError):
                self._error(refusal)
            return
        try:
            self._route()
        except ApiError as err:
            if self._responded:  # failed mid-body: the client sees a short read
                self.close_connection = True
                return
            try:
                self._finish_body()
                self._error(err)
            except OSError:  # the client is gone
                self.close_connection = True
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True
        except Exception as exc:  # a bug: answer 500 rather than drop the connection
            self.log_error("internal error on %s %s: %r", self.command, self.path, exc)
            self.close_connection = True
            if not self._responded:
                internal = ApiError("UNKNOWN", f"internal error: {type(exc).__name__}")
                with contextlib.suppress(OSError):
                    self._error(internal)
        else:
            if self._body is not None and not self._body.done:
                # The route answered without reading everything; keep the stream in sync.
                self.close_connection = True

    def _finish_body(self) -> None:
        """Before an error response: drain a small leftover body or give up the connection."""
        try:
            body = self._open_body()
        except ApiError:
            self.close_connection = True
            return
        if not body.done and not body.drain(_DRAIN_LIMIT):
            self.close_connection = True

    def _open_body(self) -> RequestBody:
        if self._body is None:
            length, chunked = self._framing
            self._body = RequestBody(self.rfile, length, chunked)  # type: ignore[arg-type]
        return self._body

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _dispatch

    # -- routing ----------------------------------------------------------------------------

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
            self._allow("GET", "HEAD")
            self._send(200, {"Content-Type": "application/json"}, b"{}")
            return
        if path == "/v2/_catalog":
            self._allow("GET", "HEAD")
            self._catalog(query)
            return
        for kind, rx in _ROUTES:
            m = rx.match(path)
            if m is None:
                continue
            name = m["name"]
            if not _NAME.match(name) or len(name) > 255:
                raise ApiError("NAME_INVALID", f"repository name {name!r} is invalid")
            if kind == "uploads":
                self._uploads(name, m["session"], query)
            elif kind == "blob":
                self._blob(name, m["digest"])
            elif kind == "manifest":
                self._manifest(name, m["reference"])
            elif kind == "tags":
                self._allow("GET", "HEAD")
                self._tags(name, query)
            else:
                self._allow("GET", "HEAD")
                self._referrers(name, m["digest"], query)
            return
        raise ApiError("NAME_UNKNOWN", f"{path}: no such registry endpoint", status=404)

    def _allow(self, *methods: str) -> None:
        if self.command not in methods:
            raise ApiError(
                "UNSUPPORTED",
                f"{self.command} is not allowed here",
                status=405,
                headers={"Allow": ", ".join(methods)},
            )

    # -- listing ----------------------------------------------------------------------------

    def _json(self, obj: Any, headers: dict[str, str] | None = None, ctype: str = "") -> None:
        body = json.dumps(obj).encode()
        self._send(200, {"Content-Type": ctype or "application/json", **(headers or {})}, body)

    def _catalog(self, query: Mapping[str, list[str]]) -> None:
        repos, more, n = _page(self.server.storage.repositories(), query)
        headers = {}
        if more and repos:
            last = urllib.parse.quote(repos[-1], safe="")
            headers["Link"] = f'</v2/_catalog?n={n}&last={last}>; rel="next"'
        self._json({"repositories": repos}, headers)

    def _tags(self, name: str, query: Mapping[str, list[str]]) -> None:
        all_tags = self.server.storage.tags(name)
        if all_tags is None:
            raise ApiError("NAME_UNKNOWN", f"repository {name} unknown", detail={"name": name})
        tags, more, n = _page(all_tags, query)
        headers = {}
        if more and tags:
            last = urllib.parse.quote(tags[-1], safe="")
            headers["Link"] = f'</v2/{name}/tags/list?n={n}&last={last}>; rel="next"'
        self._json({"name": name, "tags": tags}, headers)

    def _referrers(self, name: str, raw_digest: str, query: Mapping[str, list[str]]) -> None:
        subject = _parse_digest(raw_digest)
        entries = self.server.storage.referrers(name, subject)
        headers = {}
        wanted = query.get("artifactType")
        if wanted:
            entries = [e for e in entries if e.get("artifactType") in wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
        self._json(doc, headers, mt.OCI_INDEX)

    # -- manifests --------------------------------------------------------------------------

    def _reference(self, reference: str) -> str | Digest:
        if ":" in reference:
            return _parse_digest(reference)
        if not _TAG.match(reference):
            raise ApiError(
                "TAG_INVALID", f"tag {reference!r} is invalid", detail={"tag": reference}
            )
        return reference

    def _manifest(self, name: str, reference: str) -> None:
        self._allow("GET", "HEAD", "PUT", "DELETE")
        ref = self._reference(reference)
        storage = self.server.storage
        if self.command == "PUT":
            self._put_manifest(name, ref)
            return
        if self.command == "DELETE":
            found = (
                storage.manifest_delete(name, ref)
                if isinstance(ref, Digest)
                else storage.tag_delete(name, ref)
            )
            if not found:
                raise ApiError("MANIFEST_UNKNOWN", f"{name}:{reference} not found")
            self._send(202)
            return
        stored = storage.manifest_get(name, ref)
        if stored is None:
            code = "MANIFEST_UNKNOWN" if storage.tags(name) is not None else "NAME_UNKNOWN"
            raise ApiError(
                code, f"manifest {name}:{reference} unknown", detail={"reference": reference}
            )
        headers = self._manifest_headers(stored)
        if self._not_modified(headers["ETag"]):
            self._send(304, headers, length=0)
            return
        self._send(200, headers, stored.raw)

    def _not_modified(self, etag: str) -> bool:
        """``If-None-Match`` names this (immutable, content-addressed) representation."""
        wanted = self.headers.get("If-None-Match")
        if not wanted:
            return False
        tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
        return "*" in tags or etag in tags

    def _manifest_headers(self, stored: StoredManifest) -> dict[str, str]:
        ctype = stored.media_type
        if not is_media_type(ctype):  # stored by an older, laxer version: never echo it
            self.log_error("manifest %s: stored media type %r is not valid", stored.digest, ctype)
            ctype = "application/octet-stream"
        return {
            "Content-Type": ctype,
            "Docker-Content-Digest": str(stored.digest),
            "ETag": f'"{stored.digest}"',
        }

    def _put_manifest(self, name: str, ref: str | Digest) -> None:
        raw = self._open_body().read_all(MAX_MANIFEST_SIZE)
        if isinstance(ref, Digest):
            digest = Digest.from_bytes(raw, ref.algorithm)
            if digest != ref:
                raise ApiError(
                    "DIGEST_INVALID",
                    f"manifest body is {digest}, not {ref}",
                    detail={"digest": str(ref)},
                )
        else:
            digest = Digest.from_bytes(raw)
        pushed = inspect_manifest(raw, self.headers.get("Content-Type"), digest)
        self._check_references(name, pushed)
        storage = self.server.storage
        storage.manifest_put(name, pushed, raw, None if isinstance(ref, Digest) else ref)
        headers = {
            "Location": f"/v2/{name}/manifests/{digest}",
            "Docker-Content-Digest": str(digest),
        }
        if pushed.subject is not None:
            headers["OCI-Subject"] = str(pushed.subject)
        self._send(201, headers)

    def _check_references(self, name: str, pushed: PushedManifest) -> None:
        """Every blob and child manifest is in ``name`` with the size its descriptor says."""
        storage = self.server.storage
        missing: list[ApiError] = []
        for kind, refs in (("blob", pushed.blob_refs), ("manifest", pushed.manifest_refs)):
            sizes: dict[Digest, int | None] = {}
            for where, d, size in refs:
                if len(missing) > MAX_LISTED:
                    break
                if d not in sizes:
                    have = storage.blob_size(name, d) if kind == "blob" else None
                    if have is None:
                        child = storage.manifest_get(name, d)
                        have = None if child is None else len(child.raw)
                    sizes[d] = have
                    if have is None:
                        missing.append(
                            ApiError(
                                "MANIFEST_BLOB_UNKNOWN",
                                f"{kind} {d} unknown to {name}",
                                detail={"digest": str(d)},
                            )
                        )
                have = sizes[d]
                if have is not None and size >= 0 and have != size:
                    raise ApiError(
                        "MANIFEST_INVALID",
                        f"manifest {where}.size: {size} declared, but {kind} {d} has {have} bytes",
                        detail={"digest": str(d)},
                    )
        if missing:
            if len(missing) > MAX_LISTED:
                missing[MAX_LISTED:] = [
                    ApiError(
                        "MANIFEST_BLOB_UNKNOWN",
                        f"more blobs or manifests unknown to {name}: the list stops"
                        f" at {MAX_LISTED}",
                    )
                ]
            raise ApiError(
                missing[0].code,
                missing[0].message,
                detail=missing[0].detail,
                also=tuple(missing[1:]),
            )

    # -- blobs ------------------------------------------------------------------------------

    def _blob(self, name: str, raw_digest: str) -> None:
        self._allow("GET", "HEAD", "DELETE")
        digest = _parse_digest(raw_digest)
        storage = self.server.storage
        if self.command == "DELETE":
            if not storage.blob_delete(name, digest):
                raise ApiError(
                    "BLOB_UNKNOWN",
                    f"blob {digest} unknown to {name}",
                    detail={"digest": str(digest)},
                )
            self._send(202)
            return
        f, size = storage.blob_open(name, digest)
        with f:
            headers = {
                "Content-Type": "application/octet-stream",
                "Docker-Content-Digest": str(digest),
                "ETag": f'"{digest}"',
                "Accept-Ranges": "bytes",
                "Cache-Control": "max-age=31536000",
            }
            if self._not_modified(headers["ETag"]):
                self._send(304, headers, length=0)
                return
            start, end = 0, size - 1
            status = 200
            rng = self.headers.get("Range")
            if rng:
                start, end = self._byte_range(rng, size)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            count = end - start + 1
            self._send(status, headers, length=count)
            if self.command == "GET" and count > 0:
                self._send_file(f, start, count)

    def _byte_range(self, header: str, size: int) -> tuple[int, int]:
        """One ``bytes=`` range, resolved against ``size`` (inclusive ends), else 416."""
        m = _RANGE.match(header.strip())
        bad = ApiError(
            "RANGE_INVALID",
            f"Range {header!r} cannot be satisfied for {size} bytes",
            status=416,
            headers={"Content-Range": f"bytes */{size}"},
        )
        if m is None or (not m[1] and not m[2]):
            raise bad
        if not m[1]:  # suffix: the last N bytes
            n = int(m[2])
            if n == 0 or size == 0:
                raise bad
            return max(size - n, 0), size - 1
        start = int(m[1])
        end = int(m[2]) if m[2] else size - 1
        if start >= size or end < start:
            raise bad
        return start, min(end, size - 1)

    def _send_file(self, f: BinaryIO, offset: int, count: int) -> None:
        sock = self.connection
        if _SENDFILE and not isinstance(sock, ssl.SSLSocket):
            try:
                f.fileno()
            except (OSError, ValueError, AttributeError):
                pass
            else:
                sent = sock.sendfile(f, offset, count)  # zero-copy: os.sendfile
                if sent != count:
                    raise ConnectionError(f"sent {sent} of {count} bytes")
                return
        f.seek(offset)
        buf = bytearray(min(CHUNK, count))
        view = memoryview(buf)
        while count > 0:
            n = f.readinto(view[: min(len(buf), count)])  # type: ignore[attr-defined]
            if not n:
                raise ConnectionError(f"blob ended {count} bytes early")
            self.wfile.write(view[:n])
            count -= n

    # -- uploads ----------------------------------------------------------------------------

    def _upload_headers(self, name: str, session: str, offset: int) -> dict[str, str]:
        return {
            "Location": upload_location(name, session),
            "Range": f"0-{max(offset - 1, 0)}",
            "Docker-Upload-UUID": session,
            "Blob-Upload-Session-ID": session,
        }

    def _blob_created(self, name: str, digest: Digest) -> None:
        self._send(
            201,
            {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": str(digest)},
        )

    def _uploads(self, name: str, session: str, query: Mapping[str, list[str]]) -> None:
        storage = self.server.storage
        if not session:
            self._allow("POST")
            mount = query.get("mount", [None])[-1]
            source = query.get("from", [None])[-1]
            if mount and source and _NAME.match(source):
                digest = _parse_digest(mount)
                if storage.blob_mount(name, digest, source):
                    self._blob_created(name, digest)
                    return
            elif (wanted := query.get("digest", [None])[-1]) is not None:
                digest = _parse_digest(wanted)
                storage.blob_put(name, digest, self._open_body())
                self._blob_created(name, digest)
                return
            if not self._open_body().drain(_DRAIN_LIMIT):
                self.close_connection = True
            session = storage.upload_start(name)
            self._send(202, self._upload_headers(name, session, 0))
            return
        self._allow("GET", "PATCH", "PUT", "DELETE")
        if self.command == "GET":
            offset = storage.upload_offset(name, session)
            self._send(204, self._upload_headers(name, session, offset))
        elif self.command == "DELETE":
            storage.upload_cancel(name, session)
            self._send(204)
        elif self.command == "PATCH":
            offset = storage.upload_write(name, session, self._open_body(), self._chunk_start())
            self._send(202, self._upload_headers(name, session, offset))
        else:
            wanted = query.get("digest", [None])[-1]
            if not wanted:
                raise ApiError("DIGEST_INVALID", f"upload {session}: PUT needs ?digest=")
            digest = _parse_digest(wanted)
            body = self._open_body()
            if not body.done:
                storage.upload_write(name, session, body, self._chunk_start())
            storage.upload_finish(name, session, digest)
            self._blob_created(name, digest)

    def _chunk_start(self) -> int | None:
        """The first byte a chunk claims via Content-Range, checked against Content-Length."""
        raw = self.headers.get("Content-Range")
        if raw is None:
            return None
        m = _CONTENT_RANGE.match(raw.strip())
        if m is None or int(m[2]) < int(m[1]):
            raise ApiError("RANGE_INVALID", f"Content-Range {raw!r}: expected 'start-end'")
        length = self._framing[0]
        if length is not None and length != int(m[2]) - int(m[1]) + 1:
            raise ApiError(
                "RANGE_INVALID",
                f"Content-Range {raw!r} does not match Content-Length {length}",
            )
        return int(m[1])
