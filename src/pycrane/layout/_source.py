"""What a blob store writes from, and the small pieces every write path shares.

A :data:`Source` is bytes, a stream or an iterable of chunks; :func:`_chunks` reads
any of them in :data:`~pycrane.compression.CHUNK` pieces. A source that verifies
itself against the very digest being written (a remote layer's
:class:`~pycrane.v1.digest.VerifyingReader`) need not be hashed a second time: the
write paths then count bytes with :class:`_Counter` and require the source's verdict
(:func:`_self_verifying`, :class:`_Unverified`). :func:`_stream` is the one copy loop
both write paths (a temp file, a digest-named partial) run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from pycrane import _directio, _fs
from pycrane._concurrency import Stopped
from pycrane.compression import CHUNK
from pycrane.errors import SizeMismatch, StoreError
from pycrane.progress import ProgressSink
from pycrane.v1.digest import Digest, DigestHasher, VerifyingReader

__all__ = ["Resume", "Source"]

Source = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]
#: Opens a source at a byte offset: returns the stream and where it really starts
#: (0 when the other side can only send the whole blob, e.g. a registry ignoring Range).
Resume = Callable[[int], tuple[Source, int]]


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


def _stream(
    f: BinaryIO,
    source: Source,
    counter: DigestHasher | _Counter,
    *,
    size: int | None,
    durable: bool,
    progress: ProgressSink | None,
    digest: Digest | None,
    stop: threading.Event | None,
    what: str,
) -> None:
    """Write ``source`` into ``f`` from ``counter.size`` on, feeding ``counter``.

    ``size`` is the whole blob's. A durable blob of known size goes through
    :mod:`pycrane._directio` (the page cache bypassed, from where a resumed partial
    ends); otherwise through ``f`` with early writeback. Refuses a source longer than
    ``size`` at once and gives up at the next chunk once ``stop`` is set. The caller
    verifies and syncs.
    """
    start = counter.size
    left = None if size is None else size - start
    direct = _directio.open_direct(f, left, start) if durable else None
    try:
        writeback = _fs.Writeback(f, start) if durable and direct is None else None
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
            if progress is not None and digest is not None:
                progress.advance(digest, len(chunk))
        if direct is not None:
            direct.finish()
    finally:
        if direct is not None:
            direct.close()
