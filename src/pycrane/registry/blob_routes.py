"""Blob routes: ``GET``/``HEAD``/``DELETE /v2/<name>/blobs/<digest>``, with byte ranges.

Blobs go from storage to the socket with ``sendfile`` when the connection is
plain TCP and the stream is a file, and in 1 MiB pieces otherwise. One
``bytes=`` range is served as 206; anything else a client asks is 416.
"""

from __future__ import annotations

import os
import re
import ssl
from typing import BinaryIO

from pycrane.registry.apierrors import ApiError
from pycrane.registry.exchange import Exchange, parse_digest
from pycrane.registry.storage import CHUNK

__all__ = ["blob", "byte_range"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)\Z")
#: Without os.sendfile (Windows), socket.sendfile falls back to 8 KiB sends: use 1 MiB ones.
_SENDFILE = hasattr(os, "sendfile")


def blob(ex: Exchange, name: str, raw_digest: str) -> None:
    ex.allow("GET", "HEAD", "DELETE")
    digest = parse_digest(raw_digest)
    storage = ex.storage
    if ex.command == "DELETE":
        if not storage.blob_delete(name, digest):
            raise ApiError(
                "BLOB_UNKNOWN",
                f"blob {digest} unknown to {name}",
                detail={"digest": str(digest)},
            )
        ex.respond(202)
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
        if ex.not_modified(headers["ETag"]):
            ex.respond(304, headers, length=0)
            return
        start, end = 0, size - 1
        status = 200
        rng = ex.headers.get("Range")
        if rng:
            start, end = byte_range(rng, size)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        count = end - start + 1
        ex.respond(status, headers, length=count)
        if ex.command == "GET" and count > 0:
            _send_file(ex, f, start, count)


def byte_range(header: str, size: int) -> tuple[int, int]:
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


def _send_file(ex: Exchange, f: BinaryIO, offset: int, count: int) -> None:
    sock = ex.connection
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
        ex.wfile.write(view[:n])
        count -= n
