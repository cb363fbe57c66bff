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
        ├── PermissionDenied    403
        └── RegistryNotFound    404 (also a NotFoundError)

:class:`ErrorCode` lists the distribution spec's error codes; the client reads them
from error bodies and pycrane's registry server writes them, so both speak one
vocabulary. ``is_temporary()`` on :class:`TransportError` and :class:`RegistryError`
is the one answer to "is this worth retrying?".
"""

from __future__ import annotations

import enum

__all__ = [
    "AuthenticationError",
    "CompressionError",
    "DigestMismatch",
    "ErrorCode",
    "InvalidDigest",
    "InvalidPlatform",
    "InvalidReference",
    "LockTimeout",
    "ManifestError",
    "NoMatchingPlatform",
    "NotFoundError",
    "PycraneError",
    "PermissionDenied",
    "RegistryError",
    "RegistryNotFound",
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


class ErrorCode(str, enum.Enum):
    """The distribution spec's error codes; ``status`` and ``message`` are what each implies.

    A ``str`` enum, so ``ErrorCode.BLOB_UNKNOWN == "BLOB_UNKNOWN"`` and a code read
    from a registry's error body compares with it directly.
    """

    BLOB_UNKNOWN = "BLOB_UNKNOWN"
    BLOB_UPLOAD_INVALID = "BLOB_UPLOAD_INVALID"
    BLOB_UPLOAD_UNKNOWN = "BLOB_UPLOAD_UNKNOWN"
    DIGEST_INVALID = "DIGEST_INVALID"
    MANIFEST_BLOB_UNKNOWN = "MANIFEST_BLOB_UNKNOWN"
    MANIFEST_INVALID = "MANIFEST_INVALID"
    MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
    NAME_INVALID = "NAME_INVALID"
    NAME_UNKNOWN = "NAME_UNKNOWN"
    SIZE_INVALID = "SIZE_INVALID"
    TAG_INVALID = "TAG_INVALID"
    UNAUTHORIZED = "UNAUTHORIZED"
    DENIED = "DENIED"
    UNSUPPORTED = "UNSUPPORTED"
    TOOMANYREQUESTS = "TOOMANYREQUESTS"
    RANGE_INVALID = "RANGE_INVALID"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    PAGINATION_NUMBER_INVALID = "PAGINATION_NUMBER_INVALID"
    UNKNOWN = "UNKNOWN"

    @property
    def status(self) -> int:
        """The HTTP status the spec pairs with this code."""
        return _CODE_INFO[self.value][0]

    @property
    def message(self) -> str:
        """The spec's message for this code."""
        return _CODE_INFO[self.value][1]

    def __str__(self) -> str:
        return self.value

    @classmethod
    def lookup(cls, code: str) -> ErrorCode:
        """The member for ``code``; unknown codes (vendor extensions) map to UNKNOWN."""
        try:
            return cls(code)
        except ValueError:
            return cls.UNKNOWN


_CODE_INFO: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "RANGE_INVALID": (416, "invalid content range"),
    "PAYLOAD_TOO_LARGE": (413, "payload too large"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    "UNKNOWN": (500, "unknown error"),
}

#: HTTP statuses worth retrying: timeouts, rate limits, gateways and servers catching up.
TEMPORARY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class TransportError(PycraneError):
    """A connection, TLS handshake or timeout failed before a registry could answer.

    ``temporary`` is False for failures that an identical retry cannot cure (a
    certificate error, a host name the resolver says does not exist). ``kind`` says
    where it failed: ``"connect"`` (nothing accepted the connection), ``"dns"``,
    ``"tls"``, ``"timeout"`` (connected, then no answer in time), ``"read"`` (a body
    broke off), ``"protocol"``, or None; ``host`` is the host that failed.
    """

    def __init__(
        self,
        message: str,
        *,
        temporary: bool = True,
        kind: str | None = None,
        host: str | None = None,
    ) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.kind = kind
        self.host = host

    def is_temporary(self) -> bool:
        return self.temporary


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

    def has_code(self, *codes: ErrorCode) -> bool:
        """Whether the error body carries one of ``codes``."""
        return any(c in self.codes for c in codes)

    def is_temporary(self) -> bool:
        """Whether the same request may succeed later (retryable status or TOOMANYREQUESTS)."""
        return self.status in TEMPORARY_STATUSES or self.has_code(ErrorCode.TOOMANYREQUESTS)


class AuthenticationError(RegistryError):
    """The registry refused our credentials (401), or a token exchange failed."""


class PermissionDenied(RegistryError):
    """The registry understood who we are and refused the operation (403)."""


class RegistryNotFound(RegistryError, NotFoundError):
    """A registry answered 404 (manifest, blob, repository or tag unknown)."""
