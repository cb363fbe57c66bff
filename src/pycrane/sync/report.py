"""What a sync did: each image copied, skipped or failed, and why; totals; rate-limit budgets.

The report is the sync's result as a library call, its summary line on the
command line, and (``--report FILE``) its JSON document:

```json
{"summary": {"copied": 3, "skipped": 997, "failed": 0, "planned": 0, ...},
 "images": [{"source": "src/a:1", "destination": "dst/a:1", "status": "skipped",
             "reason": "up to date", "digest": "sha256:..."}, ...],
 "rate_limits": {"registry-1.docker.io": {"limit": 100, "remaining": 76, "window": 21600}}}
```
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ImageResult", "Status", "SyncReport"]

#: ``planned`` is a dry run's "would copy".
Status = Literal["copied", "skipped", "failed", "planned"]


@dataclass(frozen=True)
class ImageResult:
    """One image (a source tag and its destination) and what happened to it."""

    source: str
    destination: str
    status: Status
    reason: str
    digest: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "status": self.status,
            "reason": self.reason,
            "digest": self.digest,
        }


@dataclass
class SyncReport:
    """The outcome of :func:`pycrane.sync`; ``ok`` is False when anything failed."""

    images: list[ImageResult] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0
    #: Blobs whose bytes were sent, and their total size.
    blobs_sent: int = 0
    bytes_sent: int = 0
    #: Blobs already in the destination repository, or mounted from another one.
    blobs_skipped: int = 0
    #: Host -> the rate-limit budget it announced last (``limit``, ``remaining``, ``window``).
    rate_limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Host -> seconds requests were held back to stay within its budget.
    paused: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, result: ImageResult) -> None:
        with self._lock:
            self.images.append(result)

    def _with(self, status: Status) -> list[ImageResult]:
        return [r for r in self.images if r.status == status]

    @property
    def copied(self) -> list[ImageResult]:
        return self._with("copied")

    @property
    def skipped(self) -> list[ImageResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[ImageResult]:
        return self._with("failed")

    @property
    def planned(self) -> list[ImageResult]:
        return self._with("planned")

    @property
    def ok(self) -> bool:
        return not self.failed

    def counts(self) -> dict[str, int]:
        return {s: len(self._with(s)) for s in ("copied", "skipped", "failed", "planned")}

    def summary(self) -> str:
        """``"3 copied, 997 skipped, 0 failed (12.0 MiB in 41 blobs, 8.2 s)"``."""
        c = self.counts()
        if self.dry_run:
            head = f"{c['planned']} to copy, {c['skipped']} up to date, {c['failed']} failed"
        else:
            head = f"{c['copied']} copied, {c['skipped']} skipped, {c['failed']} failed"
        tail = f"{_size(self.bytes_sent)} in {self.blobs_sent} blobs, {self.seconds:.1f} s"
        budget = "".join(
            f"; {host} budget {b['remaining']}/{b['limit']}" for host, b in self.rate_limits.items()
        )
        return f"{head} ({tail}){budget}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": {
                **self.counts(),
                "dry_run": self.dry_run,
                "seconds": round(self.seconds, 3),
                "blobs_sent": self.blobs_sent,
                "bytes_sent": self.bytes_sent,
                "blobs_skipped": self.blobs_skipped,
            },
            "images": [r.as_dict() for r in self.images],
            "rate_limits": self.rate_limits,
            "paused": self.paused,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"  # pragma: no cover
