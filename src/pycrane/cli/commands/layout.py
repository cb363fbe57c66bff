"""``pycrane layout gc LAYOUT``: remove blobs an OCI layout no longer references."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from pycrane.cli import _output as out
from pycrane.cli._options import Options, command, group

if TYPE_CHECKING:
    from pycrane.layout import StaleIngest

__all__ = ["ingest_note", "layout"]


@group("layout")
def layout(opts: Options) -> None:
    """Maintain OCI image layouts on disk."""


@command("gc")
@click.argument("path", metavar="LAYOUT", type=click.Path(exists=True, file_okay=False))
def gc(opts: Options, path: str) -> None:
    """Delete the blobs of LAYOUT that index.json no longer reaches; print their digests.

    It holds the layout's lock, so concurrent pycrane writers neither lose a blob
    nor see a half-collected layout (crane's hidden ``layout gc`` has no lock). It
    also removes what writers that are gone left in LAYOUT/ingest (partial downloads
    of interrupted pulls included) and says so on stderr; a live writer's files
    are never touched.
    """
    from pycrane.layout import Layout

    result = Layout.open(path).gc()
    for digest in result:
        out.line(str(digest))
    note = ingest_note(path, result.ingests)
    if note:
        out.note(note, quiet=opts.quiet)


def ingest_note(path: str, ingests: Sequence[StaleIngest]) -> str | None:
    """One line on what dead writers left in a layout's ingest/ (removed or kept)."""
    removed = [e for e in ingests if e.removed and e.kind != "lock"]
    kept = [e for e in ingests if not e.removed and e.kind == "partial"]
    parts = []
    if removed:
        mib = sum(e.size for e in removed) / (1 << 20)
        parts.append(
            f"removed {len(removed)} files ({mib:.1f} MiB) that writers which are gone "
            f"left in {os.path.join(path, 'ingest')}"
        )
    if kept:
        mib = sum(e.size for e in kept) / (1 << 20)
        parts.append(
            f"{len(kept)} partial downloads ({mib:.1f} MiB) wait in "
            f"{os.path.join(path, 'ingest')} for a pull to resume them "
            f"('pycrane layout gc {path}' removes them)"
        )
    return "; ".join(parts) or None


layout.add_command(gc)
