"""A content-addressed blob store on disk, safe for many threads and processes.

Blobs live at ``<root>/blobs/<alg>/<hex>`` (the OCI image layout scheme). A blob
becomes visible only once complete, verified and synced: it is written to a
unique temp file under ``<root>/ingest/`` (same volume), hashed while written,
checked against the expected digest and size, fsynced, closed, and then
*published without replacing* (:func:`pycrane._fs.publish`). First writer wins;
a later writer of the same digest finds the file and drops its temp file. Nothing
ever replaces or rewrites a published blob, which is what makes this safe on
Windows, where a file someone holds open cannot be replaced.

Inside a process, writes of one digest are single-flight: other threads wait for
the first writer and reuse its result without any I/O. Across processes, a blob
of :data:`SHARED_WRITE_MIN` bytes or more is written under a lock on
``ingest/<alg>-<hex>.lock``: a second process waits for the first (as long as its
file grows) and then finds the blob, instead of downloading it again.

Such a blob is written to ``ingest/<alg>-<hex>.partial``, named by its digest, and
that file outlives an interrupted writer (Ctrl-C, a lost network, SIGKILL). The
next writer of the digest takes the lock, hashes what the partial holds, asks the
source for the rest (``resume``: a registry ``Range`` request), and verifies the
digest over the whole blob before publishing; a source that can only start over
(a registry answering 200) truncates the partial, and a resumed blob that does not
verify is downloaded once more from the start. Nothing trusts a partial's bytes
before that check, so a crash at any byte is harmless. Every other temp file
carries its owner's token (:mod:`pycrane._ownership`), so a sweep removes a dead
writer's temps at once and never a live one's (:mod:`pycrane.layout._ingest`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from pycrane import _directio, _fs, _ownership
from pycrane._concurrency import Stopped
from pycrane.compression import CHUNK
from pycrane.errors import (
    DigestMismatch,
    LockTimeout,
    NotFoundError,
    SizeMismatch,
    StoreError,
    VerificationError,
)
from pycrane.layout._ingest import PARTIAL_SUFFIX, StaleIngest, sweep
from pycrane.progress import ProgressSink
from pycrane.v1.digest import ALGORITHMS, Digest, DigestHasher, VerifyingReader

__all__ = ["BlobStore", "BlobWriter", "Resume", "StaleIngest"]

log = logging.getLogger("pycrane.layout")

_INGEST = "ingest"

#: Blobs this large or larger are written by one process at a time (see above);
#: below it, a lock file costs more than writing the blob twice.
SHARED_WRITE_MIN = 1 << 20
#: How often a process waiting for another's write looks at the lock and its progress.
_POLL = 0.25
_SAFE_REF = re.compile(r"[^A-Za-z0-9._-]")

Source = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]
#: Opens a source at a byte offset: returns the stream and where it really starts
#: (0 when the other side can only send the whole blob, e.g. a registry ignoring Range).
Resume = Callable[[int], tuple[Source, int]]


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


def _chunks(source: Source) -> Iterator[bytes | memoryview]:
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source).cast("B")
        for i in range(0, len(view), CHUNK):
            yield view[i : i + CHUNK]
        return
    read = getattr(source, "read", None)
    if read is not None:
        while True:
            chunk = read(CHUNK)
            if not chunk:
                return
            yield chunk
        return
    for chunk in source:
        if chunk:
            yield chunk


class _Unverified(StoreError):
    """A self-verifying source ended without its verdict (the partial is not trusted)."""


class _Counter:
    """Stands in for a hasher when the source verifies itself: counts bytes only."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)


def _self_verifying(source: Source, digest: Digest | None, size: int | None) -> bool:
    """Whether ``source`` checks itself against exactly ``digest`` (and ``size``) at EOF."""
    if digest is None or not isinstance(source, VerifyingReader):
        return False
    if source.expected != digest:
        return False
    return size is None or source.expected_size is None or source.expected_size == size


