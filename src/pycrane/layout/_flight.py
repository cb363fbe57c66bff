"""Who writes a blob: one thread per digest in a process, one process per big digest.

Inside a process, writes of one digest are single-flight: other threads wait for the
first writer (:class:`_Flight`) and reuse its result without any I/O. Across
processes, a blob of :data:`SHARED_WRITE_MIN` bytes or more is written under a lock
on ``ingest/<alg>-<hex>.lock``: a second process waits for the first (as long as its
files grow) and then finds the blob, instead of downloading it again. The writer that
holds the lock writes through the digest's partial file (:mod:`._partial`); any other
write goes through a temp file of its own (:mod:`._temp`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pycrane import _fs, _ownership
from pycrane._concurrency import Stopped
from pycrane.errors import SizeMismatch
from pycrane.layout._partial import _PartialWrites
from pycrane.layout._source import Resume, Source
from pycrane.layout._temp import _TempWrites
from pycrane.progress import ProgressSink
from pycrane.v1.digest import Digest

__all__ = ["SHARED_WRITE_MIN"]

log = logging.getLogger("pycrane.layout")

#: Blobs this large or larger are written by one process at a time (see above);
#: below it, a lock file costs more than writing the blob twice.
SHARED_WRITE_MIN = 1 << 20
#: How often a process waiting for another's write looks at the lock and its progress.
_POLL = 0.25


class _Flight:
    """One in-progress write of a digest that other threads can wait on."""

    __slots__ = ("event", "result")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.result: tuple[Digest, int] | None = None


# Keyed by (store root, digest) and shared by every BlobStore of the process, so two
# store objects on one directory still de-duplicate their writes.
_flights: dict[tuple[str, Digest], _Flight] = {}
_flights_lock = threading.Lock()


class _WriteFlights(_TempWrites, _PartialWrites):
    """Decides who writes a digest, then writes it through a temp file or the partial."""

    def _put_digest(
        self,
        opener: Callable[[], Source],
        digest: Digest,
        size: int | None,
        progress: ProgressSink | None,
        close: bool,
        stop: threading.Event | None = None,
        resume: Resume | None = None,
    ) -> tuple[Digest, int]:
        if not self._single_flight:
            return self._put_known(opener, digest, size, progress, close, stop, resume)
        key = (self._key, digest)
        while True:
            with _flights_lock:
                flight = _flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = _flights[key] = _Flight()
            if not leader:
                flight.event.wait()
                if flight.result is not None:
                    got = flight.result
                    if size is not None and got[1] != size:
                        raise SizeMismatch(f"blob {digest}", size, got[1])
                    if progress is not None:
                        progress.start(digest, got[1], "exists")
                        progress.finish(digest, skipped=True)
                    return got
                continue  # the first writer failed: try with our own source
            try:
                result = self._put_known(opener, digest, size, progress, close, stop, resume)
                flight.result = result
                return result
            finally:
                with _flights_lock:
                    _flights.pop(key, None)
                flight.event.set()

    def _put_known(
        self,
        opener: Callable[[], Source],
        digest: Digest,
        size: int | None,
        progress: ProgressSink | None,
        close: bool,
        stop: threading.Event | None = None,
        resume: Resume | None = None,
    ) -> tuple[Digest, int]:
        have = self._trusted_size(digest, size)
        big = size is None or size >= SHARED_WRITE_MIN
        shared = have is None and big and self._single_flight
        lock = self._wait_for_other_writers(digest, stop) if shared else None
        try:
            if shared:
                have = self._trusted_size(digest, size)  # the process we waited for wrote it
            if have is not None:
                if progress is not None:
                    progress.start(digest, have, "exists")
                    progress.finish(digest, skipped=True)
                return digest, have
            if lock is not None:
                return self._write_partial(opener, resume, digest, size, progress, close, stop)
            source = opener()
            try:
                return self._write(source, digest, size, progress, stop)
            finally:
                closer = getattr(source, "close", None)
                if close and closer is not None:
                    closer()
        finally:
            if lock is not None:
                # Removed while still held (POSIX): a process waiting on this file then
                # takes a new one, and finds the blob.
                lock.release(remove=True)

    def _wait_for_other_writers(
        self, digest: Digest, stop: threading.Event | None
    ) -> _ownership.Held | None:
        """Take the cross-process write lock of ``digest``; None to write without it.

        A holder that stops making progress (its partial file has not grown for
        ``lock_timeout`` seconds) is presumed stuck, and this process writes anyway
        (to a temp file of its own, never to the holder's partial).
        """
        self._ensure(self.ingest_dir)
        path = self.ingest_dir / f"{digest.algorithm}-{digest.hex}.lock"
        prefix = digest.hex[:12] + "."
        seen = -1
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                held = _ownership.try_lock(path)
            except FileNotFoundError:
                self._ensure(self.ingest_dir, again=True)
                continue
            except OSError as e:
                log.debug("blob %s: no write lock (%s); writing without it", digest, e)
                return None
            if held is not None:
                return held
            if stop is not None and stop.is_set():
                raise Stopped(f"blob {digest}")
            time.sleep(_POLL)
            grown = self._temp_bytes(prefix, self.partial_path(digest))
            if grown != seen:
                seen = grown
                deadline = time.monotonic() + self.lock_timeout
            elif time.monotonic() >= deadline:
                log.debug("blob %s: its writer made no progress; writing it too", digest)
                return None

    def _temp_bytes(self, prefix: str, partial: Path | None = None) -> int:
        """How many bytes the temp files of one digest hold (another writer's progress)."""
        total = 0
        if partial is not None:
            st = _fs.stat(partial)
            total += st.st_size if st is not None else 0
        try:
            with os.scandir(self.ingest_dir) as it:
                for e in it:
                    if e.name.startswith(prefix) and e.name.endswith(".tmp"):
                        try:
                            total += e.stat(follow_symlinks=False).st_size
                        except OSError:
                            continue
        except OSError:
            return -1
        return total
