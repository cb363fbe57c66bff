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

import threading
from collections.abc import Callable, Iterable
from typing import BinaryIO

from pycrane import _fs
from pycrane.errors import SizeMismatch
from pycrane.layout._flight import SHARED_WRITE_MIN as SHARED_WRITE_MIN
from pycrane.layout._flight import _WriteFlights
from pycrane.layout._ingest import StaleIngest, sweep
from pycrane.layout._source import Resume, Source
from pycrane.layout._writer import BlobWriter
from pycrane.progress import ProgressSink
from pycrane.v1.digest import Digest

__all__ = ["BlobStore", "BlobWriter", "Resume", "StaleIngest"]


class BlobStore(_WriteFlights):
    """Content-addressed blobs under ``root`` (``blobs/<alg>/<hex>``).

    ``fsync=False`` skips the data and directory syncs (for throwaway stores and
    benchmarks); ``verify_existing=True`` hashes a blob that is already present
    before trusting it, and replaces a corrupt one.

    The store is built in layers, one concept each: paths, reads and publishing
    (:mod:`._core`); the temp-file write path (:mod:`._temp`); the digest-named
    partial that a later writer resumes (:mod:`._partial`); who writes a digest,
    across threads and processes (:mod:`._flight`); :class:`BlobWriter`, the
    incremental ingest (:mod:`._writer`).
    """

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

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
        downloads are kept for a later run to resume, unless ``partials`` (or their
        blob is published already).
        """
        return sum(1 for e in self.clean_ingests(older_than, partials=partials) if e.removed)

    def clean_ingests(
        self, older_than: float = 3600.0, *, partials: bool = False
    ) -> list[StaleIngest]:
        """Like :meth:`sweep`, but lists every dead writer's entry (removed or kept)."""
        return sweep(
            self.ingest_dir, older_than=older_than, partials=partials, blobs=self.blobs_dir
        )
