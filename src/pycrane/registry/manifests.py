"""What the registry needs to know about a pushed manifest, read from its raw bytes.

The registry stores the bytes untouched; this module only looks inside to find
which blobs and child manifests must already be in the repository, the
``subject`` it refers to, and the descriptor the referrers API lists for it.
Unknown artifact kinds are accepted as long as they are JSON objects whose
descriptors are well formed: a registry is a store, not an image validator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pycrane.errors import ManifestError
from pycrane.registry.apierrors import ApiError
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest

__all__ = ["MAX_MANIFEST_SIZE", "PushedManifest", "inspect_manifest", "media_type_of"]

#: Manifests larger than this are refused with 413 (the spec asks for at least 4 MiB).
MAX_MANIFEST_SIZE = 8 * 1024 * 1024

# Content types that say "some bytes" rather than which manifest: the body decides.
_GENERIC = frozenset({"application/json", "application/octet-stream", "text/plain"})


@dataclass(frozen=True)
class PushedManifest:
    """The facts the registry keeps about one manifest."""

    media_type: str
    digest: Digest
    size: int
    blobs: tuple[Digest, ...] = ()
    manifests: tuple[Digest, ...] = ()
    subject: Digest | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    def referrer_descriptor(self) -> dict[str, Any]:
        """The entry the referrers API lists for this manifest (OCI distribution 1.1)."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


def media_type_of(content_type: str | None, doc: dict[str, Any]) -> str:
    """The media type to store: the Content-Type without parameters, else the body's field."""
    header = (content_type or "").split(";", 1)[0].strip()
    if header in _GENERIC:
        header = ""
    body = doc.get("mediaType")
    if body is not None and not isinstance(body, str):
        raise ApiError("MANIFEST_INVALID", "manifest mediaType: expected a string")
    if header and body and header != body:
        raise ApiError(
            "MANIFEST_INVALID",
            f"manifest Content-Type {header!r} does not match its mediaType {body!r}",
        )
    if header:
        return header
    if body:
        return body
    if "manifests" in doc:
        return mt.OCI_INDEX
    if doc.get("schemaVersion") == 1:
        return (
            mt.DOCKER_MANIFEST_SCHEMA1_SIGNED if "signatures" in doc else mt.DOCKER_MANIFEST_SCHEMA1
        )
    return mt.OCI_MANIFEST


def _descriptor(obj: Any, where: str) -> Descriptor:
    try:
        return Descriptor.from_dict(obj, where)
    except ManifestError as e:
        raise ApiError("MANIFEST_INVALID", str(e)) from None


def inspect_manifest(raw: bytes, content_type: str | None, digest: Digest) -> PushedManifest:
    """Parse ``raw`` enough to validate it; raise :class:`ApiError` MANIFEST_INVALID if bad."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError("MANIFEST_INVALID", f"manifest is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ApiError("MANIFEST_INVALID", "manifest: expected a JSON object")
    media_type = media_type_of(content_type, doc)
    blobs: list[Digest] = []
    children: list[Digest] = []
    if "config" in doc:
        blobs.append(_descriptor(doc["config"], "manifest config").digest)
    layers = doc.get("layers", [])
    if not isinstance(layers, list):
        raise ApiError("MANIFEST_INVALID", "manifest layers: expected a list")
    for i, layer in enumerate(layers):
        d = _descriptor(layer, f"manifest layers[{i}]")
        # Foreign / non-distributable layers live elsewhere and are not pushed.
        if not d.urls and mt.is_distributable(d.media_type):
            blobs.append(d.digest)
    entries = doc.get("manifests", [])
    if not isinstance(entries, list):
        raise ApiError("MANIFEST_INVALID", "index manifests: expected a list")
    for i, entry in enumerate(entries):
        children.append(_descriptor(entry, f"index manifests[{i}]").digest)
    if media_type in (mt.DOCKER_MANIFEST_SCHEMA1, mt.DOCKER_MANIFEST_SCHEMA1_SIGNED):
        for i, layer in enumerate(doc.get("fsLayers") or []):
            blob = layer.get("blobSum") if isinstance(layer, dict) else None
            try:
                blobs.append(Digest.parse(blob))  # type: ignore[arg-type]
            except ValueError:
                raise ApiError(
                    "MANIFEST_INVALID", f"manifest fsLayers[{i}].blobSum: expected a digest"
                ) from None
    subject = None
    if doc.get("subject") is not None:
        subject = _descriptor(doc["subject"], "manifest subject").digest
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ApiError("MANIFEST_INVALID", "manifest artifactType: expected a string")
    if not artifact_type and "config" in doc and not mt.is_index(media_type):
        artifact_type = doc["config"]["mediaType"]
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise ApiError("MANIFEST_INVALID", "manifest annotations: expected an object of strings")
    return PushedManifest(
        media_type=media_type,
        digest=digest,
        size=len(raw),
        blobs=tuple(blobs),
        manifests=tuple(children),
        subject=subject,
        artifact_type=artifact_type or None,
        annotations=dict(annotations),
    )
