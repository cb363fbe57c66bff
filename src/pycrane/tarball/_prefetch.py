"""Fetch the next few layers while the current one streams into an archive.

An archive is written in order, one member at a time, so a slow source (a
registry) would leave the network idle between layers. With ``jobs > 1`` the
next ``jobs - 1`` distinct layers are downloaded concurrently into anonymous
temp files (checked against their digests on the way), bounding both memory
(1 MiB chunks) and disk (a window of ``jobs - 1`` layers).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import BinaryIO, cast

from pycrane import _fs
from pycrane.compression import CHUNK
from pycrane.v1.digest import PreverifiedReader, verifying
from pycrane.v1.image import Layer

__all__ = ["Prefetcher"]


class _Stopped(Exception):
    """The archive write failed: a prefetch in flight gives up at its next chunk."""


def _spool(layer: Layer, stop: threading.Event) -> BinaryIO:
    d = layer.descriptor()
    fh = cast(BinaryIO, tempfile.TemporaryFile())  # noqa: SIM115 - returned open
    try:
        what = f"layer {d.digest}"
        with verifying(layer.compressed(), d.digest, d.size, what) as r:
            while chunk := r.read(CHUNK):
                if stop.is_set():
                    raise _Stopped
                _fs.write_all(fh, chunk)
        fh.seek(0)
        # Verified on the way in, and the anonymous spool is ours alone: do not hash again.
        return PreverifiedReader(fh, d.digest, d.size, what)  # type: ignore[return-value]
    except BaseException:
        fh.close()
        raise


class Prefetcher:
    """Open distinct layers in order; later ones are already being fetched."""

    def __init__(self, layers: Sequence[Layer], jobs: int = 1) -> None:
        self._layers = list(layers)
        self._window = max(0, jobs - 1)
        self._pool = ThreadPoolExecutor(max_workers=self._window) if self._window else None
        self._futures: dict[int, Future[BinaryIO]] = {}
        self._scheduled = 0  # every index below this was scheduled or opened
        self._stop = threading.Event()

    def open(self, i: int) -> BinaryIO:
        """A stream of layer ``i``'s blob (spooled ahead when possible)."""
        self._scheduled = max(self._scheduled, i + 1)
        if self._pool is not None:
            stop = min(len(self._layers), i + 1 + self._window)
            while self._scheduled < stop:
                n = self._scheduled
                self._futures[n] = self._pool.submit(_spool, self._layers[n], self._stop)
                self._scheduled += 1
        fut = self._futures.pop(i, None)
        if fut is None:
            return self._layers[i].compressed()
        return fut.result()

    def close(self) -> None:
        """Cancel what has not started, stop the rest at their next chunk, drop their files."""
        self._stop.set()
        for fut in self._futures.values():
            fut.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for fut in self._futures.values():
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                fut.result().close()
        self._futures.clear()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
