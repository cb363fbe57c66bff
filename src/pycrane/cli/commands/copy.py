"""``pycrane copy SRC DST`` (alias ``cp``): registry to registry, streaming."""

from __future__ import annotations

import click

from pycrane.cli._options import Options, command
from pycrane.cli._progress import progress_for
from pycrane.name import Reference, Repository, parse_reference

__all__ = ["copy"]


@command("copy")
@click.argument("src")
@click.argument("dst")
@click.option("-a", "--all-tags", is_flag=True, help="Copy every tag of the SRC repository.")
@click.option(
    "-n", "--no-clobber", is_flag=True, help="Do not overwrite tags that already exist at DST."
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Blobs (or tags, with -a) copied at once.",
)
@click.option(
    "--referrers", is_flag=True, help="Also copy the referrers (signatures, SBOMs) of the image."
)
def copy(
    opts: Options, src: str, dst: str, all_tags: bool, no_clobber: bool, jobs: int, referrers: bool
) -> None:
    """Copy SRC to DST: an image, a whole index, or only the --platform children of it.

    Blobs stream from the source straight into the destination (no temp files); within
    one registry they are mounted instead of copied.
    """
    client = opts.client(jobs=jobs)
    source: Repository | Reference
    target: Repository | Reference
    if all_tags:
        source, target = Repository.parse(src), Repository.parse(dst)
    else:
        source, target = parse_reference(src), parse_reference(dst)
    with progress_for(opts.quiet, title="copy") as sink:
        client.copy(
            source,
            target,
            platforms=opts.platforms or None,
            all_tags=all_tags,
            referrers=referrers,
            jobs=jobs,
            no_clobber=no_clobber,
            progress=sink,
        )
