"""Check that an image or index is what it claims to be, recomputing every digest.

The first problem found is raised, as one line naming the object and the
mismatch: :class:`~pycrane.errors.DigestMismatch` / :class:`SizeMismatch` for
content, :class:`~pycrane.errors.ManifestError` for documents that do not agree
with each other (a config with the wrong number of diff_ids, a child of the
wrong kind). Raising rather than collecting lets callers stop a long check at
the first bad blob; everything checked streams in bounded memory.

``fast=True`` checks manifests and configs (and that every layer's descriptor
agrees with the manifest) without reading layer content.
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO, cast

from pycrane import compression as comp
from pycrane._concurrency import bounded_map
from pycrane.compression import CHUNK
from pycrane.errors import (
    DigestMismatch,
    ManifestError,
    SizeMismatch,
    VerificationError,
)
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest, DigestHasher
from pycrane.v1.image import Image, ImageIndex, Layer, is_index
from pycrane.v1.manifest import parse_manifest

__all__ = ["validate", "validate_image", "validate_index", "validate_layer"]

_WORKERS = 4


def _check_bytes(what: str, data: bytes, digest: Digest, size: int | None) -> None:
    h = DigestHasher(digest.algorithm)
    h.update(data)
    h.verify(what, digest, size)


def _check_descriptor(what: str, declared: Descriptor, actual: Descriptor) -> None:
    if actual.digest != declared.digest:
        raise DigestMismatch(what, str(declared.digest), str(actual.digest))
    if actual.size != declared.size:
        raise SizeMismatch(what, declared.size, actual.size)
    if actual.media_type != declared.media_type:
        raise ManifestError(
            f"{what}: media type {actual.media_type!r}, the manifest says {declared.media_type!r}"
        )


class _Tee(io.RawIOBase):
    """Hash the compressed bytes while the decompressor reads them."""

    def __init__(self, raw: BinaryIO, hasher: DigestHasher) -> None:
        self._raw = raw
        self._h = hasher

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._raw.read(len(b))
        n = len(data)
        memoryview(b).cast("B")[:n] = data
        self._h.update(data)
        return n

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def validate_layer(
    layer: Layer,
    *,
    digest: Digest | None = None,
    size: int | None = None,
    diff_id: Digest | None = None,
    what: str | None = None,
) -> None:
    """Stream a layer once: its blob must hash to ``digest`` (and ``size``), its
    uncompressed tar to ``diff_id`` (defaults: the layer's own claims)."""
    d = layer.descriptor()
    digest = digest or d.digest
    size = d.size if size is None else size
    what = what or f"layer {digest}"
    blob = DigestHasher(digest.algorithm)
    want_diff = diff_id if diff_id is not None else layer.diff_id()
    tar = DigestHasher(want_diff.algorithm)
    tee = cast(BinaryIO, io.BufferedReader(_Tee(layer.compressed(), blob), CHUNK))
    try:
        reader = comp.decompressed_reader(tee, None)
    except Exception:
        tee.close()
        raise
    try:
        with reader:
            while chunk := reader.read(CHUNK):
                tar.update(chunk)
            # Trailing bytes after the compressed stream still belong to the blob.
            while tee.read(CHUNK):
                pass
    except (OSError, EOFError, ValueError) as e:
        # Corrupt bytes or a faithfully stored but undecodable blob? Hash it again to
        # report the root cause: a digest mismatch wins.
        again = DigestHasher(digest.algorithm)
        with layer.compressed() as r:
            while chunk := r.read(CHUNK):
                again.update(chunk)
        again.verify(what, digest, size)
        if isinstance(e, VerificationError):
            raise
        raise VerificationError(f"{what}: cannot decompress it ({e})") from None
    blob.verify(what, digest, size)
    tar.verify(f"{what} (uncompressed)", want_diff)


def validate_image(img: Image, *, fast: bool = False) -> None:
    """Recompute the manifest, config and (unless ``fast``) layer digests of ``img``."""
    raw = img.raw_manifest()
    desc = img.descriptor()
    what = f"image {desc.digest}"
    _check_bytes(f"{what} manifest", raw, desc.digest, desc.size)
    m = img.manifest()
    parsed = parse_manifest(raw, m.media_type)
    if is_index(img) or not mt.is_image(parsed.media_type):
        raise ManifestError(f"{what}: expected an image manifest, got {parsed.media_type}")
    raw_cfg = img.raw_config()
    _check_bytes(f"{what} config", raw_cfg, m.config.digest, m.config.size)
    diff_ids: tuple[Digest, ...] | None = None
    if mt.is_config(m.config.media_type):
        cfg = img.config_file()
        diff_ids = cfg.diff_ids
        if len(diff_ids) != len(m.layers):
            raise ManifestError(
                f"{what}: config lists {len(diff_ids)} diff_ids for {len(m.layers)} layers"
            )
    layers = img.layers()
    if len(layers) != len(m.layers):
        raise ManifestError(f"{what}: {len(layers)} layers for {len(m.layers)} manifest entries")
    for i, (layer, d) in enumerate(zip(layers, m.layers, strict=True)):
        _check_descriptor(f"{what} layer {i}", d, layer.descriptor())
    if fast:
        return

    def check(i: int) -> None:
        d = m.layers[i]
        if not mt.is_layer(d.media_type) and not (
            d.media_type.endswith("tar") or "+gzip" in d.media_type or "+zstd" in d.media_type
        ):
            # An artifact blob: only its bytes can be checked.
            with layers[i].compressed() as r:
                h = DigestHasher(d.digest.algorithm)
                while chunk := r.read(CHUNK):
                    h.update(chunk)
            h.verify(f"{what} blob {i}", d.digest, d.size)
            return
        validate_layer(
            layers[i],
            digest=d.digest,
            size=d.size,
            diff_id=diff_ids[i] if diff_ids is not None else None,
            what=f"{what} layer {i} ({d.digest})",
        )

    # The first failure is raised in layer order.
    bounded_map(check, range(len(layers)), _WORKERS)


def validate_index(idx: ImageIndex, *, fast: bool = False) -> None:
    """Recompute the index digest, then validate every child image and nested index."""
    raw = idx.raw_manifest()
    desc = idx.descriptor()
    what = f"index {desc.digest}"
    _check_bytes(f"{what} manifest", raw, desc.digest, desc.size)
    for i, d in enumerate(idx.index_manifest().manifests):
        child_what = f"{what} child {i} ({d.digest})"
        if mt.is_index(d.media_type):
            child_idx = idx.image_index(d.digest)
            _check_descriptor(child_what, _plain(d), _plain(child_idx.descriptor()))
            validate_index(child_idx, fast=fast)
        elif mt.is_image(d.media_type):
            child = idx.image(d.digest)
            _check_descriptor(child_what, _plain(d), _plain(child.descriptor()))
            validate_image(child, fast=fast)
        else:
            raise ManifestError(f"{child_what}: media type {d.media_type!r} is not a manifest")


def _plain(d: Descriptor) -> Descriptor:
    return Descriptor(media_type=d.media_type, digest=d.digest, size=d.size)


def validate(obj: Image | ImageIndex, *, fast: bool = False) -> None:
    """:func:`validate_index` or :func:`validate_image`, whichever ``obj`` is."""
    if is_index(obj):
        validate_index(obj, fast=fast)
    else:
        validate_image(obj, fast=fast)
