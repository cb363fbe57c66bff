"""An emulator of NTFS legacy file semantics on Linux, for paths under one root.

It patches ``os.open``, ``open``/``io.open``, ``os.rename``, ``os.replace``,
``os.unlink``/``os.remove`` and ``os.stat`` so that, for paths under ``root``:

- opening a file that another live handle holds without a compatible share mode
  fails with winerror 32; CPython handles never share DELETE;
- ``os.replace`` onto a target that any live handle holds (or that is
  delete-pending, or a directory) fails with winerror 5;
- ``os.rename`` onto an existing target fails with ``FileExistsError`` 183;
- renaming or deleting a file held open without share-delete fails with 32;
- after a rename, a "mover" pseudo-handle (DELETE access) stays on the file for
  ``rename_window`` seconds: a concurrent replace onto it gets 5 and a reader 32,
  as with ``MoveFileEx``;
- ``antivirus`` (a probability) makes a synthetic scanner hold new and renamed
  files open (read, no share-delete) for a moment;
- with ``posix_delete=False``, deleting a file whose handles all share delete
  leaves the name delete-pending (opens, stats and replaces get 5) until the
  last handle goes.

It also sets ``pycrane._fs.IS_WINDOWS`` so pycrane takes its Windows code paths.
The spec is in /work/shared/research/windows.md section 4.1. It is a model, not
Windows: real Windows CI remains necessary.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import random
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pycrane import _fs

R, W, D = "R", "W", "D"
_CPY_SHARE = frozenset({R, W})  # what CPython's _wopen shares: never DELETE

_MESSAGES = {
    5: "Access is denied",
    32: "The process cannot access the file because it is being used by another process",
    183: "Cannot create a file when that file already exists",
}

Key = tuple[int, int]


def win_error(winerror: int, src: Any, dst: Any = None) -> OSError:
    """An OSError shaped like CPython's on Windows (``.winerror`` set by hand on Linux)."""
    cls: type[OSError] = FileExistsError if winerror == 183 else PermissionError
    code = errno.EEXIST if winerror == 183 else errno.EACCES
    e = cls(code, _MESSAGES[winerror], os.fspath(src), None, None if dst is None else dst)
    e.winerror = winerror  # type: ignore[attr-defined]
    return e


@dataclass
class _Handle:
    access: frozenset[str]
    share: frozenset[str]
    alive: Callable[[], bool]
    kind: str = "python"


