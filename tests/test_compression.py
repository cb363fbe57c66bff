"""Streaming gzip and zstd: round trips, multi-member/multi-frame streams, sources that
hand out a few bytes at a time, and truncated, corrupt or padded streams, which must
raise CompressionError rather than end early."""

from __future__ import annotations

import gzip
import io
import random
import shutil
import subprocess
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from pycrane import compression
from pycrane.compression import (
    CHUNK,
    compress_stream,
    decompressed_reader,
    detect,
    iter_compress,
)
from pycrane.errors import CompressionError

KINDS: list[compression.Compression] = ["gzip", "zstd", "none"]


class Trickle(io.RawIOBase):
    """A source that hands out at most a few bytes per read, like a slow socket."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data = data
        self._pos = 0
        self._sizes = sizes
        self._calls = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(self._sizes[self._calls % len(self._sizes)], len(b))
        self._calls += 1
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        b[: len(out)] = out
        return len(out)


def _src(data: bytes, sizes: list[int] | None = None) -> BinaryIO:
    return cast(BinaryIO, Trickle(data, sizes) if sizes else io.BytesIO(data))


def _payload(size: int, seed: int = 0) -> bytes:
    """Half random, half repetitive: compressible but not trivially."""
    rnd = random.Random(seed)
    half = size // 2
    noise = rnd.randbytes(half)
    text = (b"the quick brown fox %d " * 8192)[: size - half]
    return noise + text


def _compress(data: bytes, kind: compression.Compression, level: int | None = None) -> bytes:
    return b"".join(iter_compress(iter([data]), kind, level))


def _read_all(r: BinaryIO, n: int = CHUNK) -> bytes:
    out = bytearray()
    with r:
        while chunk := r.read(n):
            out += chunk
    return bytes(out)


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [0, 1, 1000, CHUNK - 1, CHUNK + 1, 3 * CHUNK + 7])
def test_round_trip(kind: compression.Compression, size: int) -> None:
    data = _payload(size, size)
    blob = _compress(data, kind)
    assert _read_all(decompressed_reader(_src(blob), kind)) == data
    if size:  # an empty stream sniffs as uncompressed, and decompresses the same either way
        assert detect(blob[:4]) == kind
    assert _read_all(decompressed_reader(_src(blob), None)) == data
    # A stream source gives the same bytes as an iterator source.
    assert b"".join(iter_compress(io.BytesIO(data), kind)) == blob
    assert _read_all(compress_stream(io.BytesIO(data), kind), 4096) == blob


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sizes", [[1], [1, 7, 13], [3, 65536]])
def test_trickling_source(kind: compression.Compression, sizes: list[int]) -> None:
    """Sniffing must not mistake a one-byte first read for an uncompressed stream."""
    data = _payload(200_000, 3)
    blob = _compress(data, kind)
    assert _read_all(decompressed_reader(_src(blob, sizes), None)) == data
    assert _read_all(decompressed_reader(_src(blob, sizes), kind), 777) == data


def test_interoperates_with_reference_implementations() -> None:
    data = _payload(300_000, 5)
    assert gzip.decompress(_compress(data, "gzip")) == data
    assert gzip.decompress(_compress(data, "gzip", 9)) == data
    dctx = zstandard.ZstdDecompressor()
    assert dctx.stream_reader(io.BytesIO(_compress(data, "zstd"))).read() == data
    assert _read_all(decompressed_reader(_src(gzip.compress(data)), None)) == data
    named = io.BytesIO()  # the gzip CLI's header: a file name, an mtime
    with gzip.GzipFile("layer.tar", "wb", 6, named, mtime=1700000000) as g:
        g.write(data)
    assert named.getvalue()[3] & 0x08, "FNAME is set"
    assert _read_all(decompressed_reader(_src(named.getvalue()), None)) == data
    for cctx in (
        zstandard.ZstdCompressor(),
        zstandard.ZstdCompressor(level=19, write_checksum=True),
        zstandard.ZstdCompressor(write_content_size=False),
    ):
        assert _read_all(decompressed_reader(_src(cctx.compress(data)), None)) == data


def test_compression_is_reproducible() -> None:
    data = _payload(100_000, 7)
    for kind in KINDS:
        assert _compress(data, kind) == _compress(data, kind)
    gz = _compress(data, "gzip")
    assert gz[3] & 0x08 == 0, "no file name in the gzip header"
    assert gz[4:8] == b"\0\0\0\0", "mtime 0 in the gzip header"
    assert compression.gzip_bytes(data) == compression.gzip_bytes(data)
    assert gzip.decompress(compression.gzip_bytes(data)) == data


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[i:j] for i, j in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 3 * CHUNK), max_size=6), st.sampled_from(["gzip", "zstd"]))
def test_output_does_not_depend_on_how_the_input_is_split(
    cuts: list[int], kind: compression.Compression
) -> None:
    """isal's deflate output does depend on its input's split, so pycrane re-chunks:
    a layer's digest must be the same whoever reads or writes its tar stream."""
    data = _BIG
    pieces = _split(data, cuts)
    assert b"".join(pieces) == data
    want = _compress(data, kind)
    assert b"".join(iter_compress(iter(pieces), kind)) == want
    pusher = compression.compressobj(kind)
    assert b"".join([*(pusher.compress(p) for p in pieces), pusher.flush()]) == want


