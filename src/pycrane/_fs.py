"""The one seam through which pycrane touches the filesystem.

Every write-side effect (temp files, publish, rename, replace, unlink, fsync,
makedirs) and the reads that can hit Windows sharing violations go through this
module. It calls ``os.*`` and ``open`` through their modules *at call time*, so
tests can patch ``os.replace`` (or this module's functions) and see every effect.

Windows rules this module encodes (see the research notes, windows.md):

- an open file cannot be replaced or deleted, and a concurrent ``MoveFileEx`` onto
  the same name fails with "Access is denied" (winerror 5) or a sharing violation
  (32, 33). Those errors are transient there, so they are retried with exponential
  backoff and jitter within :data:`RETRY_BUDGET` seconds. On POSIX ``EACCES`` is a
  real permission error and is never retried.
- content-addressed files are *published without replacing*: ``os.link`` on POSIX
  (first writer wins, readers never see a torn file), ``os.rename`` on Windows
  (fails with 183 when the target exists, never touches an open target).

:data:`IS_WINDOWS` is read at call time so the Windows emulator in the tests can
switch the Windows code paths on under Linux.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import secrets
import stat as stat_mod
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

__all__ = [
    "IS_MACOS",
    "IS_WINDOWS",
    "RETRY_BUDGET",
    "TRANSIENT_WINERRORS",
    "WRITEBACK_STEP",
    "WRITE_SLICE",
    "Writeback",
    "atomic_write_bytes",
    "discard",
    "ensure_dir",
    "fsync_dir",
    "fsync_file",
    "is_regular",
    "is_transient",
    "link",
    "listdir",
    "makedirs",
    "mkstemp",
    "open_append",
    "open_read",
    "open_update",
    "publish",
    "read_bytes",
    "rename",
    "replace",
    "replace_atomic",
    "retry",
    "rmtree",
    "stat",
    "stats",
    "unlink",
    "walk_files",
    "write_all",
]

_T = TypeVar("_T")

#: Whether to follow Windows rules. Read at call time; tests may override it.
IS_WINDOWS: bool = os.name == "nt"
#: Whether ``fsync`` needs ``F_FULLFSYNC`` to reach the disk (macOS).
IS_MACOS: bool = sys.platform == "darwin"
#: Seconds spent retrying one transient Windows error before giving up.
RETRY_BUDGET: float = float(os.environ.get("PYCRANE_FS_RETRY_BUDGET", "2.0"))
#: ACCESS_DENIED, SHARING_VIOLATION, LOCK_VIOLATION: what antivirus, indexers and
#: concurrent readers cause for a moment on Windows.
TRANSIENT_WINERRORS = frozenset({5, 32, 33})

# Errors of os.link that mean "this filesystem has no hard links" (FAT, some network
# and FUSE filesystems): fall back to a replacing rename there.
_NO_HARDLINK_ERRNOS = frozenset(
    e
    for e in (
        errno.EPERM,
        getattr(errno, "ENOTSUP", None),
        getattr(errno, "EOPNOTSUPP", None),
        errno.EXDEV,
        errno.EMLINK,
        errno.ENOSYS,
        errno.EINVAL,
    )
    if e is not None
)

_BACKOFF_START = 0.001
_BACKOFF_CAP = 0.1


class _Stats:
    """Counters of retries, so stress tests can report how often Windows pushed back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.retries = 0
        self.published = 0
        self.already_existed = 0

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def reset(self) -> None:
        with self._lock:
            self.retries = self.published = self.already_existed = 0


stats = _Stats()


def is_transient(exc: BaseException) -> bool:
    """A Windows sharing/access error that goes away once the other handle closes."""
    return (
        IS_WINDOWS
        and isinstance(exc, PermissionError)
        and getattr(exc, "winerror", None) in TRANSIENT_WINERRORS
    )


def _backoff(attempt: int) -> float:
    base: float = min(_BACKOFF_CAP, _BACKOFF_START * 2.0**attempt)
    return base * (0.5 + random.random())


def retry(
    fn: Callable[[], _T],
    *,
    budget: float | None = None,
    until: Callable[[], bool] | None = None,
) -> _T:
    """Call ``fn``, retrying transient Windows errors within ``budget`` seconds.

    ``until`` is checked before each retry: when it returns True the operation was
    made unnecessary by someone else (e.g. the target now exists) and
    :class:`_Done` is raised instead of retrying.
    """
    limit = RETRY_BUDGET if budget is None else budget
    deadline = time.monotonic() + limit
    attempt = 0
    while True:
        try:
            return fn()
        except OSError as e:
            if not is_transient(e):
                raise
            if until is not None and until():
                raise _Done() from e
            if time.monotonic() >= deadline:
                raise
            stats.add("retries")
            time.sleep(_backoff(attempt))
            attempt += 1


class _Done(Exception):
    """Internal: a retried operation turned out to be unnecessary."""


# --------------------------------------------------------------------------- reads


