"""Writing a blob in pieces: :class:`BlobWriter`, the store's ingest (containerd's ``Writer``).

Without a ref the data goes to a private temp file; with a ref it lives in
``ingest/<safe ref>/data`` under a cross-process lock, so a later writer of the same ref
(another process, after a restart) continues at its offset. A commit verifies the
digest and size and publishes through the store like every other write.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from types import TracebackType

from pycrane import _fs, _ownership
from pycrane.compression import CHUNK
from pycrane.errors import DigestMismatch, LockTimeout, SizeMismatch, StoreError
from pycrane.layout._core import _StoreCore
from pycrane.v1.digest import Digest, DigestHasher

__all__ = ["BlobWriter"]

_SAFE_REF = re.compile(r"[^A-Za-z0-9._-]")


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

    def __init__(self, store: _StoreCore, ref: str | None, algorithm: str = "sha256") -> None:
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
