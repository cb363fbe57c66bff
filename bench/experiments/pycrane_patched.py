#!/usr/bin/env python3
"""Run the pycrane CLI with experimental patches of hot paths, to measure a fix before it lands.

    python bench/experiments/pycrane_patched.py single-hash pull --format oci REF DIR
    python bench/experiments/pycrane_patched.py single-hash+falloc pull --format oci REF DIR

``single-hash``: BlobStore trusts an upstream VerifyingReader for the same digest and only
counts bytes, so a pulled blob is hashed once instead of twice. ``falloc``: the temp blob
file is posix_fallocate'd to its known size before writing. Both patch private names of
``pycrane.layout.store`` as of 2026-11-27; if those change, this script must follow.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import pycrane.layout.store as st
from pycrane.v1.digest import VerifyingReader

_tls = threading.local()
_Real = st.DigestHasher


class _SizeOnly:
    """Counts bytes; the digest was already checked by the VerifyingReader upstream."""

    def __init__(self, algorithm: str = "sha256") -> None:
        self.algorithm = algorithm
        self.size = 0

    def update(self, data: Any) -> None:
        self.size += len(data)

    def digest(self) -> Any:
        return _tls.expected

    def verify(self, what: str, expected: Any, expected_size: int | None = None) -> None:
        if expected_size is not None and self.size != expected_size:
            raise RuntimeError(f"{what}: size {self.size}, expected {expected_size}")


def _hasher(algorithm: str = "sha256") -> Any:
    if getattr(_tls, "expected", None) is not None:
        return _SizeOnly(algorithm)
    return _Real(algorithm)


def patch(names: set[str]) -> None:
    orig_write = st.BlobStore._write
    orig_mkstemp = st.BlobStore._mkstemp

    def _write(self: Any, source: Any, digest: Any, size: Any, progress: Any) -> Any:
        trusted = isinstance(source, VerifyingReader) and digest is not None
        _tls.expected = digest if ("single-hash" in names and trusted) else None
        _tls.size = size
        try:
            return orig_write(self, source, digest, size, progress)
        finally:
            _tls.expected = _tls.size = None

    def _mkstemp(self: Any, prefix: str) -> Any:
        f, tmp = orig_mkstemp(self, prefix)
        if "falloc" in names and getattr(_tls, "size", None):
            os.posix_fallocate(f.fileno(), 0, _tls.size)
        return f, tmp

    st.BlobStore._write = _write  # type: ignore[method-assign]
    st.BlobStore._mkstemp = _mkstemp  # type: ignore[method-assign]
    st.DigestHasher = _hasher  # type: ignore[misc, assignment]


if __name__ == "__main__":
    patch(set(sys.argv[1].split("+")))
    sys.argv = ["pycrane", *sys.argv[2:]]
    from pycrane.cli import run

    run()
