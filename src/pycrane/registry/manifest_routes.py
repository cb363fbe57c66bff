"""Manifest routes: ``GET``/``HEAD``/``PUT``/``DELETE /v2/<name>/manifests/<reference>``.

A reference is a tag or a digest. A pushed manifest is kept byte for byte: its
digest is checked against the reference, its content by
:mod:`pycrane.registry.manifests`, and every blob and child manifest it names
must already be in the repository with the size its descriptor declares.
"""

from __future__ import annotations

import re
from typing import NoReturn

from pycrane.registry.apierrors import ApiError
from pycrane.registry.exchange import Exchange, parse_digest
from pycrane.registry.manifests import (
    MAX_MANIFEST_SIZE,
    PushedManifest,
    inspect_manifest,
    is_media_type,
)
from pycrane.registry.storage import Storage, StoredManifest
from pycrane.v1.digest import Digest

__all__ = ["MAX_LISTED", "manifest"]

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
#: Unknown blobs listed one by one in a manifest PUT's error body; checking stops after.
MAX_LISTED = 10


def _reference(reference: str) -> str | Digest | None:
    """A digest, a valid tag, or None for a string that no tag can be."""
    if ":" in reference:
        return parse_digest(reference)
    return reference if _TAG.match(reference) else None


def manifest(ex: Exchange, name: str, reference: str) -> None:
    ex.allow("GET", "HEAD", "PUT", "DELETE")
    storage = ex.storage
    ref = _reference(reference)
    if ex.command == "PUT":
        if ref is None:
            raise ApiError(
                "TAG_INVALID", f"tag {reference!r} is invalid", detail={"tag": reference}
            )
        _put_manifest(ex, name, ref)
        return
    if ref is None:
        # Nothing can be stored under an invalid tag, so reading or deleting one finds
        # nothing: 404, as the OCI conformance suite asks for ``.INVALID_MANIFEST_NAME``.
        # Only a push is refused with TAG_INVALID. Storage never sees the string.
        _unknown(storage, name, reference)
    if ex.command == "DELETE":
        found = (
            storage.manifest_delete(name, ref)
            if isinstance(ref, Digest)
            else storage.tag_delete(name, ref)
        )
        if not found:
            raise ApiError("MANIFEST_UNKNOWN", f"{name}:{reference} not found")
        ex.respond(202)
        return
    stored = storage.manifest_get(name, ref)
    if stored is None:
        _unknown(storage, name, reference)
    headers = _manifest_headers(ex, stored)
    if ex.not_modified(headers["ETag"]):
        ex.respond(304, headers, length=0)
        return
    ex.respond(200, headers, stored.raw)


def _unknown(storage: Storage, name: str, reference: str) -> NoReturn:
    code = "MANIFEST_UNKNOWN" if storage.tags(name) is not None else "NAME_UNKNOWN"
    raise ApiError(code, f"manifest {name}:{reference} unknown", detail={"reference": reference})


def _manifest_headers(ex: Exchange, stored: StoredManifest) -> dict[str, str]:
    ctype = stored.media_type
    if not is_media_type(ctype):  # stored by an older, laxer version: never echo it
        ex.log_error("manifest %s: stored media type %r is not valid", stored.digest, ctype)
        ctype = "application/octet-stream"
    return {
        "Content-Type": ctype,
        "Docker-Content-Digest": str(stored.digest),
        "ETag": f'"{stored.digest}"',
    }


def _put_manifest(ex: Exchange, name: str, ref: str | Digest) -> None:
    raw = ex.request_body().read_all(MAX_MANIFEST_SIZE)
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
    pushed = inspect_manifest(raw, ex.headers.get("Content-Type"), digest)
    storage = ex.storage
    check_references(storage, name, pushed)
    storage.manifest_put(name, pushed, raw, None if isinstance(ref, Digest) else ref)
    headers = {
        "Location": f"/v2/{name}/manifests/{digest}",
        "Docker-Content-Digest": str(digest),
    }
    if pushed.subject is not None:
        headers["OCI-Subject"] = str(pushed.subject)
    ex.respond(201, headers)


def check_references(storage: Storage, name: str, pushed: PushedManifest) -> None:
    """Every blob and child manifest is in ``name`` with the size its descriptor says."""
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
                    f"more blobs or manifests unknown to {name}: the list stops at {MAX_LISTED}",
                )
            ]
        raise ApiError(
            missing[0].code,
            missing[0].message,
            detail=missing[0].detail,
            also=tuple(missing[1:]),
        )
