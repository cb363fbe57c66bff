"""Per-key memoisation for lazy images, indexes and layers.

Each key has its own re-entrant lock: a value computed from another memoised value
of the same object (a manifest built from a config built from a base image) does
not deadlock, concurrent callers of one key compute it once, and callers of
different keys do not wait for each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["Memo"]

_T = TypeVar("_T")


class Memo:
    """Compute each key once, even with concurrent callers; keys may depend on each other."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}
        self._values: dict[str, object] = {}

    def get(self, key: str, compute: Callable[[], _T]) -> _T:
        try:
            return self._values[key]  # type: ignore[return-value]
        except KeyError:
            pass
        with self._guard:
            lock = self._locks.setdefault(key, threading.RLock())
        with lock:
            if key not in self._values:
                self._values[key] = compute()
            return self._values[key]  # type: ignore[return-value]
