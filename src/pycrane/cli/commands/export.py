"""``pycrane export IMAGE|- TARBALL|-``: the flattened filesystem of an image as one tar."""

from __future__ import annotations

import sys

import click

from pycrane.cli import _output as out
from pycrane.cli._options import Options, command
from pycrane.name import parse_reference
from pycrane.v1.image import Image

__all__ = ["export"]


@command("export")
@click.argument("image", metavar="IMAGE|-")
@click.argument("tarball", metavar="TARBALL|-", default="-")
def export(opts: Options, image: str, tarball: str) -> None:
    """Write IMAGE's filesystem (whiteouts applied) to TARBALL, or stdout with '-'.

    IMAGE '-' reads a docker-save tarball from stdin. A file target appears only
    when complete: a failed or interrupted export leaves no file.
    """
    from pycrane import mutate as m

    img: Image
    if image == "-":
        from pycrane.tarball import image_from_fileobj

        img = image_from_fileobj(sys.stdin.buffer, name="<stdin>")
    else:
        img = opts.client().image(parse_reference(image), platform=opts.platform)

    if tarball == "-":
        stdout = out.binary_stdout()
        m.export(img, stdout)
        stdout.flush()
        return
    from pycrane._rollback import output_file

    with output_file(tarball) as f:
        m.export(img, f)
