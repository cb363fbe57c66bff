"""The roles of a content-addressed blob store, as containerd's content package names them.

A store is a *reader* (a ``Provider``: size, open, read), an *ingester* (a ``Writer``
factory: put a whole blob, or write one in pieces and commit it) and a *manager*
(list, delete). Code that needs one role asks for that protocol only, so a caller that
only reads can be handed any store, and one conformance suite
(``tests/test_blobstore_contract.py``) holds every implementation to the same
contract: :class:`~pycrane.layout.BlobStore` on disk and
:class:`~pycrane.layout.MemoryBlobStore` in memory.

The contract, in short: nothing is visible before its digest and size check out;
putting a digest that is already present is success without reading the source;
a mismatch raises :class:`~pycrane.errors.DigestMismatch` or
:class:`~pycrane.errors.SizeMismatch` and leaves nothing; an aborted ingest leaves
nothing; an ingest with a ref that is closed (not aborted) continues at its offset
when opened again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, Protocol

from pycrane.progress import ProgressSink
from pycrane.v1.digest import Digest

__all__ = ["BlobIngester", "BlobManager", "BlobReader", "Blobs", "Ingest", "Source"]

#: What a blob can be written from: bytes, a stream, or an iterable of chunks.
Source = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]


class BlobReader(Protocol):
    """Reads committed blobs."""

    def size(self, digest: Digest) -> int | None:
        """The blob's size, or ``None`` when it is absent."""
        ...

    def exists(self, digest: Digest, size: int | None = None) -> bool:
        """Whether the blob is present (with ``size`` bytes, when given)."""
        ...

    def open(self, digest: Digest) -> BinaryIO:
        """A stream of the blob (:class:`~pycrane.errors.NotFoundError` when absent)."""
        ...

    def read_bytes(
        self, digest: Digest, *, verify: bool = True, max_size: int = 100 << 20
    ) -> bytes:
        """A whole small blob, verified against its digest unless ``verify`` is off."""
        ...


class Ingest(Protocol):
    """One blob being written in pieces; see :meth:`BlobIngester.ingest`."""

    @property
    def offset(self) -> int:
        """Bytes written so far, earlier sessions of the same ref included."""
        ...

    def write(self, data: bytes | bytearray | memoryview) -> int: ...

    def digest(self) -> Digest:
        """The digest of what was written so far."""
        ...

    def commit(self, expected: Digest | None = None, expected_size: int | None = None) -> Digest:
        """Verify and publish; a blob that already exists with this digest is success."""
        ...

    def abort(self) -> None:
        """Drop what was written, earlier sessions of the ref included."""
        ...

    def close(self) -> None:
        """Stop for now; with a ref, the data waits for the next ``ingest(ref)``."""
        ...


class BlobIngester(Protocol):
    """Writes blobs, verified before they become visible."""

    def put(
        self,
        source: bytes | BinaryIO | Iterable[bytes],
        *,
        digest: Digest | None = None,
        size: int | None = None,
        progress: ProgressSink | None = None,
    ) -> tuple[Digest, int]:
        """Store a blob; ``source`` is not read when ``digest`` is already present."""
        ...

    def put_from(
        self,
        opener: Callable[[], Source],
        *,
        digest: Digest,
        size: int | None = None,
        progress: ProgressSink | None = None,
        stop: threading.Event | None = None,
    ) -> tuple[Digest, int]:
        """Like :meth:`put`, opening the source only if the blob must be written."""
        ...

    def ingest(self, ref: str | None = None, algorithm: str = "sha256") -> Ingest:
        """An incremental writer; with ``ref`` it can be resumed later."""
        ...


class BlobManager(Protocol):
    """Lists and removes committed blobs."""

    def digests(self) -> Iterator[Digest]:
        """Every committed blob."""
        ...

    def delete(self, digest: Digest) -> bool:
        """Remove a blob; True if it was there."""
        ...


class Blobs(BlobReader, BlobIngester, BlobManager, Protocol):
    """A whole store: every role."""
