"""``pycrane pull IMAGE... PATH``: to a docker-save tarball, a legacy tarball or an OCI layout."""

from __future__ import annotations

import click

from pycrane.cli._options import Options, command
from pycrane.cli._progress import progress_for
from pycrane.name import parse_reference

__all__ = ["pull"]


@command("pull")
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True)
@click.argument("path")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tarball", "legacy", "oci"]),
    default="tarball",
    show_default=True,
    help="tarball: docker save; legacy: docker's v1 layout; oci: an OCI image layout directory.",
)
@click.option(
    "-c", "--cache_path", "cache_path", type=click.Path(file_okay=False), help="Layer cache dir."
)
@click.option(
    "--annotate-ref",
    is_flag=True,
    help="(oci) name each entry with org.opencontainers.image.ref.name = the reference.",
)
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=4, show_default=True, help="Blobs at once."
)
def pull(
    opts: Options,
    images: tuple[str, ...],
    path: str,
    fmt: str,
    cache_path: str | None,
    annotate_ref: bool,
    jobs: int,
) -> None:
    """Pull IMAGE(s) into PATH.

    An OCI layout keeps a whole index unless --platform narrows it (several
    platforms give a filtered index). Tarballs hold single images: an index is
    resolved to --platform, or linux/amd64.
    """
    from pycrane import crane

    refs = [parse_reference(i) for i in images]
    if fmt != "oci" and len(opts.platforms) > 1:
        raise click.UsageError(
            f"--format {fmt} holds single images: give one --platform, or use --format oci"
        )
    with progress_for(opts.quiet, title="pull") as sink:
        crane.pull(
            refs,
            path,
            format=fmt,  # type: ignore[arg-type]
            platforms=opts.platforms,
            cache_path=cache_path,
            annotate_ref=annotate_ref,
            jobs=jobs,
            progress=sink,
            client=opts.client(jobs=jobs),
        )
