"""``pycrane index list|append|filter``: read, build and narrow image indexes."""

from __future__ import annotations

import os

import click

from pycrane.cli import _output as out
from pycrane.cli._flags import slice_option
from pycrane.cli._options import Options, command, group
from pycrane.cli.commands._publish import push_result, target_ref
from pycrane.errors import ManifestError
from pycrane.name import parse_reference
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.image import Image, ImageIndex, SimpleIndex, is_index

__all__ = ["index"]


@group("index")
def index(opts: Options) -> None:
    """List, build and filter image indexes."""


def _load_index(opts: Options, source: str) -> ImageIndex:
    """A registry index, or a local OCI layout: its one entry when that is an index
    (what ``pull --format oci`` of an index writes), else index.json itself."""
    if os.path.isdir(source):
        from pycrane.layout import Layout

        layout = Layout.open(source)
        descs = layout.descriptors()
        if len(descs) == 1 and mt.is_index(descs[0].media_type):
            return layout.image_index(descs[0].digest)
        return layout.root_index()
    ref = parse_reference(source)
    client = opts.client()
    rd = client.get(ref)
    if not rd.is_index():
        raise ManifestError(f"{source}: expected an index, got {rd.media_type}")
    return rd.index()


@command("list")
@click.argument("source", metavar="REF|LAYOUT")
def list_(opts: Options, source: str) -> None:
    """Print each child of an index: digest, media type and platform (tab separated)."""
    for d in _load_index(opts, source).index_manifest().manifests:
        out.line(f"{d.digest}\t{d.media_type}\t{d.platform or ''}".rstrip("\t"))


index.add_command(list_)


@command("filter")
@click.argument("image")
@click.option("-t", "--tag", help="Push the filtered index here (default: in place).")
def filter_(opts: Options, image: str, tag: str | None) -> None:
    """Keep only the --platform children of the index IMAGE and push it, printing ref@digest.

    IMAGE may be a local OCI layout (its index.json); then -t says where to push.
    """
    from pycrane.crane import filter_index

    if not opts.platforms:
        raise click.UsageError("give the platforms to keep with --platform")
    filtered = filter_index(_load_index(opts, image), opts.platforms, image)
    if os.path.isdir(image):
        if not tag:
            raise click.UsageError("filtering a layout needs -t/--tag: where to push the result")
        target = parse_reference(tag)
    else:
        target = target_ref(parse_reference(image), tag, None, filtered)
    push_result(opts, target, filtered)


index.add_command(filter_)


@command("append")
@click.argument("base", required=False)
@click.argument("more", nargs=-1)
@slice_option(
    "-m", "--manifest", "manifests", help="Image or index to add; repeatable, comma lists."
)
@click.option("-t", "--tag", help="Push the result here (default: back to BASE).")
@click.option(
    "--docker-empty-base", is_flag=True, help="Start from an empty Docker manifest list, not OCI."
)
@click.option(
    "--flatten/--no-flatten",
    default=True,
    show_default=True,
    help="Add the children of an index manifest rather than the index itself.",
)
def append(
    opts: Options,
    base: str | None,
    more: tuple[str, ...],
    manifests: list[str] | None,
    tag: str | None,
    docker_empty_base: bool,
    flatten: bool,
) -> None:
    """Append manifests to the index BASE (or an empty one) and push it, printing ref@digest."""
    client = opts.client()
    children: list[tuple[Descriptor | None, Image | ImageIndex]] = []
    media_type = mt.DOCKER_MANIFEST_LIST if docker_empty_base else mt.OCI_INDEX
    annotations = None
    if base:
        idx = _load_index(opts, base)
        media_type = idx.media_type()
        annotations = idx.index_manifest().annotations or None
        for d in idx.index_manifest().manifests:
            kid = idx.image_index(d.digest) if mt.is_index(d.media_type) else idx.image(d.digest)
            children.append((d, kid))
    for m in (*more, *(manifests or ())):
        ref = parse_reference(m)
        rd = client.get(ref)
        if rd.is_index():
            sub = rd.index()
            if flatten:
                for d in sub.index_manifest().manifests:
                    kid = (
                        sub.image_index(d.digest)
                        if mt.is_index(d.media_type)
                        else sub.image(d.digest)
                    )
                    children.append((d, kid))
            else:
                children.append((None, sub))
        else:
            children.append((None, rd.image()))
    result = SimpleIndex.build(children, media_type=media_type, annotations=annotations)
    if tag:
        target = parse_reference(tag)
    elif base and not os.path.isdir(base):
        target = target_ref(parse_reference(base), None, None, result)
    else:
        raise click.UsageError("give -t/--tag: where to push the new index")
    assert is_index(result)
    push_result(opts, target, result)


index.add_command(append)
