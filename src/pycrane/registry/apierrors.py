"""Distribution-spec error codes, and the exception the handler turns into a JSON error body.

Every failure a client can cause is raised as :class:`ApiError` deep inside the
storage or manifest code and rendered once, by the handler, as
``{"errors": [{"code", "message", "detail"}]}`` with the code's HTTP status, so
the wire format lives in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["CODES", "ApiError"]

#: code -> (HTTP status, the spec's message)
CODES: dict[str, tuple[int, str]] = {
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


class ApiError(Exception):
    """A client-visible failure: one spec error code, an HTTP status and extra headers.

    ```python
    raise ApiError("BLOB_UNKNOWN", detail={"digest": str(d)})
    raise ApiError("RANGE_INVALID", headers={"Range": "0-99"})
    ```
    """

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        detail: Any = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        also: tuple[ApiError, ...] = (),
    ) -> None:
        default_status, default_message = CODES[code]
        self.code = code
        self.message = message or default_message
        self.detail = detail
        self.status = status or default_status
        self.headers = dict(headers or {})
        self.also = also
        super().__init__(f"{self.status} {code}: {self.message}")

    def body(self) -> bytes:
        """The spec-shaped JSON document; ``also`` adds more errors (e.g. every unknown blob)."""
        errs = [
            {
                "code": e.code,
                "message": e.message,
                "detail": e.detail if e.detail is not None else {},
            }
            for e in (self, *self.also)
        ]
        return json.dumps({"errors": errs}).encode()
