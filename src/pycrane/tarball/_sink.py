"""A tar archive being written to a path (:class:`pycrane._rollback.OutputFile`) or a stream.

Shared by the docker-save and legacy writers: members carry fixed metadata
(mtime 0, root owner, no user names) so the same images give the same bytes.
Blob members are streamed and verified: the digest is checked when the last
byte has been copied, so a corrupt source fails the write.

A file target can also take blob members out of order: :meth:`TarSink.reserve`
writes a member's header and leaves room for its data (every size is known from
the descriptors), and :meth:`TarSink.fill` writes that room from another thread
through its own handle. Layers then download in parallel straight into the
archive, with no spool copy, and the bytes equal those of the in-order writer.

With a ``resume_key`` such an archive is written to a temp file that an
interruption keeps, with its plan, for the next run to continue
(:mod:`pycrane.tarball._resume`): :meth:`TarSink.adopted` says what a kept file
already holds and :meth:`TarSink.fill_resumed` continues a region with ``Range``.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, cast

from pycrane import _directio, _fs
from pycrane._concurrency import Stopped
from pycrane._rollback import OutputFile, add_note, is_interruption
from pycrane.compression import CHUNK
from pycrane.errors import TarballError
from pycrane.progress import NULL_PROGRESS, ProgressSink
from pycrane.tarball._resume import CHECKPOINT, CHECKPOINT_INTERVAL, Member, ResumableOutput
from pycrane.v1.digest import Digest, DigestHasher, VerifyingReader, verifying

__all__ = ["TarSink", "Target"]

Target = str | os.PathLike[str] | BinaryIO


class _Exact(io.RawIOBase):
    """Yield exactly ``size`` bytes of a verifying stream, then force its EOF check.

    ``tarfile`` copies exactly the member size and never asks for EOF, which is
    when :class:`VerifyingReader` compares digests; this reader asks for it.
    """

    def __init__(self, raw: VerifyingReader, size: int, sink: ProgressSink, digest: Digest) -> None:
        self._raw = raw
        self._left = size
        self._sink = sink
        self._digest = digest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        if self._left <= 0:
            return 0
        data = self._raw.read(min(len(view), self._left))
        if not data:
            return 0  # tarfile reports the short read itself
        n = len(data)
        view[:n] = data
        self._left -= n
        self._sink.advance(self._digest, n)
        if self._left == 0:
            self._raw.read(1)  # EOF: raises on a digest mismatch or overlong content
        return n


def _seekable(f: BinaryIO) -> bool:
    try:
        return bool(f.seekable()) and f.tell() >= 0
    except (OSError, ValueError, AttributeError):
        return False


class TarSink:
    """Write tar members; on success publish the file, on failure remove it."""

    def __init__(
        self, target: Target, progress: ProgressSink | None = None, *, resume_key: str | None = None
    ) -> None:
        self.progress = progress or NULL_PROGRESS
        self._out: OutputFile | ResumableOutput | None = None
        self._tmp: Path | None = None
        self._fh: BinaryIO
        self._key = resume_key
        #: Reserved regions, and the bytes written into each (by offset) so far.
        self._members: list[Member] = []
        self._written: dict[int, int] = {}
        self._since = 0  # layer bytes written since the last checkpoint
        self._last_checkpoint: float | None = None  # time.monotonic() of it
        self._started: set[int] = set()  # regions whose progress has started
        self._checkpoint_lock = threading.Lock()
        if isinstance(target, (str, os.PathLike)):
            # The archive is written beside the target and replaces it only when whole.
            if resume_key is not None:
                self._out = ResumableOutput.open(target, resume_key)
            if self._out is None:
                self._out = OutputFile(target)
            self._fh, self._tmp = self._out.file, self._out.tmp
            try:
                _fs.make_sparse(self._fh)  # reserve() leaves gaps that fill() writes later
            except BaseException:
                self._out.abort()
                raise
            self._owned = True
        else:
            self._fh = target
            self._owned = False
        seekable = self._owned or _seekable(self._fh)
        # Plain "w" writes straight through; stream mode ("w|", for pipes) re-buffers
        # every write, so it keeps tarfile's small default record buffer.
        self._tar = tarfile.open(  # noqa: SIM115
            fileobj=cast(Any, self._fh), mode="w" if seekable else "w|", format=tarfile.PAX_FORMAT
        )
        # tarfile copies members in pieces of this size (reads and writes alike).
        self._tar.copybufsize = _fs.WRITE_SLICE  # type: ignore[attr-defined]
        self._dirs: set[str] = set()

    def _info(self, name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755 if directory else 0o644
        if directory:
            info.type = tarfile.DIRTYPE
        return info

    def ensure_dirs(self, name: str) -> None:
        """Directory entries for a member's parents, once each (tidier extraction)."""
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self._dirs:
                self._dirs.add(d)
                self._tar.addfile(self._info(d + "/", directory=True))

    def add_bytes(self, name: str, data: bytes) -> None:
        self.ensure_dirs(name)
        self._tar.addfile(self._info(name, len(data)), io.BytesIO(data))

    def add_stream(self, name: str, stream: BinaryIO, digest: Digest, size: int, what: str) -> None:
        """Stream a blob member, verifying it against ``digest`` and ``size``."""
        self.ensure_dirs(name)
        self.progress.start(digest, size, what)
        checked = verifying(stream, digest, size, what)
        try:
            reader = io.BufferedReader(_Exact(checked, size, self.progress, digest), CHUNK)
            try:
                self._tar.addfile(self._info(name, size), reader)
            except OSError as e:
                if "unexpected end of data" in str(e):
                    raise TarballError(
                        f"{what}: source ended early: expected {size} bytes"
                    ) from None
                raise
        finally:
            checked.close()
        self.progress.finish(digest)

    @property
    def positional(self) -> bool:
        """Whether members can be reserved now and filled later (a file we own)."""
        return self._owned

    def reserve(self, name: str, size: int, digest: Digest | None = None) -> int:
        """Write a member's header and skip its (padded) data; returns the data's offset.

        The room reads as zeros until :meth:`fill` writes it; the archive is not
        published unless every reserved member was filled (the caller's job). A
        ``digest`` makes the region part of the plan an interruption keeps.
        """
        if not self._owned:
            raise ValueError("reserve() needs a file target")
        self.ensure_dirs(name)
        tar = self._tar
        header = self._info(name, size).tobuf(tarfile.PAX_FORMAT, tar.encoding, tar.errors)
        self._fh.write(header)
        start = tar.offset + len(header)
        padded = -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        self._fh.seek(padded, os.SEEK_CUR)
        # tarfile writes the next header and the end-of-archive blocks at its offset.
        tar.offset = start + padded
        if digest is not None:
            self._members.append((start, size, digest))
        return start

    def fill(
        self,
        offset: int,
        stream: BinaryIO,
        digest: Digest,
        size: int,
        what: str,
        stop: threading.Event | None = None,
    ) -> None:
        """Write a reserved member's data from ``stream``, verified; safe from any thread.

        ``stop`` (set when another member failed) makes this give up at its next chunk.
        """
        self._start(offset, digest, size, what)
        checked = verifying(stream, digest, size, what)
        try:
            n = self._copy(offset, 0, cast(BinaryIO, checked), size, what, digest, stop)
        finally:
            checked.close()
        if n != size or not checked.verified:
            raise TarballError(f"{what}: source ended early: expected {size} bytes, got {n}")
        self.progress.finish(digest)

    def _start(self, offset: int, digest: Digest, size: int, what: str) -> None:
        """Progress starts once per region (a resume that falls back to a full fetch)."""
        if offset not in self._started:
            self._started.add(offset)
            self.progress.start(digest, size, what)

    def adopted(self) -> dict[int, int]:
        """Bytes an interrupted run already wrote per reserved region (by offset), when
        this archive continues the temp file it kept; call after every :meth:`reserve`."""
        if not isinstance(self._out, ResumableOutput):
            return {}
        return self._out.adopted(self._members)

    def fill_resumed(
        self,
        offset: int,
        have: int,
        at: Callable[[int], tuple[BinaryIO, int]] | None,
        digest: Digest,
        size: int,
        what: str,
        stop: threading.Event | None = None,
    ) -> bool:
        """Continue a region an interrupted run left ``have`` bytes of: hash them again,
        fetch the rest with ``at(have)`` (a registry ``Range`` request) and verify the
        whole member. False when it must be fetched whole instead (nothing to continue
        with, or the bytes do not verify)."""
        assert self._tmp is not None
        if have < size and at is None:
            return False
        h = DigestHasher(digest.algorithm)
        with _fs.open_read(self._tmp) as r:
            r.seek(offset)
            left = have
            while left:
                data = r.read(min(CHUNK, left))
                if not data:
                    return False
                h.update(data)
                left -= len(data)
        self._start(offset, digest, size, what)
        if have < size:
            assert at is not None
            source, start = at(have)
            try:
                if start != have:  # the registry ignored Range: the whole blob, from 0
                    if start != 0:
                        return False
                    h, have = DigestHasher(digest.algorithm), 0
                self.progress.advance(digest, have)
                self._copy(offset, have, source, size, what, digest, stop, h)
            finally:
                source.close()
        else:
            self.progress.advance(digest, have)
        if h.size != size or h.digest() != digest:
            self._written[offset] = 0
            return False
        self.progress.finish(digest)
        return True

    def _copy(
        self,
        offset: int,
        have: int,
        source: BinaryIO,
        size: int,
        what: str,
        digest: Digest,
        stop: threading.Event | None,
        hasher: DigestHasher | None = None,
    ) -> int:
        """Write ``source`` into the region at ``offset`` from its byte ``have`` on; returns
        the bytes written. With ``hasher`` (an unverified source) at most ``size - have``
        are read and hashed; else ``source`` is read to its end (where it verifies).
        :attr:`_written` always tells how much of the region is on disk."""
        assert self._tmp is not None
        self._written[offset] = have
        limit = size - have if hasher is not None else None
        with _fs.open_update(self._tmp) as f:
            f.seek(offset + have)
            # A big member of a durable archive bypasses the page cache (Linux).
            durable = self._out is not None and self._out.durable
            direct = _directio.open_direct(f, size - have, offset + have) if durable else None
            writeback = _fs.Writeback(f, offset + have)
            n = 0
            try:
                while data := source.read(CHUNK if limit is None else min(CHUNK, limit - n)):
                    if stop is not None and stop.is_set():
                        raise Stopped(what)
                    if hasher is not None:
                        hasher.update(data)
                    if direct is not None:
                        direct.write(data)
                        self._written[offset] = direct.flushed - offset
                    else:
                        _fs.write_all(f, data)
                        writeback.wrote(len(data))
                        self._written[offset] = have + n + len(data)
                    n += len(data)
                    self.progress.advance(digest, len(data))
                    self._checkpoint(len(data))
                if direct is not None:
                    direct.finish()
                    self._written[offset] = have + n
            except BaseException:
                if direct is not None:
                    # What the buffer holds was received: put it on disk for a resume.
                    with contextlib.suppress(BaseException):
                        direct.finish()
                        self._written[offset] = have + n
                raise
            finally:
                if direct is not None:
                    direct.close()
        return n

    def _checkpoint(self, n: int) -> None:
        """Every CHECKPOINT layer bytes, at most every CHECKPOINT_INTERVAL seconds after the
        first, record the progress in the kept plan (see _resume)."""
        out = self._out
        if not isinstance(out, ResumableOutput) or self._key is None:
            return
        with self._checkpoint_lock:
            self._since += n
            if self._since < CHECKPOINT:
                return
            now = time.monotonic()
            last = self._last_checkpoint
            if last is not None and now - last < CHECKPOINT_INTERVAL:
                return
            self._since, self._last_checkpoint = 0, now
            out.checkpoint(self._key, self._members, dict(self._written))

    def add_symlink(self, name: str, target: str) -> None:
        self.ensure_dirs(name)
        info = self._info(name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        self._tar.addfile(info)

    def close(self) -> None:
        try:
            self._tar.close()
        except BaseException:
            if self._out is not None:
                self._out.abort()
            raise
        if not self._owned:
            self._fh.flush()
            return
        assert self._out is not None
        # Replacing, not publish(): a tarball is a user-named file, not content-addressed.
        self._out.commit()

    def abort(self) -> None:
        # Never finish the archive: an end-of-archive marker would make a failed
        # write look complete to whoever reads the stream.
        stream = getattr(self._tar, "fileobj", None)
        if stream is not None and stream is not self._fh:  # tarfile's own stream buffer
            stream.closed = True
        self._tar.closed = True  # type: ignore[attr-defined]
        if self._out is not None:
            self._out.abort()

    def __enter__(self) -> TarSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif exc is not None and is_interruption(exc) and isinstance(self._out, ResumableOutput):
            self._keep(exc)
        else:
            self.abort()

    def _keep(self, exc: BaseException) -> None:
        """An interruption: keep the partial archive and its plan for the next run."""
        assert isinstance(self._out, ResumableOutput) and self._key is not None
        self._tar.closed = True  # type: ignore[attr-defined]  # no end-of-archive marker
        try:
            kept = self._out.keep(self._key, self._members, self._written)
        except OSError:
            return  # keep() removed what it could not keep
        if kept:
            add_note(
                exc,
                f"kept {kept / (1 << 20):.1f} MiB of downloads in {self._out.tmp}; "
                "run the same command again to resume",
            )
