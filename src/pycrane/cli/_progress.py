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
from typing import TextIO

from pycrane.progress import ProgressSink
from pycrane.v1.digest import Digest

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
            TaskID,
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
        self._tasks: dict[Digest, TaskID] = {}
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
            if digest in self._tasks:
                return
            label = description or f"{digest.hex[:12]}"
            self._tasks[digest] = self._progress.add_task(label, total=total)
            self._started += 1
            if total is not None:
                self._total_bytes += total
            self._progress.update(
                self._total, total=self._total_bytes or None, description=self._total_label()
            )

    def advance(self, digest: Digest, nbytes: int) -> None:
        task = self._tasks.get(digest)
        if task is not None:
            self._progress.advance(task, nbytes)
        self._progress.advance(self._total, nbytes)

    def finish(self, digest: Digest, *, skipped: bool = False) -> None:
        with self._lock:
            task = self._tasks.pop(digest, None)
            if task is None:
                return
            self._done += 1
            info = self._progress.tasks[self._task_index(task)]
            if info.total is not None and info.completed < info.total:
                # Skipped (already there) or cut short: keep the total honest.
                self._total_bytes -= int(info.total - info.completed)
            self._progress.remove_task(task)
            self._progress.update(
                self._total, total=self._total_bytes or None, description=self._total_label()
            )

    def _task_index(self, task: object) -> int:
        for i, t in enumerate(self._progress.tasks):
            if t.id == task:
                return i
        raise KeyError(task)


@contextmanager
def progress_for(quiet: bool, *, title: str = "total") -> Iterator[ProgressSink | None]:
    """A live sink when bars are wanted, else ``None`` (the library then reports nothing)."""
    if not wants_progress(quiet):
        yield None
        return
    with RichProgress(title=title) as sink:
        yield sink
