"""``pycrane digest``, ``manifest`` and ``config``: read-only looks at one image."""

from __future__ import annotations

import click

from pycrane.cli import _output as out
from pycrane.cli._options import Options, command
from pycrane.name import parse_reference

__all__ = ["config", "digest", "manifest"]


@command("digest")
@click.argument("image", required=False)
@click.option("--full-ref", is_flag=True, help="Print the full image reference by digest.")
@click.option(
    "--tarball",
    type=click.Path(dir_okay=False),
    help="Read the image from this docker-save tarball (IMAGE then picks a tag in it).",
)
def digest(opts: Options, image: str | None, full_ref: bool, tarball: str | None) -> None:
    """Print the digest of IMAGE (of the child for --platform when IMAGE is an index)."""
    if tarball is not None:
        from pycrane.tarball import image_from_path

        img = image_from_path(tarball, tag=image) if image else image_from_path(tarball)
        if full_ref:
            raise click.UsageError("--full-ref needs a registry reference, not --tarball")
        out.line(str(img.digest()))
        return
    if image is None:
        raise click.UsageError("missing argument 'IMAGE'")
    from pycrane import remote

    ref = parse_reference(image)
    d = remote.digest(ref, platform=opts.platform, client=opts.client())
    out.line(f"{ref.repository.name}@{d}" if full_ref else str(d))


@command("manifest")
@click.argument("image")
def manifest(opts: Options, image: str) -> None:
    """Print the raw manifest of IMAGE (of the child for --platform when it is an index)."""
    from pycrane import remote

    out.raw(remote.manifest(parse_reference(image), platform=opts.platform, client=opts.client()))


@command("config")
@click.argument("image")
def config(opts: Options, image: str) -> None:
    """Print the raw config of IMAGE (an index resolves to --platform, else linux/amd64)."""
    from pycrane import remote

    out.raw(remote.config(parse_reference(image), platform=opts.platform, client=opts.client()))