@dataclass
class WindowsFS:
    """The emulator's state and switches; use :func:`emulate_windows` to install it."""

    root: str
    rename_window: float = 0.0
    antivirus: float = 0.0
    av_hold: tuple[float, float] = (0.001, 0.02)
    posix_delete: bool = False
    seed: int | None = None
    rename_hook: Callable[[str, str], None] | None = None
    peers_dir: str | None = None
    errors: Counter[int] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        given = os.path.abspath(os.fspath(self.root))
        self.root = os.path.realpath(given)
        # Paths may arrive through a symlink (macOS /var -> /private/var) or in another case
        # (Windows): accept any spelling of the root.
        self._roots = {os.path.normcase(given), os.path.normcase(self.root)}
        self._lock = threading.RLock()
        self._handles: dict[Key, list[_Handle]] = {}
        self._pending: dict[Key, str] = {}
        self._rng = random.Random(self.seed)
        self._timers: list[threading.Timer] = []
        self.av_holds = 0

    # ------------------------------------------------------------ bookkeeping

    def under(self, path: Any) -> bool:
        if isinstance(path, int):
            return False
        try:
            p = os.fspath(path)
        except TypeError:
            return False
        if isinstance(p, bytes):
            p = os.fsdecode(p)
        p = os.path.normcase(os.path.abspath(p))
        return any(p == r or p.startswith(r + os.sep) for r in self._roots)

    def _key(self, path: Any) -> Key | None:
        try:
            st = _real.stat(path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _peer_holds(self, key: Key) -> bool:
        """Whether another emulated process has the file open (Linux: via /proc/<pid>/fd).

        Every process that installs the emulator with the same ``peers_dir`` registers
        its pid there; their handles are CPython handles (no share-delete), so they block
        renames and deletes of the file and replaces onto it, across processes.
        """
        if self.peers_dir is None:
            return False
        for name in os.listdir(self.peers_dir):
            if name == str(os.getpid()):
                continue
            fd_dir = f"/proc/{name}/fd"
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue
            for fd in fds:
                try:
                    st = _real.stat(f"{fd_dir}/{fd}")
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == key:
                    return True
        return False

    def _live(self, key: Key) -> list[_Handle]:
        hs = [h for h in self._handles.get(key, ()) if h.alive()]
        if hs:
            self._handles[key] = hs
        else:
            self._handles.pop(key, None)
        return hs

    def _add(self, key: Key, h: _Handle) -> None:
        self._handles.setdefault(key, []).append(h)

    def _fail(self, winerror: int, src: Any, dst: Any = None) -> OSError:
        self.errors[winerror] += 1
        return win_error(winerror, src, dst)

    def _reap_pending(self) -> None:
        for key, path in list(self._pending.items()):
            if not self._live(key):
                del self._pending[key]
                with contextlib.suppress(OSError):
                    _real.unlink(path)

    def _check_open(self, path: Any, access: frozenset[str], share: frozenset[str]) -> Key | None:
        self._reap_pending()
        key = self._key(path)
        if key is None:
            return None
        if key in self._pending:
            raise self._fail(5, path)
        for h in self._live(key):
            if not access <= h.share or not h.access <= share:
                raise self._fail(32, path)
        return key

    def _maybe_antivirus(self, path: Any) -> None:
        if self.antivirus <= 0 or self._rng.random() >= self.antivirus:
            return
        key = self._key(path)
        if key is None:
            return
        done = threading.Event()
        self._add(key, _Handle(frozenset({R}), _CPY_SHARE, lambda: not done.is_set(), "av"))
        self.av_holds += 1
        t = threading.Timer(self._rng.uniform(*self.av_hold), done.set)
        t.daemon = True
        self._timers.append(t)
        t.start()

    # ------------------------------------------------------------ patched calls

    def os_open(self, path: Any, flags: int, mode: int = 0o777, *, dir_fd: Any = None) -> int:
        if dir_fd is not None or not self.under(path):
            return _real.os_open(path, flags, mode, dir_fd=dir_fd)
        if os.path.isdir(path):
            return _real.os_open(path, flags, mode)
        acc = flags & 3
        access = frozenset({W}) if acc == os.O_WRONLY else frozenset({R, W} if acc else {R})
        with self._lock:
            existed = self._check_open(path, access, _CPY_SHARE) is not None
            fd = _real.os_open(path, flags, mode)
            key = self._key(path)
            if key is not None:
                self._add(key, _Handle(access, _CPY_SHARE, _fd_alive(fd, key)))
                if not existed:
                    self._maybe_antivirus(path)
        return fd

    def open(self, file: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        if not self.under(file):
            return _real.open(file, mode, *args, **kw)
        access: set[str] = set()
        if "r" in mode or "+" in mode:
            access.add(R)
        if any(c in mode for c in "wax+"):
            access.add(W)
        with self._lock:
            existed = self._check_open(file, frozenset(access), _CPY_SHARE) is not None
            f = _real.open(file, mode, *args, **kw)
            key = self._key(file)
            if key is not None:
                raw = getattr(getattr(f, "buffer", f), "raw", getattr(f, "buffer", f))
                ref = weakref.ref(raw)

                def alive(ref: weakref.ref[Any] = ref) -> bool:
                    obj = ref()
                    return obj is not None and not obj.closed

                self._add(key, _Handle(frozenset(access), _CPY_SHARE, alive))
                if not existed:
                    self._maybe_antivirus(file)
        return f

    def _move(self, src: Any, dst: Any, replace: bool, **kw: Any) -> None:
        real = _real.replace if replace else _real.rename
        if kw or not (self.under(src) or self.under(dst)):
            return real(src, dst, **kw)
        with self._lock:
            self._reap_pending()
            skey = self._key(src)
            if skey is None:
                return real(src, dst)  # raises FileNotFoundError as Windows would (2)
            if skey in self._pending:
                raise self._fail(5, src, dst)
            if any(D not in h.share for h in self._live(skey)) or self._peer_holds(skey):
                raise self._fail(32, src, dst)
            dkey = self._key(dst)
            if dkey is not None:
                if not replace:
                    raise self._fail(183, src, dst)
                if (
                    os.path.isdir(dst)
                    or dkey in self._pending
                    or self._live(dkey)
                    or self._peer_holds(dkey)
                ):
                    raise self._fail(5, src, dst)
            done = threading.Event()
            self._add(
                skey,
                _Handle(frozenset({D}), frozenset({R, W, D}), lambda: not done.is_set(), "mover"),
            )
            try:
                real(src, dst)
            except BaseException:
                done.set()
                raise
        try:
            if self.rename_hook is not None:
                self.rename_hook(os.fspath(src), os.fspath(dst))
            elif self.rename_window > 0:
                threading.Event().wait(self.rename_window)
        finally:
            with self._lock:
                done.set()
                self._reap_pending()
                if self._key(dst) is not None:
                    self._maybe_antivirus(dst)

    def rename(self, src: Any, dst: Any, **kw: Any) -> None:
        self._move(src, dst, False, **kw)

    def replace(self, src: Any, dst: Any, **kw: Any) -> None:
        self._move(src, dst, True, **kw)

    def unlink(self, path: Any, *, dir_fd: Any = None) -> None:
        if dir_fd is not None or not self.under(path):
            return _real.unlink(path, dir_fd=dir_fd)
        with self._lock:
            self._reap_pending()
            key = self._key(path)
            if key is None:
                return _real.unlink(path)
            if key in self._pending:
                raise self._fail(5, path)
            live = self._live(key)
            if any(D not in h.share for h in live) or self._peer_holds(key):
                raise self._fail(32, path)
            if live and not self.posix_delete:
                self._pending[key] = os.fspath(path)
                return None
            _real.unlink(path)
            self._handles.pop(key, None)
        return None

    def stat(self, path: Any, *, dir_fd: Any = None, follow_symlinks: bool = True) -> Any:
        st = _real.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
        if self._pending and self.under(path) and (st.st_dev, st.st_ino) in self._pending:
            with self._lock:
                self._reap_pending()
                if (st.st_dev, st.st_ino) in self._pending:
                    raise self._fail(5, path)
            return _real.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
        return st

    def wait_idle(self) -> None:
        """Let antivirus timers finish (so leftover checks see the final state)."""
        for t in list(self._timers):
            t.join()
        with self._lock:
            self._reap_pending()


def _fd_alive(fd: int, key: Key) -> Callable[[], bool]:
    def alive() -> bool:
        try:
            st = os.fstat(fd)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == key

    return alive


class _Real:
    """The unpatched callables, captured at import."""

    os_open = staticmethod(os.open)
    open = staticmethod(builtins.open)
    rename = staticmethod(os.rename)
    replace = staticmethod(os.replace)
    unlink = staticmethod(os.unlink)
    stat = staticmethod(os.stat)


_real = _Real()
_install_lock = threading.Lock()


@contextlib.contextmanager
def emulate_windows(root: str | os.PathLike[str], **options: Any) -> Iterator[WindowsFS]:
    """Install the emulator for paths under ``root`` for the duration of the block."""
    fs = WindowsFS(os.fspath(root), **options)
    if fs.peers_dir is not None:
        os.makedirs(fs.peers_dir, exist_ok=True)
        with _real.open(os.path.join(fs.peers_dir, str(os.getpid())), "w"):
            pass
    with _install_lock:
        saved = {
            "os.open": os.open,
            "builtins.open": builtins.open,
            "io.open": io.open,
            "os.rename": os.rename,
            "os.replace": os.replace,
            "os.unlink": os.unlink,
            "os.remove": os.remove,
            "os.stat": os.stat,
            "_fs.IS_WINDOWS": _fs.IS_WINDOWS,
        }
        os.open = fs.os_open  # type: ignore[assignment]
        builtins.open = fs.open
        io.open = fs.open  # type: ignore[assignment]
        os.rename = fs.rename
        os.replace = fs.replace
        os.unlink = fs.unlink
        os.remove = fs.unlink
        os.stat = fs.stat  # type: ignore[assignment]
        _fs.IS_WINDOWS = True
    try:
        yield fs
    finally:
        fs.wait_idle()
        with _install_lock:
            os.open = saved["os.open"]  # type: ignore[assignment]
            builtins.open = saved["builtins.open"]  # type: ignore[assignment]
            io.open = saved["io.open"]  # type: ignore[assignment]
            os.rename = saved["os.rename"]  # type: ignore[assignment]
            os.replace = saved["os.replace"]  # type: ignore[assignment]
            os.unlink = saved["os.unlink"]  # type: ignore[assignment]
            os.remove = saved["os.remove"]  # type: ignore[assignment]
            os.stat = saved["os.stat"]  # type: ignore[assignment]
            _fs.IS_WINDOWS = saved["_fs.IS_WINDOWS"]  # type: ignore[assignment]


@pytest.fixture
def windows_fs() -> Iterator[Callable[..., WindowsFS]]:
    """``windows_fs(root, rename_window=..., antivirus=..., posix_delete=False, seed=...)``.

    Turns the emulator on for ``root`` until the end of the test and returns its state
    (``.errors`` counts the Windows errors it raised, by winerror).
    """
    with contextlib.ExitStack() as stack:

        def start(root: str | os.PathLike[str], **options: Any) -> WindowsFS:
            return stack.enter_context(emulate_windows(root, **options))

        yield start
