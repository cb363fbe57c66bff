"""``pycrane pull IMAGE... PATH``: to a docker-save tarball, a legacy tarball or an OCI layout."""

from __future__ import annotations

import click

from pycrane.cli._options import Options, command
from pycrane.cli._progress import progress_for
from pycrane.cli.commands._resolve import image_or_index
from pycrane.name import Reference, parse_reference
from pycrane.v1.image import Image

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
    refs = [parse_reference(i) for i in images]
    client = opts.client()
    if fmt == "oci":
        _pull_oci(opts, refs, path, cache_path, annotate_ref, jobs)
        return
    if len(opts.platforms) > 1:
        raise click.UsageError(
            f"--format {fmt} holds single images: give one --platform, or use --format oci"
        )
    from pycrane import tarball

    chosen: dict[str | Reference, Image] = {}
    for ref in refs:
        img: Image = client.image(ref, platform=opts.platform)
        if cache_path:
            from pycrane.cli._cache import cached

            img = cached(img, cache_path)  # type: ignore[assignment]
        chosen[ref] = img
    with progress_for(opts.quiet, title="pull") as sink:
        if fmt == "legacy":
            tarball.write_legacy(path, chosen, progress=sink)
        else:
            tarball.write(path, chosen, progress=sink)


def _pull_oci(
    opts: Options,
    refs: list[Reference],
    path: str,
    cache_path: str | None,
    annotate_ref: bool,
    jobs: int,
) -> None:
    from pycrane.layout import Layout

    client = opts.client()
    layout = Layout.open_or_create(path)
    with progress_for(opts.quiet, title="pull") as sink:
        for ref in refs:
            obj = image_or_index(client, ref, opts.platforms)
            if cache_path:
                from pycrane.cli._cache import cached

                obj = cached(obj, cache_path)
            layout.append(
                obj, ref_name=str(ref) if annotate_ref else None, jobs=jobs, progress=sink
            )
