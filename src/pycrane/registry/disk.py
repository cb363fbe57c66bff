"""Registry storage on disk: one BlobStore for content, small link files per repository.

Layout under the ``--disk`` directory::

    blobs/<alg>/<hex>                        every blob and manifest, once (BlobStore)
    ingest/...                               uploads in flight (BlobStore ingests, ref
                                             "upload-<session>"), temp files
    repositories/<name>/                     one directory per repository name component
        _layers/<alg>/<hex>                  empty link: the blob is visible in <name>
        _manifests/revisions/<alg>/<hex>     link to a manifest: {"mediaType", "subject"}
        _manifests/tags/t_<tag>.ref          two lines, digest and tag: where a tag points
                                             (h_<hash>.ref when the name would be too long)
        _referrers/<alg>/<hex>/<alg>-<hex>   subject -> referrer: the referrer's descriptor
        _uploads/<session>                   marker: the upload session belongs to <name>

Why this shape (it is CNCF distribution's):

* Content is published only by :class:`~pycrane.layout.BlobStore` (verify, then
  publish without replacing), so several server processes on one directory and
  concurrent uploads of one blob are safe: the first writer wins, the others
  find the blob there.
* Link files are created with an exclusive publish and never rewritten, so they
  need no lock. Tags are the only mutable records: each is replaced atomically
  through a temp file (last writer wins, readers never see a torn file).
* Name components that Windows reserves (``con``, ``nul``, ``com1``...) are
  stored with a ``_`` prefix, which no valid component has; tag file names
  escape upper-case letters as ``^x``, because Windows file names ignore case
  while tags do not.
* Deleting a blob or manifest removes the repository's link only. The content
  stays in ``blobs/`` (other repositories may link it) until
  :meth:`DiskStorage.collect_garbage` runs, offline, like distribution's
  ``garbage-collect``.

An upload session's writer stays open in the process that last served it, so a
streamed PATCH and the closing PUT hash the data once. A writer idle for
:data:`IDLE_RELEASE` seconds is closed (data kept), which releases its
cross-process lock, so another server process can continue the session.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pycrane import _fs
from pycrane.errors import DigestMismatch, LockTimeout, NotFoundError, SizeMismatch, StoreError
from pycrane.layout.store import BlobStore, BlobWriter
from pycrane.registry.apierrors import ApiError
from pycrane.registry.manifests import PushedManifest
from pycrane.registry.storage import Body, StoredManifest, check_offset, copy_body, upload_location
from pycrane.v1.digest import ALGORITHMS, Digest

__all__ = ["IDLE_RELEASE", "DiskStorage"]

#: Verified manifest bytes kept in memory (content is immutable per digest).
MANIFEST_CACHE_BYTES = 16 * 1024 * 1024
#: Seconds an upload writer may sit idle before its lock is released.
IDLE_RELEASE = 1.0
#: Abandoned ingests older than this are swept (at start, then at most every SWEEP_EVERY s).
SWEEP_AGE = 24 * 3600.0
SWEEP_EVERY = 3600.0

_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"com{i}" for i in range(1, 10)]
    + [f"lpt{i}" for i in range(1, 10)]
)
_SESSION = re.compile(r"[0-9a-f]{32}\Z")
_MARKERS = ("_layers", "_manifests")


def _component(c: str) -> str:
    return "_" + c if c.split(".", 1)[0] in _RESERVED else c


def _tag_file(tag: str) -> str:
    """``t_<tag>.ref`` with upper case as ``^x``; a name too long for a file system is hashed."""
    name = "t_" + re.sub(r"[A-Z]", lambda m: "^" + m[0].lower(), tag) + ".ref"
    if len(name) > 160:
        name = "h_" + hashlib.sha256(tag.encode()).hexdigest()[:40] + ".ref"
    return name


def _tag_name(filename: str) -> str | None:
    """The tag a ``t_`` file name encodes (``h_`` names keep theirs inside the file)."""
    if not (filename.startswith("t_") and filename.endswith(".ref")):
        return None
    return re.sub(r"\^([a-z])", lambda m: m[1].upper(), filename[2:-4])


@dataclass
class _Slot:
    """An upload writer kept open between requests of one session."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    writer: BlobWriter | None = None
    algorithm: str = "sha256"
    used: float = field(default_factory=time.monotonic)


