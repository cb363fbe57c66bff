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
@click.option(
    "-r",
    "--recursive",
    is_flag=True,
    help="SRC is a registry or namespace: copy every tag of every repository (gcrane cp -r).",
)
def copy(
    opts: Options,
    src: str,
    dst: str,
    all_tags: bool,
    no_clobber: bool,
    jobs: int,
    referrers: bool,
    recursive: bool,
) -> None:
    """Copy SRC to DST: an image, a whole index, or only the --platform children of it.

    Blobs stream from the source straight into the destination (no temp files); within
    one registry they are mounted instead of copied.
    """
    if recursive:
        _recursive(opts, src, dst, jobs, referrers, no_clobber)
        return
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


def _recursive(
    opts: Options, src: str, dst: str, jobs: int, referrers: bool, no_clobber: bool
) -> None:
    """gcrane's ``cp -r``: through the catalog, every repository's tags (a ``sync -r``)."""
    import time

    from pycrane.cli import _output as out
    from pycrane.cli import _status as status
    from pycrane.sync import SourceSpec, SyncConfig, build_plan
    from pycrane.sync.engine import Engine

    if no_clobber:
        raise click.UsageError("-r does not take --no-clobber (existing tags are compared)")
    client = opts.client(jobs=jobs)
    spec = SourceSpec(
        source=src.rstrip("/"),
        destination=dst.rstrip("/"),
        recursive=True,
        platforms=tuple(opts.platforms),
        referrers=referrers,
    )
    started = time.monotonic()
    plan = build_plan(client, SyncConfig((spec,)).sources, jobs=jobs)
    with progress_for(opts.quiet, title="copy -r") as sink:
        report = Engine(client, jobs=jobs, progress=sink).run(plan, started=started)
    for r in report.failed:
        out.note(f"failed: {r.source} -> {r.destination}: {r.reason}")
    out.note(report.summary(), quiet=opts.quiet or not report.failed)
    if not report.ok:
        click.get_current_context().exit(status.ERROR)
