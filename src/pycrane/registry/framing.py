"""Request framing, read as strictly as RFC 9112 says: the server may sit behind a proxy.

A proxy and the server must agree on where each request ends, or a request
smuggled inside another's body reaches the server unchecked. So whatever two
HTTP implementations could read differently is refused with 400 (501 for a
transfer coding other than chunked), and the connection is closed:

* a header line the parser could not read (no colon, whitespace before the colon,
  a first line that is a continuation), a header name that is not a token, and
  obs-fold continuation lines (RFC 9112 section 5.2 lets a server refuse them);
* ``Content-Length`` that is not digits only (``+3``, ``0x3``, ``3_0``, ``-1``),
  and several that differ (``3`` and ``10``; equal repeats are one value);
* ``Transfer-Encoding`` together with ``Content-Length`` (section 6.1), and
  ``Transfer-Encoding`` whose final coding is not ``chunked``.

Chunk-size lines are checked by :class:`~pycrane.registry.body.RequestBody`.
"""

from __future__ import annotations

import re
from email.message import Message

from pycrane.registry.apierrors import ApiError

__all__ = ["MAX_CONTENT_LENGTH_DIGITS", "body_framing"]

#: Longer Content-Length values are refused (10**18 bytes is beyond any blob).
MAX_CONTENT_LENGTH_DIGITS = 18

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_DIGITS = re.compile(rf"[0-9]{{1,{MAX_CONTENT_LENGTH_DIGITS}}}\Z")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _bad(message: str, status: int = 400) -> ApiError:
    return ApiError("UNSUPPORTED", f"request framing: {message}", status=status)


def body_framing(headers: Message) -> tuple[int | None, bool]:
    """``(content_length, chunked)`` of a request, or raise :class:`ApiError` (close after)."""
    if headers.defects or headers.get_payload():
        raise _bad("malformed header line")
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise _bad(f"header name {name[:100]!r} is not a token")
        if _BAD_VALUE.search(value):
            raise _bad(f"header {name[:100]}: line folding or control characters")
    te = headers.get_all("Transfer-Encoding") or []
    cl = headers.get_all("Content-Length") or []
    if te:
        if cl:
            raise _bad("both Transfer-Encoding and Content-Length")
        codings = [c.strip().lower() for c in ",".join(te).split(",")]
        if codings == ["chunked"]:
            return None, True
        if codings[-1] != "chunked":
            raise _bad(f"Transfer-Encoding {', '.join(te)[:100]!r}: chunked must come last")
        raise _bad(f"Transfer-Encoding {', '.join(te)[:100]!r}: only chunked is supported", 501)
    if not cl:
        return None, False
    values = {v.strip(" \t") for item in cl for v in item.split(",")}
    if len(values) > 1:
        raise _bad(f"conflicting Content-Length values {sorted(values)[:4]}")
    (value,) = values
    if not _DIGITS.match(value):
        raise _bad(f"Content-Length {value[:40]!r}: expected digits only")
    return int(value), False
