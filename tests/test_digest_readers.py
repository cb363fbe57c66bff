"""verifying() never hashes a stream twice, and a pre-verified spool still checks its size."""

from __future__ import annotations

import io

import pytest

from pycrane.errors import DigestMismatch, SizeMismatch
from pycrane.v1.digest import Digest, PreverifiedReader, VerifyingReader, verifying

DATA = b"0123456789" * 1000
D = Digest.from_bytes(DATA)


def test_verifying_reuses_a_reader_for_the_same_digest() -> None:
    inner = VerifyingReader(io.BytesIO(DATA), D, len(DATA), "blob")
    assert verifying(inner, D, len(DATA), "blob") is inner
    assert verifying(inner, D, None, "blob") is inner


def test_verifying_wraps_a_reader_for_another_digest_or_size() -> None:
    inner = VerifyingReader(io.BytesIO(DATA), D, len(DATA), "blob")
    other = Digest.from_bytes(b"x")
    wrapped = verifying(inner, other, len(DATA), "blob")
    assert wrapped is not inner
    with pytest.raises(DigestMismatch):
        wrapped.read()
    inner2 = VerifyingReader(io.BytesIO(DATA), D, len(DATA), "blob")
    assert verifying(inner2, D, len(DATA) - 1, "blob") is not inner2


def test_verifying_wraps_plain_streams() -> None:
    r = verifying(io.BytesIO(DATA[:-1] + b"x"), D, len(DATA), "blob")
    with pytest.raises(DigestMismatch):
        r.read()


def test_preverified_reader_passes_content_and_sets_verified() -> None:
    r = PreverifiedReader(io.BytesIO(DATA), D, len(DATA), "spool")
    assert r.read() == DATA
    assert r.verified


@pytest.mark.parametrize("content", [DATA[:-1], DATA + b"!"])
def test_preverified_reader_still_checks_size(content: bytes) -> None:
    r = PreverifiedReader(io.BytesIO(content), D, len(DATA), "spool")
    with pytest.raises(SizeMismatch):
        while r.read(4096):
            pass
    assert not r.verified
    with pytest.raises(SizeMismatch):  # the failure sticks
        r.read(1)
