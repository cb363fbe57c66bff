"""Keeping a layout sound: what ``index.json`` reaches, garbage collection, validation.

:func:`reachable` walks ``index.json`` down through indexes and manifests to every
blob they reference. :func:`collect` deletes the blobs outside that set (under the
layout lock, which the caller holds) and cleans ``ingest/`` of dead writers'
files. :func:`problems` lists what is wrong with a layout; the images in it are
checked by :mod:`pycrane.validate`, the one validator, which reads every layer once,
hashing its compressed bytes and its diff_id in the same pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from pycrane import _fs
from pycrane.errors import (
    DigestMismatch,
    ManifestError,
    NotFoundError,
    StoreError,
    VerificationError,
)
from pycrane.layout.readers import MANIFEST_MAX, LayoutImage, LayoutSource
from pycrane.layout.store import BlobStore, StaleIngest
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.manifest import Index, Manifest, parse_manifest

__all__ = ["GcResult", "collect", "problems", "reachable"]


class GcResult(list[Digest]):
    """The blobs :meth:`Layout.gc` deleted (a list of digests, sorted), and in
    ``ingests`` what it removed from ``ingest/``: dead writers' temp files, partial
    downloads and lock files."""

    ingests: list[StaleIngest]

    def __init__(self) -> None:
        super().__init__()
        self.ingests = []


def reachable(
    store: BlobStore, entries: Sequence[Descriptor], problems: list[str] | None = None
) -> dict[Digest, int]:
    """Every blob reachable from ``entries``, with the size it is referenced with."""
    seen: dict[Digest, int] = {}
    stack: list[tuple[Descriptor, str]] = [(d, f"index.json[{i}]") for i, d in enumerate(entries)]
    while stack:
        desc, where = stack.pop()
        if desc.digest in seen:
            continue
        seen[desc.digest] = desc.size
        media = desc.media_type
        if not mt.is_manifest(media):
            continue
        try:
            raw = store.read_bytes(desc.digest, max_size=MANIFEST_MAX)
            parsed = parse_manifest(raw, media)
        except (NotFoundError, VerificationError, ManifestError, StoreError) as e:
            if problems is not None:
                problems.append(f"{where} {desc.digest}: {e}")
            continue
        if isinstance(parsed, Index):
            stack.extend(
                (d, f"{where} -> {desc.digest}.manifests[{i}]")
                for i, d in enumerate(parsed.manifests)
            )
        else:
            stack.append((parsed.config, f"{where} -> {desc.digest}.config"))
            stack.extend(
                (d, f"{where} -> {desc.digest}.layers[{i}]")
                for i, d in enumerate(parsed.layers)
                if mt.is_distributable(d.media_type) or not d.urls
            )
    return seen


def collect(store: BlobStore, keep: dict[Digest, int]) -> GcResult:
    """Delete every blob not in ``keep`` and what dead writers left (caller holds the lock).

    On Windows a blob someone holds open cannot be deleted: it is skipped (after a
    short retry) and left for the next gc.
    """
    deleted = GcResult()
    for digest in list(store.digests()):
        if digest in keep:
            continue
        try:
            if _fs.unlink(store.path(digest), budget=0.2):
                deleted.append(digest)
        except PermissionError as e:
            if not _fs.is_transient(e):
                raise
    with contextlib.suppress(OSError):
        deleted.ingests = store.clean_ingests(partials=True)
    deleted.sort()
    return deleted


def problems(layout: LayoutSource, entries: Sequence[Descriptor], fast: bool) -> list[str]:
    """What is wrong with a layout whose ``index.json`` lists ``entries`` (empty: sound).

    Every referenced blob must exist with its referenced size and every blob must
    hash to its name. Unless ``fast``, each image is validated by
    :func:`pycrane.validate.validate_image` (layers decompressed, diff_ids checked);
    the layers it read are not hashed a second time.
    """
    from pycrane.validate import validate_image

    store = layout.store
    found: list[str] = []
    reached = reachable(store, entries, found)
    for digest, size in reached.items():
        have = store.size(digest)
        if have is None:
            found.append(f"blob {digest}: referenced but missing")
        elif have != size:
            found.append(f"blob {digest}: referenced with {size} bytes, has {have}")
    checked: set[Digest] = set()
    if not fast:
        for digest in reached:
            img = _image_at(layout, digest)
            if img is None:
                continue
            try:
                validate_image(img)
            except (VerificationError, ManifestError, NotFoundError, StoreError) as e:
                found.append(_said(e))
                continue
            checked.update(d.digest for d in img.manifest().layers)
    for digest in store.digests():
        if digest in checked:
            continue
        hashed = store.hash_file(digest)
        if hashed is not None and hashed[0] != digest:
            found.append(f"blob {digest}: content hashes to {hashed[0]}")
    return found


def _said(e: Exception) -> str:
    """The problem in one line; a wrong uncompressed digest says it is the config's diff_id."""
    if isinstance(e, DigestMismatch) and "(uncompressed)" in str(e):
        return f"{e} (the config's diff_id)"
    return str(e)


def _image_at(layout: LayoutSource, digest: Digest) -> LayoutImage | None:
    """The image whose manifest is blob ``digest``, if it is one (with a config)."""
    try:
        raw = layout.store.read_bytes(digest, max_size=MANIFEST_MAX)
        parsed = parse_manifest(raw)
    except Exception:
        return None
    if not isinstance(parsed, Manifest) or not mt.is_config(parsed.config.media_type):
        return None
    return LayoutImage(layout, Descriptor(parsed.media_type, digest, len(raw)))
