"""Image manifests (OCI and Docker schema 2) and indexes (OCI index, Docker manifest list).

Both keep the exact bytes they were parsed from (``raw``); ``digest`` is computed over
those bytes. Building a new document serialises it once, and the result is then
treated as raw bytes like any other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pycrane.errors import ManifestError
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest

__all__ = [
    "Index",
    "Manifest",
    "canonical_json",
    "detect_media_type",
    "parse_manifest",
    "refuse_schema1",
]


def canonical_json(obj: Any) -> bytes:
    """Compact JSON as pycrane writes every new document (UTF-8, no spaces)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _load(raw: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise ManifestError(f"{what}: not valid JSON ({e})") from None
    except RecursionError:
        raise ManifestError(f"{what}: not valid JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise ManifestError(f"{what}: expected a JSON object")
    return obj


def detect_media_type(raw: bytes, hint: str | None = None, *, what: str = "manifest") -> str:
    """The media type of a manifest document (``what`` names it in errors).

    The document's own ``mediaType`` wins; then ``hint`` (e.g. a Content-Type
    header); then the shape: ``manifests`` means an index, ``config`` a manifest.
    """
    obj = _load(raw, what)
    declared = obj.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if hint:
        hint = hint.split(";")[0].strip()
        if mt.is_manifest(hint):
            return hint
    if obj.get("schemaVersion") == 1:
        return (
            mt.DOCKER_MANIFEST_SCHEMA1_SIGNED if "signatures" in obj else mt.DOCKER_MANIFEST_SCHEMA1
        )
    if "manifests" in obj:
        return mt.OCI_INDEX
    if "config" in obj or "layers" in obj:
        return mt.OCI_MANIFEST
    raise ManifestError("manifest: cannot tell its media type (no mediaType, config or manifests)")


def _optional_str(obj: Mapping[str, Any], key: str, what: str) -> str | None:
    v = obj.get(key)
    if v is not None and not isinstance(v, str):
        raise ManifestError(f"{what}.{key}: expected a string")
    return v


def _annotations(obj: Mapping[str, Any], what: str) -> dict[str, str]:
    ann = obj.get("annotations")
    if ann is None:
        return {}
    if not isinstance(ann, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in ann.items()
    ):
        raise ManifestError(f"{what}.annotations: expected an object of strings")
    return dict(ann)


def _schema_version(obj: Mapping[str, Any], what: str) -> int:
    sv = obj.get("schemaVersion")
    if sv != 2:
        raise ManifestError(f"{what}.schemaVersion: expected 2, got {sv!r}")
    return 2


@dataclass(frozen=True, eq=False)
class Manifest:
    """An image manifest: a config descriptor and an ordered list of layers."""

    raw: bytes
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @classmethod
    def parse(cls, raw: bytes, media_type: str | None = None) -> Manifest:
        """Parse an OCI or Docker schema 2 manifest, keeping ``raw``."""
        what = "manifest"
        obj = _load(raw, what)
        _schema_version(obj, what)
        declared = _optional_str(obj, "mediaType", what)
        media = declared or media_type or mt.OCI_MANIFEST
        if declared and media_type and mt.is_manifest(media_type) and declared != media_type:
            raise ManifestError(
                f"{what}.mediaType: document says {declared!r} but it was served as {media_type!r}"
            )
        if not mt.is_image(media):
            raise ManifestError(f"{what}.mediaType: {media!r} is not an image manifest")
        if "config" not in obj:
            raise ManifestError(f"{what}.config: missing")
        config = Descriptor.from_dict(obj["config"], f"{what}.config")
        layers_obj = obj.get("layers", [])
        if not isinstance(layers_obj, list):
            raise ManifestError(f"{what}.layers: expected a list")
        layers = tuple(
            Descriptor.from_dict(layer, f"{what}.layers[{i}]") for i, layer in enumerate(layers_obj)
        )
        subj = obj.get("subject")
        return cls(
            raw=bytes(raw),
            media_type=media,
            config=config,
            layers=layers,
            annotations=_annotations(obj, what),
            subject=Descriptor.from_dict(subj, f"{what}.subject") if subj is not None else None,
            artifact_type=_optional_str(obj, "artifactType", what),
        )

    @classmethod
    def build(
        cls,
        config: Descriptor,
        layers: Iterable[Descriptor],
        *,
        media_type: str = mt.OCI_MANIFEST,
        annotations: Mapping[str, str] | None = None,
        subject: Descriptor | None = None,
        artifact_type: str | None = None,
    ) -> Manifest:
        """Serialise a new manifest; its ``raw`` bytes are what will be stored and hashed."""
        obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
        if artifact_type:
            obj["artifactType"] = artifact_type
        obj["config"] = config.to_dict()
        obj["layers"] = [layer.to_dict() for layer in layers]
        if subject is not None:
            obj["subject"] = subject.to_dict()
        if annotations:
            obj["annotations"] = dict(annotations)
        return cls.parse(canonical_json(obj))

    def to_dict(self) -> dict[str, Any]:
        """The parsed JSON object (a fresh copy)."""
        return _load(self.raw, "manifest")

    @cached_property
    def digest(self) -> Digest:
        return Digest.from_bytes(self.raw)

    @property
    def size(self) -> int:
        return len(self.raw)

    def descriptor(self, **kw: Any) -> Descriptor:
        """A descriptor pointing at this manifest."""
        return Descriptor(media_type=self.media_type, digest=self.digest, size=self.size, **kw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Manifest) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


@dataclass(frozen=True, eq=False)
class Index:
    """An image index or Docker manifest list: descriptors of child manifests."""

    raw: bytes
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @classmethod
    def parse(cls, raw: bytes, media_type: str | None = None) -> Index:
        """Parse an OCI index or Docker manifest list, keeping ``raw``."""
        what = "index"
        obj = _load(raw, what)
        _schema_version(obj, what)
        declared = _optional_str(obj, "mediaType", what)
        media = declared or media_type or mt.OCI_INDEX
        if declared and media_type and mt.is_manifest(media_type) and declared != media_type:
            raise ManifestError(
                f"{what}.mediaType: document says {declared!r} but it was served as {media_type!r}"
            )
        if not mt.is_index(media):
            raise ManifestError(f"{what}.mediaType: {media!r} is not an index")
        mans = obj.get("manifests")
        if not isinstance(mans, list):
            raise ManifestError(f"{what}.manifests: expected a list")
        subj = obj.get("subject")
        return cls(
            raw=bytes(raw),
            media_type=media,
            manifests=tuple(
                Descriptor.from_dict(m, f"{what}.manifests[{i}]") for i, m in enumerate(mans)
            ),
            annotations=_annotations(obj, what),
            subject=Descriptor.from_dict(subj, f"{what}.subject") if subj is not None else None,
            artifact_type=_optional_str(obj, "artifactType", what),
        )

    @classmethod
    def build(
        cls,
        manifests: Iterable[Descriptor],
        *,
        media_type: str = mt.OCI_INDEX,
        annotations: Mapping[str, str] | None = None,
        subject: Descriptor | None = None,
        artifact_type: str | None = None,
    ) -> Index:
        """Serialise a new index."""
        obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
        if artifact_type:
            obj["artifactType"] = artifact_type
        obj["manifests"] = [m.to_dict() for m in manifests]
        if subject is not None:
            obj["subject"] = subject.to_dict()
        if annotations:
            obj["annotations"] = dict(annotations)
        return cls.parse(canonical_json(obj))

    def to_dict(self) -> dict[str, Any]:
        return _load(self.raw, "index")

    @cached_property
    def digest(self) -> Digest:
        return Digest.from_bytes(self.raw)

    @property
    def size(self) -> int:
        return len(self.raw)

    def descriptor(self, **kw: Any) -> Descriptor:
        return Descriptor(media_type=self.media_type, digest=self.digest, size=self.size, **kw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Index) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


def parse_manifest(raw: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parse either kind of manifest document, telling them apart by media type or shape."""
    media = detect_media_type(raw, media_type)
    if mt.is_index(media):
        return Index.parse(raw, media)
    if mt.is_image(media):
        return Manifest.parse(raw, media)
    refuse_schema1(media, "manifest")
    raise ManifestError(f"manifest.mediaType: unsupported media type {media!r}")


def refuse_schema1(media_type: str, what: str) -> None:
    """Raise the one error for Docker schema 1 manifests, which pycrane does not read."""
    if mt.is_schema1(media_type):
        raise ManifestError(
            f"{what}: Docker schema 1 ({media_type}) is not supported; "
            "push it again with a v2 client"
        )
