"""Upload-session routes: ``/v2/<name>/blobs/uploads/[<session>]``.

``POST`` opens a session, or stores a whole blob at once (``?digest=``), or
mounts one from another repository (``?mount=&from=``, a new session when the
source lacks it). ``PATCH`` appends a chunk (its ``Content-Range`` must start at
the session's offset), ``PUT ?digest=`` ends the session with an optional last
chunk, ``GET`` reports the offset, ``DELETE`` cancels. Nothing is visible
until the storage has verified the digest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pycrane.registry.apierrors import ApiError
from pycrane.registry.exchange import DRAIN_LIMIT, NAME, Exchange, parse_digest
from pycrane.registry.storage import upload_location
from pycrane.v1.digest import Digest

__all__ = ["uploads"]

_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?\Z")


def _upload_headers(name: str, session: str, offset: int) -> dict[str, str]:
    return {
        "Location": upload_location(name, session),
        "Range": f"0-{max(offset - 1, 0)}",
        "Docker-Upload-UUID": session,
        "Blob-Upload-Session-ID": session,
    }


def _blob_created(ex: Exchange, name: str, digest: Digest) -> None:
    ex.respond(
        201,
        {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": str(digest)},
    )


def uploads(ex: Exchange, name: str, session: str, query: Mapping[str, list[str]]) -> None:
    storage = ex.storage
    if not session:
        ex.allow("POST")
        mount = query.get("mount", [None])[-1]
        source = query.get("from", [None])[-1]
        if mount and source and NAME.match(source):
            digest = parse_digest(mount)
            if storage.blob_mount(name, digest, source):
                _blob_created(ex, name, digest)
                return
        elif (wanted := query.get("digest", [None])[-1]) is not None:
            digest = parse_digest(wanted)
            storage.blob_put(name, digest, ex.request_body())
            _blob_created(ex, name, digest)
            return
        if not ex.request_body().drain(DRAIN_LIMIT):
            ex.close_connection = True
        session = storage.upload_start(name)
        ex.respond(202, _upload_headers(name, session, 0))
        return
    ex.allow("GET", "PATCH", "PUT", "DELETE")
    if ex.command == "GET":
        offset = storage.upload_offset(name, session)
        ex.respond(204, _upload_headers(name, session, offset))
    elif ex.command == "DELETE":
        storage.upload_cancel(name, session)
        ex.respond(204)
    elif ex.command == "PATCH":
        offset = storage.upload_write(name, session, ex.request_body(), _chunk_start(ex))
        ex.respond(202, _upload_headers(name, session, offset))
    else:
        wanted = query.get("digest", [None])[-1]
        if not wanted:
            raise ApiError("DIGEST_INVALID", f"upload {session}: PUT needs ?digest=")
        digest = parse_digest(wanted)
        body = ex.request_body()
        if not body.done:
            storage.upload_write(name, session, body, _chunk_start(ex))
        storage.upload_finish(name, session, digest)
        _blob_created(ex, name, digest)


def _chunk_start(ex: Exchange) -> int | None:
    """The first byte a chunk claims via Content-Range, checked against Content-Length."""
    raw = ex.headers.get("Content-Range")
    if raw is None:
        return None
    m = _CONTENT_RANGE.match(raw.strip())
    if m is None or int(m[2]) < int(m[1]):
        raise ApiError("RANGE_INVALID", f"Content-Range {raw!r}: expected 'start-end'")
    length = ex.content_length
    if length is not None and length != int(m[2]) - int(m[1]) + 1:
        raise ApiError(
            "RANGE_INVALID",
            f"Content-Range {raw!r} does not match Content-Length {length}",
        )
    return int(m[1])
