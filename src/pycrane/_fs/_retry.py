"""Which platform's rules apply, and the retry of Windows' transient sharing errors.

An open file cannot be replaced or deleted on Windows, and a concurrent
``MoveFileEx`` onto the same name fails with "Access is denied" (winerror 5) or a
sharing violation (32, 33). Those errors are transient there, so :func:`retry`
retries them with exponential backoff and jitter within :data:`RETRY_BUDGET`
seconds. On POSIX ``EACCES`` is a real permission error and is never retried.

:data:`IS_WINDOWS` and :data:`RETRY_BUDGET` are read at call time (through this
module) so tests can switch the Windows code paths on under Linux; set them on
:mod:`pycrane._fs`, which passes the assignment on to this module.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "IS_MACOS",
    "IS_WINDOWS",
    "RETRY_BUDGET",
    "TRANSIENT_WINERRORS",
    "is_transient",
    "retry",
    "stats",
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
    :class:`Done` is raised instead of retrying.
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
                raise Done() from e
            if time.monotonic() >= deadline:
                raise
            stats.add("retries")
            time.sleep(_backoff(attempt))
            attempt += 1


class Done(Exception):
    """Internal: a retried operation turned out to be unnecessary."""
