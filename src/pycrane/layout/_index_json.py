"""``index.json`` and ``oci-layout``: the layout's two small files, changed as transactions.

``index.json`` is never written in place: every change is a read-modify-write under
a cross-process lock on ``index.json.lock`` (a separate file, because
``index.json`` itself gets replaced), written to a temp file beside it, synced and
atomically replaced, so readers see the old index or the new one, and two
processes appending at once both keep their entries. ``oci-layout`` and the
first, empty ``index.json`` are created under the same lock, and only when absent.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pycrane import _fs, _ownership
from pycrane.errors import LockTimeout, ManifestError, NotFoundError, StoreError
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.manifest import Index, canonical_json

__all__ = ["INDEX_JSON", "LAYOUT_VERSION", "LOCK", "OCI_LAYOUT", "IndexFile", "adding", "removing"]

LAYOUT_VERSION = "1.0.0"
OCI_LAYOUT = "oci-layout"
INDEX_JSON = "index.json"
LOCK = "index.json.lock"

Entries = list[dict[str, Any]]


class IndexFile:
    """The ``index.json`` (and ``oci-layout``) of the layout at ``root``."""

    def __init__(self, root: Path, *, fsync: bool, lock_timeout: float) -> None:
        self.root = root
        self.path = root / INDEX_JSON
        self.fsync = fsync
        self.lock_timeout = lock_timeout

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The cross-process lock that serialises ``index.json`` changes and gc.

        An OS advisory lock (:mod:`pycrane._ownership`: ``flock`` on POSIX, ``LockFile``
        on Windows, the same calls filelock makes, so older pycrane processes still
        exclude each other), dropped by the OS if this process dies.
        """
        try:
            held = _ownership.lock(self.root / LOCK, timeout=self.lock_timeout)
        except OSError as e:
            raise StoreError(
                f"layout {self.root}: cannot lock {LOCK} ({e.strerror or e})"
            ) from None
        if held is None:
            raise LockTimeout(
                f"layout {self.root}: {LOCK} still locked after {self.lock_timeout:g}s"
            )
        try:
            yield
        finally:
            held.release()

    def init_files(self) -> None:
        """Create ``oci-layout`` and an empty ``index.json`` where missing (under the lock)."""
        version = canonical_json({"imageLayoutVersion": LAYOUT_VERSION})
        if _fs.stat(self.root / OCI_LAYOUT) is None:
            _fs.atomic_write_bytes(
                self.root / OCI_LAYOUT, version, durable=self.fsync, exclusive=True
            )
        if _fs.stat(self.path) is None:
            empty = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []})
            _fs.atomic_write_bytes(self.path, empty, durable=self.fsync, exclusive=True)

    def check(self) -> None:
        """A clear error unless ``root`` holds a layout this code can read."""
        marker = self.root / OCI_LAYOUT
        try:
            raw = _fs.read_bytes(marker)
        except FileNotFoundError:
            raise StoreError(
                f"{self.root}: not an OCI image layout (no {OCI_LAYOUT} file)"
            ) from None
        except NotADirectoryError:
            raise StoreError(f"{self.root}: not an OCI image layout (not a directory)") from None
        try:
            obj = json.loads(raw)
            version = obj["imageLayoutVersion"]
        except (ValueError, TypeError, KeyError):
            raise StoreError(f"{marker}: expected a JSON object with imageLayoutVersion") from None
        if not isinstance(version, str) or not version.startswith("1."):
            raise StoreError(f"{marker}: unsupported imageLayoutVersion {version!r}")
        if _fs.stat(self.path) is None:
            raise StoreError(f"{self.root}: not an OCI image layout (no {INDEX_JSON})")

    def sweep_temps(self) -> None:
        """Remove temp files of ``index.json`` and ``oci-layout`` whose writer is gone.

        They are only written under the layout lock: when it is free, nobody writes them.
        """
        temps = [
            e.path
            for e in _fs.walk_files(self.root)
            if e.name.startswith(("." + INDEX_JSON + ".", "." + OCI_LAYOUT + "."))
            and e.name.endswith(".tmp")
        ]
        if not temps:
            return
        try:
            held = _ownership.try_lock(self.root / LOCK)
        except OSError:
            return
        if held is None:
            return  # a writer is at work: its temp files are its own
        try:
            for path in temps:
                with contextlib.suppress(OSError):
                    _fs.unlink(path, budget=0)
        finally:
            held.release()

    def raw(self) -> bytes:
        """The bytes of ``index.json`` (read whole and closed at once)."""
        try:
            return _fs.read_bytes(self.path)
        except FileNotFoundError:
            raise StoreError(f"{self.root}: not an OCI image layout (no {INDEX_JSON})") from None

    def parse(self) -> Index:
        """``index.json`` parsed."""
        try:
            return Index.parse(self.raw(), mt.OCI_INDEX)
        except ManifestError as e:
            raise ManifestError(f"{self.path}: {e}") from None

    def update(
        self,
        change: Callable[[Entries], Entries],
        *,
        missing: Callable[[], Sequence[Digest]] = lambda: (),
        repair: Callable[[], Sequence[Digest]] | None = None,
        what: str = "entry",
    ) -> None:
        """Read-modify-write ``index.json`` under the lock.

        ``missing`` names the blobs the new entry needs that are not there. If gc
        removed one after the caller wrote it, ``repair`` writes them again (and says
        what is still missing), still under the lock, so gc cannot take them twice.
        """
        with self.lock():
            gone = missing()
            if gone and repair is not None:
                gone = repair()
            if gone:
                raise NotFoundError(
                    f"layout {self.root}: {what} needs blob {gone[0]}, which is missing"
                )
            raw = self.raw()
            try:
                obj = json.loads(raw)
                entries = obj["manifests"]
                if not isinstance(obj, dict) or not isinstance(entries, list):
                    raise TypeError
            except (ValueError, TypeError, KeyError):
                raise ManifestError(
                    f"{self.path}: expected a JSON object with a manifests list"
                ) from None
            obj["manifests"] = change(entries)
            obj.setdefault("schemaVersion", 2)
            data = canonical_json(obj)
            if data != raw:
                _fs.atomic_write_bytes(self.path, data, durable=self.fsync)


def adding(desc: Descriptor) -> Callable[[Entries], Entries]:
    """The change that adds ``desc``: one entry per (digest, ref name), a ref name moves."""
    ref = desc.ref_name

    def change(entries: Entries) -> Entries:
        kept = []
        for i, e in enumerate(entries):
            d = Descriptor.from_dict(e, f"index.json manifests[{i}]")
            same = d.digest == desc.digest and d.ref_name == ref
            if same or (ref is not None and d.ref_name == ref):
                continue
            kept.append(e)
        kept.append(desc.to_dict())
        return kept

    return change


def removing(match: Callable[[Descriptor], bool]) -> tuple[Callable[[Entries], Entries], list[int]]:
    """The change that drops every entry ``match`` accepts, and a one-item list that
    counts them once the change ran."""
    removed = [0]

    def change(entries: Entries) -> Entries:
        kept = []
        removed[0] = 0
        for i, e in enumerate(entries):
            if match(Descriptor.from_dict(e, f"index.json manifests[{i}]")):
                removed[0] += 1
            else:
                kept.append(e)
        return kept

    return change, removed
