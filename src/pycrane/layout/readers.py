"""The lazy readers of an OCI layout: images, indexes and layers read on demand, verified.

Nothing is read until asked: an image reads its manifest, then its config, from the
layout's blob store when first needed, and a layer's ``compressed()`` opens its
blob file behind a :class:`~pycrane.v1.digest.VerifyingReader` (size and digest
checked at EOF). They hold a :class:`LayoutSource`, the little of a layout they
need (its store, and ``get`` for children whose kind only the manifest tells), so
this module does not depend on :mod:`pycrane.layout.layout`.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol

from pycrane.errors import SizeMismatch
from pycrane.layout.store import BlobStore
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import ANNOTATION_REF_NAME, Descriptor
from pycrane.v1.digest import Digest, VerifyingReader
from pycrane.v1.image import Image, ImageBase, ImageIndex, ImageIndexBase, Layer, LayerBase
from pycrane.v1.manifest import Index

__all__ = [
    "CONFIG_MAX",
    "MANIFEST_MAX",
    "LayoutImage",
    "LayoutIndex",
    "LayoutLayer",
    "LayoutRootIndex",
    "LayoutSource",
    "portable",
    "read_desc",
]

MANIFEST_MAX = 4 << 20  # the distribution spec's manifest limit
CONFIG_MAX = 64 << 20


class LayoutSource(Protocol):
    """What the readers need of a layout: its blobs, and any entry by descriptor."""

    @property
    def store(self) -> BlobStore: ...

    def get(self, digest_or_ref: str | Digest | Descriptor) -> Image | ImageIndex: ...


class LayoutLayer(LayerBase):
    """A layer blob in a layout; ``compressed()`` opens the file, verified at EOF."""

    def __init__(self, store: BlobStore, desc: Descriptor, diff_id: Digest | None = None) -> None:
        super().__init__(diff_id)
        self._store = store
        self._desc = desc

    def descriptor(self) -> Descriptor:
        return self._desc

    def compressed(self) -> BinaryIO:
        d = self._desc
        return VerifyingReader(  # type: ignore[return-value]
            self._store.open(d.digest), d.digest, d.size, f"blob {d.digest}"
        )


class LayoutImage(ImageBase):
    """An image whose manifest, config and layers are read from a layout on demand."""

    def __init__(self, layout: LayoutSource, desc: Descriptor) -> None:
        super().__init__()
        self._layout = layout
        self._desc = desc

    def _media_type_hint(self) -> str | None:
        return self._desc.media_type if mt.is_image(self._desc.media_type) else None

    def raw_manifest(self) -> bytes:
        return self._memo.get("raw", lambda: read_desc(self._layout.store, self._desc))

    def raw_config(self) -> bytes:
        cfg = self.manifest().config
        return self._memo.get("raw_config", lambda: read_desc(self._layout.store, cfg))

    def layer_for(self, descriptor: Descriptor, diff_id: Digest | None) -> Layer:
        return LayoutLayer(self._layout.store, descriptor, diff_id)

    def descriptor(self) -> Descriptor:
        return portable(self._desc)


class LayoutIndex(ImageIndexBase):
    """An index stored as a blob in a layout."""

    def __init__(self, layout: LayoutSource, desc: Descriptor) -> None:
        super().__init__()
        self._layout = layout
        self._desc = desc

    def raw_manifest(self) -> bytes:
        return self._memo.get("raw", lambda: read_desc(self._layout.store, self._desc))

    def child(self, descriptor: Descriptor) -> Image | ImageIndex:
        if mt.is_index(descriptor.media_type):
            return LayoutIndex(self._layout, descriptor)
        if mt.is_image(descriptor.media_type):
            return LayoutImage(self._layout, descriptor)
        return self._layout.get(descriptor)

    def descriptor(self) -> Descriptor:
        return portable(self._desc)


class LayoutRootIndex(LayoutIndex):
    """``index.json`` itself as an index (it is not a blob, so it has no descriptor of its own)."""

    def __init__(self, layout: LayoutSource, raw: bytes) -> None:
        super().__init__(layout, Descriptor.from_bytes(mt.OCI_INDEX, raw))
        self._raw = raw

    def raw_manifest(self) -> bytes:
        return self._raw

    def index_manifest(self) -> Index:
        return self._memo.get("index", lambda: Index.parse(self._raw, mt.OCI_INDEX))


def portable(desc: Descriptor) -> Descriptor:
    """The entry's descriptor (platform, annotations) without this layout's ref name,
    which would otherwise follow the image into indexes and other layouts."""
    if desc.ref_name is None:
        return desc
    return desc.with_annotation_map({ANNOTATION_REF_NAME: None})


def read_desc(store: BlobStore, desc: Descriptor) -> bytes:
    limit = CONFIG_MAX if not mt.is_manifest(desc.media_type) else MANIFEST_MAX
    data = store.read_bytes(desc.digest, max_size=max(limit, desc.size))
    if len(data) != desc.size:
        raise SizeMismatch(f"blob {desc.digest}", desc.size, len(data))
    return data
