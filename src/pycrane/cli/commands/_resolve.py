"""Turning a reference (and the --platform flags) into an image or an index, with one GET."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pycrane.errors import NoMatchingPlatform
from pycrane.name import Reference
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.image import Image, ImageIndex, SimpleIndex
from pycrane.v1.platform import Platform

if TYPE_CHECKING:
    from pycrane.remote import Client

__all__ = ["filter_index", "image_or_index"]


def filter_index(index: ImageIndex, platforms: Sequence[Platform], what: str) -> ImageIndex:
    """A new index keeping only the children that satisfy one of ``platforms``.

    Children without a platform (attestations, artifacts) are dropped; the index's
    media type and annotations are kept.
    """
    kept: list[tuple[Descriptor | None, Image | ImageIndex]] = []
    offered: list[str] = []
    for desc in index.index_manifest().manifests:
        if desc.platform is None:
            continue
        offered.append(str(desc.platform))
        if any(p.satisfied_by(desc.platform) for p in platforms):
            if mt.is_index(desc.media_type):
                kept.append((desc, index.image_index(desc.digest)))
            else:
                kept.append((desc, index.image(desc.digest)))
    if not kept:
        raise NoMatchingPlatform(
            f"{what}: no child for {', '.join(map(str, platforms))} "
            f"(the index offers {', '.join(offered) or 'no platforms'})"
        )
    return SimpleIndex.build(
        kept,
        media_type=index.media_type(),
        annotations=index.index_manifest().annotations or None,
    )


def image_or_index(
    client: Client, ref: Reference, platforms: Sequence[Platform] = ()
) -> Image | ImageIndex:
    """One platform: that image. Several: the index narrowed to them. None: whatever
    ``ref`` is, a whole index included."""
    if len(platforms) == 1:
        return client.image(ref, platforms[0])
    rd = client.get(ref)
    if rd.is_index():
        idx: ImageIndex = rd.index()
        return filter_index(idx, platforms, str(ref)) if platforms else idx
    return rd.image()
