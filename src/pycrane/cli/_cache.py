"""``pull --cache_path DIR``: a verified, shared layer cache in front of any image.

crane's cache writes the final file while the consumer reads (a cut-short read
leaves a truncated "hit"). Here the cache is a :class:`pycrane.layout.BlobStore`:
a miss downloads the blob into the store first (hashed, size-checked, published
atomically, single-flight), then the consumer reads the committed file. A hit is
trusted only after its size matches the descriptor, and consumers still verify the
digest as they read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import (
    Image,
    ImageBase,
    ImageIndex,
    ImageIndexBase,
    Layer,
    LayerBase,
    is_index,
)

if TYPE_CHECKING:
    from pycrane.layout import BlobStore

__all__ = ["cached"]


class _CachedLayer(LayerBase):
    def __init__(self, inner: Layer, store: BlobStore, diff_id: Digest | None) -> None:
        super().__init__(diff_id)
        self._inner = inner
        self._store = store

    def descriptor(self) -> Descriptor:
        return self._inner.descriptor()

    def compressed(self) -> BinaryIO:
        d = self.descriptor()
        if not self._store.exists(d.digest, d.size):
            with self._inner.compressed() as src:
                self._store.put(src, digest=d.digest, size=d.size)
        return self._store.open(d.digest)


class _CachedImage(ImageBase):
    def __init__(self, inner: Image, store: BlobStore) -> None:
        super().__init__()
        self._inner = inner
        self._store = store

    def raw_manifest(self) -> bytes:
        return self._inner.raw_manifest()

    def raw_config(self) -> bytes:
        return self._inner.raw_config()

    def layer_for(self, descriptor: Descriptor, diff_id: Digest | None) -> Layer:
        return _CachedLayer(self._inner.layer_by_digest(descriptor.digest), self._store, diff_id)


class _CachedIndex(ImageIndexBase):
    def __init__(self, inner: ImageIndex, store: BlobStore) -> None:
        super().__init__()
        self._inner = inner
        self._store = store

    def raw_manifest(self) -> bytes:
        return self._inner.raw_manifest()

    def child(self, descriptor: Descriptor) -> Image | ImageIndex:
        if mt.is_index(descriptor.media_type):
            return _CachedIndex(self._inner.image_index(descriptor.digest), self._store)
        return _CachedImage(self._inner.image(descriptor.digest), self._store)


def cached(obj: Image | ImageIndex, cache_path: str) -> Image | ImageIndex:
    """Wrap an image or index so its layers are read through the cache at ``cache_path``."""
    from pycrane.layout import BlobStore

    store = BlobStore(cache_path)
    if is_index(obj):
        return _CachedIndex(obj, store)  # type: ignore[arg-type]
    return _CachedImage(obj, store)  # type: ignore[arg-type]
