"""``pycrane append``: add tarballs as layers on top of a base image (or scratch)."""

from __future__ import annotations

import sys

import click

from pycrane.cli._flags import slice_option
from pycrane.cli._options import Options, command
from pycrane.cli.commands._publish import push_result, save_tarball
from pycrane.name import parse_reference
from pycrane.v1 import mediatypes as mt
from pycrane.v1.image import Image, Layer

__all__ = ["append", "load_layers"]


def load_layers(paths: tuple[str, ...]) -> list[Layer]:
    """Layers from tar files (plain, gzip or zstd); ``-`` streams one from stdin.

    A Docker base gets Docker layer media types from :func:`pycrane.mutate.append_layers`.
    """
    from pycrane import tarball

    if paths.count("-") > 1:
        raise click.UsageError("stdin ('-') can be given as a layer only once")
    return [
        tarball.layer_from_reader(sys.stdin.buffer) if p == "-" else tarball.layer_from_file(p)
        for p in paths
    ]


@command("append")
@click.option("-b", "--base", default="", help="Base image (default: an empty image, scratch).")
@slice_option(
    "-f",
    "--new_layer",
    "new_layers",
    required=True,
    help="Tarball to append as a layer (repeatable, comma lists; '-' reads stdin).",
)
@click.option("-t", "--new_tag", help="Tag to push the result to.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write a tarball instead.")
@click.option(
    "--set-base-image-annotations",
    is_flag=True,
    help="Record the base's name and digest in the manifest annotations.",
)
@click.option("--oci-empty-base", is_flag=True, help="Use an OCI (not Docker) empty base.")
def append(
    opts: Options,
    base: str,
    new_layers: list[str],
    new_tag: str | None,
    output: str | None,
    set_base_image_annotations: bool,
    oci_empty_base: bool,
) -> None:
    """Append layers to a base image and push it to --new_tag (printing ref@digest)."""
    from pycrane import mutate
    from pycrane.empty import empty_image

    if not new_tag and not output:
        raise click.UsageError("give -t/--new_tag to push, or -o/--output to write a tarball")
    base_img: Image
    if base:
        base_ref = parse_reference(base)
        base_img = opts.client().image(base_ref, platform=opts.platform)
    else:
        base_img = empty_image(
            opts.platform, media_type=mt.OCI_MANIFEST if oci_empty_base else mt.DOCKER_MANIFEST
        )
    img: Image = mutate.append_layers(base_img, load_layers(tuple(new_layers)))
    if set_base_image_annotations and base:
        img = mutate.annotations(
            img,
            {
                mutate.ANNOTATION_BASE_NAME: str(base_ref),
                mutate.ANNOTATION_BASE_DIGEST: str(base_img.digest()),
            },
        )
    if output:
        save_tarball(output, new_tag, img)
        return
    assert new_tag is not None
    push_result(opts, parse_reference(new_tag), img)
