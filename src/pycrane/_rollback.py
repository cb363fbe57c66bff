"""Local outputs that appear whole or not at all: the one rollback every writing command uses.

A command that fails (a missing tag, a refused login, a digest mismatch mid-stream, a
disk full) or is interrupted must leave nothing it created (issue 11.3). Two shapes
of output cover every command:

- a file (``pull --format tarball|legacy``, ``export``, ``append``/``mutate -o``):
  :class:`OutputFile` writes a temp file beside the target and publishes it with one
  atomic replace on success; on any failure, ``KeyboardInterrupt`` included, the temp
  file goes.
- a directory (``pull --format oci``): :func:`output_dir` removes the directory again
  if this call made it (or found it empty) and the work fails, unless its ``keep``
  says the failure leaves something worth keeping: an interrupted pull keeps its
  verified blobs and partial downloads for the next run to resume (issue 12).

Both also remove the parent directories they had to create, deepest first, as long
as those are still empty. Every effect goes through :mod:`pycrane._fs`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from pycrane import _fs

__all__ = ["OutputFile", "add_note", "is_interruption", "output_dir", "output_file"]


def is_interruption(exc: BaseException) -> bool:
    """Ctrl-C, SIGTERM (the CLI raises KeyboardInterrupt for it), an exit, or a lost
    network: failures after which running the same command again should resume."""
    from pycrane.errors import TransportError

    return isinstance(exc, KeyboardInterrupt | SystemExit | TransportError)


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)`` (Python 3.11+), also on 3.10: the CLI prints the notes."""
    adder = getattr(exc, "add_note", None)
    if adder is not None:
        adder(note)
        return
    notes = getattr(exc, "__notes__", None)
    if not isinstance(notes, list):
        notes = []
        exc.__notes__ = notes  # type: ignore[attr-defined]
    notes.append(note)


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing: list[Path] = []
    cur = path
    while not os.path.lexists(cur):
        missing.append(cur)
        if cur.parent == cur:
            break
        cur = cur.parent
    return missing


def _remove_empty(dirs: list[Path]) -> None:
    """Remove the directories this call created (deepest first) that are still empty."""
    for d in dirs:
        try:
            if _fs.listdir(d):
                return  # someone else put something there: it and its parents stay
        except OSError:
            continue
        with contextlib.suppress(OSError):
            _fs.rmtree(d)


class OutputFile:
    """A file being written to a temp name beside ``target``; :meth:`commit` publishes it.

    Until then nothing is at ``target`` (an existing file there stays as it was);
    :meth:`abort` removes the temp file and the parent directories this made.
    """

    def __init__(self, target: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.target = Path(target).absolute()
        self.durable = durable
        self._made = _missing_dirs(self.target.parent)
        _fs.makedirs(self.target.parent)
        try:
            self.file: BinaryIO
            self.file, self.tmp = _fs.mkstemp(
                self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp"
            )
        except BaseException:
            _remove_empty(self._made)
            raise
        self._done = False

    def commit(self) -> None:
        """Flush, sync and publish (replacing whatever ``target`` was); aborts on failure."""
        if self._done:
            return
        try:
            self.file.flush()
            if self.durable:
                _fs.fsync_file(self.file)
            self.file.close()
            _fs.replace(self.tmp, self.target)
        except BaseException:
            self.abort()
            raise
        self._done = True
        if self.durable:
            with contextlib.suppress(OSError):
                _fs.fsync_dir(self.target.parent)

    def abort(self) -> None:
        """Remove the temp file (and the directories made for it); safe to call twice."""
        if self._done:
            return
        self._done = True
        try:
            self.file.close()
        finally:
            _fs.discard(self.tmp)
            _remove_empty(self._made)

    def __enter__(self) -> OutputFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


@contextlib.contextmanager
def output_file(target: str | os.PathLike[str], *, durable: bool = True) -> Iterator[BinaryIO]:
    """``with output_file(path) as f:`` writes ``path`` whole on success, nothing on failure."""
    with OutputFile(target, durable=durable) as out:
        yield out.file


@contextlib.contextmanager
def output_dir(
    path: str | os.PathLike[str], *, keep: Callable[[BaseException], bool] | None = None
) -> Iterator[bool]:
    """Undo a directory output on failure; yields whether the directory is new.

    New means missing or empty: it then holds nothing of value until the work
    succeeds, so a failure removes it (an empty one is emptied again) with the
    parents made for it, unless ``keep(exception)`` is true. A directory that held
    something is the caller's to restore.
    """
    p = Path(path)
    made = _missing_dirs(p)
    empty = not made and p.is_dir() and not _fs.listdir(p)
    try:
        yield bool(made) or empty
    except BaseException as e:
        if keep is not None and keep(e):
            raise
        if made:
            _fs.rmtree(p)
            _remove_empty(made[1:])
        elif empty:
            for name in _fs.listdir(p):
                entry = p / name
                if entry.is_dir() and not entry.is_symlink():
                    _fs.rmtree(entry)
                else:
                    _fs.discard(entry)
        raise
