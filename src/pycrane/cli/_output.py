"""Writing results to stdout: text lines, and raw bytes untouched (manifests, blobs).

Results go to stdout only; crane prints raw manifests and configs without a trailing
newline, and so do we, so ``pycrane manifest X | sha256sum`` gives the digest.

A broken pipe on *stdout* (``pycrane ls R | head -1``) is not an error worth a line;
a broken pipe anywhere else (a registry connection) is. So every write to stdout
goes through here and turns EPIPE into :class:`StdoutClosed`.
"""

from __future__ import annotations

import io
import sys
from typing import Any, BinaryIO

import click

__all__ = ["StdoutClosed", "binary_stdout", "flush", "line", "note", "raw"]


class StdoutClosed(Exception):
    """Whoever read our stdout went away."""


def flush() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise StdoutClosed from None


class _BinaryStdout(io.RawIOBase):
    """The byte stream under ``sys.stdout``, reporting a closed reader as StdoutClosed."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b: Any) -> int:
        try:
            n = self._raw.write(b)
        except BrokenPipeError:
            raise StdoutClosed from None
        return len(b) if n is None else n

    def flush(self) -> None:
        try:
            self._raw.flush()
        except BrokenPipeError:
            raise StdoutClosed from None

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:  # never close the process's stdout
        self.flush()


def binary_stdout() -> BinaryIO:
    """A byte stream onto ``sys.stdout`` (looked up at call time for redirections)."""
    flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        raise click.UsageError("stdout cannot take bytes")
    return _BinaryStdout(buffer)  # type: ignore[return-value]


def line(text: str) -> None:
    """One result line on stdout."""
    try:
        sys.stdout.write(text + "\n")
    except BrokenPipeError:
        raise StdoutClosed from None


def raw(data: bytes) -> None:
    """Bytes on stdout exactly as given."""
    out = binary_stdout()
    out.write(data)
    out.flush()


def note(text: str, *, quiet: bool = False) -> None:
    """A diagnostic for people on stderr (never for scripts); silenced by ``-q``."""
    if not quiet:
        sys.stderr.write(f"pycrane: {text}\n")
