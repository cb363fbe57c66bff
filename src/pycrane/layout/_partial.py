"""The resume path: a blob written to a digest-named partial file that outlives its writer.

``ingest/<alg>-<hex>.partial`` is written only under the digest's cross-process lock
(:mod:`._flight`). The next writer hashes what it holds, asks the source for the rest
(``resume``) and verifies the digest over the whole blob before publishing; a resumed
blob that does not verify is fetched once more from the start. Big durable blobs of
known size go to it through the O_DIRECT writer (:mod:`pycrane._directio`), from where
a resumed partial ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import BinaryIO

from pycrane import _fs, _ownership
from pycrane._concurrency import Stopped
from pycrane.compression import CHUNK
from pycrane.errors import SizeMismatch, VerificationError
from pycrane.layout._core import _StoreCore
from pycrane.layout._ingest import PARTIAL_SUFFIX
from pycrane.layout._source import (
    Resume,
    Source,
    _Counter,
    _self_verifying,
    _stream,
    _Unverified,
)
from pycrane.progress import ProgressSink
from pycrane.v1.digest import Digest, DigestHasher, VerifyingReader

__all__: list[str] = []

log = logging.getLogger("pycrane.layout")


class _PartialWrites(_StoreCore):
    """Writes, resumes and cleans up digest-named partial downloads."""

    def _write_partial(
        self,
        opener: Callable[[], Source],
        resume: Resume | None,
        digest: Digest,
        size: int | None,
        progress: ProgressSink | None,
        close: bool,
        stop: threading.Event | None,
    ) -> tuple[Digest, int]:
        """Write ``digest`` through its partial file, continuing what is there (lock held).

        Only a failed verification removes the partial (a resumed one is then fetched
        once more from the start); any other failure, an interruption included, keeps
        it for the next writer.
        """
        path = self.partial_path(digest)
        what = f"blob {digest}"
        st = _fs.stat(path)
        have = st.st_size if st is not None and _fs.is_regular(st) else 0
        if resume is None or (size is not None and have > size):
            have = 0  # nothing can continue from there: start over
        if st is None:
            _fs.open_append(path).close()
        self._partials.add(digest)
        if progress is not None:
            progress.start(digest, size)
        while True:
            f = _fs.open_update(path)
            source: Source | None = None
            resumed = False
            try:
                h = DigestHasher(digest.algorithm)
                if have:
                    have = self._hash_prefix(f, h, have, stop, what)
                f.truncate(have)
                f.seek(have)
                if have and (size is None or have < size):
                    assert resume is not None
                    source, start = resume(have)
                    if start != have:  # the whole blob again (a registry ignoring Range)
                        h = DigestHasher(digest.algorithm)
                        have = 0
                        f.truncate(0)
                        f.seek(0)
                    resumed = have > 0
                elif have:
                    source, resumed = b"", True  # complete already: only verify it
                else:
                    source = opener()
                if progress is not None and have:
                    progress.advance(digest, have)
                counter = self._fill(f, source, h, digest, size, progress, stop, what)
                if self.fsync:
                    _fs.fsync_file(f)
                f.close()
                self._publish(path, digest, counter)
                self._partials.discard(digest)
                if progress is not None:
                    progress.finish(digest)
                return digest, counter
            except (VerificationError, _Unverified):
                f.close()
                _fs.discard(path)
                if not resumed:
                    self._partials.discard(digest)
                    raise
                log.debug("blob %s: the resumed download did not verify; starting over", digest)
                have = 0
                _fs.open_append(path).close()
            except BaseException:
                f.close()
                st = _fs.stat(path)
                if st is not None and st.st_size == 0:
                    _fs.discard(path)
                    self._partials.discard(digest)
                raise
            finally:
                closer = getattr(source, "close", None)
                if close and closer is not None:
                    closer()

    def _hash_prefix(
        self, f: BinaryIO, h: DigestHasher, have: int, stop: threading.Event | None, what: str
    ) -> int:
        """Hash the first ``have`` bytes of ``f``; how many there really were."""
        f.seek(0)
        left = have
        while left:
            if stop is not None and stop.is_set():
                raise Stopped(what)
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
        return have - left

    def _fill(
        self,
        f: BinaryIO,
        source: Source,
        h: DigestHasher,
        digest: Digest,
        size: int | None,
        progress: ProgressSink | None,
        stop: threading.Event | None,
        what: str,
    ) -> int:
        """Append ``source`` to ``f`` (hashed into ``h``) and verify the whole; the size."""
        # A fresh download whose stream verifies itself need not be hashed twice.
        trusted = h.size == 0 and _self_verifying(source, digest, size)
        counter: DigestHasher | _Counter = _Counter() if trusted else h
        _stream(
            f,
            source,
            counter,
            size=size,
            durable=self.fsync,
            progress=progress,
            digest=digest,
            stop=stop,
            what=what,
        )
        if trusted:
            assert isinstance(source, VerifyingReader)
            if size is not None and counter.size != size:
                raise SizeMismatch(what, size, counter.size)
            if not source.verified:
                raise _Unverified(f"{what}: source ended before its digest was checked")
        else:
            h.verify(what, digest, size)
        return counter.size

    def drop_partials(self) -> int:
        """Remove the partial downloads this store object left (a failed, not interrupted,
        job); a partial another writer holds meanwhile is left alone. Returns the bytes freed."""
        freed = 0
        for digest in list(self._partials):
            self._partials.discard(digest)
            held = _ownership.probe(self.ingest_dir / f"{digest.algorithm}-{digest.hex}.lock")
            if held == _ownership.LIVE:
                continue
            try:
                st = _fs.stat(self.partial_path(digest))
                if st is not None and _fs.unlink(self.partial_path(digest), budget=0):
                    freed += st.st_size
            except OSError:
                pass
            finally:
                if isinstance(held, _ownership.Held):
                    held.release(remove=True)
        return freed

    def partial_bytes(self, mine: bool = False) -> tuple[int, int]:
        """``(count, bytes)`` of the partial downloads in ``ingest/`` (``mine``: this
        store object's only)."""
        count = total = 0
        for entry in _fs.walk_files(self.ingest_dir):
            if not entry.name.endswith(PARTIAL_SUFFIX):
                continue
            if mine and not any(entry.name == self.partial_path(d).name for d in self._partials):
                continue
            try:
                size = entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
            count += 1
            total += size
        return count, total
