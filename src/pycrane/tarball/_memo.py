"""Per-key memoisation that tolerates nested lookups.

``pycrane.v1.image._Memo`` holds one lock while computing, so a value computed
from another memoised value of the same object deadlocks; lazily composed images
(a manifest built from a config built from a base) need one lock per key.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["KeyedMemo"]

_T = TypeVar("_T")


class KeyedMemo:
    """Compute each key once, even with concurrent callers; keys may depend on each other."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._values: dict[str, object] = {}

    def get(self, key: str, compute: Callable[[], _T]) -> _T:
        try:
            return self._values[key]  # type: ignore[return-value]
        except KeyError:
            pass
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                self._values[key] = compute()
            return self._values[key]  # type: ignore[return-value]
