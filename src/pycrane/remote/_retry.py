"""One retry policy, applied by one helper, for every retried step of the registry client.

Connection failures, retryable statuses, a manifest body cut short, an upload that
must start over, a chunk to resend, a manifest PUT racing a blob commit: each is
retried through :class:`Retrier` (or :func:`retry_call`, its loop), so attempts,
backoff with jitter, ``Retry-After`` and the overall deadline mean the same thing
everywhere. Whether an error is worth another try is the error's own answer
(``is_temporary()``, see :mod:`pycrane.errors`).
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pycrane.errors import TEMPORARY_STATUSES, PycraneError

__all__ = ["RetryPolicy", "Retrier", "is_temporary", "parse_retry_after", "retry_call"]

log = logging.getLogger("pycrane.remote")

_T = TypeVar("_T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures.

    ``attempts`` counts every try (1 = never retry). The wait before retry ``n``
    (from 0) is ``backoff * factor**n`` with ``jitter`` (a fraction) added, capped
    at ``max_backoff``; a ``Retry-After`` header replaces it, capped at
    ``max_retry_after``. ``deadline`` (seconds, None for none) bounds one
    operation's retries: no new try starts once it would begin after the deadline.
    """

    attempts: int = 4
    backoff: float = 0.5
    factor: float = 3.0
    max_backoff: float = 20.0
    jitter: float = 0.1
    max_retry_after: float = 60.0
    statuses: frozenset[int] = field(default=TEMPORARY_STATUSES)
    deadline: float | None = 60.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            seconds = parse_retry_after(retry_after)
            if seconds is not None:
                return min(max(seconds, 0.0), self.max_retry_after)
        base = min(self.backoff * (self.factor**attempt), self.max_backoff)
        return base * (1.0 + random.uniform(0.0, self.jitter))


def parse_retry_after(value: str) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def is_temporary(e: BaseException) -> bool:
    """Whether ``e`` says the same request may succeed later."""
    check = getattr(e, "is_temporary", None)
    return bool(check()) if callable(check) else False


class Retrier:
    """The retry budget of one operation: how many tries are left and how long to wait.

    ```python
    r = Retrier(policy, "manifest a/b:c")
    while True:
        try:
            return attempt()
        except TransportError as e:
            if not r.again(e):
                raise
    ```
    """

    def __init__(self, policy: RetryPolicy, what: str, *, attempts: int | None = None) -> None:
        self.policy = policy
        self.what = what
        self.attempts = max(1, attempts if attempts is not None else policy.attempts)
        self.tries = 1  # the first try is under way
        self.started = time.monotonic()
        self._deadline = time.monotonic() + policy.deadline if policy.deadline is not None else None

    def allows(self, retry_after: str | None = None) -> bool:
        """Whether another try is left (without waiting for it)."""
        if self.tries >= self.attempts:
            return False
        if self._deadline is None:
            return True
        return time.monotonic() + self.policy.delay(self.tries - 1, retry_after) <= self._deadline

    def again(self, reason: object, retry_after: str | None = None) -> bool:
        """Wait before the next try and return True; False once the budget is spent."""
        if not self.allows(retry_after):
            return False
        wait = self.policy.delay(self.tries - 1, retry_after)
        log.debug("%s: %s; retrying in %.2fs", self.what, reason, wait)
        self.tries += 1
        time.sleep(wait)
        return True

    def summary(self) -> str:
        """`` (3 tries in 61.2 s)`` once retried, else "": for the final error's message."""
        if self.tries <= 1:
            return ""
        return f" ({self.tries} tries in {time.monotonic() - self.started:.1f} s)"


def retry_call(
    fn: Callable[[], _T],
    policy: RetryPolicy,
    what: str,
    *,
    retry_on: Callable[[PycraneError], bool] = is_temporary,
    attempts: int | None = None,
    before_retry: Callable[[PycraneError], None] | None = None,
) -> _T:
    """``fn()``, tried again while it raises an error ``retry_on`` accepts and budget is left.

    ``before_retry`` runs after the wait, before the next try (to reset state).
    """
    r = Retrier(policy, what, attempts=attempts)
    while True:
        try:
            return fn()
        except PycraneError as e:
            if not retry_on(e) or not r.again(e):
                raise
            if before_retry is not None:
                before_retry(e)
