"""The one seam through which pycrane touches the filesystem.

Every write-side effect (temp files, publish, rename, replace, unlink, fsync,
makedirs) and the reads that can hit Windows sharing violations go through this
package. It calls ``os.*`` and ``open`` through their modules *at call time*, so
tests can patch ``os.replace`` (or this package's functions) and see every effect.

Windows rules this package encodes (see the research notes, windows.md):

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

One concept per module, all used as ``from pycrane import _fs; _fs.<name>``:

- :mod:`._retry`: the platform flags, the retry of transient Windows errors, the stats;
- :mod:`._reads`: stat, listings, opens that survive sharing violations;
- :mod:`._durable`: directories made durably, fsync that reaches the device;
- :mod:`._writes`: temp files, sliced writes, early writeback, sparse files;
- :mod:`._atomic`: no-replace publish, atomic replace, renames and deletes.

Setting a name here (``_fs.IS_WINDOWS = True``, ``monkeypatch.setattr(_fs, "publish",
spy)``) sets it in the module that defines it too, and the modules look each other's
names up at call time through their module, so a patch reaches every call inside
the package, as it did when this was one module.
"""

from __future__ import annotations

import sys
import types

from pycrane._fs import _atomic, _durable, _reads, _retry, _writes
from pycrane._fs._atomic import (
    atomic_write_bytes,
    discard,
    link,
    publish,
    rename,
    replace,
    replace_atomic,
    rmtree,
    unlink,
)
from pycrane._fs._durable import ensure_dir, fsync_dir, fsync_file, makedirs
from pycrane._fs._reads import (
    is_regular,
    listdir,
    open_append,
    open_read,
    open_update,
    read_bytes,
    stat,
    walk_files,
)
from pycrane._fs._retry import (
    IS_MACOS,
    IS_WINDOWS,
    RETRY_BUDGET,
    TRANSIENT_WINERRORS,
    is_transient,
    retry,
    stats,
)
from pycrane._fs._writes import _FADV_DONTNEED as _FADV_DONTNEED
from pycrane._fs._writes import (
    WRITE_SLICE,
    WRITEBACK_STEP,
    Writeback,
    make_sparse,
    mkstemp,
    write_all,
)

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
    "make_sparse",
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

#: The module that defines each name this package re-exports (and the private
#: ``_FADV_DONTNEED``, which a test sets to exercise :class:`Writeback` anywhere).
_PARTS = (_atomic, _durable, _reads, _retry, _writes)
_OWNERS: dict[str, types.ModuleType] = {
    **{name: part for part in _PARTS for name in part.__all__},
    "_FADV_DONTNEED": _writes,
}
assert set(_OWNERS) == {*__all__, "_FADV_DONTNEED"}, "every name has one home"


class _Seam(types.ModuleType):
    """This package's module type: setting a re-exported name sets it where it is defined."""

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)
        owner = _OWNERS.get(name)
        if owner is not None:
            setattr(owner, name, value)


sys.modules[__name__].__class__ = _Seam