class DiskStorage:
    """:class:`~pycrane.registry.storage.Storage` on a directory; see the module docstring."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.store = BlobStore(self.root, fsync=fsync)
        self._repos = self.root / "repositories"
        _fs.ensure_dir(self._repos, durable=fsync)
        self._slots: dict[str, _Slot] = {}
        self._slots_lock = threading.Lock()
        self._reaper: threading.Thread | None = None
        self._closed = False
        self._swept = time.monotonic()
        self._manifests: OrderedDict[Digest, bytes] = OrderedDict()
        self._manifests_size = 0
        self._manifests_lock = threading.Lock()
        self.sweep()

    # -- paths --------------------------------------------------------------------------------

    def _repo(self, repo: str) -> Path:
        return self._repos.joinpath(*(_component(c) for c in repo.split("/")))

    def _blob_link(self, repo: str, digest: Digest) -> Path:
        return self._repo(repo) / "_layers" / digest.algorithm / digest.hex

    def _revision(self, repo: str, digest: Digest) -> Path:
        return self._repo(repo) / "_manifests" / "revisions" / digest.algorithm / digest.hex

    def _tags_dir(self, repo: str) -> Path:
        return self._repo(repo) / "_manifests" / "tags"

    def _referrers_dir(self, repo: str, subject: Digest) -> Path:
        return self._repo(repo) / "_referrers" / subject.algorithm / subject.hex

    def _marker(self, repo: str, session: str) -> Path:
        return self._repo(repo) / "_uploads" / session

    def _write_link(self, path: Path, data: bytes = b"") -> None:
        """Create a record that is never rewritten; an existing one is kept."""
        if _fs.stat(path) is not None:
            return
        _fs.ensure_dir(path.parent, durable=self.fsync)
        _fs.atomic_write_bytes(path, data, durable=self.fsync, exclusive=True)

    # -- blobs --------------------------------------------------------------------------------

    def blob_size(self, repo: str, digest: Digest) -> int | None:
        if _fs.stat(self._blob_link(repo, digest)) is None:
            return None
        return self.store.size(digest)

    def blob_open(self, repo: str, digest: Digest) -> tuple[BinaryIO, int]:
        unknown = ApiError(
            "BLOB_UNKNOWN", f"blob {digest} unknown to {repo}", detail={"digest": str(digest)}
        )
        if _fs.stat(self._blob_link(repo, digest)) is None:
            raise unknown
        try:
            f = self.store.open(digest)
        except NotFoundError:
            raise unknown from None
        return f, os.fstat(f.fileno()).st_size

    def blob_mount(self, repo: str, digest: Digest, source: str) -> bool:
        if self.blob_size(source, digest) is None:
            return False
        self._write_link(self._blob_link(repo, digest))
        return True

    def blob_delete(self, repo: str, digest: Digest) -> bool:
        return _fs.unlink(self._blob_link(repo, digest))

    def blob_put(self, repo: str, digest: Digest, body: Body) -> int:
        with self.store.ingest(None, digest.algorithm) as writer:
            copy_body(body, writer.write)
            size = writer.offset
            self._commit(writer, digest)
        self._write_link(self._blob_link(repo, digest))
        return size

    def _commit(self, writer: BlobWriter, digest: Digest) -> None:
        try:
            writer.commit(digest)
        except (DigestMismatch, SizeMismatch) as e:
            writer.abort()
            raise ApiError("DIGEST_INVALID", str(e), detail={"digest": str(digest)}) from None

    # -- uploads ------------------------------------------------------------------------------

    def upload_start(self, repo: str) -> str:
        if time.monotonic() - self._swept > SWEEP_EVERY:
            self._swept = time.monotonic()
            self.sweep()
        session = uuid.uuid4().hex
        self._write_link(self._marker(repo, session), str(time.time()).encode())
        return session

    def _slot(self, repo: str, session: str) -> _Slot:
        if not _SESSION.match(session) or _fs.stat(self._marker(repo, session)) is None:
            raise ApiError("BLOB_UPLOAD_UNKNOWN", f"upload {session} unknown to {repo}")
        with self._slots_lock:
            slot = self._slots.get(session)
            if slot is None:
                slot = self._slots[session] = _Slot()
            if self._reaper is None and not self._closed:
                self._reaper = threading.Thread(
                    target=self._reap, name="pycrane-registry-reaper", daemon=True
                )
                self._reaper.start()
        return slot

    @contextlib.contextmanager
    def _session(self, repo: str, session: str) -> Iterator[_Slot]:
        """Hold the session's slot; a slot the reaper or a finished upload dropped is not used."""
        while True:
            slot = self._slot(repo, session)
            with slot.lock:
                with self._slots_lock:
                    current = self._slots.get(session) is slot
                if not current:
                    continue
                # The session may have ended between the marker check in _slot and
                # taking the lock (a PUT in this or another process): never reopen it,
                # or a status request would answer for a new, empty upload.
                if _fs.stat(self._marker(repo, session)) is None:
                    with self._slots_lock:
                        if self._slots.get(session) is slot:
                            del self._slots[session]
                    raise ApiError("BLOB_UPLOAD_UNKNOWN", f"upload {session} unknown to {repo}")
                yield slot
                return

    def _writer(self, slot: _Slot, session: str, algorithm: str = "sha256") -> BlobWriter:
        """The session's open writer (caller holds ``slot.lock``)."""
        slot.used = time.monotonic()
        w = slot.writer
        if w is not None and slot.algorithm != algorithm:
            w.close()  # reopened below: the data is hashed again with the other algorithm
            w = slot.writer = None
        if w is None:
            try:
                w = self.store.ingest(f"upload-{session}", algorithm)
            except LockTimeout:
                raise ApiError(
                    "TOOMANYREQUESTS",
                    f"upload {session} is busy in another server process",
                    headers={"Retry-After": "1"},
                ) from None
            slot.writer, slot.algorithm = w, algorithm
        return w

    def sweep(self, older_than: float = SWEEP_AGE) -> int:
        """Drop upload sessions and ingests untouched for ``older_than`` seconds; count them."""
        removed = self.store.sweep(older_than)
        cutoff = time.time() - older_than
        with self._slots_lock:
            live = set(self._slots)
        for repo in self.repositories(uploads=True):
            uploads = self._repo(repo) / "_uploads"
            for session in _fs.listdir(uploads):
                st = _fs.stat(uploads / session)
                if session in live or st is None or st.st_mtime >= cutoff:
                    continue
                ingest = self.store.ingest_dir
                if any(p.is_dir() for p in ingest.glob(f"upload-{session}-*")):
                    continue  # its data is younger than the marker: still in use
                if _fs.unlink(uploads / session):
                    removed += 1
        return removed

    def _reap(self) -> None:
        """Close writers nobody used for a while, so other processes may take the session."""
        while not self._closed:
            time.sleep(IDLE_RELEASE / 4)
            now = time.monotonic()
            with self._slots_lock:
                slots = list(self._slots.items())
                if not slots:  # nothing to watch: end; the next session starts a new reaper
                    self._reaper = None
                    return
            for session, slot in slots:
                if now - slot.used < IDLE_RELEASE or not slot.lock.acquire(blocking=False):
                    continue
                try:
                    if slot.writer is not None:
                        slot.writer.close()
                        slot.writer = None
                    with self._slots_lock:
                        if self._slots.get(session) is slot:
                            del self._slots[session]
                finally:
                    slot.lock.release()

    def close(self) -> None:
        """Release every open upload writer (their data stays for a later session)."""
        self._closed = True
        with self._slots_lock:
            slots = list(self._slots.values())
            self._slots.clear()
        for slot in slots:
            with slot.lock:
                if slot.writer is not None:
                    slot.writer.close()
                    slot.writer = None

    def _drop(self, repo: str, session: str, slot: _Slot) -> None:
        # Marker first: a request that finds the marker gone never makes a new slot.
        _fs.unlink(self._marker(repo, session))
        slot.writer = None
        with self._slots_lock:
            if self._slots.get(session) is slot:
                del self._slots[session]

    def upload_offset(self, repo: str, session: str) -> int:
        with self._session(repo, session) as slot:
            return self._writer(slot, session).offset

    def upload_write(self, repo: str, session: str, body: Body, start: int | None) -> int:
        with self._session(repo, session) as slot:
            w = self._writer(slot, session)
            check_offset(start, w.offset, session, upload_location(repo, session))
            try:
                copy_body(body, w.write)
            finally:
                slot.used = time.monotonic()
            return w.offset

    def upload_finish(self, repo: str, session: str, digest: Digest) -> int:
        with self._session(repo, session) as slot:
            w = self._writer(slot, session, digest.algorithm)
            size = w.offset
            try:
                self._commit(w, digest)
            finally:
                self._drop(repo, session, slot)
        self._write_link(self._blob_link(repo, digest))
        return size

    def upload_cancel(self, repo: str, session: str) -> None:
        with self._session(repo, session) as slot:
            self._writer(slot, session).abort()
            self._drop(repo, session, slot)

    # -- manifests ----------------------------------------------------------------------------

    def _revision_info(self, repo: str, digest: Digest) -> dict[str, Any] | None:
        try:
            info = json.loads(_fs.read_bytes(self._revision(repo, digest)))
        except (FileNotFoundError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def _tag_record(self, repo: str, filename: str) -> tuple[str, Digest] | None:
        """A tag file holds ``<digest>\\n<tag>``."""
        try:
            text = _fs.read_bytes(self._tags_dir(repo) / filename).decode()
            digest, _, tag = text.partition("\n")
            return tag, Digest.parse(digest)
        except (FileNotFoundError, ValueError):
            return None

    def _tag_target(self, repo: str, tag: str) -> Digest | None:
        record = self._tag_record(repo, _tag_file(tag))
        return record[1] if record is not None and record[0] == tag else None

    def manifest_get(self, repo: str, reference: str | Digest) -> StoredManifest | None:
        digest = self._tag_target(repo, reference) if isinstance(reference, str) else reference
        if digest is None:
            return None
        info = self._revision_info(repo, digest)
        if info is None:
            return None
        raw = self._manifest_bytes(digest)
        if raw is None:
            return None
        return StoredManifest(digest, str(info.get("mediaType")), raw)

    def _manifest_bytes(self, digest: Digest) -> bytes | None:
        """The verified bytes of a manifest, from the small in-memory cache when there."""
        with self._manifests_lock:
            raw = self._manifests.get(digest)
            if raw is not None:
                self._manifests.move_to_end(digest)
                return raw
        try:
            raw = self.store.read_bytes(digest, verify=True)
        except NotFoundError:
            return None
        except (DigestMismatch, StoreError) as e:
            raise StoreError(f"manifest {digest}: stored content is damaged: {e}") from e
        with self._manifests_lock:
            if digest not in self._manifests:
                self._manifests[digest] = raw
                self._manifests_size += len(raw)
            while self._manifests_size > MANIFEST_CACHE_BYTES:
                _, old = self._manifests.popitem(last=False)
                self._manifests_size -= len(old)
        return raw

    def manifest_put(
        self, repo: str, manifest: PushedManifest, raw: bytes, tag: str | None
    ) -> None:
        self.store.put(raw, digest=manifest.digest, size=len(raw))
        info: dict[str, Any] = {"mediaType": manifest.media_type}
        if manifest.subject is not None:
            info["subject"] = str(manifest.subject)
        self._write_link(self._revision(repo, manifest.digest), json.dumps(info).encode())
        if manifest.subject is not None:
            ref = self._referrers_dir(repo, manifest.subject)
            name = f"{manifest.digest.algorithm}-{manifest.digest.hex}"
            self._write_link(ref / name, json.dumps(manifest.referrer_descriptor()).encode())
        if tag is not None:
            path = self._tags_dir(repo) / _tag_file(tag)
            _fs.ensure_dir(path.parent, durable=self.fsync)
            record = f"{manifest.digest}\n{tag}".encode()
            _fs.atomic_write_bytes(path, record, durable=self.fsync)

    def manifest_delete(self, repo: str, digest: Digest) -> bool:
        info = self._revision_info(repo, digest)
        if not _fs.unlink(self._revision(repo, digest)):
            return False
        tags_dir = self._tags_dir(repo)
        for name in _fs.listdir(tags_dir):
            if name.endswith(".ref") and not name.startswith("."):
                record = self._tag_record(repo, name)
                if record is not None and record[1] == digest:
                    _fs.unlink(tags_dir / name)
        subject = (info or {}).get("subject")
        if isinstance(subject, str):
            try:
                s = Digest.parse(subject)
            except ValueError:
                return True
            _fs.unlink(self._referrers_dir(repo, s) / f"{digest.algorithm}-{digest.hex}")
        return True

    def tag_delete(self, repo: str, tag: str) -> bool:
        return _fs.unlink(self._tags_dir(repo) / _tag_file(tag))

    def tags(self, repo: str) -> list[str] | None:
        path = self._repo(repo)
        if not any(_fs.stat(path / m) is not None for m in _MARKERS):
            return None
        tags = []
        for name in _fs.listdir(self._tags_dir(repo)):
            tag = _tag_name(name)
            if tag is None and name.startswith("h_") and name.endswith(".ref"):
                record = self._tag_record(repo, name)
                tag = record[0] if record is not None else None
            if tag is not None:
                tags.append(tag)
        return sorted(tags)

    def repositories(self, *, uploads: bool = False) -> list[str]:
        """Repositories with content (and, with ``uploads``, those with only sessions)."""
        found: list[str] = []
        markers = (*_MARKERS, "_uploads") if uploads else _MARKERS

        def walk(path: Path, prefix: str) -> None:
            try:
                entries = sorted(os.scandir(path), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                return
            names = {e.name for e in entries}
            if prefix and any(m in names for m in markers):
                found.append(prefix)
            for e in entries:
                if e.name.startswith("_") and e.name[1:].split(".", 1)[0] not in _RESERVED:
                    continue
                if e.is_dir(follow_symlinks=False):
                    comp = e.name[1:] if e.name.startswith("_") else e.name
                    walk(Path(e.path), f"{prefix}/{comp}" if prefix else comp)

        walk(self._repos, "")
        return sorted(found)

    def referrers(self, repo: str, subject: Digest) -> list[dict[str, Any]]:
        out = []
        base = self._referrers_dir(repo, subject)
        for name in sorted(_fs.listdir(base)):
            alg, _, hexpart = name.partition("-")
            if alg not in ALGORITHMS or name.startswith("."):
                continue
            try:
                digest = Digest(alg, hexpart)
                entry = json.loads(_fs.read_bytes(base / name))
            except (ValueError, FileNotFoundError):
                continue
            if _fs.stat(self._revision(repo, digest)) is not None and isinstance(entry, dict):
                out.append(entry)
        return out

    # -- maintenance --------------------------------------------------------------------------

    def collect_garbage(self, *, dry_run: bool = False) -> tuple[int, int]:
        """Delete blobs that no repository links any more; return ``(count, bytes)``.

        Run it only while no server writes to this directory: a blob that a push
        has published but not linked yet looks unreferenced. Everything a
        repository links (layers, configs, manifests) is kept.
        """
        keep: set[Digest] = set()
        for repo in self.repositories():
            base = self._repo(repo)
            for kind in (base / "_layers", base / "_manifests" / "revisions"):
                for alg in ALGORITHMS:
                    for entry in _fs.walk_files(kind / alg):
                        try:
                            keep.add(Digest(alg, entry.name))
                        except ValueError:
                            continue
        count = size = 0
        for digest in list(self.store.digests()):
            if digest in keep:
                continue
            blob_size = self.store.size(digest) or 0
            if dry_run or self.store.delete(digest):
                count += 1
                size += blob_size
        return count, size
