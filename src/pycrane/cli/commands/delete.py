"""``pycrane delete IMAGE``."""

from __future__ import annotations

import click

from pycrane.cli._options import Options, command
from pycrane.name import parse_reference

__all__ = ["delete"]


@command("delete")
@click.argument("image")
def delete(opts: Options, image: str) -> None:
    """Delete IMAGE from its registry.

    A tag is resolved to its digest first and that manifest is deleted (registries
    delete manifests by digest), so every tag pointing at it goes too.
    """
    opts.client().delete(parse_reference(image))
