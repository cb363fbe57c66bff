"""The blob store's ground floor: where things live, reads, and publishing a verified file.

:class:`_StoreCore` holds a store's settings and knows its paths (``blobs/<alg>/<hex>``,
``ingest/``), reads committed blobs, makes owned temp files in ``ingest/``
(:mod:`pycrane._ownership`), and publishes a verified, closed temp file without ever
replacing one (:func:`pycrane._fs.publish`), quarantining a stored blob whose content
does not match its name. The write paths (:mod:`._temp`, :mod:`._partial`), their
coordination (:mod:`._flight`) and :class:`~pycrane.layout.store.BlobStore` build on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pycrane import _fs, _ownership
from pycrane.compression import CHUNK
from pycrane.errors import DigestMismatch, NotFoundError, SizeMismatch, StoreError
from pycrane.layout._ingest import PARTIAL_SUFFIX
from pycrane.v1.digest import ALGORITHMS, Digest, DigestHasher

__all__: list[str] = []

_INGEST = "ingest"


class _StoreCore:
    """Paths, reads and publishing of a :class:`~pycrane.layout.store.BlobStore`."""

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
