"""Descriptors: the (media type, digest, size) pointers that tie manifests to blobs."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pycrane.errors import ManifestError
from pycrane.v1.digest import Digest
from pycrane.v1.platform import Platform

__all__ = ["ANNOTATION_REF_NAME", "Descriptor"]

#: The annotation an OCI layout uses to name an ``index.json`` entry (a tag).
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor.

    ``annotations`` is a plain dict for convenience; treat descriptors as values and
    use :meth:`with_annotations` to change them.
    """

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    platform: Platform | None = None
    artifact_type: str | None = None
    data: bytes | None = None

    @classmethod
    def from_bytes(cls, media_type: str, data: bytes, **kw: Any) -> Descriptor:
        """A descriptor for ``data``, hashed with sha256."""
        return cls(media_type=media_type, digest=Digest.from_bytes(data), size=len(data), **kw)

    @classmethod
    def from_dict(cls, obj: Any, where: str = "descriptor") -> Descriptor:
        """Parse a descriptor JSON object; errors name ``where`` and the field."""
        if not isinstance(obj, Mapping):
            raise ManifestError(f"{where}: expected an object")
        mt = obj.get("mediaType")
        if not isinstance(mt, str) or not mt:
            raise ManifestError(f"{where}.mediaType: expected a non-empty string")
        dg = obj.get("digest")
        if not isinstance(dg, str):
            raise ManifestError(f"{where}.digest: expected a string")
        try:
            digest = Digest.parse(dg)
        except ValueError as e:
            raise ManifestError(f"{where}.digest: {e}") from None
        size = obj.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"{where}.size: expected a non-negative integer")
        urls = obj.get("urls")
        if urls is not None and (
            not isinstance(urls, list) or not all(isinstance(u, str) for u in urls)
        ):
            raise ManifestError(f"{where}.urls: expected a list of strings")
        ann = obj.get("annotations")
        if ann is not None and (
            not isinstance(ann, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in ann.items())
        ):
            raise ManifestError(f"{where}.annotations: expected an object of strings")
        plat = obj.get("platform")
        platform = Platform.from_dict(plat, f"{where}.platform") if plat is not None else None
        at = obj.get("artifactType")
        if at is not None and not isinstance(at, str):
            raise ManifestError(f"{where}.artifactType: expected a string")
        data: bytes | None = None
        raw = obj.get("data")
        if raw is not None:
            if not isinstance(raw, str):
                raise ManifestError(f"{where}.data: expected a base64 string")
            try:
                data = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise ManifestError(f"{where}.data: not valid base64") from None
        return cls(
            media_type=mt,
            digest=digest,
            size=size,
            urls=tuple(urls or ()),
            annotations=dict(ann or {}),
            platform=platform,
            artifact_type=at,
            data=data,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, fields in the order the OCI spec lists them."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.data is not None:
            out["data"] = base64.b64encode(self.data).decode("ascii")
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @property
    def ref_name(self) -> str | None:
        """The OCI layout ref name (``org.opencontainers.image.ref.name``), if any."""
        return self.annotations.get(ANNOTATION_REF_NAME)

    def with_annotations(self, **changes: str | None) -> Descriptor:
        """A copy with annotations set (a value of ``None`` removes the key).

        Keys are given as keyword arguments only when they are identifiers; use
        :meth:`with_annotation_map` for dotted keys.
        """
        return self.with_annotation_map(changes)

    def with_annotation_map(self, changes: Mapping[str, str | None]) -> Descriptor:
        ann = dict(self.annotations)
        for k, v in changes.items():
            if v is None:
                ann.pop(k, None)
            else:
                ann[k] = v
        return replace(self, annotations=ann)

    def with_platform(self, platform: Platform | None) -> Descriptor:
        return replace(self, platform=platform)

    def __str__(self) -> str:
        return f"{self.media_type} {self.digest} ({self.size} bytes)"
