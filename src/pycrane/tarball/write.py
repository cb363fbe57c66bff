"""Write ``docker save`` tarballs.

The layout is the one Docker 25+ writes, read by every ``docker load`` and by
``skopeo copy docker-archive:``: every blob (config, layers, manifest) stored once
as ``blobs/sha256/<hex>``, an ``index.json`` + ``oci-layout`` pair (an OCI layout,
which keeps the exact manifest bytes so the image reads back with its digest),
then ``manifest.json`` (Config, RepoTags, Layers) and ``repositories``. Layers
keep their compressed bytes: a tarball round trip changes no digest.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, BinaryIO, TypeAlias

from pycrane._concurrency import bounded_map
from pycrane.errors import InvalidReference, ManifestError
from pycrane.name import DigestRef, Reference, Tag, familiar, parse_reference
from pycrane.progress import ProgressSink
from pycrane.tarball._prefetch import Prefetcher
from pycrane.tarball._sink import Target, TarSink
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import ANNOTATION_REF_NAME
from pycrane.v1.digest import Digest
from pycrane.v1.image import Image, Layer
from pycrane.v1.manifest import canonical_json

__all__ = ["ImagesArg", "normalize_images", "write"]

#: ``{ref: image}`` or ``[(refs, image), ...]`` where refs is one reference, several, or None.
ImagesArg: TypeAlias = (
    Mapping[str | Reference, Image]
    | Sequence[tuple[str | Reference | Sequence[str | Reference] | None, Image]]
)

ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"


def _tags_of(refs: Any) -> list[Tag]:
    if refs is None:
        return []
    if isinstance(refs, (str, Tag, DigestRef)):
        refs = [refs]
    out: list[Tag] = []
    for r in refs:
        ref = parse_reference(r)
        if isinstance(ref, Tag):
            out.append(ref)
        elif not isinstance(ref, DigestRef):  # pragma: no cover - parse_reference is total
            raise InvalidReference(f"reference {r!r}: expected a tag")
    return out


def normalize_images(images: ImagesArg) -> list[tuple[list[Tag], Image]]:
    """Group the references per image (by manifest digest), keeping first-seen order."""
    pairs: Iterable[tuple[Any, Image]]
    pairs = images.items() if isinstance(images, Mapping) else images
    grouped: dict[Digest, tuple[list[Tag], Image]] = {}
    for refs, img in pairs:
        d = img.digest()
        tags, _ = grouped.setdefault(d, ([], img))
        for t in _tags_of(refs):
            if t not in tags:
                tags.append(t)
    return list(grouped.values())


def _blob_name(d: Digest) -> str:
    return f"blobs/{d.algorithm}/{d.hex}"


def write(
    target: Target,
    images: ImagesArg,
    *,
    progress: ProgressSink | None = None,
    jobs: int = 1,
) -> None:
    """Write images as one ``docker save`` tarball to a path or a writable stream.

    A path is written to a temp file next to it and moved into place only when
    complete and verified; a stream gets the bytes as they come. Each distinct blob
    is stored once, however many images or manifest entries share it. Layers are
    streamed (memory stays bounded) and checked against their digests. For a path,
    every member's header is written first and up to ``jobs`` layers are fetched at
    once straight into their places in the file; for a stream, the next
    ``jobs - 1`` layers are fetched into temp files while the current one is
    written. Both give the same bytes.

    A path's temp file outlives an interruption (Ctrl-C, SIGTERM, a lost network,
    even ``kill -9``) with a plan of its layer regions, and the same call later
    continues it with ``Range`` requests (:mod:`pycrane.tarball._resume`).
    """
    entries = normalize_images(images)
    if not entries:
        raise ManifestError("tarball: no images to write")
    distinct: dict[Digest, int] = {}
    order: list[Layer] = []
    for _, img in entries:
        for layer in img.layers():
            key = layer.digest()
            if key not in distinct:
                distinct[key] = len(order)
                order.append(layer)
    # What an interrupted pull's kept temp file must be for to be continued (_resume).
    plan_key = json.dumps([[str(img.digest()), [str(t) for t in tags]] for tags, img in entries])
    with (
        TarSink(target, progress, resume_key=plan_key) as sink,
        Prefetcher([] if sink.positional else order, jobs) as ahead,
    ):
        # (offset, layer) of members whose data is fetched after the skeleton is written
        pending: list[tuple[int, Layer]] = []
        sink.add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        written: set[Digest] = set()
        manifest_json: list[dict[str, Any]] = []
        index_entries: list[dict[str, Any]] = []
        repositories: dict[str, dict[str, str]] = {}
        for tags, img in entries:
            m = img.manifest()
            if m.config.digest not in written:
                cfg = img.raw_config()
                sink.add_stream(
                    _blob_name(m.config.digest),
                    _bytes_stream(cfg),
                    m.config.digest,
                    m.config.size,
                    f"config {m.config.digest}",
                )
                written.add(m.config.digest)
            layers = img.layers()
            layer_names = []
            for layer in layers:
                d = layer.descriptor()
                layer_names.append(_blob_name(d.digest))
                if d.digest in written:
                    sink.progress.finish(d.digest, skipped=True)
                    continue
                if sink.positional:
                    pending.append((sink.reserve(_blob_name(d.digest), d.size, d.digest), layer))
                else:
                    stream = ahead.open(distinct[d.digest])
                    sink.add_stream(
                        _blob_name(d.digest), stream, d.digest, d.size, f"layer {d.digest}"
                    )
                written.add(d.digest)
            if m.digest not in written:
                sink.add_bytes(_blob_name(m.digest), img.raw_manifest())
                written.add(m.digest)
            desc = {"mediaType": m.media_type, "digest": str(m.digest), "size": m.size}
            if tags:
                for t in tags:
                    index_entries.append(
                        {
                            **desc,
                            "annotations": {
                                ANNOTATION_CONTAINERD_NAME: str(t),
                                ANNOTATION_REF_NAME: t.tag,
                            },
                        }
                    )
            else:
                index_entries.append(desc)
            manifest_json.append(
                {
                    "Config": _blob_name(m.config.digest),
                    "RepoTags": [familiar(t) for t in tags] or None,
                    "Layers": layer_names,
                }
            )
            if layers:
                top = layers[-1].digest().hex
                for t in tags:
                    repo = familiar(t.repository)
                    repositories.setdefault(repo, {})[t.tag] = top
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index_entries}
        sink.add_bytes("index.json", canonical_json(index))
        sink.add_bytes("manifest.json", json.dumps(manifest_json).encode())
        if repositories:
            sink.add_bytes("repositories", json.dumps(repositories).encode())
        _fill(sink, pending, jobs)


def _fill(sink: TarSink, pending: list[tuple[int, Layer]], jobs: int) -> None:
    """Fetch reserved layers, ``jobs`` at once, into their places; the first failure stops all."""
    stop = threading.Event()
    adopted = sink.adopted()  # what an interrupted run of this pull kept

    def fill(item: tuple[int, Layer]) -> None:
        offset, layer = item
        d = layer.descriptor()
        have = adopted.get(offset, 0)
        at = getattr(layer, "compressed_at", None)
        what = f"layer {d.digest}"
        if have and sink.fill_resumed(offset, have, at, d.digest, d.size, what, stop):
            return
        # A layer read through a cache (crane.cached) downloads into it first: let that
        # download, too, give up once another layer failed.
        unless = getattr(layer, "compressed_unless", None)
        source = unless(stop) if unless is not None else layer.compressed()
        sink.fill(offset, source, d.digest, d.size, f"layer {d.digest}", stop)

    bounded_map(fill, pending, jobs, stop=stop)


def _bytes_stream(data: bytes) -> BinaryIO:
    return io.BytesIO(data)
