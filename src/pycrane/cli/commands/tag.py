"""``pycrane tag IMG TAG``: a new tag for a remote manifest, in the same repository."""

from __future__ import annotations

import click

from pycrane.cli._options import Options, command
from pycrane.name import parse_reference

__all__ = ["tag"]


@command("tag")
@click.argument("img")
@click.argument("new_tag", metavar="TAG")
def tag(opts: Options, img: str, new_tag: str) -> None:
    """Tag IMG with TAG in its repository, without downloading any layer.

    Unlike ``copy``, this only re-puts the manifest; it is the cheap way to add a tag.
    """
    ref = parse_reference(img)
    opts.client().tag(ref, new_tag)
