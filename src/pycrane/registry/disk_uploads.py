"""A disk registry's upload sessions: BlobStore ingests kept open between requests.

A session is a marker in its repository (``_uploads/<session>``, see
:mod:`pycrane.registry.disk_records`) and a :class:`~pycrane.layout.BlobStore`
ingest with ref ``upload-<session>``. The ingest's writer stays open in the
process that last served the session, so a streamed PATCH and the closing PUT
hash the data once. A writer idle for ``idle_release`` seconds is closed (data
kept) by a reaper thread, which releases its cross-process lock, so another
server process can continue the session. The marker goes first when a session
ends: a request that finds it gone never reopens the session.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from pycrane import _fs
from pycrane.errors import DigestMismatch, LockTimeout, SizeMismatch
from pycrane.layout import BlobStore, BlobWriter
from pycrane.registry.apierrors import ApiError
from pycrane.registry.disk_records import RepositoryRecords
from pycrane.registry.storage import Body, check_offset, copy_body, upload_location
from pycrane.v1.digest import Digest

__all__ = ["UploadSessions", "commit"]

_SESSION = re.compile(r"[0-9a-f]{32}\Z")


def commit(writer: BlobWriter, digest: Digest) -> None:
    """Publish what ``writer`` received as ``digest``; a mismatch aborts it (DIGEST_INVALID)."""
    try:
        writer.commit(digest)
    except (DigestMismatch, SizeMismatch) as e:
        writer.abort()
        raise ApiError("DIGEST_INVALID", str(e), detail={"digest": str(digest)}) from None


@dataclass
class _Slot:
    """An upload writer kept open between requests of one session."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    writer: BlobWriter | None = None
    algorithm: str = "sha256"
    used: float = field(default_factory=time.monotonic)


class UploadSessions:
    """The upload sessions of one disk storage; see the module docstring."""

    def __init__(
        self, store: BlobStore, records: RepositoryRecords, *, idle_release: float
    ) -> None:
        self.store = store
        self.records = records
        self.idle_release = idle_release
        self._slots: dict[str, _Slot] = {}
        self._slots_lock = threading.Lock()
        self._reaper: threading.Thread | None = None
        self._closed = False

    def start(self, repo: str) -> str:
        session = uuid.uuid4().hex
        self.records.write_link(self.records.marker(repo, session), str(time.time()).encode())
        return session

    def _slot(self, repo: str, session: str) -> _Slot:
        if not _SESSION.match(session) or _fs.stat(self.records.marker(repo, session)) is None:
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
                if _fs.stat(self.records.marker(repo, session)) is None:
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

    def sweep(self, older_than: float) -> int:
        """Drop session markers untouched for ``older_than`` seconds; count them."""
        removed = 0
        cutoff = time.time() - older_than
        with self._slots_lock:
            live = set(self._slots)
        for repo in self.records.repositories(uploads=True):
            for session in self.records.sessions(repo):
                marker = self.records.marker(repo, session)
                st = _fs.stat(marker)
                if session in live or st is None or st.st_mtime >= cutoff:
                    continue
                ingest = self.store.ingest_dir
                if any(p.is_dir() for p in ingest.glob(f"upload-{session}-*")):
                    continue  # its data is younger than the marker: still in use
                if _fs.unlink(marker):
                    removed += 1
        return removed

    def _reap(self) -> None:
        """Close writers nobody used for a while, so other processes may take the session."""
        while not self._closed:
            time.sleep(self.idle_release / 4)
            now = time.monotonic()
            with self._slots_lock:
                slots = list(self._slots.items())
                if not slots:  # nothing to watch: end; the next session starts a new reaper
                    self._reaper = None
                    return
            for session, slot in slots:
                if now - slot.used < self.idle_release or not slot.lock.acquire(blocking=False):
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
        _fs.unlink(self.records.marker(repo, session))
        slot.writer = None
        with self._slots_lock:
            if self._slots.get(session) is slot:
                del self._slots[session]

    def offset(self, repo: str, session: str) -> int:
        with self._session(repo, session) as slot:
            return self._writer(slot, session).offset

    def write(self, repo: str, session: str, body: Body, start: int | None) -> int:
        with self._session(repo, session) as slot:
            w = self._writer(slot, session)
            check_offset(start, w.offset, session, upload_location(repo, session))
            try:
                copy_body(body, w.write)
            finally:
                slot.used = time.monotonic()
            return w.offset

    def finish(self, repo: str, session: str, digest: Digest) -> int:
        """Verify and publish the session's data as ``digest``; the session ends either way."""
        with self._session(repo, session) as slot:
            w = self._writer(slot, session, digest.algorithm)
            size = w.offset
            try:
                commit(w, digest)
            finally:
                self._drop(repo, session, slot)
        return size

    def cancel(self, repo: str, session: str) -> None:
        with self._session(repo, session) as slot:
            self._writer(slot, session).abort()
            self._drop(repo, session, slot)
