"""bounded_map: ordered results, at most `jobs` at once, a failure stops what has not started."""

from __future__ import annotations

import threading
import time

import pytest

from pycrane._concurrency import bounded_map


def test_results_keep_item_order() -> None:
    assert bounded_map(lambda x: x * x, range(20), 4) == [x * x for x in range(20)]


def test_never_more_than_jobs_at_once() -> None:
    lock = threading.Lock()
    running = peak = 0

    def work(_: int) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1

    bounded_map(work, range(24), 3)
    assert peak == 3


def test_one_job_runs_in_the_calling_thread() -> None:
    me = threading.get_ident()
    assert bounded_map(lambda _: threading.get_ident(), range(5), 1) == [me] * 5


def test_first_failure_is_raised_and_unstarted_work_is_cancelled() -> None:
    started: list[int] = []
    gate = threading.Event()

    def work(i: int) -> int:
        started.append(i)
        if i == 0:
            raise ValueError("item 0 failed")
        gate.wait(0.2)
        return i

    with pytest.raises(ValueError, match="item 0 failed"):
        bounded_map(work, range(50), 2)
    # Item 0 failed at once; only what was already running (or picked up in the
    # moment before cancellation) ran, not all fifty.
    assert len(started) < 10


def test_a_failure_sets_stop_and_the_cause_is_raised_not_the_stopped_calls() -> None:
    """Item 0 is a long transfer that watches ``stop``; item 1 fails. Item 0 must be
    told at once (not run to its end) and the error raised is item 1's, though item 0
    comes first in item order and also failed (because it was stopped)."""
    stop = threading.Event()
    polls = 0

    def work(i: int) -> int:
        nonlocal polls
        if i == 1:
            time.sleep(0.05)
            raise ValueError("item 1 is corrupt")
        for _ in range(10_000):  # ~100 s if never stopped
            if stop.is_set():
                raise RuntimeError("stopped")
            polls += 1
            time.sleep(0.01)
        return i

    with pytest.raises(ValueError, match="item 1 is corrupt"):
        bounded_map(work, range(2), 2, stop=stop)
    assert stop.is_set()
    assert polls < 10_000


def test_success_leaves_stop_unset() -> None:
    stop = threading.Event()
    assert bounded_map(lambda x: x + 1, range(8), 3, stop=stop) == list(range(1, 9))
    assert not stop.is_set()
