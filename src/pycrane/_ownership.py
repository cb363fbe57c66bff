"""Who still writes a file: OS advisory locks that a writer holds for its file's whole life.

A temp file whose writer died (SIGKILL, a power cut, a CI runner killed at its
timeout) looks exactly like one whose writer is busy, unless the writer holds a
lock that the operating system drops when the process goes. That lock is
``fcntl.flock`` on POSIX and ``msvcrt.locking`` (``LockFile`` on one byte) on
Windows, on a small lock file next to the data: any other process can then tell
*at once*, by trying the lock without waiting, whether the writer is alive.

- :func:`try_lock` / :func:`lock` take such a lock. After taking it they check
  that the path still names the file they locked: a process that found the lock
  free may have removed the lock file meanwhile (and another made a new one), and
  a lock on a removed file protects nothing. A mismatch is simply tried again.
- :class:`Owner` is this process's lock in one directory, shared by every temp
  file the process has there: temp names carry its token (``<label>.<token>.<n>.tmp``),
  and ``owner.<token>.lock`` is held while any of them exists. A later process
  that can take that lock (or finds no such file) knows the temps are a dead
  writer's and removes them; a live writer's files are never touched.

The lock files are opened through ``os.open`` at call time, so the tests' Windows
emulator sees them; the lock call follows the real platform (the emulator runs on
Linux, where ``flock`` is what works). A file system without locks (some network
mounts) makes :func:`try_lock` raise ``OSError``; callers then fall back to
writing without ownership, and such temps are only removed by age.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pycrane import _fs

__all__ = [
    "LIVE",
    "OWNER_PREFIX",
    "Held",
    "Owner",
    "lock",
    "owner",
    "probe",
    "temp_token",
    "try_lock",
]

#: ``owner.<token>.lock``: the lock an :class:`Owner` holds for its temp files.
OWNER_PREFIX = "owner."
#: What :func:`probe` returns for a lock that a live process holds.
LIVE = "live"
_TOKEN = re.compile(r"[0-9a-f]{16}\Z")
_BUSY = frozenset({errno.EACCES, errno.EAGAIN, getattr(errno, "EDEADLOCK", errno.EDEADLK)})


def _os_lock(fd: int) -> bool:
    """Lock ``fd`` exclusively without waiting; False when another holder has it."""
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as e:
            if e.errno in _BUSY:
                return False
            raise
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in _BUSY:
            return False
        raise
    return True


def _os_unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    # POSIX: closing the descriptor releases the flock; nothing to do first.


class Held:
    """An advisory lock held on ``path``; the OS drops it if this process dies."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self, *, remove: bool = False) -> None:
        """Drop the lock; with ``remove`` also the lock file (best effort).

        On POSIX the file is removed while still locked, so nobody can take a lock on
        it in between (a waiter that opened it sees the name gone and tries anew). On
        Windows an open file cannot be removed: the lock is dropped and the file
        closed first, and the removal fails harmlessly while anyone else has it open.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if remove and not _fs.IS_WINDOWS:
            _fs.discard(self.path)
        try:
            _os_unlock(fd)
        finally:
            os.close(fd)
        if remove and _fs.IS_WINDOWS:
            with contextlib.suppress(OSError):
                _fs.unlink(self.path, budget=0)

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # pragma: no cover - safety net
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def try_lock(path: str | os.PathLike[str], *, create: bool = True) -> Held | None:
    """Take the lock on ``path`` without waiting: a :class:`Held`, or None if it is busy.

    ``create=False`` leaves an absent file absent (and returns None). Raises
    ``OSError`` when the file system cannot lock at all.
    """
    p = Path(path)
    flags = os.O_RDWR | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0)
    if create:
        flags |= os.O_CREAT
    for _ in range(20):
        try:
            fd = _fs.retry(lambda: os.open(p, flags, 0o666))
        except FileNotFoundError:
            if create:
                raise
            return None
        try:
            if not _os_lock(fd):
                os.close(fd)
                return None
            if _same_file(fd, p):
                return Held(p, fd)
        except BaseException:
            os.close(fd)
            raise
        # Someone removed (and maybe re-created) the file between our open and our lock.
        _os_unlock(fd)
        os.close(fd)
        if not create and not os.path.lexists(p):
            return None
    raise OSError(errno.EBUSY, "lock file keeps being replaced", str(p))


def lock(
    path: str | os.PathLike[str],
    *,
    timeout: float,
    poll: float = 0.05,
    give_up: Callable[[], bool] | None = None,
) -> Held | None:
    """Take the lock on ``path``, waiting up to ``timeout`` seconds; None when it stays busy.

    ``give_up`` is asked between attempts (return True to stop waiting at once).
    """
    deadline = time.monotonic() + timeout
    while True:
        held = try_lock(path)
        if held is not None:
            return held
        if give_up is not None and give_up():
            return None
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)


def probe(path: str | os.PathLike[str]) -> Held | str | None:
    """Whether the writer behind a lock file is alive.

    :data:`LIVE` when a live process holds it; None when the file is absent; else
    the lock, now held by the caller (its writer is gone): the caller removes what
    the writer left, then releases it (usually with ``remove=True``).
    """
    try:
        held = try_lock(path, create=False)
    except OSError:
        return LIVE  # cannot tell: treat as alive, never remove a live writer's file
    if held is not None:
        return held
    return LIVE if os.path.lexists(path) else None


def temp_token(name: str) -> str | None:
    """The owner token in a temp file name ``<label>.<token>.<n>.tmp``, if it has one."""
    parts = name.split(".")
    if len(parts) >= 4 and parts[-1] == "tmp" and _TOKEN.match(parts[-3]):
        return parts[-3]
    return None


class Owner:
    """This process's ownership of its temp files in one directory (reference-counted).

    :meth:`acquire` returns the token to put in a temp file's name (creating and
    locking ``owner.<token>.lock`` for the first temp file); :meth:`release` is
    called once that temp file is gone (published or deleted), and the last release
    removes the lock file. A token is never reused, so a lock file someone else
    swept cannot be mistaken for a new one. ``None`` from :meth:`acquire` means the
    file system cannot lock: the temp file then carries no token.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._held: Held | None = None
        self._token: str | None = None
        self._users = 0

    def acquire(self) -> str | None:
        with self._lock:
            if self._held is None or not self._held.held:
                self._take()
            if self._token is None:
                return None
            self._users += 1
            return self._token

    def _take(self) -> None:
        self._held = None
        self._token = None
        for _ in range(20):
            token = secrets.token_hex(8)
            try:
                held = try_lock(self.directory / f"{OWNER_PREFIX}{token}.lock")
            except FileNotFoundError:
                raise  # the directory is gone: the caller makes it again
            except OSError:
                return  # no locks on this file system: temps without a token
            if held is not None:
                self._held, self._token = held, token
                return
            # A sweeper held it for a moment (it removes it): try a new token.

    def release(self, token: str | None) -> None:
        if token is None:
            return
        with self._lock:
            if token != self._token:
                return  # an earlier token (after a fork): nothing of ours to drop
            self._users -= 1
            if self._users > 0:
                return
            held, self._held, self._token = self._held, None, None
            self._users = 0
        if held is not None:
            held.release(remove=True)

    def _forget(self) -> None:
        """After ``fork``: the child must not drop the parent's lock (closing is enough)."""
        held, self._held, self._token, self._users = self._held, None, None, 0
        self._lock = threading.Lock()
        if held is not None and held._fd is not None:
            fd, held._fd = held._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)  # flock stays with the parent's descriptor


_owners: dict[str, Owner] = {}
_owners_lock = threading.Lock()


def owner(directory: str | os.PathLike[str]) -> Owner:
    """The process's :class:`Owner` for ``directory``."""
    key = os.path.normcase(os.path.abspath(directory))
    with _owners_lock:
        o = _owners.get(key)
        if o is None:
            o = _owners[key] = Owner(Path(directory))
        return o


def _after_fork() -> None:
    global _owners_lock
    _owners_lock = threading.Lock()
    for o in list(_owners.values()):
        o._forget()
    _owners.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
