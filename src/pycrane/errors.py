"""pycrane's exception tree.

Every error pycrane raises on purpose derives from :class:`PycraneError`, and its
``str()`` is one line that names the thing at fault and what was expected, so the
CLI can print it as is::

    PycraneError
    ├── InvalidReference        a malformed image reference (ValueError)
    ├── InvalidDigest           a malformed digest string (ValueError)
    ├── InvalidPlatform         a malformed platform string (ValueError)
    ├── ManifestError           a manifest, index or config that does not parse
    ├── CompressionError        a gzip or zstd stream that is truncated or corrupt (ValueError)
    ├── VerificationError       bytes that do not match their descriptor
    │   ├── DigestMismatch
    │   └── SizeMismatch
    ├── NotFoundError           a blob, manifest, tag or layout entry that is not there
    ├── NoMatchingPlatform      an index without a child for the wanted platform
    ├── StoreError              the blob store or OCI layout on disk failed
    │   └── LockTimeout         the layout lock could not be taken in time
    ├── TarballError            a docker-save tarball that is malformed
    ├── UnsafePathError         a tar entry that would escape its target
    ├── TransportError          the network failed (connection, TLS, timeout)
    └── RegistryError           a registry answered with an error status
        ├── AuthenticationError 401, or a token exchange that failed
        └── PermissionDenied    403
"""

from __future__ import annotations

__all__ = [
    "CompressionError",
    "DigestMismatch",
    "InvalidDigest",
    "InvalidPlatform",
    "InvalidReference",
    "LockTimeout",
    "ManifestError",
    "NoMatchingPlatform",
    "NotFoundError",
    "PycraneError",
    "RegistryError",
    "AuthenticationError",
    "PermissionDenied",
    "SizeMismatch",
    "StoreError",
    "TarballError",
    "TransportError",
    "UnsafePathError",
    "VerificationError",
]


class PycraneError(Exception):
    """Base of every error pycrane raises on purpose."""


class InvalidReference(PycraneError, ValueError):
    """An image reference does not follow the distribution reference grammar."""


class InvalidDigest(PycraneError, ValueError):
    """A digest string is not ``algorithm:hex`` with a known algorithm and length."""


class InvalidPlatform(PycraneError, ValueError):
    """A platform string is not ``os/arch[/variant][:osversion]``."""


class ManifestError(PycraneError, ValueError):
    """A manifest, index or config document is malformed; the message names the field."""


class CompressionError(PycraneError, ValueError):
    """A gzip or zstd stream is truncated, corrupt, or followed by garbage."""


class VerificationError(PycraneError):
    """Content does not match the descriptor it was fetched or written for."""


class DigestMismatch(VerificationError):
    """The bytes hash to another digest than the one expected."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: digest mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class SizeMismatch(VerificationError):
    """The content has another length than the one expected."""

    def __init__(self, what: str, expected: int, actual: int) -> None:
        super().__init__(f"{what}: size mismatch: expected {expected} bytes, got {actual}")
        self.expected = expected
        self.actual = actual


class NotFoundError(PycraneError, LookupError):
    """A blob, manifest, tag or layout entry does not exist."""


class NoMatchingPlatform(NotFoundError):
    """An index has no child for the requested platform."""


class StoreError(PycraneError, OSError):
    """The blob store or OCI layout on disk could not be read or written."""


class LockTimeout(StoreError):
    """A cross-process lock could not be taken within its timeout."""


class TarballError(PycraneError, ValueError):
    """A ``docker save`` tarball is malformed."""


class UnsafePathError(PycraneError, ValueError):
    """A tar entry has an absolute path, ``..``, or a link that escapes its root."""


class TransportError(PycraneError):
    """A connection, TLS handshake or timeout failed before a registry could answer."""


class RegistryError(PycraneError):
    """A registry answered with an error status.

    ``errors`` holds the ``(code, message)`` pairs of the distribution-spec error
    body, when the registry sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errors: tuple[tuple[str, str], ...] = (),
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors
        self.url = url

    @property
    def codes(self) -> tuple[str, ...]:
        """The distribution-spec error codes, e.g. ``("MANIFEST_UNKNOWN",)``."""
        return tuple(code for code, _ in self.errors)


class AuthenticationError(RegistryError):
    """The registry refused our credentials (401), or a token exchange failed."""


class PermissionDenied(RegistryError):
    """The registry understood who we are and refused the operation (403)."""
