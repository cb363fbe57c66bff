"""Sequential ``O_DIRECT`` writes of big durable files (Linux), with a plain fallback.

A durable blob is fsynced before it is published. Written through the page cache,
a 256 MiB layer first becomes 65536 dirty pages that the kernel must allocate,
account and write back; on this project's bench VM that writeback made a pull's
system time bimodal (0.5 s or 2.5 s per GiB for the same pull, minutes apart).
With ``O_DIRECT`` the bytes go from one aligned user buffer to the device, the
page cache is not involved, and the fsync at the end has almost nothing to do:
pull-oci/big went from 2.47x to 1.11x of a parallel ``curl -o`` (see
``bench/FINDINGS.md``, 2026-12-07).

:class:`DirectWriter` copies what it is given into a page-aligned buffer
(``mmap``) and writes it whenever the buffer is full, so every direct write has an
aligned address, length and file offset. The tail, shorter than a block, is
written after ``O_DIRECT`` is cleared again with ``fcntl``. The caller still
fsyncs (metadata, and filesystems that treat ``O_DIRECT`` as a hint).

:func:`open_direct` returns None, and the caller writes the usual way, when the
platform has no ``O_DIRECT`` (Windows, macOS), when the Windows emulator of the
tests is on, for small or unknown sizes, and when the filesystem refuses the flag
(``EINVAL``, e.g. tmpfs on older kernels). A filesystem that takes the flag but
refuses the first direct write (``EINVAL``: a logical block larger than
:data:`ALIGN`) makes the writer fall back in place; nothing was written by then.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import BinaryIO

from pycrane import _fs

__all__ = ["ALIGN", "BUFFER", "MIN_SIZE", "DirectWriter", "open_direct"]

#: Files smaller than this are written through the page cache (not worth a buffer).
MIN_SIZE = 4 << 20
#: Alignment of buffer address, write length and file offset (the common page and
#: logical block size; a device needing more refuses the first write: fallback).
ALIGN = 4096
#: Size of the aligned buffer, and so of each direct write (a multiple of ALIGN).
BUFFER = 1 << 20


def _o_direct() -> int:
    """The O_DIRECT flag where it is usable, else 0 (read at call time for tests)."""
    if sys.platform != "linux" or _fs.IS_WINDOWS:
        return 0
    return int(getattr(os, "O_DIRECT", 0))


class DirectWriter:
    """Write a file sequentially from ``offset`` on through an aligned buffer.

    ``write`` as often as needed, then :meth:`finish` exactly once (it writes the
    tail and leaves the descriptor without ``O_DIRECT``); :meth:`close` frees the
    buffer and may be called at any time, also after an error. Writes are positional
    (``pwrite``): the descriptor's own offset is left alone. An ``offset`` that is not
    block-aligned (a tar member's data) gets its head, up to the next block boundary,
    written the plain way first.
    """

    __slots__ = ("_buf", "_direct", "_fd", "_flag", "_off", "_pos", "_want", "written")

    def __init__(self, fd: int, flag: int, offset: int = 0) -> None:
        import mmap

        self._fd = fd
        self._flag = flag
        self._direct = False  # O_DIRECT set on the descriptor now
        self._want = True  # O_DIRECT wanted once the file offset is aligned
        self._buf: mmap.mmap | None = mmap.mmap(-1, BUFFER)  # anonymous: page aligned
        self._off = offset  # file offset of the buffer's first byte
        self._pos = 0  # bytes in the buffer
        #: Bytes accepted so far (buffered or on the device).
        self.written = 0

    @property
    def flushed(self) -> int:
        """The file offset up to which the bytes given are written (the rest is buffered)."""
        return self._off

    @property
    def direct(self) -> bool:
        """Whether writes may still bypass the page cache (False after a fallback)."""
        return self._want

    def write(self, data: bytes | bytearray | memoryview) -> None:
        buf = self._buf
        if buf is None:
            raise ValueError("DirectWriter is closed")
        view = memoryview(data).cast("B")
        n = len(view)
        self.written += n
        i = 0
        while i < n:
            take = min(BUFFER - self._pos, n - i)
            buf[self._pos : self._pos + take] = view[i : i + take]
            self._pos += take
            i += take
            if self._pos == BUFFER:
                # Up to a block boundary, so that the next buffer starts aligned.
                self._flush(BUFFER - self._off % ALIGN)

    def finish(self) -> None:
        """Write what is buffered: whole blocks directly, the tail after clearing
        ``O_DIRECT`` (a direct write must be a whole number of blocks)."""
        self._flush(self._pos)
        self._want = False
        self._set_direct(False)

    def close(self) -> None:
        buf, self._buf = self._buf, None
        if buf is not None:
            # BufferError: a view of it lives on (in the traceback of a failed
            # write); the mapping goes when that does.
            with contextlib.suppress(BufferError):
                buf.close()

    def _flush(self, n: int) -> None:
        """Write the first ``n`` buffered bytes and keep the rest at the buffer's start."""
        if sys.platform == "win32":  # never constructed there (see open_direct)
            raise AssertionError("DirectWriter on Windows")
        buf = self._buf
        assert buf is not None
        view = memoryview(buf)
        try:
            done = 0
            while done < n:
                pos = self._off + done
                whole = (n - done) // ALIGN * ALIGN
                if self._want and pos % ALIGN == 0 and whole:
                    if done:
                        # After a plain head: direct writes need an aligned address
                        # too, so the rest moves to the buffer's (page-aligned) start.
                        view.release()
                        buf.move(0, done, self._pos - done)
                        view = memoryview(buf)
                        self._pos -= done
                        self._off += done
                        n -= done
                        done = 0
                        continue
                    self._set_direct(True)
                    end = done + whole
                else:
                    self._set_direct(False)
                    # Plain writes stay in WRITE_SLICE pieces (see _fs), and a head
                    # stops at the block boundary where direct writes can begin.
                    end = min(n, done + _fs.WRITE_SLICE)
                    if self._want and pos % ALIGN:
                        end = min(end, done + ALIGN - pos % ALIGN)
                try:
                    k = os.pwrite(self._fd, view[done:end], pos)
                except OSError as e:
                    if e.errno != errno.EINVAL or not self._direct:
                        raise
                    # Flag accepted, direct write refused (alignment): nothing was
                    # written by this call, so write the same bytes the plain way.
                    self._want = False
                    continue
                done += k
                if self._direct and k % ALIGN:
                    self._want = False  # a short write broke the alignment
        finally:
            view.release()
        rest = self._pos - n
        if rest:
            buf.move(0, n, rest)
        self._pos = rest
        self._off += n

    def _set_direct(self, on: bool) -> None:
        if self._direct == on:
            return
        if sys.platform != "linux":  # never constructed there (see open_direct)
            raise OSError(errno.EINVAL, "O_DIRECT is Linux-only")
        import fcntl

        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags | self._flag if on else flags & ~self._flag)
        self._direct = on


def open_direct(f: BinaryIO, size: int | None, offset: int | None = None) -> DirectWriter | None:
    """A :class:`DirectWriter` on ``f`` (opened for writing), or None.

    It writes ``size`` bytes from ``offset``; ``offset`` None means a new, empty file
    written from its start (None is returned if ``f`` is not at offset 0). None means:
    write ``f`` the usual way (see the module docstring for when).
    """
    flag = _o_direct()
    if not flag or size is None or size < MIN_SIZE or sys.platform != "linux":
        return None
    import fcntl

    f.flush()
    fd = f.fileno()
    if offset is None:
        if os.lseek(fd, 0, os.SEEK_CUR) != 0:
            return None
        offset = 0
    # Probe: a filesystem without direct I/O refuses the flag itself.
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | flag)
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
            return None
        raise
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    return DirectWriter(fd, flag, offset)
