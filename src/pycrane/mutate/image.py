"""Images and indexes derived from others: new config, new layers, new annotations.

Nothing is changed in place. A derived object keeps its base and a few edit
functions, and serialises its new manifest (and config) once, on first use. The
base's JSON documents are edited as parsed objects, so fields pycrane does not
model survive; the result is serialised once and hashed as raw bytes from then on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO

from pycrane.errors import ManifestError, NotFoundError
from pycrane.v1 import mediatypes as mt
from pycrane.v1.config import ConfigFile
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import Image, ImageBase, ImageIndex, ImageIndexBase, Layer, LayerBase
from pycrane.v1.manifest import canonical_json
from pycrane.v1.memo import Memo

__all__ = ["DerivedImage", "DerivedIndex", "RetypedLayer", "docker_layer_type", "oci_layer_type"]

JSON = dict[str, Any]

_TO_DOCKER = {
    mt.OCI_LAYER_GZIP: mt.DOCKER_LAYER,
    mt.OCI_LAYER: mt.DOCKER_UNCOMPRESSED_LAYER,
    mt.OCI_RESTRICTED_LAYER_GZIP: mt.DOCKER_FOREIGN_LAYER,
}
_TO_OCI = {
    mt.DOCKER_LAYER: mt.OCI_LAYER_GZIP,
    mt.DOCKER_UNCOMPRESSED_LAYER: mt.OCI_LAYER,
    mt.DOCKER_FOREIGN_LAYER: mt.OCI_RESTRICTED_LAYER_GZIP,
}


def docker_layer_type(media_type: str) -> str:
    """The Docker schema 2 name of a layer media type (zstd has none: unchanged)."""
    return _TO_DOCKER.get(media_type, media_type)


def oci_layer_type(media_type: str) -> str:
    """The OCI name of a layer media type."""
    return _TO_OCI.get(media_type, media_type)


class RetypedLayer(LayerBase):
    """A layer served under another media type (same bytes, same digest)."""

    def __init__(self, inner: Layer, media_type: str) -> None:
        super().__init__()
        self._memo = Memo()  # nested lookups
        self._inner = inner
        d = inner.descriptor()
        self._desc = Descriptor(
            media_type=media_type,
            digest=d.digest,
            size=d.size,
            urls=d.urls,
            annotations=d.annotations,
        )

    def descriptor(self) -> Descriptor:
        return self._desc

    def compressed(self) -> BinaryIO:
        return self._inner.compressed()

    def diff_id(self) -> Digest:
        return self._inner.diff_id()


class DerivedImage(ImageBase):
    """An image computed from ``base``.

    ``config`` edits a copy of the base config (or ``raw_config`` replaces it byte
    for byte); ``layers`` replaces the base's layer list; ``append`` adds layers
    on top with their history entries; ``manifest`` edits the manifest object last.
    """

    def __init__(
        self,
        base: Image,
        *,
        config: Callable[[JSON], JSON | None] | None = None,
        raw_config: bytes | None = None,
        layers: Sequence[Layer] | None = None,
        append: Sequence[tuple[Layer, Mapping[str, Any] | None]] = (),
        manifest: Callable[[JSON], JSON | None] | None = None,
    ) -> None:
        super().__init__()
        self._memo = Memo()  # nested lookups
        self._base = base
        self._edit_config = config
        self._raw_config_override = raw_config
        self._layers_override = list(layers) if layers is not None else None
        self._append = list(append)
        self._edit_manifest = manifest

    @property
    def base(self) -> Image:
        return self._base

    def _all_layers(self) -> list[Layer]:
        def build() -> list[Layer]:
            base_layers = (
                self._layers_override
                if self._layers_override is not None
                else list(self._base.layers())
            )
            docker = self._base.media_type() == mt.DOCKER_MANIFEST
            out: list[Layer] = list(base_layers)
            for layer, _ in self._append:
                want = docker_layer_type(layer.media_type()) if docker else layer.media_type()
                out.append(layer if want == layer.media_type() else RetypedLayer(layer, want))
            return out

        return self._memo.get("layers", build)

    def raw_config(self) -> bytes:
        return self._memo.get("raw_config", self._build_config)

    def _build_config(self) -> bytes:
        if self._raw_config_override is not None:
            return self._raw_config_override
        if not self._edit_config and not self._append and self._layers_override is None:
            return self._base.raw_config()
        cfg = self._base.config_file().to_dict()
        if self._edit_config is not None:
            cfg = self._edit_config(cfg) or cfg
        if self._append:
            rootfs = cfg.setdefault("rootfs", {"type": "layers", "diff_ids": []})
            rootfs.setdefault("type", "layers")
            ids = rootfs.setdefault("diff_ids", [])
            history = cfg.get("history")
            for layer, hist in self._append:
                ids.append(str(layer.diff_id()))
                entry = dict(hist) if hist else {"created_by": "pycrane append"}
                entry.pop("empty_layer", None)
                if history is None:
                    history = cfg["history"] = []
                history.append(entry)
        return ConfigFile.from_dict(cfg).raw

    def raw_manifest(self) -> bytes:
        return self._memo.get("raw_manifest", self._build_manifest)

    def _build_manifest(self) -> bytes:
        base_m = self._base.manifest()
        obj = base_m.to_dict()
        raw_cfg = self.raw_config()
        cfg_desc = obj.get("config") or {}
        cfg_desc = dict(cfg_desc)
        cfg_desc.setdefault("mediaType", base_m.config.media_type)
        cfg_desc["digest"] = str(Digest.from_bytes(raw_cfg))
        cfg_desc["size"] = len(raw_cfg)
        obj["config"] = cfg_desc
        if self._layers_override is not None or self._append:
            obj["layers"] = [layer.descriptor().to_dict() for layer in self._all_layers()]
        if self._edit_manifest is not None:
            obj = self._edit_manifest(obj) or obj
        return canonical_json(obj)

    def layer_for(self, descriptor: Descriptor, diff_id: Digest | None) -> Layer:
        for layer in self._all_layers():
            if layer.digest() == descriptor.digest:
                if layer.media_type() != descriptor.media_type:
                    return RetypedLayer(layer, descriptor.media_type)
                return layer
        raise NotFoundError(f"image {self.digest()}: no layer {descriptor.digest}")


class DerivedIndex(ImageIndexBase):
    """An index computed from ``base``: ``manifest`` edits its JSON object; ``children``
    maps old child digests to replacement images or indexes (``None`` drops one)."""

    def __init__(
        self,
        base: ImageIndex,
        *,
        manifest: Callable[[JSON], JSON | None] | None = None,
        children: Mapping[Digest, Image | ImageIndex | None] | None = None,
    ) -> None:
        super().__init__()
        self._memo = Memo()  # nested lookups
        self._base = base
        self._edit = manifest
        self._replace = dict(children or {})

    def raw_manifest(self) -> bytes:
        return self._memo.get("raw", self._build)

    def _build(self) -> bytes:
        obj = self._base.index_manifest().to_dict()
        if self._replace:
            old = self._base.index_manifest().manifests
            kept = []
            for desc, raw in zip(old, obj.get("manifests") or [], strict=False):
                if desc.digest not in self._replace:
                    kept.append(raw)
                    continue
                new = self._replace[desc.digest]
                if new is None:
                    continue
                nd = new.descriptor()
                kept.append(
                    {**raw, "mediaType": nd.media_type, "digest": str(nd.digest), "size": nd.size}
                )
            obj["manifests"] = kept
        if self._edit is not None:
            obj = self._edit(obj) or obj
        return canonical_json(obj)

    def child(self, descriptor: Descriptor) -> Image | ImageIndex:
        for new in self._replace.values():
            if new is not None and new.digest() == descriptor.digest:
                return new
        if mt.is_index(descriptor.media_type):
            return self._base.image_index(descriptor.digest)
        if mt.is_image(descriptor.media_type):
            return self._base.image(descriptor.digest)
        raise ManifestError(
            f"index {self.digest()}: child {descriptor.digest} is a "
            f"{descriptor.media_type}, not an image or index"
        )
