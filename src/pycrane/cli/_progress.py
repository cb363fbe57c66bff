"""Progress bars for pull, push and copy, drawn with rich on stderr.

The library reports transfers through :class:`pycrane.progress.ProgressSink`; this
module is the only place that draws them. Bars appear only when a person is
watching: stderr is a terminal, ``CI`` is not set, and ``-q`` was not given.
Otherwise :func:`progress_for` yields ``None`` and nothing extra is written.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from pycrane.progress import ProgressSink
from pycrane.v1.digest import Digest

if TYPE_CHECKING:
    from rich.progress import TaskID

__all__ = ["RichProgress", "progress_for", "wants_progress"]


def wants_progress(quiet: bool, stream: TextIO | None = None) -> bool:
    """Whether bars should be drawn on ``stream`` (default stderr)."""
    if quiet:
        return False
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


@dataclass
class _Blob:
    task: TaskID
    total: int
    moved: int = 0
    refs: int = 1


class RichProgress:
    """A thread-safe :class:`ProgressSink` with one bar per active blob and a total bar.

    A blob that was already present (``finish(skipped=True)``) is taken out of the
    total, so the rate and the time left reflect bytes that really move.
    """

    def __init__(self, stream: TextIO | None = None, *, title: str = "total") -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._console = Console(file=stream if stream is not None else sys.stderr, stderr=True)
        self._progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=False,
        )
        self._lock = threading.Lock()
        self._blobs: dict[Digest, _Blob] = {}
        self._done = 0
        self._started = 0
        self._title = title
        self._total_bytes = 0
        self._total: TaskID = self._progress.add_task(self._total_label(), total=None)

    def _total_label(self) -> str:
        return f"{self._title} ({self._done}/{self._started} blobs)"

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            if self._started == 0:
                # Nothing moved (all blobs present or mounted): leave no empty bar behind.
                self._progress.remove_task(self._total)
        self._progress.stop()

    def start(self, digest: Digest, total: int | None, description: str = "") -> None:
        with self._lock:
            self._started += 1
            self._total_bytes += total or 0
            blob = self._blobs.get(digest)
            if blob is not None:
                # The same blob again (copy -a, several images): one bar, honest totals.
                blob.refs += 1
                blob.total += total or 0
                self._progress.update(blob.task, total=blob.total or None)
            else:
                label = description or digest.hex[:12]
                task = self._progress.add_task(label, total=total)
                self._blobs[digest] = _Blob(task, total or 0)
            self._progress.update(
                self._total, total=self._total_bytes or None, description=self._total_label()
            )

    def advance(self, digest: Digest, nbytes: int) -> None:
        with self._lock:
            blob = self._blobs.get(digest)
            if blob is not None:
                blob.moved += nbytes
                self._progress.advance(blob.task, nbytes)
            self._progress.advance(self._total, nbytes)

    def finish(self, digest: Digest, *, skipped: bool = False) -> None:
        with self._lock:
            blob = self._blobs.get(digest)
            if blob is None:
                return
            self._done += 1
            blob.refs -= 1
            if blob.refs > 0:
                return
            del self._blobs[digest]
            if blob.moved < blob.total:
                # Skipped (already there, mounted) or cut short: keep the total honest.
                self._total_bytes -= blob.total - blob.moved
            self._progress.remove_task(blob.task)
            self._progress.update(
                self._total, total=self._total_bytes or None, description=self._total_label()
            )


@contextmanager
def progress_for(quiet: bool, *, title: str = "total") -> Iterator[ProgressSink | None]:
    """A live sink when bars are wanted, else ``None`` (the library then reports nothing)."""
    if not wants_progress(quiet):
        yield None
        return
    with RichProgress(title=title) as sink:
        yield sink
