"""OCI image layouts on disk and the content-addressed blob store beneath them."""

from pycrane.layout.layout import (
    LAYOUT_VERSION,
    Layout,
    LayoutImage,
    LayoutIndex,
    LayoutLayer,
    LayoutRootIndex,
)
from pycrane.layout.store import BlobStore, BlobWriter

__all__ = [
    "LAYOUT_VERSION",
    "BlobStore",
    "BlobWriter",
    "Layout",
    "LayoutImage",
    "LayoutIndex",
    "LayoutLayer",
    "LayoutRootIndex",
]
