"""Reading the filesystem: stat, listings, and opens that survive Windows sharing violations.

A reader on Windows can be refused for a moment by a writer, an antivirus or an
indexer holding the file; every open here is retried through
:func:`pycrane._fs._retry.retry` (a no-op on POSIX).
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Iterator
from typing import BinaryIO

from pycrane._fs import _retry

__all__ = [
    "is_regular",
    "listdir",
    "open_append",
    "open_read",
    "open_update",
    "read_bytes",
    "stat",
    "walk_files",
]


def stat(path: str | os.PathLike[str]) -> os.stat_result | None:
    """``os.stat`` or ``None`` when the path does not exist (also when a parent is a
    file); transient errors retried."""
    try:
        return _retry.retry(lambda: os.stat(path))
    except (FileNotFoundError, NotADirectoryError):
        return None


def listdir(path: str | os.PathLike[str]) -> list[str]:
    """Names in a directory; an absent directory is empty."""
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def open_read(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a file for reading, retrying transient sharing violations."""
    return _retry.retry(lambda: open(path, "rb"))


def open_append(path: str | os.PathLike[str]) -> BinaryIO:
    """Open (or create) a file to append to, retrying transient sharing violations."""
    return _retry.retry(lambda: open(path, "ab"))


def open_update(path: str | os.PathLike[str]) -> BinaryIO:
    """Open an existing file to write in place (positional writes), retrying sharing violations."""
    return _retry.retry(lambda: open(path, "r+b"))


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a whole file and close it at once (so it never blocks a replace for long)."""

    def read() -> bytes:
        with open(path, "rb") as f:
            return f.read()

    return _retry.retry(read)


def is_regular(st: os.stat_result) -> bool:
    return stat_mod.S_ISREG(st.st_mode)


def walk_files(path: str | os.PathLike[str]) -> Iterator[os.DirEntry[str]]:
    """Regular files directly inside ``path`` (absent directory: none)."""
    try:
        it = os.scandir(path)
    except FileNotFoundError:
        return
    with it:
        for entry in it:
            if entry.is_file(follow_symlinks=False):
                yield entry