class BlobStore:
    """Content-addressed blobs under ``root`` (``blobs/<alg>/<hex>``).

    ``fsync=False`` skips the data and directory syncs (for throwaway stores and
    benchmarks); ``verify_existing=True`` hashes a blob that is already present
    before trusting it, and replaces a corrupt one.
    """

    root: Path

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fsync: bool = True,
        verify_existing: bool = False,
        lock_timeout: float = 60.0,
    ) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.verify_existing = verify_existing
        self.lock_timeout = lock_timeout
        self._key = os.path.normcase(os.path.abspath(self.root))
        self._made: set[str] = set()
        #: Digests whose partial download this store object wrote and did not finish.
        self._partials: set[Digest] = set()
        # Tests turn this off to make threads behave like separate processes.
        self._single_flight = True

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    # ------------------------------------------------------------------ paths

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    @property
    def ingest_dir(self) -> Path:
        return self.root / _INGEST

    def path(self, digest: Digest) -> Path:
        """Where the blob lives (whether or not it exists)."""
        return self.root / "blobs" / digest.algorithm / digest.hex

    def _ensure(self, sub: Path, *, again: bool = False) -> None:
        key = str(sub)
        if again or key not in self._made:
            _fs.ensure_dir(sub, durable=self.fsync)
            self._made.add(key)

    def _mkstemp(self, label: str) -> tuple[BinaryIO, Path, str | None]:
        """A temp file ``<label>.<owner token>.<n>.tmp`` in ``ingest/`` and its token.

        The token keeps this process's ownership lock held until :meth:`_disown`
        is called for it, once the temp file is gone. The directory is made again
        if someone removed it.
        """
        self._ensure(self.ingest_dir)
        owner = _ownership.owner(self.ingest_dir)
        for attempt in (0, 1):
            token = None
            try:
                token = owner.acquire()
                prefix = f"{label}.{token}." if token is not None else f"{label}."
                f, path = _fs.mkstemp(self.ingest_dir, prefix=prefix, suffix=".tmp")
                return f, path, token
            except FileNotFoundError:
                owner.release(token)
                if attempt:
                    raise
                self._ensure(self.ingest_dir, again=True)
            except BaseException:
                owner.release(token)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _disown(self, token: str | None) -> None:
        """The temp file made with ``token`` is gone: drop this process's share of the lock."""
        _ownership.owner(self.ingest_dir).release(token)

    def partial_path(self, digest: Digest) -> Path:
        """Where an interrupted download of ``digest`` is kept for a later run to resume."""
        return self.ingest_dir / f"{digest.algorithm}-{digest.hex}{PARTIAL_SUFFIX}"

    # ------------------------------------------------------------------ reads

    def size(self, digest: Digest) -> int | None:
        """The blob's size, or ``None`` when it is absent."""
        st = _fs.stat(self.path(digest))
        if st is None or not _fs.is_regular(st):
            return None
        return st.st_size

    def exists(self, digest: Digest, size: int | None = None) -> bool:
        """Whether the blob is present (with ``size`` bytes, when given)."""
        have = self.size(digest)
        return have is not None and (size is None or size < 0 or have == size)

    def open(self, digest: Digest) -> BinaryIO:
        """Open the blob for reading; the caller closes it promptly."""
        try:
            return _fs.open_read(self.path(digest))
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest}: not found in {self.root}") from None
        except IsADirectoryError:
            raise StoreError(f"blob {digest}: {self.path(digest)} is a directory") from None

    def read_bytes(
        self, digest: Digest, *, verify: bool = True, max_size: int = 100 << 20
    ) -> bytes:
        """Read a whole (small) blob, verified against its digest."""
        size = self.size(digest)
        if size is None:
            raise NotFoundError(f"blob {digest}: not found in {self.root}")
        if size > max_size:
            raise StoreError(
                f"blob {digest}: {size} bytes is more than the {max_size} bytes expected here"
            )
        with self.open(digest) as f:
            data = f.read(max_size + 1)
        if len(data) > max_size:
            raise StoreError(f"blob {digest}: more than the {max_size} bytes expected here")
        if verify:
            actual = Digest.from_bytes(data, digest.algorithm)
            if actual != digest:
                raise DigestMismatch(f"blob {digest} in {self.root}", str(digest), str(actual))
        return data

    def hash_file(self, digest: Digest) -> tuple[Digest, int] | None:
        """Hash the stored blob (``None`` when absent)."""
        h = DigestHasher(digest.algorithm)
        try:
            with self.open(digest) as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
        except NotFoundError:
            return None
        return h.digest(), h.size

    def digests(self) -> Iterator[Digest]:
        """Every committed blob (names that are not digests are skipped)."""
        for alg in ALGORITHMS:
            for entry in _fs.walk_files(self.blobs_dir / alg):
                try:
                    yield Digest(alg, entry.name)
                except ValueError:
                    continue

    # ------------------------------------------------------------------ writes

    def put(
        self,
        source: bytes | BinaryIO | Iterable[bytes],
        *,
        digest: Digest | None = None,
        size: int | None = None,
        progress: ProgressSink | None = None,
    ) -> tuple[Digest, int]:
        """Store a blob and return ``(digest, size)``; see the module docstring.

        When the blob already exists with the right size, ``source`` is not read.
        A mismatch raises :class:`DigestMismatch` or :class:`SizeMismatch` and
        leaves nothing visible.
        """
        if size is not None and size < 0:
            size = None
        if isinstance(source, bytes | bytearray | memoryview):
            n = len(source)
            if size is not None and n != size:
                raise SizeMismatch(f"blob {digest or '(new)'}", size, n)
            size = n
        if digest is None:
            return self._write(source, None, size, progress)
        return self._put_digest(lambda: source, Digest.parse(digest), size, progress, False)

    def put_from(
        self,
        opener: Callable[[], Source],
        *,
        digest: Digest,
        size: int | None = None,
        progress: ProgressSink | None = None,
        stop: threading.Event | None = None,
        resume: Resume | None = None,
    ) -> tuple[Digest, int]:
        """Like :meth:`put`, but the source is opened only if the blob must be written.

        For lazy layers (a registry GET, a tarball member) whose opening costs I/O.
        A stream the opener returns is closed afterwards. Once ``stop`` is set (another
        transfer of the same job failed), the write gives up at its next chunk.
        ``resume(offset)`` opens the source at ``offset``: with it, a partial download
        of this digest that an interrupted writer left is continued rather than
        started again (see the module docstring).
        """
        if size is not None and size < 0:
            size = None
        return self._put_digest(opener, Digest.parse(digest), size, progress, True, stop, resume)

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

    def _trusted_size(self, digest: Digest, size: int | None) -> int | None:
        """The size of an existing blob that may be trusted, else ``None``.

        The size is always checked; the content is hashed when the caller gave no
        size (so there is nothing cheaper to check) or ``verify_existing`` is set.
        A blob whose content does not match its name is quarantined.
        """
        have = self.size(digest)
        if have is None:
            return None
        if size is not None and have == size and not self.verify_existing:
            return have
        hashed = self.hash_file(digest)
        if hashed is None:
            return None
        if hashed[0] == digest:
            if size is not None and hashed[1] != size:
                # The stored blob is right; the caller's size is not.
                raise SizeMismatch(f"blob {digest}", size, hashed[1])
            return hashed[1]
        self.quarantine(digest)
        return None

    def quarantine(self, digest: Digest) -> None:
        """Move a corrupt blob out of ``blobs/`` (the sweeper deletes it later)."""
        src = self.path(digest)
        self._ensure(self.ingest_dir)
        dst = self.ingest_dir / f"corrupt.{digest.hex[:16]}.{os.urandom(4).hex()}.tmp"
        try:
            _fs.rename(src, dst)
        except FileNotFoundError:
            return
        except OSError:
            _fs.unlink(src)

    def _write(
        self,
        source: Source,
        digest: Digest | None,
        size: int | None,
        progress: ProgressSink | None,
        stop: threading.Event | None = None,
    ) -> tuple[Digest, int]:
        what = f"blob {digest}" if digest is not None else "blob"
        algorithm = digest.algorithm if digest is not None else "sha256"
        f, tmp, token = self._mkstemp(digest.hex[:12] if digest is not None else "put")
        # A source that verifies itself against this very digest (a remote layer's
        # stream) need not be hashed twice: count bytes and require its verdict.
        # Hashing is the largest CPU cost of a pull, so this halves it.
        trusted = _self_verifying(source, digest, size)
        direct: _directio.DirectWriter | None = None
        try:
            h: DigestHasher | _Counter = _Counter() if trusted else DigestHasher(algorithm)
            with f:
                if progress is not None and digest is not None:
                    progress.start(digest, size)
                # Big durable blobs of known size bypass the page cache (Linux).
                if self.fsync:
                    direct = _directio.open_direct(f, size)
                writeback = _fs.Writeback(f) if self.fsync and direct is None else None
                for chunk in _chunks(source):
                    if stop is not None and stop.is_set():
                        raise Stopped(what)
                    h.update(chunk)
                    if size is not None and h.size > size:
                        raise SizeMismatch(what, size, h.size)
                    if direct is not None:
                        direct.write(chunk)
                    else:
                        _fs.write_all(f, chunk)
                    if writeback is not None:
                        writeback.wrote(len(chunk))
                    if progress is not None and digest is not None:
                        progress.advance(digest, len(chunk))
                if trusted:
                    assert digest is not None and isinstance(source, VerifyingReader)
                    if size is not None and h.size != size:
                        raise SizeMismatch(what, size, h.size)
                    if not source.verified:
                        raise StoreError(f"{what}: source ended before its digest was checked")
                    actual = digest
                elif digest is not None:
                    assert isinstance(h, DigestHasher)
                    h.verify(what, digest, size)
                    actual = digest
                elif size is not None and h.size != size:
                    raise SizeMismatch(what, size, h.size)
                else:
                    assert isinstance(h, DigestHasher)
                    actual = h.digest()
                if direct is not None:
                    direct.finish()
                if self.fsync:
                    _fs.fsync_file(f)
            self._publish(tmp, actual, h.size)
            if progress is not None and digest is not None:
                progress.finish(digest)
            return actual, h.size
        finally:
            try:
                if direct is not None:
                    direct.close()
                if os.path.lexists(tmp):
                    _fs.discard(tmp)
            finally:
                self._disown(token)

    def _write_partial(
        self,
        opener: Callable[[], Source],
        resume: Resume | None,
        digest: Digest,
        size: int | None,
        progress: ProgressSink | None,
        close: bool,
        stop: threading.Event | None,
    ) -> tuple[Digest, int]:
        """Write ``digest`` through its partial file, continuing what is there (lock held).

        Only a failed verification removes the partial (a resumed one is then fetched
        once more from the start); any other failure, an interruption included, keeps
        it for the next writer.
        """
        path = self.partial_path(digest)
        what = f"blob {digest}"
        st = _fs.stat(path)
        have = st.st_size if st is not None and _fs.is_regular(st) else 0
        if resume is None or (size is not None and have > size):
            have = 0  # nothing can continue from there: start over
        if st is None:
            _fs.open_append(path).close()
        self._partials.add(digest)
        if progress is not None:
            progress.start(digest, size)
        while True:
            f = _fs.open_update(path)
            source: Source | None = None
            resumed = False
            try:
                h = DigestHasher(digest.algorithm)
                if have:
                    have = self._hash_prefix(f, h, have, stop, what)
                f.truncate(have)
                f.seek(have)
                if have and (size is None or have < size):
                    assert resume is not None
                    source, start = resume(have)
                    if start != have:  # the whole blob again (a registry ignoring Range)
                        h = DigestHasher(digest.algorithm)
                        have = 0
                        f.truncate(0)
                        f.seek(0)
                    resumed = have > 0
                elif have:
                    source, resumed = b"", True  # complete already: only verify it
                else:
                    source = opener()
                if progress is not None and have:
                    progress.advance(digest, have)
                counter = self._fill(f, source, h, digest, size, progress, stop, what)
                if self.fsync:
                    _fs.fsync_file(f)
                f.close()
                self._publish(path, digest, counter)
                self._partials.discard(digest)
                if progress is not None:
                    progress.finish(digest)
                return digest, counter
            except (VerificationError, _Unverified):
                f.close()
                _fs.discard(path)
                if not resumed:
                    self._partials.discard(digest)
                    raise
                log.debug("blob %s: the resumed download did not verify; starting over", digest)
                have = 0
                _fs.open_append(path).close()
            except BaseException:
                f.close()
                st = _fs.stat(path)
                if st is not None and st.st_size == 0:
                    _fs.discard(path)
                    self._partials.discard(digest)
                raise
            finally:
                closer = getattr(source, "close", None)
                if close and closer is not None:
                    closer()

    def _hash_prefix(
        self, f: BinaryIO, h: DigestHasher, have: int, stop: threading.Event | None, what: str
    ) -> int:
        """Hash the first ``have`` bytes of ``f``; how many there really were."""
        f.seek(0)
        left = have
        while left:
            if stop is not None and stop.is_set():
                raise Stopped(what)
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
        return have - left

    def _fill(
        self,
        f: BinaryIO,
        source: Source,
        h: DigestHasher,
        digest: Digest,
        size: int | None,
        progress: ProgressSink | None,
        stop: threading.Event | None,
        what: str,
    ) -> int:
        """Append ``source`` to ``f`` (hashed into ``h``) and verify the whole; the size."""
        # A fresh download whose stream verifies itself need not be hashed twice.
        trusted = h.size == 0 and _self_verifying(source, digest, size)
        counter: DigestHasher | _Counter = _Counter() if trusted else h
        # Big durable blobs of known size bypass the page cache (Linux), from where a
        # resumed partial ends.
        left = None if size is None else size - h.size
        direct = _directio.open_direct(f, left, h.size) if self.fsync else None
        try:
            writeback = _fs.Writeback(f, h.size) if self.fsync and direct is None else None
            for chunk in _chunks(source):
                if stop is not None and stop.is_set():
                    raise Stopped(what)
                counter.update(chunk)
                if size is not None and counter.size > size:
                    raise SizeMismatch(what, size, counter.size)
                if direct is not None:
                    direct.write(chunk)
                else:
                    _fs.write_all(f, chunk)
                if writeback is not None:
                    writeback.wrote(len(chunk))
                if progress is not None:
                    progress.advance(digest, len(chunk))
            if trusted:
                assert isinstance(source, VerifyingReader)
                if size is not None and counter.size != size:
                    raise SizeMismatch(what, size, counter.size)
                if not source.verified:
                    raise _Unverified(f"{what}: source ended before its digest was checked")
            else:
                h.verify(what, digest, size)
            if direct is not None:
                direct.finish()
            return counter.size
        finally:
            if direct is not None:
                direct.close()

    def _publish(self, tmp: Path, digest: Digest, size: int) -> None:
        """Publish a verified, closed temp file as ``digest``."""
        self._ensure(self.blobs_dir / digest.algorithm)
        for _ in range(3):
            if self._trusted_size(digest, size) is not None:
                _fs.discard(tmp)
                return
            try:
                if _fs.publish(tmp, self.path(digest), durable=self.fsync):
                    return
            except FileNotFoundError:
                if not os.path.lexists(tmp):
                    raise
                # blobs/<alg> was removed under us (a manual cleanup): make it again.
                self._ensure(self.blobs_dir / digest.algorithm, again=True)
                continue
            # Someone published between our check and our publish; check theirs.
            if self._trusted_size(digest, size) is not None:
                return
        raise StoreError(f"blob {digest}: could not publish {self.path(digest)}")

    def ingest(self, ref: str | None = None, algorithm: str = "sha256") -> BlobWriter:
        """An incremental writer; with ``ref`` it can be resumed later, by any process."""
        return BlobWriter(self, ref, algorithm)

    def delete(self, digest: Digest) -> bool:
        """Remove a blob; True if it was there."""
        return _fs.unlink(self.path(digest))

    def sweep(self, older_than: float = 3600.0, *, partials: bool = False) -> int:
        """Remove what dead writers left in ``ingest/``; returns how many entries went.

        A dead writer's temp files go at once, whatever their age; a live writer's
        are never touched (:mod:`pycrane.layout._ingest`). Abandoned ingests by
        reference (upload sessions) go once ``older_than`` seconds old. Partial
        downloads are kept for a later run to resume, unless ``partials``.
        """
        return sum(1 for e in self.clean_ingests(older_than, partials=partials) if e.removed)

    def clean_ingests(
        self, older_than: float = 3600.0, *, partials: bool = False
    ) -> list[StaleIngest]:
        """Like :meth:`sweep`, but lists every dead writer's entry (removed or kept)."""
        return sweep(self.ingest_dir, older_than=older_than, partials=partials)

    def drop_partials(self) -> int:
        """Remove the partial downloads this store object left (a failed, not interrupted,
        job); a partial another writer holds meanwhile is left alone. Returns the bytes freed."""
        freed = 0
        for digest in list(self._partials):
            self._partials.discard(digest)
            held = _ownership.probe(self.ingest_dir / f"{digest.algorithm}-{digest.hex}.lock")
            if held == _ownership.LIVE:
                continue
            try:
                st = _fs.stat(self.partial_path(digest))
                if st is not None and _fs.unlink(self.partial_path(digest), budget=0):
                    freed += st.st_size
            except OSError:
                pass
            finally:
                if isinstance(held, _ownership.Held):
                    held.release(remove=True)
        return freed

    def partial_bytes(self, mine: bool = False) -> tuple[int, int]:
        """``(count, bytes)`` of the partial downloads in ``ingest/`` (``mine``: this
        store object's only)."""
        count = total = 0
        for entry in _fs.walk_files(self.ingest_dir):
            if not entry.name.endswith(PARTIAL_SUFFIX):
                continue
            if mine and not any(entry.name == self.partial_path(d).name for d in self._partials):
                continue
            try:
                size = entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
            count += 1
            total += size
        return count, total


