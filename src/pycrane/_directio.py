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
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import mmap

from pycrane import _fs

__all__ = ["ALIGN", "BUFFER", "MIN_SIZE", "DirectWriter", "open_direct"]

#: Files smaller than this are written through the page cache (not worth a buffer).
MIN_SIZE = 4 << 20
#: Alignment of buffer address, write length and file offset (the common page and
#: logical block size; a device needing more refuses the first write: fallback).
ALIGN = 4096
#: Size of the aligned buffer, and so of each direct write (a multiple of ALIGN).
BUFFER = 1 << 20
#: Whether a writer thread writes full buffers while the caller fills the next one
#: (False: the caller writes each buffer itself; bench/experiments A/B them).
OVERLAP = True


def _o_direct() -> int:
    """The O_DIRECT flag where it is usable, else 0 (read at call time for tests)."""
    if sys.platform != "linux" or _fs.IS_WINDOWS:
        return 0
    return int(getattr(os, "O_DIRECT", 0))


class DirectWriter:
    """Write a file sequentially from ``offset`` on through two aligned buffers.

    ``write`` as often as needed, then :meth:`finish` exactly once (it writes the
    tail and leaves the descriptor without ``O_DIRECT``); :meth:`close` frees the
    buffers and stops the writer thread, and may be called at any time, also after an
    error. A direct write returns only when the device has the data, so a full buffer
    goes to a writer thread of its own while the caller fills the other one (the
    network, the hash and the device overlap; one blob alone would otherwise wait for
    every write). Writes are positional (``pwrite``): the descriptor's own offset is left
    alone. Buffer byte ``i`` maps to file offset ``base + i`` with ``base`` block-aligned,
    so an unaligned ``offset`` (a tar member's data) only makes the first block's head a
    plain write, and every direct write has an aligned address, length and offset.
    """

    def __init__(self, fd: int, flag: int, offset: int = 0) -> None:
        import mmap
        import queue
        import threading

        self._fd = fd
        self._flag = flag
        self._direct = False  # O_DIRECT set on the descriptor now (writer thread's)
        self._want = True  # O_DIRECT wanted for whole blocks
        self._free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        self._work: queue.SimpleQueue[tuple[mmap.mmap, int, int, int] | None] = queue.SimpleQueue()
        self._bufs = [mmap.mmap(-1, BUFFER), mmap.mmap(-1, BUFFER)]  # anonymous: aligned
        self._free.put(self._bufs[1])
        self._buf: mmap.mmap | None = self._bufs[0]
        self._base = offset - offset % ALIGN  # file offset of the buffer's byte 0
        self._start = self._pos = offset % ALIGN  # valid bytes: [start, pos)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._threading = threading
        #: Bytes accepted so far (buffered or on the device).
        self.written = 0
        self._flushed = offset  # see flushed; buffers are written in order

    @property
    def flushed(self) -> int:
        """The file offset up to which the bytes given are written (the rest is buffered or
        on its way to the device): what a resumable writer may claim is on disk."""
        return self._flushed

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
                buf = self._submit()

    def finish(self) -> None:
        """Write what is buffered (whole blocks directly, the tail plainly), wait for the
        writer thread, and leave the descriptor without ``O_DIRECT``."""
        if self._buf is None:
            raise ValueError("DirectWriter is closed")
        if self._pos > self._start:
            self._submit(last=True)
        self._stop()
        self._raise()
        self._want = False
        self._set_direct(False)

    def close(self) -> None:
        self._stop()
        self._buf = None
        for b in self._bufs:
            # BufferError: a view of it lives on (in the traceback of a failed
            # write); the mapping goes when that does.
            with contextlib.suppress(BufferError):
                b.close()
        self._bufs = []

    # -- the caller's side

    def _submit(self, last: bool = False) -> mmap.mmap:
        """Hand the current buffer to the writer thread; return the next one to fill."""
        buf = self._buf
        assert buf is not None
        self._raise()
        if not OVERLAP:  # the caller's thread writes (A/B of the overlap)
            self._write_out(buf, self._start, self._pos, self._base)
            self._flushed = self._base + self._pos
            self._base += BUFFER
            self._start = self._pos = 0
            if last:
                self._buf = None
            return buf
        if self._thread is None:
            self._thread = self._threading.Thread(
                target=self._run, name="pycrane-directio", daemon=True
            )
            self._thread.start()
        self._work.put((buf, self._start, self._pos, self._base))
        self._base += BUFFER
        self._start = self._pos = 0
        if last:
            self._buf = None
            return buf
        nxt = self._free.get()  # the one written before is done
        self._raise()
        self._buf = nxt
        return nxt

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _stop(self) -> None:
        t, self._thread = self._thread, None
        if t is not None:
            self._work.put(None)
            t.join()

    # -- the writer thread

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            buf, start, end, base = item
            try:
                if self._error is None:
                    self._write_out(buf, start, end, base)
                    self._flushed = base + end
            except BaseException as e:  # handed to the caller at its next step
                self._error = e
            finally:
                self._free.put(buf)

    def _write_out(self, buf: mmap.mmap, start: int, end: int, base: int) -> None:
        """Write ``buf[start:end]`` at file offset ``base + start``."""
        if sys.platform == "win32":  # never constructed there (see open_direct)
            raise AssertionError("DirectWriter on Windows")
        view = memoryview(buf)
        try:
            i = start
            while i < end:
                whole = (end - i) // ALIGN * ALIGN
                if self._want and i % ALIGN == 0 and whole:
                    self._set_direct(True)
                    stop = i + whole
                else:
                    self._set_direct(False)
                    # Plain writes stay in WRITE_SLICE pieces (see _fs); a head stops at
                    # the block boundary where direct writes can begin.
                    stop = min(end, i + _fs.WRITE_SLICE)
                    if self._want and i % ALIGN:
                        stop = min(stop, i + ALIGN - i % ALIGN)
                try:
                    k = os.pwrite(self._fd, view[i:stop], base + i)
                except OSError as e:
                    if e.errno != errno.EINVAL or not self._direct:
                        raise
                    # Flag accepted, direct write refused (alignment): nothing was
                    # written by this call, so write the same bytes the plain way.
                    self._want = False
                    continue
                i += k
                if self._direct and k % ALIGN:
                    self._want = False  # a short write broke the alignment
        finally:
            view.release()

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
