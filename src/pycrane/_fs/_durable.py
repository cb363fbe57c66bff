"""Durability: directories that survive a crash, and fsync that reaches the device.

A directory entry created just before a crash is lost unless its parent is synced,
and with it every file published inside it; on macOS ``fsync`` leaves data in the
drive's cache unless ``F_FULLFSYNC`` is asked for. NTFS journals its metadata, so
directories are not synced on Windows.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path
from typing import BinaryIO

from pycrane._fs import _retry

__all__ = ["ensure_dir", "fsync_dir", "fsync_file", "makedirs"]


def makedirs(path: str | os.PathLike[str]) -> None:
    """``os.makedirs(path, exist_ok=True)``."""
    os.makedirs(path, exist_ok=True)


def ensure_dir(path: str | os.PathLike[str], *, durable: bool = True) -> None:
    """Create ``path`` and missing parents; fsync the parent of each directory created.

    A directory entry created just before a crash is lost unless its parent is
    synced, and with it every blob published inside it.
    """
    p = Path(path)
    if p.is_dir():
        return
    missing: list[Path] = []
    cur = p
    while not cur.exists():
        missing.append(cur)
        if cur.parent == cur:
            break
        cur = cur.parent
    if not missing:
        if p.is_dir():  # made by someone else meanwhile
            return
        raise FileExistsError(errno.EEXIST, "exists and is not a directory", str(p))
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            if not d.is_dir():
                raise
            continue
        if durable:
            fsync_dir(d.parent)


def fsync_file(f: BinaryIO | int) -> None:
    """Flush a file's data to the device (``F_FULLFSYNC`` on macOS)."""
    if not isinstance(f, int):
        f.flush()
        fd = f.fileno()
    else:
        fd = f
    if not _full_fsync(fd):
        os.fsync(fd)


def _full_fsync(fd: int) -> bool:
    """macOS, where fsync leaves data in the drive's cache: ``F_FULLFSYNC``; False elsewhere."""
    if sys.platform != "darwin":  # IS_MACOS, spelled so that mypy narrows the platform
        return False
    import fcntl

    try:
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
    except OSError:
        return False  # not every file system supports it: a plain fsync then
    return True


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a directory's entries durable (POSIX only; NTFS journals its metadata)."""
    if _retry.IS_WINDOWS or os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        if not _full_fsync(fd):
            with contextlib.suppress(OSError):  # some filesystems refuse fsync on dirs
                os.fsync(fd)
    finally:
        os.close(fd)
