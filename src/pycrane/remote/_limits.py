"""Per-host limits: how many requests run at once, and pacing by a registry's rate-limit budget.

One :class:`HostLimits` can be shared by several clients (pass ``limits=`` to each),
so "at most N requests to docker.io at a time" holds across all of them. Docker
Hub (and registries copying it) announce their budget in ``RateLimit-Limit`` and
``RateLimit-Remaining`` (``100;w=21600``: 100 requests per 21600 s window). Once
the remaining budget falls to ``reserve`` (a fraction of the limit), requests to
that host are spaced at the sustainable rate (``window / limit`` seconds apart,
at most ``max_pause``), so a long mirror slows down instead of running into 429s;
a 429 that comes anyway is retried after its ``Retry-After`` by the transport.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["HostLimits", "RateBudget", "parse_rate_header"]


@dataclass(frozen=True)
class RateBudget:
    """A registry's last announced budget: ``remaining`` of ``limit`` per ``window`` seconds."""

    limit: int
    remaining: int
    window: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "remaining": self.remaining, "window": self.window}


def parse_rate_header(value: str | None) -> tuple[int, float | None] | None:
    """``"100;w=21600"`` -> ``(100, 21600.0)``; ``"100"`` -> ``(100, None)``; junk -> None."""
    if not value:
        return None
    head, *params = value.split(",")[0].split(";")
    head = head.strip()
    if not head.isdigit():
        return None
    window: float | None = None
    for p in params:
        k, _, v = p.strip().partition("=")
        if k.strip().lower() == "w":
            try:
                window = float(v)
            except ValueError:
                window = None
    return int(head), window


class _Host:
    def __init__(self, concurrency: int | None) -> None:
        self.sem = threading.BoundedSemaphore(concurrency) if concurrency else None
        self.budget: RateBudget | None = None
        self.next_at = 0.0
        self.paused = 0.0


class HostLimits:
    """Concurrency per registry host and rate-limit pacing; thread-safe, shareable.

    ``concurrency`` caps the requests in flight per host (None: no cap; only the
    time until a response's headers arrive counts, not the streaming of a body).
    ``per_host`` overrides it for given hosts (``{"docker.io": 2}``).
    """

    def __init__(
        self,
        concurrency: int | None = None,
        *,
        per_host: Mapping[str, int] | None = None,
        reserve: float = 0.1,
        max_pause: float = 60.0,
    ) -> None:
        self.concurrency = concurrency
        self.per_host = dict(per_host or {})
        self.reserve = reserve
        self.max_pause = max_pause
        self._lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}

    def _host(self, host: str) -> _Host:
        with self._lock:
            h = self._hosts.get(host)
            if h is None:
                h = _Host(self.per_host.get(host, self.concurrency))
                self._hosts[host] = h
            return h

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Hold one of ``host``'s request slots (after pacing) for the block."""
        h = self._host(host)
        self._pace(h)
        if h.sem is None:
            yield
            return
        with h.sem:
            yield

    def _pace(self, h: _Host) -> None:
        with self._lock:
            b = h.budget
            if b is None or b.limit <= 0 or b.remaining > max(1, int(b.limit * self.reserve)):
                return
            window = b.window if b.window is not None else 60.0
            gap = min(window / b.limit, self.max_pause)
            now = time.monotonic()
            start = max(now, h.next_at)
            h.next_at = start + gap
            wait = start - now
            h.paused += wait
        if wait > 0:
            time.sleep(wait)

    def observe(self, host: str, headers: Any) -> None:
        """Note the budget a response announced (``RateLimit-Limit``/``-Remaining``)."""
        limit = parse_rate_header(headers.get("RateLimit-Limit"))
        remaining = parse_rate_header(headers.get("RateLimit-Remaining"))
        if limit is None or remaining is None:
            return
        h = self._host(host)
        with self._lock:
            h.budget = RateBudget(limit[0], remaining[0], limit[1] or remaining[1])

    def budgets(self) -> dict[str, RateBudget]:
        """The last budget each host announced."""
        with self._lock:
            return {k: h.budget for k, h in self._hosts.items() if h.budget is not None}

    def paused(self) -> dict[str, float]:
        """Seconds each host's requests were held back to stay within its budget."""
        with self._lock:
            return {k: round(h.paused, 3) for k, h in self._hosts.items() if h.paused > 0}
