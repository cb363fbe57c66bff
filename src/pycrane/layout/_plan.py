"""The write plan of an image or index tree: every unique blob, then the manifests bottom-up.

:meth:`pycrane.layout.Layout.append` builds a :class:`WritePlan` before any I/O, so a
blob that several images (or several layers of one image) share is written once,
and a manifest is written only after everything it points at.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pycrane.errors import ManifestError
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import ANNOTATION_REF_NAME, Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import Image, ImageIndex, Layer, is_index
from pycrane.v1.platform import Platform

__all__ = ["Blobs", "WritePlan", "decorate"]

#: ``(digest, size)`` of blobs an ``index.json`` entry needs.
Blobs = list[tuple[Digest, int]]


def decorate(
    desc: Descriptor,
    ref_name: str | None,
    annotations: Mapping[str, str] | None,
    platform: Platform | None,
) -> Descriptor:
    ann: dict[str, str | None] = dict(annotations or {})
    if ref_name is not None:
        ann[ANNOTATION_REF_NAME] = ref_name
    if ann:
        desc = desc.with_annotation_map(ann)
    if platform is not None:
        desc = desc.with_platform(platform)
    return desc


class WritePlan:
    """What writing an image or index tree takes: unique blobs, then manifests bottom-up.

    Blobs are de-duplicated by digest across the whole tree before any I/O.
    """

    def __init__(self) -> None:
        self.blobs: dict[Digest, tuple[Descriptor, Layer | Callable[[], bytes]]] = {}
        self.manifests: list[tuple[bytes, Descriptor]] = []
        self._seen: set[Digest] = set()

    def add_image(self, img: Image) -> Descriptor:
        manifest = img.manifest()
        raw = img.raw_manifest()
        desc = Descriptor(
            media_type=manifest.media_type,
            digest=manifest.digest,
            size=len(raw),
            artifact_type=manifest.artifact_type,
        )
        if desc.digest in self._seen:
            return desc
        for d, layer in zip(manifest.layers, img.layers(), strict=True):
            self.blobs.setdefault(d.digest, (d, layer))
        cfg = manifest.config
        self.blobs.setdefault(cfg.digest, (cfg, img.raw_config))
        self._seen.add(desc.digest)
        self.manifests.append((raw, desc))
        return desc

    def add_index(self, idx: ImageIndex) -> Descriptor:
        index = idx.index_manifest()
        raw = idx.raw_manifest()
        desc = Descriptor(
            media_type=index.media_type,
            digest=index.digest,
            size=len(raw),
            artifact_type=index.artifact_type,
        )
        if desc.digest in self._seen:
            return desc
        for child_desc in index.manifests:
            child = _child_of(idx, child_desc)
            if child is None:
                continue  # not an image or index (e.g. an artifact blob)
            if is_index(child):
                self.add_index(child)
            else:
                self.add_image(child)
        self._seen.add(desc.digest)
        self.manifests.append((raw, desc))
        return desc


def _child_of(idx: ImageIndex, desc: Descriptor) -> Image | ImageIndex | None:
    child = getattr(idx, "child", None)
    if child is not None:
        try:
            got: Image | ImageIndex = child(desc)
        except ManifestError:
            return None
        return got
    if mt.is_index(desc.media_type):
        return idx.image_index(desc.digest)
    if mt.is_image(desc.media_type):
        return idx.image(desc.digest)
    return None
