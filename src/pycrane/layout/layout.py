"""OCI image layouts: ``oci-layout``, ``index.json`` and ``blobs/`` in one directory.

Writes are ordered so that nothing refers to content that is not there yet:
layers and config first (de-duplicated by digest, on a bounded thread pool), then
the manifest, then, for an index, the index manifest after all its children, and
``index.json`` last. ``index.json`` is never written in place: every change is a
read-modify-write under a cross-process lock on ``index.json.lock`` (a separate
file, because ``index.json`` itself gets replaced), written to a temp file, synced
and atomically replaced.

Garbage collection takes the same lock. A writer may find a blob present, skip
it, and have ``gc`` delete it before its ``index.json`` entry exists; so every
``append_*`` re-checks, *under the lock*, that every blob its entry reaches is
present, and writes the missing ones again before committing. Blobs written
with ``write_image``/``write_blob`` alone are unreferenced and fair game for gc.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from pycrane import _fs
from pycrane._concurrency import bounded_map
from pycrane.compression import CHUNK
from pycrane.errors import (
    LockTimeout,
    ManifestError,
    NotFoundError,
    SizeMismatch,
    StoreError,
    VerificationError,
)
from pycrane.layout.store import BlobStore, StaleIngest
from pycrane.progress import ProgressSink
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import ANNOTATION_REF_NAME, Descriptor
from pycrane.v1.digest import Digest, DigestHasher, VerifyingReader
from pycrane.v1.image import (
    Image,
    ImageBase,
    ImageIndex,
    ImageIndexBase,
    Layer,
    LayerBase,
    is_index,
)
from pycrane.v1.manifest import Index, Manifest, canonical_json, parse_manifest
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

LAYOUT_VERSION = "1.0.0"
_OCI_LAYOUT = "oci-layout"
_INDEX_JSON = "index.json"
_LOCK = "index.json.lock"
_MANIFEST_MAX = 4 << 20  # the distribution spec's manifest limit
_CONFIG_MAX = 64 << 20

Blobs = list[tuple[Digest, int]]
_T = TypeVar("_T")


def _empty_index_bytes() -> bytes:
    return canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []})


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
            if _fs.stat(layout.path / _INDEX_JSON) is not None:
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
        if _fs.stat(layout.path / _INDEX_JSON) is None:
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
        """Create ``oci-layout`` and an empty ``index.json`` where missing (under the lock)."""
        version = canonical_json({"imageLayoutVersion": LAYOUT_VERSION})
        if _fs.stat(self.path / _OCI_LAYOUT) is None:
            _fs.atomic_write_bytes(
                self.path / _OCI_LAYOUT, version, durable=self.fsync, exclusive=True
            )
        if _fs.stat(self.path / _INDEX_JSON) is None:
            _fs.atomic_write_bytes(
                self.path / _INDEX_JSON, _empty_index_bytes(), durable=self.fsync, exclusive=True
            )

    def _check(self) -> None:
        marker = self.path / _OCI_LAYOUT
        try:
            raw = _fs.read_bytes(marker)
        except FileNotFoundError:
            raise StoreError(
                f"{self.path}: not an OCI image layout (no {_OCI_LAYOUT} file)"
            ) from None
        except NotADirectoryError:
            raise StoreError(f"{self.path}: not an OCI image layout (not a directory)") from None
        try:
            obj = json.loads(raw)
            version = obj["imageLayoutVersion"]
        except (ValueError, TypeError, KeyError):
            raise StoreError(f"{marker}: expected a JSON object with imageLayoutVersion") from None
        if not isinstance(version, str) or not version.startswith("1."):
            raise StoreError(f"{marker}: unsupported imageLayoutVersion {version!r}")
        if _fs.stat(self.path / _INDEX_JSON) is None:
            raise StoreError(f"{self.path}: not an OCI image layout (no {_INDEX_JSON})")

    def _sweep_once(self) -> None:
        """Remove stale temps left by crashed writers (only looks at ``ingest/``)."""
        if self._swept:
            return
        self._swept = True
        with contextlib.suppress(OSError):
            self.store.sweep()
            self._sweep_root()

    def _sweep_root(self) -> None:
        """Remove temp files of ``index.json`` and ``oci-layout`` whose writer is gone.

        They are only written under the layout lock: when it is free, nobody writes them.
        """
        temps = [
            e.path
            for e in _fs.walk_files(self.path)
            if e.name.startswith(("." + _INDEX_JSON + ".", "." + _OCI_LAYOUT + "."))
            and e.name.endswith(".tmp")
        ]
        if not temps:
            return
        import filelock

        try:
            with filelock.FileLock(self.path / _LOCK, timeout=0, thread_local=False):
                for path in temps:
                    with contextlib.suppress(OSError):
                        _fs.unlink(path, budget=0)
        except filelock.Timeout:
            return  # a writer is at work: its temp files are its own

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The cross-process lock that serialises ``index.json`` changes and gc."""
        import filelock  # ~9 ms to import: paid only by commands that change index.json

        lock = filelock.FileLock(self.path / _LOCK, timeout=self.lock_timeout, thread_local=False)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise LockTimeout(
                f"layout {self.path}: {_LOCK} still locked after {self.lock_timeout:g}s"
            ) from None
        except OSError as e:
            raise StoreError(
                f"layout {self.path}: cannot lock {_LOCK} ({e.strerror or e})"
            ) from None
        try:
            yield
        finally:
            lock.release()

    # ------------------------------------------------------------------ index.json

    def raw_index(self) -> bytes:
        """The bytes of ``index.json`` (read whole and closed at once)."""
        try:
            return _fs.read_bytes(self.path / _INDEX_JSON)
        except FileNotFoundError:
            raise StoreError(f"{self.path}: not an OCI image layout (no {_INDEX_JSON})") from None

    def index(self) -> Index:
        """``index.json`` parsed."""
        raw = self.raw_index()
        try:
            return Index.parse(raw, mt.OCI_INDEX)
        except ManifestError as e:
            raise ManifestError(f"{self.path / _INDEX_JSON}: {e}") from None

    def descriptors(self) -> list[Descriptor]:
        """The entries of ``index.json``."""
        return list(self.index().manifests)

    def root_index(self) -> ImageIndex:
        """``index.json`` as a lazy :class:`ImageIndex` over this layout."""
        return LayoutRootIndex(self, self.raw_index())

    def _update_index(
        self,
        change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
        *,
        required: Sequence[tuple[Digest, int]] = (),
        rewrite: Callable[[], Blobs] | None = None,
        what: str = "entry",
    ) -> None:
        """Read-modify-write ``index.json`` under the lock.

        Every ``required`` blob must be present when the new index is written. If gc
        removed one after the caller wrote it, ``rewrite`` writes the blobs again,
        still under the lock, so gc cannot take them a second time.
        """
        self._sweep_once()
        with self.lock():
            missing = [d for d, size in required if not self.store.exists(d, size)]
            if missing and rewrite is not None:
                required = rewrite()
                missing = [d for d, size in required if not self.store.exists(d, size)]
            if missing:
                raise NotFoundError(
                    f"layout {self.path}: {what} needs blob {missing[0]}, which is missing"
                )
            raw = self.raw_index()
            try:
                obj = json.loads(raw)
                entries = obj["manifests"]
                if not isinstance(obj, dict) or not isinstance(entries, list):
                    raise TypeError
            except (ValueError, TypeError, KeyError):
                raise ManifestError(
                    f"{self.path / _INDEX_JSON}: expected a JSON object with a manifests list"
                ) from None
            obj["manifests"] = change(entries)
            obj.setdefault("schemaVersion", 2)
            data = canonical_json(obj)
            if data != raw:
                _fs.atomic_write_bytes(self.path / _INDEX_JSON, data, durable=self.fsync)

    def append_descriptor(self, desc: Descriptor) -> None:
        """Add an entry to ``index.json``; one entry per (digest, ref name), a ref name moves."""
        self._commit_entry(desc, [(desc.digest, desc.size)], None)

    def _commit_entry(
        self,
        desc: Descriptor,
        required: Blobs,
        rewrite: Callable[[], Blobs] | None,
    ) -> None:
        ref = desc.ref_name

        def change(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            kept = []
            for i, e in enumerate(entries):
                d = Descriptor.from_dict(e, f"index.json manifests[{i}]")
                same = d.digest == desc.digest and d.ref_name == ref
                if same or (ref is not None and d.ref_name == ref):
                    continue
                kept.append(e)
            kept.append(desc.to_dict())
            return kept

        self._update_index(change, required=required, rewrite=rewrite, what=str(desc.digest))

    def remove_descriptors(self, match: Callable[[Descriptor], bool]) -> int:
        """Drop every ``index.json`` entry for which ``match`` is true; returns how many."""
        removed = 0

        def change(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            nonlocal removed
            kept = []
            removed = 0
            for i, e in enumerate(entries):
                if match(Descriptor.from_dict(e, f"index.json manifests[{i}]")):
                    removed += 1
                else:
                    kept.append(e)
            return kept

        self._update_index(change)
        return removed

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
        plan = _Plan()
        desc = plan.add_image(img)
        return desc, self._execute(plan, jobs, progress)

    def _execute(self, plan: _Plan, jobs: int, progress: ProgressSink | None) -> Blobs:
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

        bounded_map(lambda item: write_one(*item), plan.blobs.values(), jobs, stop=stop)
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
        plan = _Plan()
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
        desc = _decorate(desc, ref_name, annotations, platform)
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
        desc = _decorate(desc, ref_name, annotations, None)
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
            raw = self.store.read_bytes(digest, max_size=_MANIFEST_MAX)
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
        raw = self.store.read_bytes(desc.digest, max_size=_MANIFEST_MAX)
        if isinstance(parse_manifest(raw), Index):
            return LayoutIndex(self, desc)
        return LayoutImage(self, desc)

    # ------------------------------------------------------------------ maintenance

    def _reachable(self, problems: list[str] | None = None) -> dict[Digest, int]:
        """Every blob reachable from ``index.json``, with the size it is referenced with."""
        seen: dict[Digest, int] = {}
        stack: list[tuple[Descriptor, str]] = [
            (d, f"index.json[{i}]") for i, d in enumerate(self.descriptors())
        ]
        while stack:
            desc, where = stack.pop()
            if desc.digest in seen:
                continue
            seen[desc.digest] = desc.size
            media = desc.media_type
            if not mt.is_manifest(media):
                continue
            try:
                raw = self.store.read_bytes(desc.digest, max_size=_MANIFEST_MAX)
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

    def gc(self) -> GcResult:
        """Delete blobs no longer reachable from ``index.json``; returns what was deleted.

        Also removes what dead writers left in ``ingest/`` (partial downloads included),
        listed in the result's ``ingests``; a live writer's files are never touched. On
        Windows a blob someone holds open cannot be deleted: it is skipped (after a
        short retry) and left for the next gc.
        """
        deleted = GcResult()
        with self.lock():
            keep = self._reachable()
            for digest in list(self.store.digests()):
                if digest in keep:
                    continue
                try:
                    if _fs.unlink(self.store.path(digest), budget=0.2):
                        deleted.append(digest)
                except PermissionError as e:
                    if not _fs.is_transient(e):
                        raise
            with contextlib.suppress(OSError):
                deleted.ingests = self.store.clean_ingests(partials=True)
        deleted.sort()
        return deleted

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
        ``fast``) that each layer's uncompressed digest matches the config's diff_id.
        """
        problems: list[str] = []
        try:
            self._check()
            self.index()
        except (StoreError, ManifestError) as e:
            return [str(e)]
        for digest in self.store.digests():
            hashed = self.store.hash_file(digest)
            if hashed is not None and hashed[0] != digest:
                problems.append(f"blob {digest}: content hashes to {hashed[0]}")
        reachable = self._reachable(problems)
        for digest, size in reachable.items():
            have = self.store.size(digest)
            if have is None:
                problems.append(f"blob {digest}: referenced but missing")
            elif have != size:
                problems.append(f"blob {digest}: referenced with {size} bytes, has {have}")
        if not fast:
            problems += self._check_diff_ids(reachable)
        return problems

    def _check_diff_ids(self, reachable: Mapping[Digest, int]) -> list[str]:
        problems: list[str] = []
        for digest in reachable:
            try:
                raw = self.store.read_bytes(digest, max_size=_MANIFEST_MAX)
                parsed = parse_manifest(raw)
            except Exception:
                continue
            if not isinstance(parsed, Manifest) or not mt.is_config(parsed.config.media_type):
                continue
            img = LayoutImage(self, Descriptor(parsed.media_type, digest, len(raw)))
            try:
                ids = img.config_file().diff_ids
            except (ManifestError, NotFoundError, VerificationError) as e:
                problems.append(f"image {digest} config: {e}")
                continue
            if len(ids) != len(parsed.layers):
                problems.append(
                    f"image {digest}: config lists {len(ids)} diff_ids for "
                    f"{len(parsed.layers)} layers"
                )
                continue
            for d, want in zip(parsed.layers, ids, strict=True):
                if self.store.size(d.digest) is None:
                    continue
                try:
                    h = DigestHasher(want.algorithm)
                    with LayoutLayer(self.store, d).uncompressed() as r:
                        while chunk := r.read(CHUNK):
                            h.update(chunk)
                except Exception as e:
                    problems.append(f"layer {d.digest}: cannot decompress ({e})")
                    continue
                if h.digest() != want:
                    problems.append(
                        f"layer {d.digest}: uncompressed digest {h.digest()} "
                        f"is not the config's diff_id {want}"
                    )
        return problems


class GcResult(list[Digest]):
    """The blobs :meth:`Layout.gc` deleted (a list of digests, sorted), and in
    ``ingests`` what it removed from ``ingest/``: dead writers' temp files, partial
    downloads and lock files."""

    ingests: list[StaleIngest]

    def __init__(self) -> None:
        super().__init__()
        self.ingests = []


def _is_digest(value: str) -> bool:
    if ":" not in value:
        return False
    try:
        Digest.parse(value)
    except ValueError:
        return False
    return True


def _decorate(
    desc: Descriptor,
    ref_name: str | None,
    annotations: Mapping[str, str] | None,
    platform: Platform | None,
) -> Descriptor:
    ann: dict[str, str | None] = dict(annotations or {})
    if ref_name is not None:
        ann[ANNOTATION_REF_NAME] = ref_name
    if ann:
        desc = desc.with_annotation_map(ann)
    if platform is not None:
        desc = desc.with_platform(platform)
    return desc


class _Plan:
    """What writing an image or index tree takes: unique blobs, then manifests bottom-up.

    Blobs are de-duplicated by digest across the whole tree before any I/O.
    """

    def __init__(self) -> None:
        self.blobs: dict[Digest, tuple[Descriptor, Layer | Callable[[], bytes]]] = {}
        self.manifests: list[tuple[bytes, Descriptor]] = []
        self._seen: set[Digest] = set()

    def add_image(self, img: Image) -> Descriptor:
        manifest = img.manifest()
        raw = img.raw_manifest()
        desc = Descriptor(
            media_type=manifest.media_type,
            digest=manifest.digest,
            size=len(raw),
            artifact_type=manifest.artifact_type,
        )
        if desc.digest in self._seen:
            return desc
        for d, layer in zip(manifest.layers, img.layers(), strict=True):
            self.blobs.setdefault(d.digest, (d, layer))
        cfg = manifest.config
        self.blobs.setdefault(cfg.digest, (cfg, img.raw_config))
        self._seen.add(desc.digest)
        self.manifests.append((raw, desc))
        return desc

    def add_index(self, idx: ImageIndex) -> Descriptor:
        index = idx.index_manifest()
        raw = idx.raw_manifest()
        desc = Descriptor(
            media_type=index.media_type,
            digest=index.digest,
            size=len(raw),
            artifact_type=index.artifact_type,
        )
        if desc.digest in self._seen:
            return desc
        for child_desc in index.manifests:
            child = _child_of(idx, child_desc)
            if child is None:
                continue  # not an image or index (e.g. an artifact blob)
            if is_index(child):
                self.add_index(child)
            else:
                self.add_image(child)
        self._seen.add(desc.digest)
        self.manifests.append((raw, desc))
        return desc


def _child_of(idx: ImageIndex, desc: Descriptor) -> Image | ImageIndex | None:
    child = getattr(idx, "child", None)
    if child is not None:
        try:
            got: Image | ImageIndex = child(desc)
        except ManifestError:
            return None
        return got
    if mt.is_index(desc.media_type):
        return idx.image_index(desc.digest)
    if mt.is_image(desc.media_type):
        return idx.image(desc.digest)
    return None


# ---------------------------------------------------------------------- lazy objects


class LayoutLayer(LayerBase):
    """A layer blob in a layout; ``compressed()`` opens the file, verified at EOF."""

    def __init__(self, store: BlobStore, desc: Descriptor, diff_id: Digest | None = None) -> None:
        super().__init__(diff_id)
        self._store = store
        self._desc = desc

    def descriptor(self) -> Descriptor:
        return self._desc

    def compressed(self) -> BinaryIO:
        d = self._desc
        return VerifyingReader(  # type: ignore[return-value]
            self._store.open(d.digest), d.digest, d.size, f"blob {d.digest}"
        )


class LayoutImage(ImageBase):
    """An image whose manifest, config and layers are read from a layout on demand."""

    def __init__(self, layout: Layout, desc: Descriptor) -> None:
        super().__init__()
        self._layout = layout
        self._desc = desc

    def _media_type_hint(self) -> str | None:
        return self._desc.media_type if mt.is_image(self._desc.media_type) else None

    def raw_manifest(self) -> bytes:
        return self._memo.get("raw", lambda: _read_desc(self._layout.store, self._desc))

    def raw_config(self) -> bytes:
        cfg = self.manifest().config
        return self._memo.get("raw_config", lambda: _read_desc(self._layout.store, cfg))

    def layer_for(self, descriptor: Descriptor, diff_id: Digest | None) -> Layer:
        return LayoutLayer(self._layout.store, descriptor, diff_id)

    def descriptor(self) -> Descriptor:
        return _portable(self._desc)


class LayoutIndex(ImageIndexBase):
    """An index stored as a blob in a layout."""

    def __init__(self, layout: Layout, desc: Descriptor) -> None:
        super().__init__()
        self._layout = layout
        self._desc = desc

    def raw_manifest(self) -> bytes:
        return self._memo.get("raw", lambda: _read_desc(self._layout.store, self._desc))

    def child(self, descriptor: Descriptor) -> Image | ImageIndex:
        if mt.is_index(descriptor.media_type):
            return LayoutIndex(self._layout, descriptor)
        if mt.is_image(descriptor.media_type):
            return LayoutImage(self._layout, descriptor)
        return self._layout.get(descriptor)

    def descriptor(self) -> Descriptor:
        return _portable(self._desc)


class LayoutRootIndex(LayoutIndex):
    """``index.json`` itself as an index (it is not a blob, so it has no descriptor of its own)."""

    def __init__(self, layout: Layout, raw: bytes) -> None:
        super().__init__(layout, Descriptor.from_bytes(mt.OCI_INDEX, raw))
        self._raw = raw

    def raw_manifest(self) -> bytes:
        return self._raw

    def index_manifest(self) -> Index:
        return self._memo.get("index", lambda: Index.parse(self._raw, mt.OCI_INDEX))


def _portable(desc: Descriptor) -> Descriptor:
    """The entry's descriptor (platform, annotations) without this layout's ref name,
    which would otherwise follow the image into indexes and other layouts."""
    if desc.ref_name is None:
        return desc
    return desc.with_annotation_map({ANNOTATION_REF_NAME: None})


def _read_desc(store: BlobStore, desc: Descriptor) -> bytes:
    limit = _CONFIG_MAX if not mt.is_manifest(desc.media_type) else _MANIFEST_MAX
    data = store.read_bytes(desc.digest, max_size=max(limit, desc.size))
    if len(data) != desc.size:
        raise SizeMismatch(f"blob {desc.digest}", desc.size, len(data))
    return data