_BIG = _payload(2 * CHUNK + 12345, 11)


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=3000).map(lambda b: b * 3),
    st.sampled_from(KINDS),
    st.lists(st.integers(1, 4096), min_size=1, max_size=3),
    st.sampled_from([None, 1, 6, 9]),
)
def test_round_trip_property(
    data: bytes, kind: compression.Compression, sizes: list[int], level: int | None
) -> None:
    lvl = None if level is None else min(level, 3) if kind == "zstd" else level
    blob = _compress(data, kind, lvl)
    hint: compression.Compression | None = kind if not data or kind == "none" else None
    assert _read_all(decompressed_reader(_src(blob, sizes), hint), 1000) == data


# --- multi-member and multi-frame ----------------------------------------------------------------


def _zlib_gzip(data: bytes) -> bytes:
    """zlib's own gzip wrapper (a different header from the gzip module's)."""
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    return z.compress(data) + z.flush()


@pytest.mark.parametrize("sizes", [None, [1], [2, 3], [1000]])
def test_multi_member_gzip(sizes: list[int] | None) -> None:
    parts = [_payload(70_000, 1), b"", b"hello " * 1000, _payload(10, 2)]
    blob = b"".join(
        [
            gzip.compress(parts[0]),
            _compress(parts[1], "gzip"),
            gzip.compress(parts[2], 1, mtime=0),
            _zlib_gzip(parts[3]),
        ]
    )
    want = gzip.decompress(blob)  # the stdlib as oracle
    assert want == b"".join(parts)
    assert _read_all(decompressed_reader(_src(blob, sizes), None), 5000) == want


@pytest.mark.parametrize("sizes", [None, [1], [2, 3], [1000]])
def test_multi_frame_zstd_with_skippable_frames(sizes: list[int] | None) -> None:
    a, b = _payload(70_000, 1), b"hello " * 1000
    skippable = (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"12345"
    empty_skippable = (0x184D2A5F).to_bytes(4, "little") + bytes(4)
    blob = b"".join(
        [
            skippable,
            zstandard.ZstdCompressor().compress(a),
            empty_skippable,
            zstandard.ZstdCompressor(write_checksum=True, write_content_size=False).compress(b),
            zstandard.ZstdCompressor().compress(b""),
        ]
    )
    assert _read_all(decompressed_reader(_src(blob, sizes), "zstd"), 5000) == a + b


# --- truncated, corrupt, padded ---------------------------------------------------------------


def _expect_error(blob: bytes, kind: compression.Compression, fragment: str = "") -> str:
    with pytest.raises(CompressionError) as info:
        _read_all(decompressed_reader(_src(blob), kind), 4096)
    message = str(info.value)
    assert message.isprintable() and message.startswith(f"{kind} stream: ")
    assert fragment in message
    assert isinstance(info.value, ValueError)
    return message


def test_every_truncation_of_gzip_raises() -> None:
    blob = gzip.compress(_payload(3000, 9))
    for cut in range(len(blob)):
        _expect_error(blob[:cut], "gzip")


@pytest.mark.parametrize("checksum", [False, True])
def test_every_truncation_of_zstd_raises(checksum: bool) -> None:
    blob = zstandard.ZstdCompressor(write_checksum=checksum).compress(_payload(3000, 9))
    for cut in range(len(blob)):
        _expect_error(blob[:cut], "zstd")


def test_truncation_in_a_later_member_or_frame_raises() -> None:
    one = gzip.compress(b"first " * 100)
    two = gzip.compress(b"second " * 100)
    # Ending exactly between members is a complete stream...
    assert _read_all(decompressed_reader(_src(one), "gzip")) == b"first " * 100
    # ...ending inside the second is not.
    _expect_error(one + two[:-4], "gzip", "truncated")
    _expect_error(one + two[:5], "gzip")
    z1 = zstandard.ZstdCompressor().compress(b"first " * 100)
    z2 = zstandard.ZstdCompressor().compress(b"second " * 100)
    _expect_error(z1 + z2[:-1], "zstd", "truncated")
    _expect_error(z1 + z2[:3], "zstd", "truncated")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=2000), st.sampled_from(["gzip", "zstd"]), st.data())
def test_truncation_property(
    data: bytes, kind: compression.Compression, draw: st.DataObject
) -> None:
    blob = _compress(data, kind)
    cut = draw.draw(st.integers(0, len(blob) - 1))
    _expect_error(blob[:cut], kind)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_empty_input_is_not_a_compressed_stream(kind: compression.Compression) -> None:
    _expect_error(b"", kind, "truncated")


