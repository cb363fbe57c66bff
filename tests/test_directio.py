"""The O_DIRECT writer of big durable blobs (``pycrane._directio``), and its fallbacks.

Real files on the test machine's filesystem: the checks that need a filesystem taking
``O_DIRECT`` skip where it does not (they say so), the fallback checks run everywhere.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import itertools
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pycrane import _directio, _fs
from pycrane.errors import DigestMismatch
from pycrane.layout import BlobStore
from pycrane.v1.digest import Digest

pytestmark = pytest.mark.skipif(
    not hasattr(os, "O_DIRECT"), reason="O_DIRECT is Linux-only; elsewhere open_direct is None"
)

A, B, M = _directio.ALIGN, _directio.BUFFER, _directio.MIN_SIZE


def _flags(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_GETFL)


def _data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _pieces(data: bytes, seed: int) -> Iterator[memoryview]:
    """``data`` cut at random points: 1 byte to 3 buffers, never block-aligned on purpose."""
    rng = random.Random(seed)
    view = memoryview(data)
    i = 0
    while i < len(view):
        k = rng.choice([1, 7, A - 1, A + 1, B - 3, B + 5, 3 * B + 11])
        yield view[i : i + k]
        i += k


def _digest(data: bytes) -> Digest:
    return Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())


@pytest.fixture
def direct_dir(tmp_path: Path) -> Path:
    """tmp_path if its filesystem takes O_DIRECT, else skip."""
    probe = tmp_path / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError as e:
        pytest.skip(f"{tmp_path} refuses O_DIRECT ({e.strerror}); the fallback tests still run")
    os.close(fd)
    probe.unlink()
    return tmp_path


def _open_new(path: Path) -> Any:
    return open(path, "xb")


class _Recorder:
    """Wraps os.pwrite: (offset, length, O_DIRECT set) of every write."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, int, bool]] = []
        self._real = os.pwrite
        monkeypatch.setattr(os, "pwrite", self)

    def __call__(self, fd: int, data: Any, offset: int) -> int:
        self.calls.append((offset, len(data), bool(_flags(fd) & os.O_DIRECT)))
        return self._real(fd, data, offset)


@pytest.mark.parametrize("start", [0, 512, A - 1, 3 * A + 1536])
@pytest.mark.parametrize(
    "n",
    [M, M + 1, M + A - 1, M + A, M + A + 1, 5 * B - 1, 5 * B, 5 * B + 1, 7 * B + A + 123],
)
def test_content_is_exact_around_block_and_buffer_boundaries(
    direct_dir: Path, monkeypatch: pytest.MonkeyPatch, n: int, start: int
) -> None:
    """From offset 0 (a blob) or an unaligned offset (a tar member): every direct write
    is block-aligned in offset and length, the plain head and tail fill the rest, and
    the bytes around the region are untouched."""
    data = _data(n, n)
    path = direct_dir / "blob"
    before = _data(start, 1) if start else b""
    after = b"AFTER" * 300
    path.write_bytes(before + bytes(n) + after)
    rec = _Recorder(monkeypatch)
    with open(path, "r+b") as f:
        w = _directio.open_direct(f, n, start) if start else _directio.open_direct(f, n)
        assert w is not None
        try:
            for piece in _pieces(data, n):
                w.write(piece)
            assert w.written == n
            w.finish()
            assert w.direct is False  # finished: the descriptor is back to normal
            assert not _flags(f.fileno()) & os.O_DIRECT
        finally:
            w.close()
        _fs.fsync_file(f)
    assert path.read_bytes() == before + data + after
    direct = [(o, k) for o, k, d in rec.calls if d]
    assert sum(k for _, k in direct) >= n - 2 * A - _directio.BUFFER  # the bulk went direct
    assert all(o % A == 0 and k % A == 0 for o, k in direct), direct
    # the writes cover the region exactly once, in order
    spans = sorted((o, k) for o, k, _ in rec.calls)
    assert spans[0][0] == start and sum(k for _, k in spans) == n
    assert all(a + k == b for (a, k), (b, _) in itertools.pairwise(spans))


