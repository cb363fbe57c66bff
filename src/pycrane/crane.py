"""crane's verbs as functions of string references: what the ``pycrane`` command runs.

The registry verbs (digest, manifest, config, copy, ls, catalog, tag, delete) are
:mod:`pycrane.remote`'s module functions; this module adds the ones that join a
registry with local files, so Python code gets exactly what the CLI does::

    from pycrane import crane
    crane.pull(["alpine:3.20"], "alpine.tar")                       # docker save tarball
    crane.pull(["alpine:3.20"], "layout", format="oci", platforms=["linux/arm64"])
    crane.push("layout", "localhost:5000/alpine:3.20")              # -> DigestRef
    crane.validate_path("layout")                                    # raises on the first problem

Every function takes ``client=`` (a :class:`pycrane.remote.Client`) to reuse one
connection pool and token cache; without it a default client is made and closed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO, Literal

from pycrane.errors import ManifestError
from pycrane.name import DigestRef, Reference, parse_reference
from pycrane.progress import ProgressSink
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import (
    Image,
    ImageBase,
    ImageIndex,
    ImageIndexBase,
    Layer,
    LayerBase,
    is_index,
)
from pycrane.v1.match import filter_index, select_image
from pycrane.v1.platform import Platform

if TYPE_CHECKING:
    from pycrane.layout import BlobStore, Layout
    from pycrane.remote import Client

__all__ = [
    "PullFormat",
    "cached",
    "filter_index",
    "image_or_index",
    "load",
    "pull",
    "push",
    "validate_path",
]

PullFormat = Literal["tarball", "legacy", "oci"]


@contextmanager
def _client(client: Client | None) -> Iterator[Client]:
    if client is not None:
        yield client
        return
    from pycrane.remote import Client

    with Client() as c:
        yield c


def _platforms(values: Sequence[Platform | str] | None) -> list[Platform]:
    return [Platform.parse(p) for p in values or ()]


# ----------------------------------------------------------------------- resolving


def image_or_index(
    ref: str | Reference,
    platforms: Sequence[Platform | str] = (),
    *,
    client: Client | None = None,
) -> Image | ImageIndex:
    """What ``ref`` names, narrowed by ``platforms``, with one manifest GET.

    One platform: that image. Several: the index keeping only them. None: the image,
    or the whole index.
    """
    r = parse_reference(ref) if isinstance(ref, str) else ref
    wanted = _platforms(platforms)
    with _client(client) as c:
        rd = c.get(r)
        if not rd.is_index():
            return rd.image()
        idx = rd.index()
        if len(wanted) == 1:
            return select_image(idx, wanted[0], f"index {r}")
        return filter_index(idx, wanted, f"index {r}") if wanted else idx


def load(
    path: str | os.PathLike[str], *, index: bool = False, tag: str | Reference | None = None
) -> Image | ImageIndex:
    """The image (or index) stored at ``path``, as ``crane push`` reads it.

    A directory is an OCI layout: its one entry, or with ``index`` its whole
    index.json as one index (a layout holding several entries needs ``index``).
    Anything else is a docker-save tarball: its one image, or the one tagged ``tag``.
    """
    if os.path.isdir(path):
        from pycrane.layout import Layout

        layout = Layout.open(path)
        if index:
            return layout.root_index()
        descs = list(layout.descriptors())
        if len(descs) != 1:
            raise ManifestError(
                f"layout {path}: expected one entry in index.json, found {len(descs)} "
                "(use --index to push them all as one index)"
            )
        return layout.get(descs[0])
    from pycrane.tarball import image_from_path

    return image_from_path(path, tag)


# ----------------------------------------------------------------------- pull, push


def pull(
    refs: Sequence[str | Reference],
    path: str | os.PathLike[str],
    *,
    format: PullFormat = "tarball",
    platforms: Sequence[Platform | str] | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    annotate_ref: bool = False,
    jobs: int = 4,
    progress: ProgressSink | None = None,
    client: Client | None = None,
) -> None:
    """Pull ``refs`` into ``path``: a docker-save tarball, a legacy tarball or an OCI layout.

    An OCI layout keeps a whole index unless ``platforms`` narrows it (several give a
    filtered index); ``annotate_ref`` names each entry with the reference. Tarballs
    hold single images: an index resolves to the one platform given, or linux/amd64.
    ``cache_path`` puts a verified layer cache (a BlobStore) in front of the registry.
    Output files appear only when complete.
    """
    parsed = [parse_reference(r) for r in refs]
    wanted = _platforms(platforms)
    with _client(client) as c:
        if format == "oci":
            # Resolve every reference first: a missing tag, a refused login or a dead
            # registry then fails before anything exists on disk.
            objs = [image_or_index(ref, wanted, client=c) for ref in parsed]
            if cache_path:
                objs = [cached(obj, cache_path) for obj in objs]
            _pull_layout(
                path, parsed, objs, annotate_ref=annotate_ref, jobs=jobs, progress=progress
            )
            return
        if format not in ("tarball", "legacy"):
            raise ValueError(f"pull format {format!r}: expected tarball, legacy or oci")
        if len(wanted) > 1:
            raise ManifestError(
                f"--format {format} holds single images: give one platform, or use --format oci"
            )
        from pycrane import tarball

        chosen: dict[str | Reference, Image] = {}
        for ref in parsed:
            img = c.image(ref, wanted[0] if wanted else None)
            chosen[ref] = cached(img, cache_path) if cache_path else img  # type: ignore[assignment]
        if format == "legacy":
            tarball.write_legacy(path, chosen, progress=progress)
        else:
            tarball.write(path, chosen, progress=progress, jobs=jobs)


def _pull_layout(
    path: str | os.PathLike[str],
    refs: Sequence[Reference],
    objs: Sequence[Image | ImageIndex],
    *,
    annotate_ref: bool,
    jobs: int,
    progress: ProgressSink | None,
) -> None:
    """Append ``objs`` to the layout at ``path``; a failure leaves it as it was.

    Each append is atomic (index.json changes last, under its lock), so an existing
    layout keeps its entries whatever happens, and on a failure the blobs and partial
    downloads this call added are removed again; a new layout (a missing or empty
    directory) is removed whole (:func:`pycrane._rollback.output_dir`).

    An interruption is different (Ctrl-C, SIGTERM, a lost network:
    :func:`pycrane._rollback.is_interruption`): what was downloaded stays, verified
    blobs in ``blobs/`` and partial downloads in ``ingest/`` (no index.json entry
    refers to either), so that running the same pull again resumes where this one
    stopped. The exception then carries a note saying so, which the CLI prints.
    """
    from pycrane._rollback import add_note, is_interruption, output_dir
    from pycrane.layout import Layout

    kept: list[str] = []
    with output_dir(path, keep=lambda e: bool(kept) and is_interruption(e)) as new:
        layout = Layout.open_or_create(path)
        before: set[Digest] = set() if new else set(layout.store.digests())
        try:
            for ref, obj in zip(refs, objs, strict=True):
                layout.append(
                    obj, ref_name=str(ref) if annotate_ref else None, jobs=jobs, progress=progress
                )
        except BaseException as e:
            if is_interruption(e):
                note = _kept_note(layout, before)
                if note:
                    kept.append(note)
                    add_note(e, note)
                    raise
            if not new:
                _drop_unreferenced(layout, before)
                layout.store.drop_partials()
            raise


def _kept_note(layout: Layout, before: set[Digest]) -> str | None:
    """What an interrupted pull keeps for the next run, in one phrase (None: nothing)."""
    try:
        blobs = [d for d in layout.store.digests() if d not in before]
        blob_bytes = sum(layout.store.size(d) or 0 for d in blobs)
        partials, partial_bytes = layout.store.partial_bytes()
    except OSError:
        return None
    total = blob_bytes + partial_bytes
    if not total:
        return None
    return (
        f"kept {total / (1 << 20):.1f} MiB of downloads in {layout.path} "
        f"({len(blobs)} complete blob{'' if len(blobs) == 1 else 's'}, {partials} partial in "
        f"{layout.store.ingest_dir}); "
        "run the same command again to resume"
    )


def _drop_unreferenced(layout: Layout, before: set[Digest]) -> None:
    """Remove blobs that appeared since ``before`` and no index.json entry reaches.

    Under the layout lock, as gc: a concurrent pull that wrote one of them and has
    not committed yet finds it missing when it commits and writes it again
    (Layout._update_index), so nothing it needs is lost.
    """
    import contextlib

    from pycrane import _fs

    with contextlib.suppress(Exception), layout.lock():
        keep = layout._reachable()
        for digest in list(layout.store.digests()):
            if digest not in before and digest not in keep:
                with contextlib.suppress(OSError):
                    _fs.unlink(layout.store.path(digest), budget=0.2)


def push(
    path: str | os.PathLike[str],
    ref: str | Reference,
    *,
    index: bool = False,
    tag: str | Reference | None = None,
    jobs: int = 4,
    progress: ProgressSink | None = None,
    client: Client | None = None,
) -> DigestRef:
    """Push what :func:`load` reads at ``path`` to ``ref``; returns ``repository@digest``.

    Manifests go byte for byte, so digests stay what they were on disk. ``tag``
    picks an image from a docker-save tarball that holds several.
    """
    r = parse_reference(ref)
    obj = load(path, index=index, tag=tag)
    # Building the manifest describes every layer, which verifies a tarball's layers
    # against the config's diff_ids: a bad one is refused before anything is sent.
    obj.raw_manifest()
    with _client(client) as c:
        # Local blobs verify as they stream: sessions close only when all have.
        c.write(r, obj, jobs=jobs, progress=progress, all_or_nothing=True)
    return r.repository.digest(obj.digest())


def validate_path(path: str | os.PathLike[str], *, fast: bool = False) -> None:
    """Validate an OCI layout (every blob, every entry) or a docker-save tarball (every image).

    Raises the first problem (:class:`~pycrane.errors.VerificationError` or
    :class:`~pycrane.errors.ManifestError`), naming it.
    """
    from pycrane.errors import VerificationError
    from pycrane.validate import validate

    if not os.path.isdir(path):
        from pycrane.tarball import open_tarball

        archive = open_tarball(path)
        for entry in archive.entries:
            validate(archive.image_of(entry), fast=fast)
        return
    from pycrane.layout import Layout

    layout = Layout.open(path)
    problems = layout.validate(fast=fast)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise VerificationError(f"layout {path}: {problems[0]}{more}")
    for desc in layout.descriptors():
        if mt.is_index(desc.media_type) or mt.is_image(desc.media_type):
            validate(layout.get(desc), fast=fast)


# ----------------------------------------------------------------------- layer cache


def cached(obj: Image | ImageIndex, cache_path: str | os.PathLike[str]) -> Image | ImageIndex:
    """Wrap an image or index so its layers are read through a cache at ``cache_path``.

    crane's cache writes the final file while the consumer reads, so a cut-short
    read leaves a truncated "hit". Here the cache is a
    :class:`pycrane.layout.BlobStore`: a miss downloads the blob into the store
    first (hashed, size-checked, published atomically, single-flight), then the
    consumer reads the committed file. A hit is used only when its size matches,
    and consumers verify the digest as they read.
    """
    from pycrane.layout import BlobStore

    store = BlobStore(cache_path)
    if is_index(obj):
        return _CachedIndex(obj, store)
    return _CachedImage(obj, store)


class _CachedLayer(LayerBase):
    def __init__(self, inner: Layer, store: BlobStore, diff_id: Digest | None) -> None:
        super().__init__(diff_id)
        self._inner = inner
        self._store = store

    def descriptor(self) -> Descriptor:
        return self._inner.descriptor()

    def compressed(self) -> BinaryIO:
        d = self.descriptor()
        if not self._store.exists(d.digest, d.size):
            with self._inner.compressed() as src:
                self._store.put(src, digest=d.digest, size=d.size)
        return self._store.open(d.digest)


class _CachedImage(ImageBase):
    def __init__(self, inner: Image, store: BlobStore) -> None:
        super().__init__()
        self._inner = inner
        self._store = store

    def raw_manifest(self) -> bytes:
        return self._inner.raw_manifest()

    def raw_config(self) -> bytes:
        return self._inner.raw_config()

    def layer_for(self, descriptor: Descriptor, diff_id: Digest | None) -> Layer:
        return _CachedLayer(self._inner.layer_by_digest(descriptor.digest), self._store, diff_id)


class _CachedIndex(ImageIndexBase):
    def __init__(self, inner: ImageIndex, store: BlobStore) -> None:
        super().__init__()
        self._inner = inner
        self._store = store

    def raw_manifest(self) -> bytes:
        return self._inner.raw_manifest()

    def child(self, descriptor: Descriptor) -> Image | ImageIndex:
        if mt.is_index(descriptor.media_type):
            return _CachedIndex(self._inner.image_index(descriptor.digest), self._store)
        return _CachedImage(self._inner.image(descriptor.digest), self._store)
