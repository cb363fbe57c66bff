"""Request bodies read straight off the socket: Content-Length or chunked, never buffered whole.

``http.server`` leaves body framing to the handler. This reader enforces it, so
a keep-alive connection stays in sync: after a request the handler either has
consumed the body, drains a small leftover, or closes the connection. Chunk-size
lines are hex digits only (no ``0x``, ``+`` or ``_``) and every framing line ends
with CRLF, so a proxy in front cannot read the chunks differently.
"""

from __future__ import annotations

import re
from typing import BinaryIO

from pycrane.registry.apierrors import ApiError

__all__ = ["RequestBody"]

_MAX_LINE = 4096
_MAX_TRAILERS = 64
# RFC 9112 section 7.1: 1*HEXDIG, then extensions; lines end with CRLF, never a bare LF.
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r\n\Z")


class RequestBody:
    """A readable view of one request body (``readinto`` returns 0 at its end)."""

    def __init__(self, rfile: BinaryIO, length: int | None, chunked: bool) -> None:
        self._rfile = rfile
        self._chunked = chunked
        # For Content-Length bodies: bytes left. For chunked: bytes left in this chunk.
        self._left = 0 if chunked else (length or 0)
        self._eof = not chunked and not length
        self._broken: ApiError | None = None
        self.received = 0

    @property
    def done(self) -> bool:
        return self._eof

    def _line(self) -> bytes:
        line = self._rfile.readline(_MAX_LINE)
        if not line.endswith(b"\r\n"):
            raise ApiError("BLOB_UPLOAD_INVALID", "request body: malformed chunked encoding")
        return line

    def _next_chunk(self) -> None:
        line = self._line()
        m = _CHUNK_SIZE.match(line)
        if m is None:
            raise ApiError(
                "BLOB_UPLOAD_INVALID", f"request body: bad chunk size line {line[:40]!r}"
            )
        size = int(m[1], 16)
        if size == 0:
            for _ in range(_MAX_TRAILERS):
                if self._line() == b"\r\n":
                    break
            else:
                raise ApiError("BLOB_UPLOAD_INVALID", "request body: too many trailer lines")
            self._eof = True
        self._left = size

    def readinto(self, buf: memoryview) -> int:
        """Fill ``buf`` as far as the body allows; 0 means the body is complete.

        After a framing error every later call raises it again: the rest of the
        stream cannot be trusted (nor drained), so the connection must close.
        """
        if self._broken is not None:
            raise self._broken
        try:
            return self._readinto(buf)
        except ApiError as err:
            self._broken = err
            raise

    def _readinto(self, buf: memoryview) -> int:
        while not self._eof:
            if self._left == 0:
                if not self._chunked:
                    self._eof = True
                    return 0
                self._next_chunk()
                continue
            want = min(len(buf), self._left)
            n = self._rfile.readinto(buf[:want])  # type: ignore[attr-defined]
            if not n:
                raise ApiError(
                    "BLOB_UPLOAD_INVALID",
                    f"request body: connection closed with {self._left} bytes missing",
                )
            self._left -= n
            self.received += n
            if self._left == 0 and self._chunked and self._rfile.readline(3) != b"\r\n":
                raise ApiError("BLOB_UPLOAD_INVALID", "request body: malformed chunked encoding")
            return int(n)
        return 0

    def read_all(self, limit: int) -> bytes:
        """The whole body, for small documents; 413 when it exceeds ``limit``."""
        out = bytearray()
        buf = bytearray(min(limit + 1, 1024 * 1024))
        view = memoryview(buf)
        while True:
            n = self.readinto(view)
            if not n:
                return bytes(out)
            out += view[:n]
            if len(out) > limit:
                raise ApiError(
                    "PAYLOAD_TOO_LARGE", f"request body exceeds the {limit} bytes allowed"
                )

    def drain(self, limit: int) -> bool:
        """Discard up to ``limit`` bytes of what is left; True when the body is then done."""
        buf = memoryview(bytearray(64 * 1024))
        seen = 0
        try:
            while seen <= limit:
                n = self.readinto(buf)
                if not n:
                    return True
                seen += n
        except (ApiError, OSError):
            return False
        return False