def stat(path: str | os.PathLike[str]) -> os.stat_result | None:
    """``os.stat`` or ``None`` when the path does not exist (also when a parent is a
    file); transient errors retried."""
    try:
        return retry(lambda: os.stat(path))
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
    return retry(lambda: open(path, "rb"))


def open_append(path: str | os.PathLike[str]) -> BinaryIO:
    """Open (or create) a file to append to, retrying transient sharing violations."""
    return retry(lambda: open(path, "ab"))


def open_update(path: str | os.PathLike[str]) -> BinaryIO:
    """Open an existing file to write in place (positional writes), retrying sharing violations."""
    return retry(lambda: open(path, "r+b"))


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a whole file and close it at once (so it never blocks a replace for long)."""

    def read() -> bytes:
        with open(path, "rb") as f:
            return f.read()

    return retry(read)


# --------------------------------------------------------------------------- writes


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
            fd = retry(lambda p=path: os.open(p, flags, 0o666))  # type: ignore[misc]
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
    if IS_WINDOWS or os.name == "nt":
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


def link(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    os.link(src, dst)


def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """``os.rename`` with transient Windows errors retried (fails if ``dst`` exists on Windows)."""
    retry(lambda: os.rename(src, dst))


def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """``os.replace`` with transient Windows errors retried."""
    retry(lambda: os.replace(src, dst))


def unlink(
    path: str | os.PathLike[str], *, missing_ok: bool = True, budget: float | None = None
) -> bool:
    """Delete a file, retrying transient Windows errors; True if it was deleted here."""
    try:
        retry(lambda: os.unlink(path), budget=budget)
    except FileNotFoundError:
        if not missing_ok:
            raise
        return False
    return True


def discard(path: str | os.PathLike[str]) -> None:
    """Best-effort delete of a temp file: if Windows still refuses, the sweeper gets it."""
    with contextlib.suppress(OSError):
        unlink(path)


def rmtree(path: str | os.PathLike[str]) -> None:
    """Remove a directory tree through this module's ``unlink`` (so retries apply)."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            rmtree(entry.path)
        else:
            unlink(entry.path)
    with contextlib.suppress(FileNotFoundError):
        retry(lambda: os.rmdir(path))


def publish(
    tmp: str | os.PathLike[str], final: str | os.PathLike[str], *, durable: bool = True
) -> bool:
    """Move a complete, closed temp file to ``final`` without ever replacing ``final``.

    Returns True when this call created ``final``, False when it already existed
    (then ``tmp`` is deleted and the existing file is left untouched: for
    content-addressed names it holds the same bytes). Never call it with an open
    handle on ``tmp``: Windows refuses to move an open file.
    """
    tmp_p, final_p = Path(tmp), Path(final)
    created = _publish_windows(tmp_p, final_p) if IS_WINDOWS else _publish_posix(tmp_p, final_p)
    if created:
        stats.add("published")
        if durable:
            fsync_dir(final_p.parent)
    else:
        stats.add("already_existed")
    return created


def _publish_posix(tmp: Path, final: Path) -> bool:
    try:
        os.link(tmp, final)
    except FileExistsError:
        discard(tmp)
        return False
    except OSError as e:
        if e.errno not in _NO_HARDLINK_ERRNOS:
            raise
        # No hard links here: a replacing rename is still atomic for readers, and
        # replacing identical content is harmless on POSIX.
        if os.path.lexists(final):
            discard(tmp)
            return False
        os.replace(tmp, final)
        return True
    discard(tmp)
    return True


def _publish_windows(tmp: Path, final: Path) -> bool:
    def exists() -> bool:
        try:
            return os.path.lexists(final)
        except OSError:
            return False

    try:
        retry(lambda: os.rename(tmp, final), until=exists)
    except (FileExistsError, _Done):
        discard(tmp)
        return False
    return True


def replace_atomic(
    tmp: str | os.PathLike[str], final: str | os.PathLike[str], *, durable: bool = True
) -> None:
    """Atomically replace ``final`` with the closed temp file ``tmp`` (for index.json).

    On Windows a reader holding ``final`` open blocks the replace with winerror 5 for
    as long as it keeps it open, so this retries within the budget.
    """
    replace(tmp, final)
    if durable:
        fsync_dir(Path(final).parent)


def atomic_write_bytes(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    durable: bool = True,
    exclusive: bool = False,
    mode: int | None = None,
) -> bool:
    """Write ``data`` to ``path`` through a temp file in the same directory.

    Readers see the old content or the new, never a torn file. With
    ``exclusive`` the file is only created when absent (returns False if it was
    already there); otherwise it is replaced. ``mode`` (e.g. 0o600 for secrets) is
    set on the temp file before any byte is written, so the data is never readable
    by others, even for a moment.
    """
    p = Path(path)
    f, tmp = mkstemp(p.parent, prefix="." + p.name + ".", suffix=".tmp")
    try:
        with f:
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            f.write(data)
            if durable:
                fsync_file(f)
        if exclusive:
            return publish(tmp, p, durable=durable)
        replace_atomic(tmp, p, durable=durable)
        return True
    finally:
        if os.path.lexists(tmp):
            discard(tmp)


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
