"""Content digests (``sha256:<hex>``, ``sha512:<hex>``) and streaming hashers.

A digest is always computed over the exact bytes stored or sent: pycrane never
re-serialises a document before hashing it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from pycrane.errors import DigestMismatch, InvalidDigest, SizeMismatch

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = [
    "ALGORITHMS",
    "Digest",
    "DigestHasher",
    "PreverifiedReader",
    "VerifyingReader",
    "sha256",
    "verifying",
]

#: Supported algorithms and the length of their hex encoding.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}

_HEX = re.compile(r"[a-f0-9]+\Z")


@dataclass(frozen=True, order=True)
class Digest:
    """A validated content digest such as ``sha256:e3b0c442...``.

    ```python
    d = Digest.parse("sha256:" + "a" * 64)
    d.algorithm  # "sha256"
    d.hex        # "aaaa..."
    str(d)       # "sha256:aaaa..."
    ```
    """

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        if not isinstance(self.algorithm, str) or not isinstance(self.hex, str):
            raise InvalidDigest(f"digest {self.algorithm!r}:{self.hex!r}: expected strings")
        want = ALGORITHMS.get(self.algorithm)
        if want is None:
            shown = f"{self.algorithm}:{self.hex[:16]}" + ("..." if len(self.hex) > 16 else "")
            raise InvalidDigest(
                f"digest {shown!r}: unsupported algorithm "
                f"{self.algorithm!r} (expected one of {', '.join(ALGORITHMS)})"
            )
        if len(self.hex) != want or not _HEX.match(self.hex):
            raise InvalidDigest(
                f"digest {self.algorithm + ':' + self.hex!r}: "
                f"expected {want} lowercase hex characters"
            )

    @classmethod
    def parse(cls, value: str | Digest) -> Digest:
        """Parse ``algorithm:hex``; raise :class:`InvalidDigest` naming the input."""
        if isinstance(value, Digest):
            return value
        if not isinstance(value, str):
            raise InvalidDigest(f"digest {value!r}: expected a string 'algorithm:hex'")
        alg, sep, hexpart = value.partition(":")
        if not sep or not alg or not hexpart:
            raise InvalidDigest(f"digest {value!r}: expected 'algorithm:hex'")
        return cls(alg, hexpart)

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data``."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> DigestHasher:
        """A fresh hasher of this digest's algorithm."""
        return DigestHasher(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def sha256(data: bytes) -> Digest:
    """Shorthand for ``Digest.from_bytes(data)``."""
    return Digest.from_bytes(data, "sha256")


class DigestHasher:
    """Incremental hasher that also counts bytes, so size and digest come together."""

    __slots__ = ("_h", "algorithm", "size")

    def __init__(self, algorithm: str = "sha256") -> None:
        if algorithm not in ALGORITHMS:
            raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._h: _Hash = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._h.hexdigest())

    def verify(self, what: str, expected: Digest, expected_size: int | None = None) -> None:
        """Raise :class:`SizeMismatch` or :class:`DigestMismatch` unless the content matches."""
        if expected_size is not None and expected_size >= 0 and self.size != expected_size:
            raise SizeMismatch(what, expected_size, self.size)
        actual = self.digest()
        if actual != expected:
            raise DigestMismatch(what, str(expected), str(actual))


class VerifyingReader:
    """A read-only stream that checks size and digest when it reaches EOF.

    Reading past the expected size, or hitting EOF with the wrong digest, raises a
    :class:`~pycrane.errors.VerificationError` from ``read`` itself, so a consumer
    can never mistake bad content for a clean end of stream.
    """

    def __init__(self, raw: BinaryIO, expected: Digest, size: int | None, what: str) -> None:
        self._raw = raw
        self._expected = expected
        self._size = size if size is not None and size >= 0 else None
        self._what = what
        self._hasher = expected.hasher()
        self._done = False
        self._verified = False
        self._error: BaseException | None = None

    @property
    def expected(self) -> Digest:
        """The digest the content must have."""
        return self._expected

    @property
    def expected_size(self) -> int | None:
        """The size the content must have, when known."""
        return self._size

    @property
    def verified(self) -> bool:
        """True once EOF was reached and size and digest matched.

        A consumer that lets this reader do the checking (instead of hashing the
        bytes a second time) must see ``verified`` before trusting what it read.
        """
        return self._verified

    def read(self, n: int = -1) -> bytes:
        if self._error is not None:
            # A failed check stays failed: a retrying consumer never sees a clean EOF.
            raise self._error
        if n is None or n < 0:
            # "Read everything" must end at EOF, where the digest is checked.
            parts = []
            while chunk := self.read(1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        if self._done or n == 0:
            return b""
        if self._size is not None:
            remaining = self._size - self._hasher.size
            # Read one byte beyond the expected size to detect overlong content.
            n = remaining + 1 if n < 0 else min(n, remaining + 1)
        data = self._raw.read(n)
        if data:
            self._hasher.update(data)
            if self._size is not None and self._hasher.size > self._size:
                self._error = SizeMismatch(self._what, self._size, self._hasher.size)
                raise self._error
            return data
        self._done = True
        try:
            self._hasher.verify(self._what, self._expected, self._size)
        except BaseException as e:
            self._error = e
            raise
        self._verified = True
        return b""

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(buf))
        memoryview(buf)[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def readable(self) -> bool:
        return True


class PreverifiedReader(VerifyingReader):
    """A stream of content that was already verified on its way into a private file.

    Used for spool files that only this process can reach: checking their size is
    enough, and hashing them again would cost as much CPU as the download did.
    """

    def read(self, n: int = -1) -> bytes:
        if self._error is not None:
            raise self._error
        if n is None or n < 0:
            return super().read(n)
        if self._done or n == 0:
            return b""
        data = self._raw.read(n)
        self._hasher.size += len(data)
        if self._size is not None and self._hasher.size > self._size:
            self._error = SizeMismatch(self._what, self._size, self._hasher.size)
            raise self._error
        if data:
            return data
        self._done = True
        if self._size is not None and self._hasher.size != self._size:
            self._error = SizeMismatch(self._what, self._size, self._hasher.size)
            raise self._error
        self._verified = True
        return b""


def verifying(raw: BinaryIO, expected: Digest, size: int | None, what: str) -> VerifyingReader:
    """``raw`` checked against ``expected`` at EOF, without hashing twice.

    A stream that already verifies exactly this digest (a remote layer, a
    pre-verified spool) is returned as is; anything else is wrapped.
    """
    if (
        isinstance(raw, VerifyingReader)
        and raw.expected == expected
        and (size is None or size < 0 or raw.expected_size in (None, size))
    ):
        return raw
    return VerifyingReader(raw, expected, size, what)
