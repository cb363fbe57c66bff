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

from pycrane.errors import ErrorCode

__all__ = ["CODES", "MAX_TEXT", "ApiError"]

#: Messages and detail strings longer than this are cut: they may quote client input.
MAX_TEXT = 1024


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + "..."
    return value


#: code -> (HTTP status, the spec's message), from the vocabulary the client shares.
CODES: dict[str, tuple[int, str]] = {c.value: (c.status, c.message) for c in ErrorCode}


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
        self.message = _cut(message or default_message)
        if isinstance(detail, dict):
            detail = {k: _cut(v) for k, v in detail.items()}
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
