"""Writing results to stdout: text lines, and raw bytes untouched (manifests, blobs).

Results go to stdout only; crane prints raw manifests and configs without a trailing
newline, and so do we, so ``pycrane manifest X | sha256sum`` gives the digest.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import click

__all__ = ["binary_stdout", "line", "note", "raw"]


def binary_stdout() -> BinaryIO:
    """The byte stream under ``sys.stdout`` (looked up at call time for redirections)."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        raise click.UsageError("stdout cannot take bytes")
    return buffer  # type: ignore[no-any-return]


def line(text: str) -> None:
    """One result line on stdout."""
    sys.stdout.write(text + "\n")


def raw(data: bytes) -> None:
    """Bytes on stdout exactly as given."""
    out = binary_stdout()
    out.write(data)
    out.flush()


def note(text: str, *, quiet: bool = False) -> None:
    """A diagnostic for people on stderr (never for scripts); silenced by ``-q``."""
    if not quiet:
        sys.stderr.write(f"pycrane: {text}\n")
