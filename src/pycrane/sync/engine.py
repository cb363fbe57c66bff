"""Running a sync plan: HEAD the destination first, copy only what is missing or changed.

The destination is the state: an image whose destination tag already names the
digest the source would give it is skipped after two HEADs (the source tag's and
the destination tag's), so a second run over an unchanged source sends nothing
else, and a run that was killed resumes where it stopped without a database.
What the copy needs is streamed as ``copy`` does; blobs already in the
destination repository are HEADed, not sent, and a blob another destination
repository of the same registry received is mounted from there (the client
remembers where each blob landed). Each image is tried on its own: a failure is
recorded with its reason and the others go on.

With ``platforms``, what the destination would hold (one platform's image, or an
index keeping only those platforms) is computed from the source's manifest, so
the source is read with a GET rather than a HEAD.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pycrane._concurrency import bounded_map
from pycrane.errors import PycraneError
from pycrane.name import DigestRef
from pycrane.progress import NULL_PROGRESS, ProgressSink
from pycrane.remote import Client
from pycrane.sync.plan import Plan, PlanItem
from pycrane.sync.report import ImageResult, SyncReport
from pycrane.v1.digest import Digest
from pycrane.v1.match import filter_index, select_image

__all__ = ["Engine", "ResultHook"]

#: Called after each image: the result, how many are done, how many there are.
ResultHook = Callable[[ImageResult, int, int], None]


class _Counting:
    """A progress sink that counts blobs sent and skipped, passing events on."""

    def __init__(self, inner: ProgressSink) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.sent = 0
        self.skipped = 0
        self.bytes = 0

    def start(self, digest: Digest, total: int | None, description: str = "") -> None:
        self.inner.start(digest, total, description)

    def advance(self, digest: Digest, nbytes: int) -> None:
        with self._lock:
            self.bytes += nbytes
        self.inner.advance(digest, nbytes)

    def finish(self, digest: Digest, *, skipped: bool = False) -> None:
        with self._lock:
            if skipped:
                self.skipped += 1
            else:
                self.sent += 1
        self.inner.finish(digest, skipped=skipped)


class Engine:
    """Runs one plan on one client: ``jobs`` images at once, ``blob_jobs`` blobs per image."""

    def __init__(
        self,
        client: Client,
        *,
        jobs: int = 4,
        blob_jobs: int = 2,
        dry_run: bool = False,
        progress: ProgressSink | None = None,
        on_result: ResultHook | None = None,
    ) -> None:
        self.client = client
        self.jobs = max(1, jobs)
        self.blob_jobs = max(1, blob_jobs)
        self.dry_run = dry_run
        self.sink = _Counting(progress or NULL_PROGRESS)
        self.on_result = on_result
        self._lock = threading.Lock()
        self._done = 0

    def run(self, plan: Plan, *, started: float | None = None) -> SyncReport:
        """Every item of ``plan``; ``started`` (``time.monotonic()``) counts planning in."""
        started = time.monotonic() if started is None else started
        report = SyncReport(dry_run=self.dry_run)
        total = len(plan.items) + len(plan.errors)
        for err in plan.errors:
            self._record(err, total)
        done = bounded_map(lambda item: self._record(self.one(item), total), plan.items, self.jobs)
        report.images = [*plan.errors, *done]  # in plan order, whatever finished first
        report.seconds = time.monotonic() - started
        report.blobs_sent = self.sink.sent
        report.blobs_skipped = self.sink.skipped
        report.bytes_sent = self.sink.bytes
        limits = self.client.limits
        if limits is not None:
            report.rate_limits = {h: b.as_dict() for h, b in limits.budgets().items()}
            report.paused = limits.paused()
        return report

    def _record(self, result: ImageResult, total: int) -> ImageResult:
        with self._lock:
            self._done += 1
            done = self._done
        if self.on_result is not None:
            self.on_result(result, done, total)
        return result

    def expected(self, item: PlanItem) -> Digest:
        """The digest the destination tag has once the image is copied."""
        platforms = item.spec.platforms
        if not platforms:
            return self.client.head(item.source).digest
        rd = self.client.get(item.source)
        if not rd.is_index():
            return rd.digest
        idx = rd.index()
        if len(platforms) == 1:
            return select_image(idx, platforms[0], f"index {item.source}").digest()
        return filter_index(idx, platforms, f"index {item.source}").digest()

    def one(self, item: PlanItem) -> ImageResult:
        src, dst = str(item.source), str(item.destination)
        try:
            want = self.expected(item)
            have = self.client.exists(item.destination, push=not self.dry_run)
            if have is not None and have.digest == want:
                if not self.dry_run:
                    self.client.pusher.hint(item.destination.repository)
                if item.spec.referrers and not self.dry_run:
                    self._referrers(item, want)
                return ImageResult(src, dst, "skipped", "up to date", str(want))
            reason = "missing" if have is None else f"changed (was {have.digest})"
            if self.dry_run:
                return ImageResult(src, dst, "planned", reason, str(want))
            out = self.client.copy(
                item.source,
                item.destination,
                platforms=list(item.spec.platforms) or None,
                referrers=item.spec.referrers,
                jobs=self.blob_jobs,
                progress=self.sink,
            )
            digest = out.digest if not isinstance(out, list) else want
            return ImageResult(src, dst, "copied", reason, str(digest))
        except PycraneError as e:
            return ImageResult(src, dst, "failed", str(e))
        except Exception as e:  # anything else is still this image's failure alone
            return ImageResult(src, dst, "failed", f"{type(e).__name__}: {e}")

    def _referrers(self, item: PlanItem, digest: Digest) -> None:
        """Referrers added to an image already mirrored (a signature made later)."""
        src_ref = DigestRef(item.source.repository, digest)
        if not self.client.referrers(src_ref).manifests:
            return
        self.client.copy(
            src_ref,
            DigestRef(item.destination.repository, digest),
            referrers=True,
            jobs=self.blob_jobs,
            progress=self.sink,
        )
