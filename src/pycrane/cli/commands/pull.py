"""``pycrane pull IMAGE... PATH``: to a docker-save tarball, a legacy tarball or an OCI layout."""

from __future__ import annotations

import click

from pycrane.cli._options import Options, command
from pycrane.cli._progress import progress_for
from pycrane.errors import NoMatchingPlatform
from pycrane.name import Reference, parse_reference
from pycrane.v1.image import Image, ImageIndex, SimpleIndex
from pycrane.v1.platform import Platform

__all__ = ["pull"]


def filter_index(index: ImageIndex, platforms: list[Platform], what: str) -> ImageIndex:
    """A new index keeping only the children that satisfy one of ``platforms``."""
    kept = []
    offered = []
    for desc in index.index_manifest().manifests:
        if desc.platform is not None:
            offered.append(str(desc.platform))
        if desc.platform is not None and any(p.satisfied_by(desc.platform) for p in platforms):
            kept.append(desc)
    if not kept:
        raise NoMatchingPlatform(
            f"{what}: no child for {', '.join(map(str, platforms))} "
            f"(the index offers {', '.join(offered) or 'no platforms'})"
        )
    kids: list[tuple[object, Image | ImageIndex]] = []
    for desc in kept:
        child = index.image_index(desc.digest) if is_index_desc(desc) else index.image(desc.digest)
        kids.append((desc, child))
    return SimpleIndex.build(
        kids,  # type: ignore[arg-type]
        media_type=index.media_type(),
        annotations=index.index_manifest().annotations or None,
    )


def is_index_desc(desc: object) -> bool:
    from pycrane.v1 import mediatypes as mt

    return mt.is_index(getattr(desc, "media_type", None))


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

    chosen: dict[Reference, Image] = {}
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
            obj: Image | ImageIndex
            if len(opts.platforms) == 1:
                obj = client.image(ref, platform=opts.platforms[0])
            else:
                desc = client.get(ref)
                if is_index_desc(desc):
                    obj = client.index(ref)
                    if opts.platforms:
                        obj = filter_index(obj, opts.platforms, str(ref))
                else:
                    obj = client.image(ref)
            if cache_path:
                from pycrane.cli._cache import cached

                obj = cached(obj, cache_path)
            layout.append(
                obj, ref_name=str(ref) if annotate_ref else None, jobs=jobs, progress=sink
            )
