"""Lazy ``Layer``, ``Image`` and ``ImageIndex`` abstractions.

They follow go-containerregistry's interfaces: accessors are methods because they
may do I/O (a registry round trip, a file read) and may raise. Each source
(remote, OCI layout, tarball, mutate) implements a small core and inherits the
rest from the ``*Base`` classes here:

- a layer implements :meth:`LayerBase.descriptor` and :meth:`LayerBase.compressed`;
- an image implements :meth:`ImageBase.raw_manifest`, :meth:`ImageBase.raw_config`
  and :meth:`ImageBase.layer_for`;
- an index implements :meth:`ImageIndexBase.raw_manifest` and :meth:`ImageIndexBase.child`.

Parsed manifests and configs are memoised; layer content is always streamed.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

from pycrane import compression
from pycrane.errors import ManifestError, NotFoundError
from pycrane.v1 import mediatypes as mt
from pycrane.v1.config import ConfigFile
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest, DigestHasher, VerifyingReader
from pycrane.v1.manifest import Index, Manifest, parse_manifest
from pycrane.v1.memo import Memo

if TYPE_CHECKING:
    from typing_extensions import TypeIs

__all__ = [
    "BytesLayer",
    "HasBlobLayers",
    "Image",
    "ImageBase",
    "ImageIndex",
    "ImageIndexBase",
    "Layer",
    "LayerBase",
    "SimpleImage",
    "SimpleIndex",
    "blob_layers",
    "is_index",
]


@runtime_checkable
class Layer(Protocol):
    """A filesystem layer (or any blob referenced from a manifest's ``layers``)."""

    def descriptor(self) -> Descriptor: ...
    def digest(self) -> Digest: ...
    def diff_id(self) -> Digest: ...
    def size(self) -> int: ...
    def media_type(self) -> str: ...
    def compressed(self) -> BinaryIO: ...
    def uncompressed(self) -> BinaryIO: ...


@runtime_checkable
class Image(Protocol):
    """An image: a manifest, a config and layers."""

    def raw_manifest(self) -> bytes: ...
    def manifest(self) -> Manifest: ...
    def media_type(self) -> str: ...
    def digest(self) -> Digest: ...
    def size(self) -> int: ...
    def descriptor(self) -> Descriptor: ...
    def raw_config(self) -> bytes: ...
    def config_file(self) -> ConfigFile: ...
    def config_name(self) -> Digest: ...
    def layers(self) -> list[Layer]: ...
    def layer_by_digest(self, digest: Digest) -> Layer: ...


@runtime_checkable
class ImageIndex(Protocol):
    """An index (or manifest list) of images and nested indexes."""

    def raw_manifest(self) -> bytes: ...
    def index_manifest(self) -> Index: ...
    def media_type(self) -> str: ...
    def digest(self) -> Digest: ...
    def size(self) -> int: ...
    def descriptor(self) -> Descriptor: ...
    def image(self, digest: Digest) -> Image: ...
    def image_index(self, digest: Digest) -> ImageIndex: ...
    def child(self, descriptor: Descriptor) -> Image | ImageIndex:
        """The image or index that one of this index's entries points at."""
        ...


# -- optional capabilities ----------------------------------------------------------
#
# Like go-containerregistry's partial package, some sources can do more than the
# protocols promise; writers ask through the function below, never by sniffing a
# concrete class:
#
# - ``blob_layers()``: the manifest's layers without reading the config for their
#   diff_ids (a registry image: copying blobs then costs no config round trip).
#
# (The registry client adds one of its own: ``repository``, where a remote image's or
# layer's blobs can be mounted from; see ``pycrane.remote._write``.)


@runtime_checkable
class HasBlobLayers(Protocol):
    """An image that can list its layers without its config (see :func:`blob_layers`)."""

    def blob_layers(self) -> list[Layer]: ...


def blob_layers(img: Image) -> list[Layer]:
    """The layers to copy: without diff_ids when the source can skip its config."""
    if isinstance(img, HasBlobLayers):
        return img.blob_layers()
    return img.layers()


def is_index(obj: Image | ImageIndex) -> TypeIs[ImageIndex]:
    """Whether an image-or-index object is an index (it has ``index_manifest``).

    A type guard both ways: after ``if is_index(x)`` the checker knows ``x`` is an
    :class:`ImageIndex`, and in the ``else`` branch that it is an :class:`Image`.
    """
    return hasattr(obj, "index_manifest")


class LayerBase(ABC):
    """Implements everything of :class:`Layer` from a descriptor and a compressed stream.

    ``diff_id`` is given by the source when known (a config's ``rootfs.diff_ids``);
    otherwise it is computed by decompressing the layer once.
    """

    def __init__(self, diff_id: Digest | None = None) -> None:
        self._memo = Memo()
        self._diff_id = diff_id

    @abstractmethod
    def descriptor(self) -> Descriptor: ...

    @abstractmethod
    def compressed(self) -> BinaryIO:
        """A fresh stream of the blob's bytes; the caller closes it."""

    def digest(self) -> Digest:
        return self.descriptor().digest

    def size(self) -> int:
        return self.descriptor().size

    def media_type(self) -> str:
        return self.descriptor().media_type

    def verified(self) -> BinaryIO:
        """The compressed stream, checked against digest and size at EOF."""
        d = self.descriptor()
        return VerifyingReader(  # type: ignore[return-value]
            self.compressed(), d.digest, d.size, f"layer {d.digest}"
        )

    def uncompressed(self) -> BinaryIO:
        # Sniff rather than trust the media type: some images declare gzip and ship plain tar.
        return compression.decompressed_reader(self.compressed(), None)

    def diff_id(self) -> Digest:
        if self._diff_id is not None:
            return self._diff_id
        return self._memo.get("diff_id", self._compute_diff_id)

    def _compute_diff_id(self) -> Digest:
        h = DigestHasher()
        with self.uncompressed() as r:
            while chunk := r.read(compression.CHUNK):
                h.update(chunk)
        return h.digest()


class BytesLayer(LayerBase):
    """A layer (or any blob) held in memory: configs, small artifacts, tests."""

    def __init__(
        self,
        data: bytes,
        media_type: str = mt.OCI_LAYER_GZIP,
        *,
        diff_id: Digest | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(diff_id)
        self._data = bytes(data)
        self._desc = Descriptor.from_bytes(
            media_type, self._data, annotations=dict(annotations or {})
        )

    def descriptor(self) -> Descriptor:
        return self._desc

    def compressed(self) -> BinaryIO:
        return io.BytesIO(self._data)

    @property
    def data(self) -> bytes:
        return self._data


class ImageBase(ABC):
    """Implements :class:`Image` from a raw manifest, a raw config and per-layer access."""

    def __init__(self) -> None:
        self._memo = Memo()

    @abstractmethod
    def raw_manifest(self) -> bytes: ...

    @abstractmethod
    def raw_config(self) -> bytes: ...

    @abstractmethod
    def layer_for(self, descriptor: Descriptor, diff_id: Digest | None) -> Layer:
        """The layer a manifest entry points at."""

    def manifest(self) -> Manifest:
        def parse() -> Manifest:
            parsed = parse_manifest(self.raw_manifest(), self._media_type_hint())
            if not isinstance(parsed, Manifest):
                raise ManifestError(f"manifest {parsed.digest}: expected an image, got an index")
            return parsed

        return self._memo.get("manifest", parse)

    def _media_type_hint(self) -> str | None:
        return None

    def media_type(self) -> str:
        return self.manifest().media_type

    def digest(self) -> Digest:
        return self.manifest().digest

    def size(self) -> int:
        return len(self.raw_manifest())

    def descriptor(self) -> Descriptor:
        m = self.manifest()
        return Descriptor(
            media_type=m.media_type,
            digest=m.digest,
            size=m.size,
            artifact_type=m.artifact_type,
        )

    def config_file(self) -> ConfigFile:
        return self._memo.get("config", lambda: ConfigFile.parse(self.raw_config()))

    def config_name(self) -> Digest:
        return self.manifest().config.digest

    def layers(self) -> list[Layer]:
        m = self.manifest()
        diff_ids: Sequence[Digest | None]
        try:
            ids = self.config_file().diff_ids if mt.is_config(m.config.media_type) else ()
        except ManifestError:
            ids = ()
        diff_ids = list(ids) if len(ids) == len(m.layers) else [None] * len(m.layers)
        return [self.layer_for(d, i) for d, i in zip(m.layers, diff_ids, strict=True)]

    def layer_by_digest(self, digest: Digest) -> Layer:
        if digest == self.config_name():
            return BytesLayer(self.raw_config(), self.manifest().config.media_type)
        for layer in self.layers():
            if layer.digest() == digest:
                return layer
        raise NotFoundError(f"image {self.digest()}: no layer {digest}")

    def layer_by_diff_id(self, diff_id: Digest) -> Layer:
        for layer in self.layers():
            if layer.diff_id() == diff_id:
                return layer
        raise NotFoundError(f"image {self.digest()}: no layer with diff_id {diff_id}")


class ImageIndexBase(ABC):
    """Implements :class:`ImageIndex` from a raw manifest and per-child access."""

    def __init__(self) -> None:
        self._memo = Memo()

    @abstractmethod
    def raw_manifest(self) -> bytes: ...

    @abstractmethod
    def child(self, descriptor: Descriptor) -> Image | ImageIndex:
        """The image or index a child descriptor points at."""

    def index_manifest(self) -> Index:
        def parse() -> Index:
            parsed = parse_manifest(self.raw_manifest())
            if not isinstance(parsed, Index):
                raise ManifestError(f"manifest {parsed.digest}: expected an index, got an image")
            return parsed

        return self._memo.get("index", parse)

    def media_type(self) -> str:
        return self.index_manifest().media_type

    def digest(self) -> Digest:
        return self.index_manifest().digest

    def size(self) -> int:
        return len(self.raw_manifest())

    def descriptor(self) -> Descriptor:
        idx = self.index_manifest()
        return Descriptor(
            media_type=idx.media_type,
            digest=idx.digest,
            size=idx.size,
            artifact_type=idx.artifact_type,
        )

    def _find(self, digest: Digest) -> Descriptor:
        for d in self.index_manifest().manifests:
            if d.digest == digest:
                return d
        raise NotFoundError(f"index {self.digest()}: no child {digest}")

    def image(self, digest: Digest) -> Image:
        child = self.child(self._find(digest))
        if is_index(child):
            raise ManifestError(f"index {self.digest()}: child {digest} is an index, not an image")
        return child

    def image_index(self, digest: Digest) -> ImageIndex:
        child = self.child(self._find(digest))
        if not is_index(child):
            raise ManifestError(f"index {self.digest()}: child {digest} is an image, not an index")
        return child

    def children(self) -> list[tuple[Descriptor, Image | ImageIndex]]:
        """Every child with its descriptor, in index order."""
        return [(d, self.child(d)) for d in self.index_manifest().manifests]


class SimpleImage(ImageBase):
    """An image assembled in memory from a manifest, a config and its layers."""

    def __init__(self, manifest: Manifest, config: bytes, layers: Sequence[Layer]) -> None:
        super().__init__()
        if len(layers) != len(manifest.layers):
            raise ValueError("SimpleImage: one layer per manifest entry is required")
        self._manifest = manifest
        self._config = bytes(config)
        self._layers = {layer.digest(): layer for layer in layers}

    @classmethod
    def build(
        cls,
        config: ConfigFile,
        layers: Sequence[Layer],
        *,
        media_type: str = mt.OCI_MANIFEST,
        config_media_type: str | None = None,
        annotations: Mapping[str, str] | None = None,
        subject: Descriptor | None = None,
    ) -> SimpleImage:
        """Serialise a manifest for ``config`` and ``layers``."""
        if config_media_type is None:
            config_media_type = (
                mt.DOCKER_CONFIG if media_type == mt.DOCKER_MANIFEST else mt.OCI_CONFIG
            )
        cdesc = Descriptor(media_type=config_media_type, digest=config.digest, size=config.size)
        manifest = Manifest.build(
            cdesc,
            [layer.descriptor() for layer in layers],
            media_type=media_type,
            annotations=annotations,
            subject=subject,
        )
        return cls(manifest, config.raw, layers)

    def raw_manifest(self) -> bytes:
        return self._manifest.raw

    def manifest(self) -> Manifest:
        return self._manifest

    def raw_config(self) -> bytes:
        return self._config

    def layer_for(self, descriptor: Descriptor, diff_id: Digest | None) -> Layer:
        return self._layers[descriptor.digest]


class SimpleIndex(ImageIndexBase):
    """An index assembled in memory from children."""

    def __init__(self, index: Index, children: Mapping[Digest, Image | ImageIndex]) -> None:
        super().__init__()
        self._index = index
        self._children = dict(children)

    @classmethod
    def build(
        cls,
        children: Sequence[tuple[Descriptor | None, Image | ImageIndex]],
        *,
        media_type: str = mt.OCI_INDEX,
        annotations: Mapping[str, str] | None = None,
    ) -> SimpleIndex:
        """Serialise an index; a ``None`` descriptor is derived from the child and its platform."""
        descs = []
        kids: dict[Digest, Image | ImageIndex] = {}
        for desc, child in children:
            if desc is None:
                desc = child.descriptor()
                if not is_index(child):
                    try:
                        plat = child.config_file().platform
                    except ManifestError:
                        plat = None
                    desc = desc.with_platform(plat)
            descs.append(desc)
            kids[desc.digest] = child
        return cls(Index.build(descs, media_type=media_type, annotations=annotations), kids)

    def raw_manifest(self) -> bytes:
        return self._index.raw

    def index_manifest(self) -> Index:
        return self._index

    def child(self, descriptor: Descriptor) -> Image | ImageIndex:
        try:
            return self._children[descriptor.digest]
        except KeyError:
            raise NotFoundError(f"index {self.digest()}: no child {descriptor.digest}") from None
