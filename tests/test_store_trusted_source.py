"""A self-verifying source (a remote layer's stream) is not hashed twice, and still
cannot get a bad blob published."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pycrane.errors import DigestMismatch, SizeMismatch, StoreError
from pycrane.layout import BlobStore
from pycrane.v1.digest import Digest, VerifyingReader

DATA = b"layer bytes " * 10000
GOOD = Digest.from_bytes(DATA)


def _visible(store: BlobStore) -> list[Digest]:
    return list(store.digests())


def test_trusted_source_publishes_verified_content(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, fsync=False)
    src = VerifyingReader(io.BytesIO(DATA), GOOD, len(DATA), "layer")
    assert store.put(src, digest=GOOD, size=len(DATA)) == (GOOD, len(DATA))
    assert src.verified
    assert store.read_bytes(GOOD) == DATA


def test_corrupt_trusted_source_publishes_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, fsync=False)
    bad = bytearray(DATA)
    bad[5000] ^= 1
    src = VerifyingReader(io.BytesIO(bytes(bad)), GOOD, len(DATA), "layer")
    with pytest.raises(DigestMismatch):
        store.put(src, digest=GOOD, size=len(DATA))
    assert _visible(store) == []
    with pytest.raises(DigestMismatch):  # the verdict sticks: no clean EOF on a retry
        src.read(10)


def test_long_trusted_source_publishes_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, fsync=False)
    src = VerifyingReader(io.BytesIO(DATA + b"x"), GOOD, len(DATA), "layer")
    with pytest.raises(SizeMismatch):
        store.put(src, digest=GOOD, size=len(DATA))
    assert _visible(store) == []


class _StopsEarly(VerifyingReader):
    """A reader that claims EOF without ever checking: the store must not trust it."""

    def read(self, n: int = -1) -> bytes:
        return b""


def test_source_that_never_verified_is_refused(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, fsync=False)
    src = _StopsEarly(io.BytesIO(DATA), GOOD, 0, "layer")
    with pytest.raises(StoreError, match="before its digest was checked"):
        store.put(src, digest=GOOD, size=0)
    assert _visible(store) == []


def test_reader_for_another_digest_is_hashed_by_the_store(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, fsync=False)
    other = Digest.from_bytes(b"other")
    # The reader would accept DATA as GOOD, but the caller asks for `other`: the store
    # must hash the bytes itself and refuse them.
    src = VerifyingReader(io.BytesIO(DATA), GOOD, len(DATA), "layer")
    with pytest.raises(DigestMismatch):
        store.put(src, digest=other, size=len(DATA))
    assert _visible(store) == []
