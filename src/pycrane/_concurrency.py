"""Bounded fan-out over worker threads, the one way pycrane runs work in parallel.

Transfers, hashing and compression release the GIL, so threads use every core;
the bound keeps connections, open files and memory in check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["bounded_map"]

_T = TypeVar("_T")
_R = TypeVar("_R")


def bounded_map(fn: Callable[[_T], _R], items: Iterable[_T], jobs: int) -> list[_R]:
    """``fn`` over ``items`` on at most ``jobs`` threads; results in item order.

    The first failure (in item order) is raised once the calls already running have
    finished; calls not yet started are cancelled, so one failed transfer does not
    wait for every other one to be fetched first. With ``jobs <= 1`` or a single
    item everything runs in the calling thread.
    """
    seq = list(items)
    if jobs <= 1 or len(seq) <= 1:
        return [fn(x) for x in seq]
    with ThreadPoolExecutor(max_workers=min(jobs, len(seq))) as pool:
        futures = [pool.submit(fn, x) for x in seq]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
