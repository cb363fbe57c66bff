"""``pycrane flatten IMAGE``: squash all layers into one (per image of an index)."""

from __future__ import annotations

import click

from pycrane.cli._options import Options, command
from pycrane.cli.commands._publish import push_result, target_ref
from pycrane.crane import image_or_index
from pycrane.name import parse_reference
from pycrane.v1.image import Image, ImageIndex

__all__ = ["flatten"]


@command("flatten")
@click.argument("image")
@click.option("-t", "--tag", help="Push to this tag (default: back to IMAGE).")
def flatten(opts: Options, image: str, tag: str | None) -> None:
    """Flatten IMAGE's layers into one and push it, printing ref@digest.

    On an index every image child is flattened (attestations are dropped), unless
    --platform picks one image.
    """
    from pycrane import mutate as m

    ref = parse_reference(image)
    client = opts.client()
    obj: Image | ImageIndex
    if opts.platforms:
        obj = client.image(ref, platform=opts.platform)
    else:
        obj = image_or_index(ref, client=client)
    result = m.flatten(obj)
    push_result(opts, target_ref(ref, tag, None, result), result)
