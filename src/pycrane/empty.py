"""The empty image (FROM scratch) and the empty index, starting points for builders."""

from __future__ import annotations

import io

from pycrane.compression import gzip_bytes
from pycrane.v1 import mediatypes as mt
from pycrane.v1.config import ConfigFile
from pycrane.v1.image import BytesLayer, SimpleImage, SimpleIndex
from pycrane.v1.platform import Platform

__all__ = ["empty_image", "empty_index", "empty_layer", "EMPTY_TAR"]

#: An empty tar archive (two zero blocks), the content of Docker's "empty layer".
EMPTY_TAR = b"\0" * 1024


def empty_layer(media_type: str = mt.OCI_LAYER_GZIP) -> BytesLayer:
    """A layer holding no files, gzip-compressed reproducibly."""
    import tarfile  # only this builder needs it; empty_image/empty_index do not

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT):
        pass
    return BytesLayer(gzip_bytes(buf.getvalue()), media_type)


def empty_image(
    platform: Platform | None = None, *, media_type: str = mt.OCI_MANIFEST
) -> SimpleImage:
    """An image with no layers and an empty config."""
    return SimpleImage.build(ConfigFile.new(platform), [], media_type=media_type)


def empty_index(media_type: str = mt.OCI_INDEX) -> SimpleIndex:
    """An index with no children."""
    return SimpleIndex.build([], media_type=media_type)
