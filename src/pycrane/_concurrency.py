"""Bounded fan-out over worker threads, the one way pycrane runs work in parallel.

Transfers, hashing and compression release the GIL, so threads use every core;
the bound keeps connections, open files and memory in check.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

__all__ = ["SingleFlight", "Stopped", "bounded_map"]

_T = TypeVar("_T")
_R = TypeVar("_R")


class Stopped(Exception):
    """A call gave up because ``stop`` was set (another call failed; that one is raised)."""


def bounded_map(
    fn: Callable[[_T], _R],
    items: Iterable[_T],
    jobs: int,
    *,
    stop: threading.Event | None = None,
) -> list[_R]:
    """``fn`` over ``items`` on at most ``jobs`` threads; results in item order.

    As soon as a call fails (or the caller is interrupted while waiting), calls not
    yet started are cancelled and ``stop``, when given, is set, so calls that watch
    it can give up at their next chunk instead of finishing a long transfer; the
    calls already running are then waited for, and the first failure (in time: the
    cause, not a call that stopped because of it) is raised. With ``jobs <= 1`` or
    a single item everything runs in the calling thread.
    """
    seq = list(items)
    if jobs <= 1 or len(seq) <= 1:
        return [fn(x) for x in seq]
    failures: list[Future[_R]] = []
    lock = threading.Lock()

    def note(f: Future[_R]) -> None:
        if not f.cancelled() and f.exception() is not None:
            with lock:
                failures.append(f)

    with ThreadPoolExecutor(max_workers=min(jobs, len(seq))) as pool:
        futures = [pool.submit(fn, x) for x in seq]
        for f in futures:
            f.add_done_callback(note)
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:
            _give_up(futures, stop)
            raise
        if failures:
            _give_up(futures, stop)
    if failures:
        failures[0].result()  # raises the cause
    return [f.result() for f in futures]


def _give_up(futures: list[Future[_R]], stop: threading.Event | None) -> None:
    if stop is not None:
        stop.set()
    for f in futures:
        f.cancel()


class SingleFlight:
    """Run each key's work once; callers arriving meanwhile wait for the first one's result.

    Per operation the result is kept (a blob is uploaded once however often it
    recurs). With ``forget`` the key is dropped when the work ends: the client uses
    that to merge concurrent uploads of one blob by separate operations, which some
    registries (distribution 2.8) do not survive, while later operations check again.
    """

    def __init__(self, *, forget: bool = False) -> None:
        self._lock = threading.Lock()
        self._futures: dict[str, Future[None]] = {}
        self._forget = forget

    def run(self, key: str, fn: Callable[[], None]) -> bool:
        """Whether this caller did the work (False: it waited for another's)."""
        with self._lock:
            fut = self._futures.get(key)
            owner = fut is None
            if fut is None:
                fut = Future()
                self._futures[key] = fut
        if not owner:
            fut.result()
            return False
        try:
            fn()
        except BaseException as e:
            fut.set_exception(e)
            raise
        else:
            fut.set_result(None)
        finally:
            if self._forget:
                with self._lock:
                    self._futures.pop(key, None)
        return True
