"""Names that change atomically: no-replace publish, atomic replace, renames and deletes.

Content-addressed files are *published without replacing*: ``os.link`` on POSIX
(first writer wins, readers never see a torn file), ``os.rename`` on Windows (fails
with 183 when the target exists, never touches an open target). Everything else
that changes a name (replace, rename, unlink, rmtree) retries Windows' transient
sharing errors through :func:`pycrane._fs._retry.retry`.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from pycrane._fs import _durable, _retry, _writes

__all__ = [
    "atomic_write_bytes",
    "discard",
    "link",
    "publish",
    "rename",
    "replace",
    "replace_atomic",
    "rmtree",
    "unlink",
]

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


def link(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    os.link(src, dst)


def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """``os.rename`` with transient Windows errors retried (fails if ``dst`` exists on Windows)."""
    _retry.retry(lambda: os.rename(src, dst))


def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """``os.replace`` with transient Windows errors retried."""
    _retry.retry(lambda: os.replace(src, dst))


def unlink(
    path: str | os.PathLike[str], *, missing_ok: bool = True, budget: float | None = None
) -> bool:
    """Delete a file, retrying transient Windows errors; True if it was deleted here."""
    try:
        _retry.retry(lambda: os.unlink(path), budget=budget)
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
        _retry.retry(lambda: os.rmdir(path))


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
    windows = _retry.IS_WINDOWS
    created = _publish_windows(tmp_p, final_p) if windows else _publish_posix(tmp_p, final_p)
    if created:
        _retry.stats.add("published")
        if durable:
            _durable.fsync_dir(final_p.parent)
    else:
        _retry.stats.add("already_existed")
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
        _retry.retry(lambda: os.rename(tmp, final), until=exists)
    except (FileExistsError, _retry.Done):
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
        _durable.fsync_dir(Path(final).parent)


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
    f, tmp = _writes.mkstemp(p.parent, prefix="." + p.name + ".", suffix=".tmp")
    try:
        with f:
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            f.write(data)
            if durable:
                _durable.fsync_file(f)
        if exclusive:
            return publish(tmp, p, durable=durable)
        replace_atomic(tmp, p, durable=durable)
        return True
    finally:
        if os.path.lexists(tmp):
            discard(tmp)