def test_no_direct_writer_for_small_unknown_or_written_files(direct_dir: Path) -> None:
    with _open_new(direct_dir / "a") as f:
        assert _directio.open_direct(f, M - 1) is None
        assert _directio.open_direct(f, M - 1, 4096) is None
        assert _directio.open_direct(f, None) is None
        f.write(b"x")
        assert _directio.open_direct(f, M) is None  # not at offset 0 (the buffer is flushed)
        assert not _flags(f.fileno()) & os.O_DIRECT


def test_store_writes_big_blobs_direct_and_small_ones_not(
    direct_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[tuple[int | None, bool]] = []
    real = _directio.open_direct

    def spy(f: Any, size: int | None, offset: int | None = None) -> _directio.DirectWriter | None:
        w = real(f, size, offset)
        made.append((size, w is not None))
        return w

    monkeypatch.setattr(_directio, "open_direct", spy)
    store = BlobStore(direct_dir / "store")
    big, small = _data(M + 12345, 1), _data(M - 1, 2)
    for blob in (big, small):
        assert store.put(iter([blob[: B + 3], blob[B + 3 :]]), digest=_digest(blob)) == (
            _digest(blob),
            len(blob),
        )
        assert store.path(_digest(blob)).read_bytes() == blob
    # put() of a stream with no size: unknown, so no direct writer either
    assert made == [(None, False), (None, False)]
    made.clear()
    big2, small2 = _data(2 * M + 1, 3), _data(M - 1, 4)
    for blob in (big2, small2):
        store.put_from(lambda b=blob: iter([b[:7], b[7:]]), digest=_digest(blob), size=len(blob))
        assert store.path(_digest(blob)).read_bytes() == blob
    assert made == [(len(big2), True), (len(small2), False)]
    assert list((direct_dir / "store" / "ingest").glob("*.tmp")) == []


def test_store_with_fsync_off_never_goes_direct(
    direct_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(f: Any, size: int | None, offset: int | None = None) -> None:
        raise AssertionError("open_direct called for a store without fsync")

    monkeypatch.setattr(_directio, "open_direct", boom)
    blob = _data(M + 1, 4)
    store = BlobStore(direct_dir / "s", fsync=False)
    store.put(blob, digest=_digest(blob), size=len(blob))
    assert store.path(_digest(blob)).read_bytes() == blob


def test_filesystem_refusing_the_flag_falls_back_to_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tmpfs (older kernels) fails F_SETFL|O_DIRECT with EINVAL: the usual write path."""
    real = fcntl.fcntl

    def refuse(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", refuse)
    with _open_new(tmp_path / "a") as f:
        assert _directio.open_direct(f, M) is None
    blob = _data(M + 3, 5)
    store = BlobStore(tmp_path / "s")
    assert store.put(blob, digest=_digest(blob), size=len(blob))[1] == len(blob)
    assert store.path(_digest(blob)).read_bytes() == blob


def test_first_direct_write_refused_falls_back_in_place(
    direct_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device with a bigger logical block takes the flag but fails the aligned write."""
    real = os.pwrite
    refused: list[int] = []

    def write(fd: int, data: Any, offset: int) -> int:
        if _flags(fd) & os.O_DIRECT:
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", write)
    data = _data(M + 3 * B + 17, 6)
    path = direct_dir / "blob"
    with _open_new(path) as f:
        w = _directio.open_direct(f, len(data))
        assert w is not None
        try:
            for piece in _pieces(data, 6):
                w.write(piece)
            assert w.direct is False
            w.finish()
        finally:
            w.close()
    assert refused == [B]
    assert path.read_bytes() == data


@pytest.mark.parametrize("fault", ["fsync", "write"])
def test_faults_leave_nothing_visible(
    direct_dir: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """EIO from the fsync (through ``_fs``) or ENOSPC from a direct write mid-blob: the
    error reaches the caller, no blob and no temp file stay."""
    if fault == "fsync":

        def fsync(f: Any) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(_fs, "fsync_file", fsync)
    else:
        real = os.pwrite
        count = [0]

        def write(fd: int, data: Any, offset: int) -> int:
            if _flags(fd) & os.O_DIRECT:
                count[0] += 1
                if count[0] == 3:
                    raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd, data, offset)

        monkeypatch.setattr(os, "pwrite", write)
    blob = _data(5 * B + 9, 7)
    store = BlobStore(direct_dir / "s")
    with pytest.raises(OSError) as info:
        store.put(blob, digest=_digest(blob), size=len(blob))
    assert info.value.errno == (errno.EIO if fault == "fsync" else errno.ENOSPC)
    assert not store.exists(_digest(blob))
    assert list((direct_dir / "s" / "ingest").glob("*.tmp")) == []


def test_a_wrong_digest_is_refused_as_before(direct_dir: Path) -> None:
    blob = _data(M + 5, 8)
    store = BlobStore(direct_dir / "s")
    with pytest.raises(DigestMismatch):
        store.put(blob, digest=_digest(blob + b"x"), size=len(blob))
    assert list((direct_dir / "s" / "ingest").glob("*.tmp")) == []


def test_windows_emulator_keeps_the_plain_path(
    tmp_path: Path, windows_fs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the emulator (``_fs.IS_WINDOWS``) no descriptor gets O_DIRECT: Windows has
    none, and the emulated path must stay the one Windows runs."""
    real = fcntl.fcntl

    def watch(fd: int, cmd: int, arg: int = 0) -> int:
        assert not (cmd == fcntl.F_SETFL and arg & os.O_DIRECT), "O_DIRECT under emulation"
        return real(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", watch)
    windows_fs(tmp_path)
    blob = _data(M + 77, 9)
    store = BlobStore(tmp_path / "s")
    with _open_new(tmp_path / "a") as f:
        assert _directio.open_direct(f, M) is None
    assert store.put(blob, digest=_digest(blob), size=len(blob))[1] == len(blob)
    with open(store.path(_digest(blob)), "rb") as f:
        assert f.read() == blob


def test_tarball_members_filled_in_place_go_direct_and_stay_exact(
    direct_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pull --format tarball`` reserves every member and fills them in parallel: a big
    member (unaligned offset, after its header) is written direct, the small one and the
    headers around them are not disturbed."""
    import io
    import tarfile

    from pycrane.tarball._sink import TarSink

    rec = _Recorder(monkeypatch)
    members = {"a.tar.gz": _data(M + 12345, 10), "small": b"s" * 700, "b": _data(M + B, 11)}
    out = direct_dir / "out.tar"
    sink = TarSink(out)
    try:
        offsets = {name: sink.reserve(name, len(d)) for name, d in members.items()}
        for name, d in reversed(members.items()):
            sink.fill(offsets[name], io.BytesIO(d), _digest(d), len(d), name)
    except BaseException:
        sink.abort()
        raise
    sink.close()
    with tarfile.open(out) as tf:
        got = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}  # type: ignore[union-attr]
    assert got == members
    assert any(d for _, _, d in rec.calls)
    assert all(o % A == 0 and k % A == 0 for o, k, d in rec.calls if d)


@pytest.mark.parametrize("overlap", [True, False])
def test_flushed_never_claims_bytes_that_are_not_in_the_file(
    direct_dir: Path, monkeypatch: pytest.MonkeyPatch, overlap: bool
) -> None:
    """What a resumable tarball claims in its plan (issue 12): at every step the file
    already holds the given bytes up to ``flushed``, and after finish all of them."""
    monkeypatch.setattr(_directio, "OVERLAP", overlap)
    start, n = 3 * A + 1536, 5 * B + 77
    data = _data(n, 12)
    path = direct_dir / "region"
    path.write_bytes(bytes(start + n))
    with open(path, "r+b") as f:
        w = _directio.open_direct(f, n, start)
        assert w is not None
        try:
            given = 0
            claims = []
            for piece in _pieces(data, 13):
                w.write(piece)
                given += len(piece)
                claimed = w.flushed - start
                assert 0 <= claimed <= given
                with open(path, "rb") as r:
                    r.seek(start)
                    assert r.read(claimed) == data[:claimed]
                claims.append(claimed)
            w.finish()
            assert w.flushed - start == n
        finally:
            w.close()
    assert claims[-1] > 0  # it did advance before the end
    assert path.read_bytes()[start:] == data
