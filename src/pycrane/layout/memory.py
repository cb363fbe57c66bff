"""A blob store in memory, with the same contract as the disk store.

For tests, throwaway pipelines and the registry server's default mode. Blobs are
verified before they become visible, exactly as :class:`~pycrane.layout.BlobStore`
verifies them (the shared suite ``tests/test_blobstore_contract.py`` holds both to
it); ``max_bytes`` bounds what committed blobs and ingests in flight may hold
together, because memory, unlike a disk, runs out for the whole process.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from pycrane._concurrency import Stopped
from pycrane.errors import DigestMismatch, LockTimeout, NotFoundError, SizeMismatch, StoreError
from pycrane.layout.roles import Source
from pycrane.progress import ProgressSink
from pycrane.v1.digest import Digest, DigestHasher

__all__ = ["MemoryBlobStore", "MemoryIngest", "StoreFull"]

_CHUNK = 1 << 20


class StoreFull(StoreError):
    """A bounded memory store would exceed ``max_bytes``."""


def _chunks(source: Source) -> Iterator[bytes | bytearray | memoryview]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield source
    elif hasattr(source, "read"):
        f: BinaryIO = source  # type: ignore[assignment]
        while chunk := f.read(_CHUNK):
            yield chunk
    else:
        yield from source


class MemoryBlobStore:
    """Content-addressed blobs in a dict, safe for many threads."""

    def __init__(self, *, max_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._blobs: dict[Digest, bytes] = {}
        self._parked: dict[str, tuple[str, bytearray]] = {}  # ref -> (algorithm, data)
        self._live: set[str] = set()  # refs a writer holds now
        self._used = 0  # committed bytes + bytes held by every ingest in flight

    def __repr__(self) -> str:
        return f"MemoryBlobStore({len(self._blobs)} blobs, {self._used} bytes)"

    @property
    def used(self) -> int:
        """Bytes held: committed blobs and ingests in flight (parked ones included)."""
        return self._used

    # -- accounting ------------------------------------------------------------------
    def _reserve(self, n: int, what: str) -> None:
        with self._lock:
            if self.max_bytes is not None and self._used + n > self.max_bytes:
                raise StoreFull(
                    f"{what}: the memory store holds {self._used} of its {self.max_bytes} bytes;"
                    f" {n} more do not fit"
                )
            self._used += n

    def _release(self, n: int) -> None:
        with self._lock:
            self._used -= n

    # -- reads -----------------------------------------------------------------------
    def size(self, digest: Digest) -> int | None:
        data = self._blobs.get(digest)
        return None if data is None else len(data)

    def exists(self, digest: Digest, size: int | None = None) -> bool:
        have = self.size(digest)
        return have is not None and (size is None or size < 0 or have == size)

    def open(self, digest: Digest) -> BinaryIO:
        data = self._blobs.get(digest)
        if data is None:
            raise NotFoundError(f"blob {digest}: not found in the memory store")
        return io.BytesIO(data)

    def read_bytes(
        self, digest: Digest, *, verify: bool = True, max_size: int = 100 << 20
    ) -> bytes:
        data = self._blobs.get(digest)
        if data is None:
            raise NotFoundError(f"blob {digest}: not found in the memory store")
        if len(data) > max_size:
            raise StoreError(
                f"blob {digest}: {len(data)} bytes is more than the {max_size} bytes expected here"
            )
        # Committed blobs were verified on the way in and bytes objects cannot change.
        return data

    def digests(self) -> Iterator[Digest]:
        with self._lock:
            names = list(self._blobs)
        yield from names

    # -- writes ----------------------------------------------------------------------
    def put(
        self,
        source: bytes | BinaryIO | Iterable[bytes],
        *,
        digest: Digest | None = None,
        size: int | None = None,
        progress: ProgressSink | None = None,
    ) -> tuple[Digest, int]:
        if size is not None and size < 0:
            size = None
        if isinstance(source, bytes | bytearray | memoryview):
            if size is not None and len(source) != size:
                raise SizeMismatch(f"blob {digest or '(new)'}", size, len(source))
            size = len(source)
        if digest is None:
            return self._write(source, None, size, progress)
        return self.put_from(lambda: source, digest=digest, size=size, progress=progress)

    def put_from(
        self,
        opener: Callable[[], Source],
        *,
        digest: Digest,
        size: int | None = None,
        progress: ProgressSink | None = None,
        stop: threading.Event | None = None,
    ) -> tuple[Digest, int]:
        digest = Digest.parse(digest)
        if size is not None and size < 0:
            size = None
        have = self.size(digest)
        if have is not None:
            if size is not None and have != size:
                raise SizeMismatch(f"blob {digest}", size, have)
            if progress is not None:
                progress.start(digest, have, "exists")
                progress.finish(digest, skipped=True)
            return digest, have
        source = opener()
        try:
            return self._write(source, digest, size, progress, stop)
        finally:
            closer = getattr(source, "close", None)
            if closer is not None and not isinstance(source, bytes | bytearray | memoryview):
                closer()

    def _write(
        self,
        source: Source,
        digest: Digest | None,
        size: int | None,
        progress: ProgressSink | None,
        stop: threading.Event | None = None,
    ) -> tuple[Digest, int]:
        w = MemoryIngest(self, None, digest.algorithm if digest else "sha256")
        with w:
            label = digest or Digest("sha256", "0" * 64)
            if progress is not None:
                progress.start(label, size)
            for chunk in _chunks(source):
                if stop is not None and stop.is_set():
                    raise Stopped(f"blob {digest or '(new)'}")
                w.write(chunk)
                if size is not None and w.offset > size:
                    raise SizeMismatch(f"blob {digest or '(new)'}", size, w.offset)
                if progress is not None:
                    progress.advance(label, len(chunk))
            got = w.commit(digest, size)
            if progress is not None:
                progress.finish(label)
            return got, w.offset

    def ingest(self, ref: str | None = None, algorithm: str = "sha256") -> MemoryIngest:
        return MemoryIngest(self, ref, algorithm)

    def _publish(self, digest: Digest, data: bytearray) -> None:
        """Make ``data`` the blob ``digest``; the caller's reservation moves to it."""
        with self._lock:
            if digest in self._blobs:
                self._used -= len(data)  # first writer wins; ours is dropped
            else:
                self._blobs[digest] = bytes(data)

    def delete(self, digest: Digest) -> bool:
        with self._lock:
            data = self._blobs.pop(digest, None)
            if data is None:
                return False
            self._used -= len(data)
            return True


