"""Progress reporting as plain callbacks, so the library never draws anything itself.

Transfers (pull, push, copy, layout and tarball writes) accept ``progress=`` with an
object following :class:`ProgressSink`; the CLI renders it with rich only when
stderr is a terminal. Calls may come from several worker threads at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Protocol

from pycrane.v1.digest import Digest

__all__ = ["NULL_PROGRESS", "NullProgress", "ProgressSink", "counting_reader", "iter_progress"]


class ProgressSink(Protocol):
    """Receives transfer events. Implementations must be thread-safe."""

    def start(self, digest: Digest, total: int | None, description: str = "") -> None:
        """A blob transfer begins; ``total`` is its size in bytes when known."""

    def advance(self, digest: Digest, nbytes: int) -> None:
        """``nbytes`` more bytes of the blob were transferred."""

    def finish(self, digest: Digest, *, skipped: bool = False) -> None:
        """The transfer ended (``skipped``: the blob was already there)."""


class NullProgress:
    """A sink that ignores every event."""

    def start(self, digest: Digest, total: int | None, description: str = "") -> None:
        pass

    def advance(self, digest: Digest, nbytes: int) -> None:
        pass

    def finish(self, digest: Digest, *, skipped: bool = False) -> None:
        pass


NULL_PROGRESS: ProgressSink = NullProgress()


def iter_progress(chunks: Iterator[bytes], sink: ProgressSink, digest: Digest) -> Iterator[bytes]:
    """Pass chunks through, reporting their sizes."""
    for chunk in chunks:
        sink.advance(digest, len(chunk))
        yield chunk


class counting_reader:
    """Wrap a readable stream and report bytes read to a sink."""

    def __init__(self, raw: BinaryIO, sink: ProgressSink, digest: Digest) -> None:
        self._raw = raw
        self._sink = sink
        self._digest = digest

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._sink.advance(self._digest, len(data))
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(buf))
        memoryview(buf)[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> counting_reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
