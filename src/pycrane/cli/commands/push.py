"""``pycrane push PATH IMAGE``: an OCI layout or a docker-save tarball into a registry."""

from __future__ import annotations

from pathlib import Path

import click

from pycrane.cli import _output as out
from pycrane.cli._options import Options, command
from pycrane.cli._progress import progress_for

__all__ = ["push"]


@command("push")
@click.argument("path", type=click.Path(exists=True))
@click.argument("image")
@click.option("--index", is_flag=True, help="Push the layout's whole index.json as one index.")
@click.option(
    "--tarball-tag",
    metavar="TAG",
    help="Push the image tagged TAG from a docker-save tarball that holds several.",
)
@click.option(
    "--image-refs",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the pushed reference (ref@digest) to this file.",
)
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=4, show_default=True, help="Blobs at once."
)
def push(
    opts: Options,
    path: str,
    image: str,
    index: bool,
    tarball_tag: str | None,
    image_refs: str | None,
    jobs: int,
) -> None:
    """Push PATH to IMAGE and print IMAGE's repository @ the pushed digest.

    A directory is read as an OCI layout (one entry, or all with --index), anything
    else as a docker-save tarball. Manifests are pushed byte for byte, so digests
    stay what they were on disk.
    """
    from pycrane import crane

    with progress_for(opts.quiet, title="push") as sink:
        pushed = crane.push(
            path,
            image,
            index=index,
            tag=tarball_tag,
            jobs=jobs,
            progress=sink,
            client=opts.client(jobs=jobs),
        )
    result = str(pushed)
    if image_refs:
        from pycrane import _fs

        _fs.atomic_write_bytes(Path(image_refs), (result + "\n").encode())
    out.line(result)
