"""``pycrane rebase IMAGE``: swap the base layers of an image for another base's."""

from __future__ import annotations

import click

from pycrane.cli._options import Options, command
from pycrane.cli.commands._publish import push_result, target_ref
from pycrane.name import parse_reference

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
    img = client.image(ref, platform=opts.platform)
    old = client.image(parse_reference(old_base), platform=opts.platform) if old_base else None
    new = client.image(parse_reference(new_base), platform=opts.platform) if new_base else None
    if old is None or new is None:
        anns = img.manifest().annotations
        base_name = anns.get("org.opencontainers.image.base.name")
        base_digest = anns.get("org.opencontainers.image.base.digest")
        if new is None:
            if not base_name:
                raise click.UsageError(
                    f"{image}: no --new_base and no org.opencontainers.image.base.name annotation"
                )
            new = client.image(parse_reference(base_name), platform=opts.platform)
        if old is None:
            if not base_name or not base_digest:
                raise click.UsageError(
                    f"{image}: no --old_base and no org.opencontainers.image.base.* annotations"
                )
            old_ref = parse_reference(base_name).repository.digest(base_digest)
            old = client.image(old_ref, platform=opts.platform)
    result = m.rebase(img, old, new)
    push_result(opts, target_ref(ref, tag, None, result), result)
