"""``pycrane rebase IMAGE``: swap the base layers of an image for another base's."""

from __future__ import annotations

import click

from pycrane.cli._options import Options, command
from pycrane.cli.commands._publish import push_result, target_ref
from pycrane.name import parse_reference
from pycrane.v1.image import Image

__all__ = ["rebase"]


@command("rebase")
@click.argument("image", required=False)
@click.option("--old_base", help="The base IMAGE was built on (default: its base annotations).")
@click.option("--new_base", help="The base to move onto (default: the base annotation's name).")
@click.option("-t", "--tag", help="Push to this tag (default: back to IMAGE).")
@click.option("--original", hidden=True, help="Deprecated: use IMAGE.")
@click.option("--rebased", hidden=True, help="Deprecated: use -t.")
def rebase(
    opts: Options,
    image: str | None,
    old_base: str | None,
    new_base: str | None,
    tag: str | None,
    original: str | None,
    rebased: str | None,
) -> None:
    """Rebase IMAGE from --old_base onto --new_base and push it, printing ref@digest.

    The old base's layers must be a prefix of IMAGE's; without --old_base/--new_base
    they are read from the org.opencontainers.image.base.* annotations.
    """
    from pycrane import mutate as m

    image = image or original
    tag = tag or rebased
    if not image:
        raise click.UsageError("missing argument 'IMAGE'")
    ref = parse_reference(image)
    client = opts.client()

    def resolve(name: str) -> Image:
        return client.image(parse_reference(name), platform=opts.platform)

    img = resolve(image)
    result = m.rebase(
        img,
        resolve(old_base) if old_base else None,
        resolve(new_base) if new_base else None,
        resolve=resolve,
    )
    push_result(opts, target_ref(ref, tag, None, result), result)