class MemoryIngest:
    """One blob written in pieces into a :class:`MemoryBlobStore`."""

    def __init__(self, store: MemoryBlobStore, ref: str | None, algorithm: str) -> None:
        self.store = store
        self.ref = ref
        self._hasher = DigestHasher(algorithm)
        self._data = bytearray()
        self._done = False
        if ref is not None:
            with store._lock:
                if ref in store._live:
                    raise LockTimeout(f"ingest {ref!r}: another writer holds it")
                store._live.add(ref)
                parked = store._parked.pop(ref, None)
            if parked is not None and parked[0] == algorithm:
                self._data = parked[1]
                self._hasher.update(self._data)
            elif parked is not None:
                store._release(len(parked[1]))

    @property
    def offset(self) -> int:
        return self._hasher.size

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._done:
            raise StoreError(f"ingest {self.ref!r}: already committed or aborted")
        n = len(data)
        self.store._reserve(n, f"ingest {self.ref!r}" if self.ref else "blob upload")
        self._data += data
        self._hasher.update(data)
        return n

    def digest(self) -> Digest:
        return self._hasher.digest()

    def commit(self, expected: Digest | None = None, expected_size: int | None = None) -> Digest:
        if self._done:
            raise StoreError(f"ingest {self.ref!r}: already committed or aborted")
        what = f"ingest {self.ref!r}" if self.ref else "blob upload"
        if expected_size is not None and expected_size >= 0 and self.offset != expected_size:
            raise SizeMismatch(what, expected_size, self.offset)
        actual = self._hasher.digest()
        if expected is not None and Digest.parse(expected) != actual:
            raise DigestMismatch(what, str(expected), str(actual))
        self._done = True
        self.store._publish(actual, self._data)
        self._data = bytearray()
        self._unhold()
        return actual

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self.store._release(len(self._data))
        self._data = bytearray()
        self._unhold()

    def close(self) -> None:
        if self._done:
            return
        if self.ref is None:
            self.abort()
            return
        self._done = True
        with self.store._lock:
            self.store._parked[self.ref] = (self._hasher.algorithm, self._data)
        self._unhold()

    def _unhold(self) -> None:
        if self.ref is not None:
            with self.store._lock:
                self.store._live.discard(self.ref)

    def __enter__(self) -> MemoryIngest:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.abort()
