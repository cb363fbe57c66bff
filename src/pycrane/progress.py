"""Progress reporting as plain callbacks, so the library never draws anything itself.

Transfers (pull, push, copy, layout and tarball writes) accept ``progress=`` with an
object following :class:`ProgressSink`; the CLI renders it with rich only when
stderr is a terminal. Calls may come from several worker threads at once.
"""

from __future__ import annotations

from typing import Protocol

from pycrane.v1.digest import Digest

__all__ = ["NULL_PROGRESS", "NullProgress", "ProgressSink"]


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
