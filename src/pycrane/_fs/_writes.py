"""Writing bytes: new temp files, sliced writes, early writeback, sparse files.

How the bytes of a big file get to the device cheaply: writes sliced so the kernel
does not allocate huge page-cache folios, writeback started while the file is still
being written so the final fsync finds little left to do, and (Windows) sparse
files so a region filled later is not zero-filled first.
"""

from __future__ import annotations

import errno
import os
import secrets
import sys
from pathlib import Path
from typing import BinaryIO

from pycrane._fs import _retry

__all__ = [
    "WRITEBACK_STEP",
    "WRITE_SLICE",
    "Writeback",
    "make_sparse",
    "mkstemp",
    "write_all",
]


def mkstemp(
    directory: str | os.PathLike[str], prefix: str = "", suffix: str = ".tmp"
) -> tuple[BinaryIO, Path]:
    """Create a new, uniquely named file in ``directory`` and open it for writing.

    Temp files live next to their target (same volume): a cross-volume move fails
    on Windows. The file is created with O_EXCL and the umask-derived mode a normal
    file gets (blobs must stay readable by other users).
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        path = Path(directory, f"{prefix}{secrets.token_hex(8)}{suffix}")
        try:
            fd = _retry.retry(lambda p=path: os.open(p, flags, 0o666))  # type: ignore[misc]
        except FileExistsError:
            continue
        try:
            return os.fdopen(fd, "wb"), path
        except BaseException:
            os.close(fd)
            raise
    raise FileExistsError(errno.EEXIST, "could not create a unique temp file", str(directory))


#: The largest single write to a file. With 1 MiB writes the kernel allocates large
#: page-cache folios, and on a VM whose free memory the host has taken back each such
#: allocation costs several times more: 1.7-3.0 s of system time per GiB written in
#: 1 MiB writes against 0.3-0.6 s in 128 KiB writes (same data and file system,
#: alternating runs). Reads stay at 1 MiB; only the writes are sliced.
WRITE_SLICE = 128 << 10


def write_all(f: BinaryIO, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``f`` in slices of at most :data:`WRITE_SLICE` bytes."""
    n = len(data)
    if n <= WRITE_SLICE:
        f.write(data)
        return
    view = memoryview(data).cast("B")
    for i in range(0, n, WRITE_SLICE):
        f.write(view[i : i + WRITE_SLICE])


#: Bytes written between two :class:`Writeback` kicks.
WRITEBACK_STEP = 8 << 20

_FADV_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", None) if sys.platform == "linux" else None


class Writeback:
    """Start writing a big file's pages to the device while it is still being written.

    A blob is fsynced when its last byte is in: without this, the device sees a
    whole layer at that moment and the pull waits for it (0.3-0.5 s per GiB here,
    with the CPU idle). On Linux, ``POSIX_FADV_DONTNEED`` on the range just
    written queues its dirty pages for writeback without waiting, so by the time
    of the fsync most of the file is on the device. It drops only pages already
    clean, which just-written ones are not: a pulled layer stays in the page cache
    (``fincore`` shows all of it resident), ready for whatever reads it next.
    Elsewhere it does nothing; the fsync alone keeps the file durable.
    """

    __slots__ = ("_done", "_fd", "_written")

    def __init__(self, f: BinaryIO | int, start: int = 0) -> None:
        self._fd = f if isinstance(f, int) else f.fileno()
        self._done = start  # everything below this was kicked already
        self._written = start

    def wrote(self, n: int) -> None:
        """Account for ``n`` more bytes written after the previous ones."""
        self._written += n
        if _FADV_DONTNEED is None or self._written - self._done < WRITEBACK_STEP:
            return
        advise = getattr(os, "posix_fadvise", None)  # absent on Windows and macOS
        if advise is None:
            return
        try:
            advise(self._fd, self._done, self._written - self._done, _FADV_DONTNEED)
        except OSError:
            return
        self._done = self._written


def make_sparse(f: BinaryIO) -> None:
    """Best effort, Windows only: let ``f`` be written far past its end without zero-fill.

    NTFS zero-fills the gap when a write lands beyond a file's valid data, so a
    tarball whose layers are filled in parallel into reserved regions would have
    most of its bytes written twice. A sparse file leaves the gap unallocated until
    it is filled. Elsewhere (and if the call fails) it does nothing: the result is
    the same file either way. Checks the real platform, not :data:`IS_WINDOWS`,
    which the tests' emulator switches on under Linux.
    """
    if sys.platform != "win32":
        return
    import ctypes
    import msvcrt
    from ctypes import wintypes

    fsctl_set_sparse = 0x000900C4
    try:
        handle = wintypes.HANDLE(msvcrt.get_osfhandle(f.fileno()))
        control = ctypes.windll.kernel32.DeviceIoControl
        control.argtypes = [
            wintypes.HANDLE,
            wintypes.DWORD,
            wintypes.LPVOID,
            wintypes.DWORD,
            wintypes.LPVOID,
            wintypes.DWORD,
            ctypes.POINTER(wintypes.DWORD),
            wintypes.LPVOID,
        ]
        control.restype = wintypes.BOOL
        returned = wintypes.DWORD()
        control(handle, fsctl_set_sparse, None, 0, None, 0, ctypes.byref(returned), None)
    except (OSError, AttributeError, ValueError):
        return
