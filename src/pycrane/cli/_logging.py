"""stderr logging for the ``pycrane`` logger: warnings always, DEBUG with ``-v``.

The library only logs; the CLI decides where it goes. A redacting filter sits in front
of the handler as a second line of defence: credentials must never reach a terminal
or a CI log even if a library message slips one through.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from typing import Any

__all__ = ["REDACTED", "LogSetup", "redact"]

REDACTED = "<redacted>"


@functools.cache
def _patterns() -> tuple[re.Pattern[str], ...]:
    # Compiled on first use: most runs log nothing and fail nowhere (~0.7 ms saved).
    return (
        # Authorization: Basic xxx / Bearer xxx (header dumps and exception messages)
        re.compile(r"(?i)\b(authorization:?\s*[\"']?\s*(?:basic|bearer)\s+)[^\s\"',}]+"),
        re.compile(r"(?i)\b((?:basic|bearer)\s+)[A-Za-z0-9._~+/=-]{12,}"),
        # token=..., access_token=..., password=..., refresh_token=... in URLs and form bodies
        re.compile(
            r"(?i)\b((?:access_token|refresh_token|id_token|token|password|secret)[\"']?\s*[=:]\s*[\"']?)"
            r"[^&\s\"',}]+"
        ),
        # user:password@host in URLs
        re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(@)"),
    )


def redact(text: str) -> str:
    """Replace credentials in ``text`` with a placeholder."""
    for pattern in _patterns():
        if pattern.groups == 2:
            text = pattern.sub(lambda m: m.group(1) + REDACTED + m.group(2), text)
        else:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class _RedactingFormatter(logging.Formatter):
    """Redacts credentials; the quiet format reads ``pycrane: warning: <message>``."""

    def __init__(self, verbose: bool) -> None:
        fmt = (
            "%(levelname)s %(name)s: %(message)s" if verbose else "pycrane: %(level)s: %(message)s"
        )
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.level = record.levelname.lower()
        return redact(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time.

    While progress bars are live, rich swaps ``sys.stderr`` for a proxy that prints
    above the bars; a handler holding the original stream would tear them.
    """

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class LogSetup:
    """Attach (and later detach) one stderr handler to the ``pycrane`` logger.

    Detaching matters for :func:`pycrane.cli.main`, which may run many times in one
    process (tests): handlers must not pile up.
    """

    def __init__(self) -> None:
        self._logger = logging.getLogger("pycrane")
        self._handler: logging.Handler | None = None
        self._old_level = self._logger.level
        self._old_propagate = self._logger.propagate

    def install(self, *, verbose: bool = False) -> None:
        if self._handler is None:
            handler = _StderrHandler()
            self._logger.addHandler(handler)
            self._logger.propagate = False
            self._handler = handler
        self.set_verbose(verbose)

    def set_verbose(self, verbose: bool) -> None:
        if self._handler is None:
            return
        level = logging.DEBUG if verbose else logging.WARNING
        self._handler.setFormatter(_RedactingFormatter(verbose))
        self._handler.setLevel(level)
        self._logger.setLevel(level)

    def uninstall(self) -> None:
        if self._handler is not None:
            self._logger.removeHandler(self._handler)
            self._handler = None
        self._logger.setLevel(self._old_level)
        self._logger.propagate = self._old_propagate
