"""``pycrane optimize SRC DST``: every layer rewritten as eStargz (lazy pulling), pushed to DST."""

from __future__ import annotations

import click

from pycrane.cli._flags import slice_option
from pycrane.cli._options import Options, command
from pycrane.cli._progress import progress_for
from pycrane.crane import image_or_index
from pycrane.name import parse_reference
from pycrane.v1.image import is_index

__all__ = ["optimize"]


@command("optimize", hidden=True)  # hidden in crane too
@click.argument("src")
@click.argument("dst")
@slice_option(
    "--prioritize",
    "prioritize",
    help="Files to put first, before the prefetch landmark (repeatable, comma lists).",
)
def optimize(opts: Options, src: str, dst: str, prioritize: list[str] | None) -> None:
    """Optimize SRC for lazy pulling (eStargz layers, --prioritize files first) and push to DST.

    An index has each image optimized, unless --platform picks one image. As crane,
    nothing is pushed when a prioritized file is in no image.
    """
    from pycrane.mutate.estargz import optimize as make

    client = opts.client()
    one = [opts.platform] if opts.platform else []
    obj = image_or_index(parse_reference(src), one, client=client)
    new, missing = make(obj, prioritize or [])
    if missing:
        where = "all images" if is_index(obj) else "image"
        raise click.ClickException(
            f"the following prioritized files were missing from {where}: {', '.join(missing)}"
        )
    with progress_for(opts.quiet, title="push") as sink:
        client.write(parse_reference(dst), new, jobs=opts.jobs, progress=sink)
