"""``pycrane layout gc LAYOUT``: remove blobs an OCI layout no longer references."""

from __future__ import annotations

import click

from pycrane.cli import _output as out
from pycrane.cli._options import Options, command, group

__all__ = ["layout"]


@group("layout")
def layout(opts: Options) -> None:
    """Maintain OCI image layouts on disk."""


@command("gc")
@click.argument("path", metavar="LAYOUT", type=click.Path(exists=True, file_okay=False))
def gc(opts: Options, path: str) -> None:
    """Delete the blobs of LAYOUT that index.json no longer reaches; print their digests.

    It holds the layout's lock, so concurrent pycrane writers neither lose a blob
    nor see a half-collected layout (crane's hidden ``layout gc`` has no lock).
    """
    from pycrane.layout import Layout

    for digest in Layout.open(path).gc():
        out.line(str(digest))


layout.add_command(gc)