def test_corrupt_gzip_raises() -> None:
    blob = bytearray(gzip.compress(_payload(20_000, 4)))
    crc = bytearray(blob)
    crc[-6] ^= 0xFF  # the CRC-32 in the trailer
    _expect_error(bytes(crc), "gzip", "corrupt")
    size = bytearray(blob)
    size[-1] ^= 0x01  # ISIZE in the trailer
    _expect_error(bytes(size), "gzip", "corrupt")
    header = bytearray(blob)
    header[2] = 7  # compression method other than deflate
    _expect_error(bytes(header), "gzip", "corrupt")
    for i in range(20, len(blob) - 8, 997):
        body = bytearray(blob)
        body[i] ^= 0x55
        _expect_error(bytes(body), "gzip")


def test_corrupt_zstd_with_checksum_raises() -> None:
    blob = zstandard.ZstdCompressor(write_checksum=True).compress(_payload(20_000, 4))
    for i in range(8, len(blob), 499):
        bad = bytearray(blob)
        bad[i] ^= 0x55
        _expect_error(bytes(bad), "zstd")


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
@pytest.mark.parametrize("tail", [b"\0" * 10, b"garbage!!", b"\0", b"x"])
def test_trailing_bytes_raise(kind: compression.Compression, tail: bytes) -> None:
    """Go's gzip reader (and so containerd and ggcr) rejects these too."""
    _expect_error(_compress(b"payload" * 100, kind) + tail, kind)


def test_close_closes_the_source() -> None:
    for kind in KINDS:
        raw = io.BytesIO(_compress(b"x" * 100, kind))
        with decompressed_reader(raw, None) as r:
            assert r.read() == b"x" * 100
        assert raw.closed


def test_detect() -> None:
    assert detect(b"\x1f\x8b\x08\x00") == "gzip"
    assert detect(b"\x28\xb5\x2f\xfd") == "zstd"
    assert detect(b"\x1f") == "none"
    assert detect(b"") == "none"
    assert detect(b"ustar") == "none"


# --- bounded memory ------------------------------------------------------------------------------


def _zeros(n: int) -> Iterator[bytes]:
    block = bytes(CHUNK)
    for _ in range(n // CHUNK):
        yield block


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_decompressing_a_bomb_stays_in_bounded_memory(kind: compression.Compression) -> None:
    """128 MiB of zeros is ~128 KiB of gzip: one input chunk must not expand all at once."""
    total = 128 * CHUNK
    blob = b"".join(iter_compress(_zeros(total), kind))
    assert len(blob) < total // 100
    tracemalloc.start()
    try:
        got = 0
        with decompressed_reader(io.BytesIO(blob), kind) as r:
            while chunk := r.read(CHUNK):
                got += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == total
    assert peak < 16 * CHUNK, f"peak {peak / CHUNK:.1f} MiB"


def test_compressing_streams_in_bounded_memory() -> None:
    tracemalloc.start()
    try:
        out = 0
        for kind in ("gzip", "zstd"):
            for piece in iter_compress(_zeros(64 * CHUNK), kind):
                out += len(piece)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out > 0
    assert peak < 16 * CHUNK, f"peak {peak / CHUNK:.1f} MiB"


# --- the gzip and zstd command-line tools as reference implementations ---------------------------


def _tool(*argv: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), input=data, capture_output=True, timeout=120, check=False)


@pytest.mark.skipif(not (shutil.which("gzip") and shutil.which("zstd")), reason="needs gzip, zstd")
def test_agrees_with_the_gzip_and_zstd_tools() -> None:
    data = _payload(2 * CHUNK + 999, 21)
    # Ours -> theirs.
    assert _tool("gzip", "-dc", data=_compress(data, "gzip")).stdout == data
    assert _tool("zstd", "-dc", data=_compress(data, "zstd")).stdout == data
    # Theirs -> ours, with the options that change the framing.
    for argv in (
        ["gzip", "-c", "-9"],
        ["gzip", "-c", "-1", "--rsyncable"],
        ["zstd", "-c", "--check"],
        ["zstd", "-c", "--no-check", "-19"],
        ["zstd", "-c", "-T2", "--long"],
    ):
        blob = _tool(*argv, data=data).stdout
        assert _read_all(decompressed_reader(_src(blob, [4096, 1]), None)) == data, argv
    # Both reject the same truncations.
    checks: list[tuple[compression.Compression, list[str]]] = [
        ("gzip", ["gzip", "-t"]),
        ("zstd", ["zstd", "-t"]),
    ]
    for kind, argv in checks:
        blob = _compress(data[:5000], kind)
        for cut in (1, 4, len(blob) // 2, len(blob) - 1):
            assert _tool(*argv, data=blob[:cut]).returncode != 0
            _expect_error(blob[:cut], kind)
        assert _tool(*argv, data=blob).returncode == 0


def test_tiny_reads_from_the_raw_gzip_reader() -> None:
    """Reads smaller than one decompress step are served from what that step produced."""
    data = _payload(300_000, 8)
    reader = compression._GzipReader(_src(_compress(data, "gzip") + gzip.compress(b"tail")))
    out = bytearray()
    buf = bytearray(7)
    while n := reader.readinto(buf):
        out += buf[:n]
    assert bytes(out) == data + b"tail"
