"""OCI image layouts: ``oci-layout``, ``index.json`` and ``blobs/`` in one directory.

Writes are ordered so that nothing refers to content that is not there yet:
layers and config first (de-duplicated by digest, on a bounded thread pool: the
:class:`~pycrane.layout._plan.WritePlan`), then the manifest, then, for an index,
the index manifest after all its children, and ``index.json`` last, as a locked
read-modify-write with an atomic replace (:mod:`pycrane.layout._index_json`).
Images read back lazily (:mod:`pycrane.layout.readers`); gc and validation live
in :mod:`pycrane.layout._maintenance`.

Garbage collection takes the same lock. A writer may find a blob present, skip
it, and have ``gc`` delete it before its ``index.json`` entry exists; so every
``append_*`` re-checks, *under the lock*, that every blob its entry reaches is
present, and writes the missing ones again before committing. Blobs written
with ``write_image``/``write_blob`` alone are unreferenced and fair game for gc.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from pycrane import _fs
from pycrane._concurrency import bounded_map
from pycrane._rollback import is_interruption
from pycrane.errors import ManifestError, NotFoundError, StoreError
from pycrane.layout._index_json import LAYOUT_VERSION, IndexFile, adding, removing
from pycrane.layout._maintenance import GcResult, collect, problems, reachable
from pycrane.layout._plan import Blobs, WritePlan, decorate
from pycrane.layout.readers import (
    MANIFEST_MAX,
    LayoutImage,
    LayoutIndex,
    LayoutLayer,
    LayoutRootIndex,
)
from pycrane.layout.store import BlobStore, StaleIngest
from pycrane.progress import ProgressSink
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import Image, ImageIndex, Layer, is_index
from pycrane.v1.manifest import Index, parse_manifest
from pycrane.v1.platform import Platform

__all__ = [
    "LAYOUT_VERSION",
    "GcResult",
    "Layout",
    "LayoutImage",
    "LayoutIndex",
    "LayoutLayer",
    "LayoutRootIndex",
]


class Layout:
    """An OCI image layout directory. Use :meth:`create`, :meth:`open` or :meth:`open_or_create`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = True,
        lock_timeout: float = 60.0,
        verify_existing: bool = False,
    ) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.lock_timeout = lock_timeout
        self.store = BlobStore(
            self.path, fsync=fsync, verify_existing=verify_existing, lock_timeout=lock_timeout
        )
        self._index = IndexFile(self.path, fsync=fsync, lock_timeout=lock_timeout)
        self._swept = False

    def __repr__(self) -> str:
        return f"Layout({str(self.path)!r})"

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(cls, path: str | os.PathLike[str], **kw: Any) -> Layout:
        """Make a new, empty layout; fails if ``path`` already holds one."""
        layout = cls(path, **kw)
        layout._mkdir()
        with layout.lock():
            if _fs.stat(layout._index.path) is not None:
                raise StoreError(f"layout {layout.path}: already exists (use Layout.open)")
            layout._init_files()
        layout._sweep_once()
        return layout

    @classmethod
    def open(cls, path: str | os.PathLike[str], **kw: Any) -> Layout:
        """Open an existing layout; a clear error if ``path`` is not one."""
        layout = cls(path, **kw)
        layout._check()
        return layout

    @classmethod
    def open_or_create(cls, path: str | os.PathLike[str], **kw: Any) -> Layout:
        """Open the layout at ``path``, creating it (and ``path``) if needed; safe to race."""
        layout = cls(path, **kw)
        if _fs.stat(layout._index.path) is None:
            layout._mkdir()
            with layout.lock():
                layout._init_files()
        layout._check()
        layout._sweep_once()
        return layout

    def _mkdir(self) -> None:
        try:
            _fs.ensure_dir(self.path, durable=self.fsync)
        except OSError as e:
            raise StoreError(
                f"layout {self.path}: cannot create the directory ({e.strerror or e})"
            ) from None

    def _init_files(self) -> None:
        self._index.init_files()

    def _check(self) -> None:
        self._index.check()

    def _sweep_once(self) -> None:
        """Remove what crashed writers left (``ingest/``, ``index.json`` temps), once."""
        if self._swept:
            return
        self._swept = True
        with contextlib.suppress(OSError):
            self.store.sweep()
            self._index.sweep_temps()

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """The cross-process lock that serialises ``index.json`` changes and gc."""
        return self._index.lock()

    # ------------------------------------------------------------------ index.json

    def raw_index(self) -> bytes:
        """The bytes of ``index.json`` (read whole and closed at once)."""
        return self._index.raw()

    def index(self) -> Index:
        """``index.json`` parsed."""
        return self._index.parse()

    def descriptors(self) -> list[Descriptor]:
        """The entries of ``index.json``."""
        return list(self.index().manifests)

    def root_index(self) -> ImageIndex:
        """``index.json`` as a lazy :class:`ImageIndex` over this layout."""
        return LayoutRootIndex(self, self.raw_index())

    def append_descriptor(self, desc: Descriptor) -> None:
        """Add an entry to ``index.json``; one entry per (digest, ref name), a ref name moves."""
        self._commit_entry(desc, [(desc.digest, desc.size)], None)

    def _commit_entry(
        self, desc: Descriptor, required: Blobs, rewrite: Callable[[], Blobs] | None
    ) -> None:
        """Add ``desc`` once every ``required`` blob is present (gc may have taken one
        meanwhile: ``rewrite`` writes them again, under the lock)."""

        def missing(blobs: Blobs) -> list[Digest]:
            return [d for d, size in blobs if not self.store.exists(d, size)]

        self._sweep_once()
        self._index.update(
            adding(desc),
            missing=lambda: missing(required),
            repair=(lambda: missing(rewrite())) if rewrite is not None else None,
            what=str(desc.digest),
        )

    def remove_descriptors(self, match: Callable[[Descriptor], bool]) -> int:
        """Drop every ``index.json`` entry for which ``match`` is true; returns how many."""
        change, removed = removing(match)
        self._sweep_once()
        self._index.update(change)
        return removed[0]

    # ------------------------------------------------------------------ writing

    def write_blob(
        self,
        source: bytes | BinaryIO | Iterable[bytes],
        *,
        digest: Digest | None = None,
        size: int | None = None,
        progress: ProgressSink | None = None,
    ) -> tuple[Digest, int]:
        """Store one blob (verified); returns ``(digest, size)``."""
        self._sweep_once()
        return self.store.put(source, digest=digest, size=size, progress=progress)

    def write_image(
        self, img: Image, *, jobs: int = 4, progress: ProgressSink | None = None
    ) -> Descriptor:
        """Write an image's blobs (layers, config, then the manifest); returns its descriptor."""
        return self._write_image(img, jobs, progress)[0]

    def _write_image(
        self, img: Image, jobs: int, progress: ProgressSink | None
    ) -> tuple[Descriptor, Blobs]:
        plan = WritePlan()
        desc = plan.add_image(img)
        return desc, self._execute(plan, jobs, progress)

    def _execute(self, plan: WritePlan, jobs: int, progress: ProgressSink | None) -> Blobs:
        """Write every blob of ``plan`` on one bounded pool, then its manifests in order.

        Blobs of all the children of an index share the pool, so an index of three
        platforms downloads ``jobs`` blobs at once rather than one image at a time;
        a manifest is published only after everything it points at.
        """
        self._sweep_once()
        stop = threading.Event()  # set by bounded_map when a blob fails: the others give up

        def write_one(desc: Descriptor, source: Layer | Callable[[], bytes]) -> None:
            if not isinstance(source, Layer):
                self.store.put(source(), digest=desc.digest, size=desc.size)
                return
            # Foreign layers are fetched from their URLs, so one that cannot be is skipped
            # (like ggcr); every other blob must be stored.
            foreign = not mt.is_distributable(desc.media_type) and bool(desc.urls)
            with contextlib.suppress(NotFoundError) if foreign else contextlib.nullcontext():
                self.store.put_from(
                    source.compressed,
                    digest=desc.digest,
                    size=desc.size,
                    progress=progress,
                    stop=stop,
                    resume=getattr(source, "compressed_at", None),
                )

        try:
            bounded_map(lambda item: write_one(*item), plan.blobs.values(), jobs, stop=stop)
        except BaseException as e:
            # Partial downloads outlive an interruption (the next append resumes them),
            # not a failure such as a corrupt blob: then nothing of this call stays.
            if not is_interruption(e):
                with contextlib.suppress(OSError):
                    self.store.drop_partials()
            raise
        for raw, desc in plan.manifests:
            self.store.put(raw, digest=desc.digest, size=desc.size)
        blobs = [(d.digest, d.size) for d, _ in plan.blobs.values() if self._stored(d)]
        blobs += [(d.digest, d.size) for _, d in plan.manifests]
        return blobs

    def _stored(self, d: Descriptor) -> bool:
        return mt.is_distributable(d.media_type) or not d.urls or self.store.exists(d.digest)

    def write_index(
        self, idx: ImageIndex, *, jobs: int = 4, progress: ProgressSink | None = None
    ) -> Descriptor:
        """Write an index: every child first (recursively), then the index manifest."""
        return self._write_index(idx, jobs, progress)[0]

    def _write_index(
        self, idx: ImageIndex, jobs: int, progress: ProgressSink | None
    ) -> tuple[Descriptor, Blobs]:
        plan = WritePlan()
        desc = plan.add_index(idx)
        return desc, self._execute(plan, jobs, progress)

    def append_image(
        self,
        img: Image,
        *,
        ref_name: str | None = None,
        annotations: Mapping[str, str] | None = None,
        platform: Platform | None = None,
        jobs: int = 4,
        progress: ProgressSink | None = None,
    ) -> Descriptor:
        """Write an image and add it to ``index.json``; returns the entry written."""
        desc, blobs = self._write_image(img, jobs, progress)
        desc = decorate(desc, ref_name, annotations, platform)
        self._commit_entry(desc, blobs, lambda: self._write_image(img, jobs, progress)[1])
        return desc

    def append_index(
        self,
        idx: ImageIndex,
        *,
        ref_name: str | None = None,
        annotations: Mapping[str, str] | None = None,
        jobs: int = 4,
        progress: ProgressSink | None = None,
    ) -> Descriptor:
        """Write an index (children first) and add it to ``index.json``."""
        desc, blobs = self._write_index(idx, jobs, progress)
        desc = decorate(desc, ref_name, annotations, None)
        self._commit_entry(desc, blobs, lambda: self._write_index(idx, jobs, progress)[1])
        return desc

    def append(
        self,
        obj: Image | ImageIndex,
        *,
        ref_name: str | None = None,
        annotations: Mapping[str, str] | None = None,
        jobs: int = 4,
        progress: ProgressSink | None = None,
    ) -> Descriptor:
        """:meth:`append_image` or :meth:`append_index`, whichever ``obj`` is."""
        if is_index(obj):
            return self.append_index(
                obj,
                ref_name=ref_name,
                annotations=annotations,
                jobs=jobs,
                progress=progress,
            )
        return self.append_image(
            obj,
            ref_name=ref_name,
            annotations=annotations,
            jobs=jobs,
            progress=progress,
        )

    # ------------------------------------------------------------------ reading

    def resolve(self, digest_or_ref: str | Digest | Descriptor) -> Descriptor:
        """The descriptor for a digest, a ref name (``org.opencontainers.image.ref.name``)
        or a descriptor; a digest not listed in ``index.json`` is looked up in ``blobs/``."""
        if isinstance(digest_or_ref, Descriptor):
            return digest_or_ref
        entries = self.descriptors()
        if isinstance(digest_or_ref, Digest) or (
            ":" in digest_or_ref and _is_digest(digest_or_ref)
        ):
            digest = Digest.parse(digest_or_ref)
            for d in entries:
                if d.digest == digest:
                    return d
            size = self.store.size(digest)
            if size is None:
                raise NotFoundError(f"layout {self.path}: no manifest {digest}")
            raw = self.store.read_bytes(digest, max_size=MANIFEST_MAX)
            parsed = parse_manifest(raw)
            return Descriptor(media_type=parsed.media_type, digest=digest, size=len(raw))
        found = {d.digest: d for d in entries if d.ref_name == digest_or_ref}
        if not found:
            raise NotFoundError(f"layout {self.path}: no entry named {digest_or_ref!r}")
        if len(found) > 1:
            raise NotFoundError(
                f"layout {self.path}: {len(found)} entries are named {digest_or_ref!r}; "
                "give a digest"
            )
        return next(iter(found.values()))

    def image(self, digest_or_ref: str | Digest | Descriptor) -> Image:
        """A lazy image from this layout (blobs are verified as they are read)."""
        desc = self.resolve(digest_or_ref)
        if mt.is_index(desc.media_type):
            raise ManifestError(f"layout {self.path}: {desc.digest} is an index, not an image")
        return LayoutImage(self, desc)

    def image_index(self, digest_or_ref: str | Digest | Descriptor) -> ImageIndex:
        """A lazy index from this layout."""
        desc = self.resolve(digest_or_ref)
        if mt.is_image(desc.media_type):
            raise ManifestError(f"layout {self.path}: {desc.digest} is an image, not an index")
        return LayoutIndex(self, desc)

    def get(self, digest_or_ref: str | Digest | Descriptor) -> Image | ImageIndex:
        """An image or an index, whichever the entry is."""
        desc = self.resolve(digest_or_ref)
        if mt.is_index(desc.media_type):
            return LayoutIndex(self, desc)
        if mt.is_image(desc.media_type):
            return LayoutImage(self, desc)
        raw = self.store.read_bytes(desc.digest, max_size=MANIFEST_MAX)
        if isinstance(parse_manifest(raw), Index):
            return LayoutIndex(self, desc)
        return LayoutImage(self, desc)

    # ------------------------------------------------------------------ maintenance

    def _reachable(self, problems: list[str] | None = None) -> dict[Digest, int]:
        """Every blob reachable from ``index.json``, with the size it is referenced with."""
        return reachable(self.store, self.descriptors(), problems)

    def gc(self) -> GcResult:
        """Delete blobs no longer reachable from ``index.json``; returns what was deleted.

        Also removes what dead writers left in ``ingest/`` (partial downloads included),
        listed in the result's ``ingests``; a live writer's files are never touched. On
        Windows a blob someone holds open cannot be deleted: it is skipped (after a
        short retry) and left for the next gc.
        """
        with self.lock():
            return collect(self.store, self._reachable())

    def stale_ingests(self) -> list[StaleIngest]:
        """Clean ``ingest/`` as opening a layout for writing does, and list what dead writers
        left: their temp files are removed, their partial downloads kept (``removed`` False)
        for the next pull to resume; :meth:`gc` removes those too."""
        try:
            return self.store.clean_ingests()
        except OSError:
            return []

    def validate(self, fast: bool = False) -> list[str]:
        """Problems found in the layout (an empty list means it is sound).

        Checks that every blob hashes to its name, every referenced blob exists with
        the size it is referenced with, manifests and configs parse, and (unless
        ``fast``) validates every image with :mod:`pycrane.validate` (each layer's
        uncompressed digest against the config's diff_id).
        """
        try:
            self._check()
            entries = self.descriptors()
        except (StoreError, ManifestError) as e:
            return [str(e)]
        return problems(self, entries, fast)


def _is_digest(value: str) -> bool:
    if ":" not in value:
        return False
    try:
        Digest.parse(value)
    except ValueError:
        return False
    return True
