"""Reading images from local paths: an OCI layout directory or a docker-save tarball."""

from __future__ import annotations

import os

from pycrane.errors import ManifestError
from pycrane.v1.image import Image, ImageIndex

__all__ = ["from_layout", "from_path"]


def from_layout(path: str, *, whole_index: bool = False) -> Image | ImageIndex:
    """The single entry of the layout at ``path`` (or its whole index.json).

    Like crane, a layout holding several entries needs ``whole_index`` (``--index``).
    """
    from pycrane.layout import Layout

    layout = Layout.open(path)
    if whole_index:
        return layout.root_index()
    descs = list(layout.descriptors())
    if len(descs) != 1:
        raise ManifestError(
            f"layout {path}: expected one entry in index.json, found {len(descs)} "
            "(use --index to push them all as one index)"
        )
    return layout.get(descs[0])


def from_path(
    path: str, *, whole_index: bool = False, tag: str | None = None
) -> Image | ImageIndex:
    """A directory is an OCI layout, anything else a docker-save tarball (as crane decides)."""
    if os.path.isdir(path):
        return from_layout(path, whole_index=whole_index)
    from pycrane.tarball import image_from_path

    return image_from_path(path, tag=tag) if tag else image_from_path(path)