def _safe_ref(ref: str) -> str:
    tag = hashlib.sha256(ref.encode("utf-8")).hexdigest()[:16]
    return f"{_SAFE_REF.sub('_', ref)[:40]}-{tag}"


class BlobWriter:
    """Writes a blob in pieces; see :meth:`BlobStore.ingest`.

    Without a ref the data goes to a private temp file. With a ref it lives in
    ``<root>/ingest/<safe ref>/data`` under a cross-process lock on
    ``<safe ref>.lock``, and a later writer of the same ref (another process, after
    a restart) continues at its offset.
    """

    def __init__(self, store: BlobStore, ref: str | None, algorithm: str = "sha256") -> None:
        self.store = store
        self.ref = ref
        self._hasher = DigestHasher(algorithm)
        self._done = False
        self._lock: _ownership.Held | None = None
        self._token: str | None = None
        self._dir: Path | None
        if ref is None:
            self._dir = None
            self._f, self._data, self._token = store._mkstemp("w")
            self._writeback = _fs.Writeback(self._f) if store.fsync else None
            return
        store._ensure(store.ingest_dir)
        safe = _safe_ref(ref)
        self._dir = store.ingest_dir / safe
        # Not tied to a thread: a server may open a session in one thread and commit it
        # in another.
        lock_path = store.ingest_dir / f"{safe}.lock"
        self._lock = _ownership.lock(lock_path, timeout=store.lock_timeout)
        if self._lock is None:
            raise LockTimeout(
                f"ingest {ref!r}: another writer holds {lock_path} after {store.lock_timeout:g}s"
            )
        try:
            _fs.ensure_dir(self._dir, durable=False)
            self._data = self._dir / "data"
            if _fs.stat(self._data) is not None:
                with _fs.open_read(self._data) as r:
                    while chunk := r.read(CHUNK):
                        self._hasher.update(chunk)
            else:
                _fs.atomic_write_bytes(self._dir / "ref", ref.encode("utf-8"), durable=False)
            self._f = _fs.open_append(self._data)
            if self._f.tell() != self._hasher.size:  # pragma: no cover - concurrent foreign writer
                raise StoreError(f"ingest {ref!r}: {self._data} changed while it was reopened")
            self._writeback = _fs.Writeback(self._f, self._hasher.size) if store.fsync else None
        except BaseException:
            self._lock.release()
            raise

    @property
    def offset(self) -> int:
        """Bytes written so far (including those of earlier sessions of this ref)."""
        return self._hasher.size

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._done:
            raise StoreError(f"ingest {self.ref!r}: already committed or aborted")
        _fs.write_all(self._f, data)
        self._hasher.update(data)
        if self._writeback is not None:
            self._writeback.wrote(len(data))
        return len(data)

    def digest(self) -> Digest:
        """The digest of what was written so far."""
        return self._hasher.digest()

    def close(self) -> None:
        """Stop writing for now and keep the data for a later ``ingest(ref)`` (ref only)."""
        if self._done:
            return
        if self.ref is None:
            self.abort()
            return
        self._f.close()
        self._done = True
        self._release()

    def commit(self, expected: Digest | None = None, expected_size: int | None = None) -> Digest:
        """Verify, publish and clean up; an existing blob with this digest is success."""
        if self._done:
            raise StoreError(f"ingest {self.ref!r}: already committed or aborted")
        what = f"ingest {self.ref!r}" if self.ref else "blob upload"
        if expected_size is not None and expected_size >= 0 and self.offset != expected_size:
            raise SizeMismatch(what, expected_size, self.offset)
        actual = self._hasher.digest()
        if expected is not None and Digest.parse(expected) != actual:
            raise DigestMismatch(what, str(expected), str(actual))
        if self.store.fsync:
            _fs.fsync_file(self._f)
        self._f.close()
        self.store._publish(self._data, actual, self.offset)
        self._done = True
        self._cleanup()
        return actual

    def abort(self) -> None:
        """Drop everything written (also from earlier sessions of this ref)."""
        if self._done:
            return
        self._done = True
        self._f.close()
        self._cleanup()

    def _cleanup(self) -> None:
        try:
            if self._dir is not None:
                _fs.rmtree(self._dir)
            else:
                _fs.discard(self._data)
        finally:
            self._release(remove=True)

    def _release(self, remove: bool = False) -> None:
        if self._lock is not None:
            self._lock.release(remove=remove and self._dir is not None)
            self._lock = None
        token, self._token = self._token, None
        if token is not None:
            self.store._disown(token)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._done:
            self.abort()

    def __del__(self) -> None:  # pragma: no cover - safety net for forgotten writers
        if not getattr(self, "_done", True):
            try:
                self._f.close()
                self._release()
            except Exception:
                pass
