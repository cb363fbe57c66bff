"""The temp-file write path: a blob streamed into a private temp file, verified, published.

Used for blobs of unknown digest and for small ones (below
:data:`~pycrane.layout._flight.SHARED_WRITE_MIN`), and whenever no cross-process
lock could be had. The temp file carries its owner's token (:mod:`pycrane._ownership`),
so a dead writer's temp files are swept at once; it is hashed as it is written (unless
the source verifies itself), synced, closed, and only then published.
"""

from __future__ import annotations

import os
import threading

from pycrane import _fs
from pycrane.errors import SizeMismatch, StoreError
from pycrane.layout._core import _StoreCore
from pycrane.layout._source import Source, _Counter, _self_verifying, _stream
from pycrane.progress import ProgressSink
from pycrane.v1.digest import Digest, DigestHasher, VerifyingReader

__all__: list[str] = []


class _TempWrites(_StoreCore):
    """Writes a blob through a temp file of its own."""

    def _write(
        self,
        source: Source,
        digest: Digest | None,
        size: int | None,
        progress: ProgressSink | None,
        stop: threading.Event | None = None,
    ) -> tuple[Digest, int]:
        what = f"blob {digest}" if digest is not None else "blob"
        algorithm = digest.algorithm if digest is not None else "sha256"
        f, tmp, token = self._mkstemp(digest.hex[:12] if digest is not None else "put")
        # A source that verifies itself against this very digest (a remote layer's
        # stream) need not be hashed twice: count bytes and require its verdict.
        # Hashing is the largest CPU cost of a pull, so this halves it.
        trusted = _self_verifying(source, digest, size)
        try:
            h: DigestHasher | _Counter = _Counter() if trusted else DigestHasher(algorithm)
            with f:
                if progress is not None and digest is not None:
                    progress.start(digest, size)
                _stream(
                    f,
                    source,
                    h,
                    size=size,
                    durable=self.fsync,
                    progress=progress,
                    digest=digest,
                    stop=stop,
                    what=what,
                )
                if trusted:
                    assert digest is not None and isinstance(source, VerifyingReader)
                    if size is not None and h.size != size:
                        raise SizeMismatch(what, size, h.size)
                    if not source.verified:
                        raise StoreError(f"{what}: source ended before its digest was checked")
                    actual = digest
                elif digest is not None:
                    assert isinstance(h, DigestHasher)
                    h.verify(what, digest, size)
                    actual = digest
                elif size is not None and h.size != size:
                    raise SizeMismatch(what, size, h.size)
                else:
                    assert isinstance(h, DigestHasher)
                    actual = h.digest()
                if self.fsync:
                    _fs.fsync_file(f)
            self._publish(tmp, actual, h.size)
            if progress is not None and digest is not None:
                progress.finish(digest)
            return actual, h.size
        finally:
            try:
                if os.path.lexists(tmp):
                    _fs.discard(tmp)
            finally:
                self._disown(token)
