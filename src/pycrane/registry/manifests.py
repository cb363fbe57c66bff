"""What the registry needs to know about a pushed manifest, read from its raw bytes.

The registry stores the bytes untouched; this module checks them first and finds
which blobs and child manifests must already be in the repository (with the size
each descriptor declares), the ``subject`` it refers to, and the descriptor the
referrers API lists for it. Every refusal is ``MANIFEST_INVALID`` naming the field.

What a manifest must be, by its media type (the ``Content-Type`` of the PUT, or the
body's ``mediaType`` when the header is absent or generic like ``application/json``):

* Every media type is an RFC 6838 name (``type/subtype``, parameters allowed and
  dropped), so nothing but a token is ever stored or written back into a header.
* The body is UTF-8 JSON without a byte order mark, an object, no duplicate keys,
  no ``NaN``/``Infinity``, nested at most :data:`MAX_DEPTH` levels (deeper input
  that would exhaust the parser's recursion is refused the same way).
* A ``mediaType`` field, when present, equals the ``Content-Type``.
* OCI and Docker image manifests: ``schemaVersion`` 2, a ``config`` descriptor and
  a ``layers`` list. OCI indexes and Docker manifest lists: ``schemaVersion`` 2 and
  a ``manifests`` list. Docker schema 1: ``schemaVersion`` 1 and ``fsLayers``.
* Any other media type is stored as an opaque artifact only when it is a JSON type
  (``application/...+json``) and the body has ``schemaVersion`` 2; descriptors it
  holds under ``config``, ``layers``, ``manifests`` or ``subject`` are checked
  like an image's. So ``text/html`` is refused, and a registry stays a store for
  OCI artifacts without serving arbitrary documents.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pycrane.errors import ManifestError
from pycrane.registry.apierrors import ApiError
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest

__all__ = [
    "MAX_DEPTH",
    "MAX_MANIFEST_SIZE",
    "PushedManifest",
    "inspect_manifest",
    "is_media_type",
    "media_type_of",
]

#: Manifests larger than this are refused with 413 (the spec asks for at least 4 MiB).
MAX_MANIFEST_SIZE = 8 * 1024 * 1024
#: JSON nesting deeper than this is refused (an image manifest needs 4 levels).
MAX_DEPTH = 64

# Content types that say "some bytes" rather than which manifest: the body decides.
_GENERIC = frozenset({"application/json", "application/octet-stream", "text/plain"})
# RFC 6838 section 4.2 restricted names, and RFC 9110 parameters (token=token|quoted).
_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[\t !#-\[\]-~]|\\[\t -~])*"'
_MEDIA_TYPE = re.compile(
    rf"[ \t]*({_NAME}/{_NAME})(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))*[ \t]*"
)
_BARE_MEDIA_TYPE = re.compile(rf"{_NAME}/{_NAME}")
_JSON_TYPE = re.compile(rf"application/{_NAME}\+json")
_SCHEMA1 = (mt.DOCKER_MANIFEST_SCHEMA1, mt.DOCKER_MANIFEST_SCHEMA1_SIGNED)

#: (field, digest, declared size) of something the manifest needs in its repository.
Reference = tuple[str, Digest, int]


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
    #: ``blobs`` and ``manifests`` with the field naming each and its declared size
    #: (schema 1 blobs declare none: -1).
    blob_refs: tuple[Reference, ...] = ()
    manifest_refs: tuple[Reference, ...] = ()

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


def _invalid(message: str) -> ApiError:
    return ApiError("MANIFEST_INVALID", message)


def is_media_type(value: str) -> bool:
    """True for a bare ``type/subtype`` (no parameters): safe to write into a header."""
    return _BARE_MEDIA_TYPE.fullmatch(value) is not None


def _parse_media_type(value: str, where: str) -> str:
    m = _MEDIA_TYPE.fullmatch(value)
    if m is None:
        raise _invalid(f"{where} {value[:200]!r}: not a valid media type (RFC 6838)")
    return m[1]


def media_type_of(content_type: str | None, doc: dict[str, Any]) -> str:
    """The media type to store: the Content-Type without parameters, else the body's field."""
    header = _parse_media_type(content_type, "manifest Content-Type") if content_type else ""
    if header in _GENERIC:
        header = ""
    body = doc.get("mediaType")
    if body is not None:
        if not isinstance(body, str):
            raise _invalid("manifest mediaType: expected a string")
        if not is_media_type(body):
            raise _invalid(f"manifest mediaType {body[:200]!r}: not a valid media type")
    if header and body and header != body:
        raise _invalid(f"manifest Content-Type {header!r} does not match its mediaType {body!r}")
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


class _DuplicateKey(Exception):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return out


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_depth(doc: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH (walked with a stack, not recursion)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _invalid(f"manifest: JSON nested more than {MAX_DEPTH} levels deep")
        children = value.values() if isinstance(value, dict) else value
        stack.extend((v, depth + 1) for v in children if isinstance(v, (dict, list)))


def _load(raw: bytes) -> dict[str, Any]:
    if raw.startswith(b"\xef\xbb\xbf"):
        raise _invalid("manifest starts with a UTF-8 byte order mark: send plain JSON")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _invalid(f"manifest is not UTF-8: {e.reason} at byte {e.start}") from None
    try:
        doc = json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except _DuplicateKey as e:
        raise _invalid(f"manifest: duplicate key {str(e)[:200]!r}") from None
    except RecursionError:
        raise _invalid(f"manifest: JSON nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as e:
        raise _invalid(f"manifest is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest: expected a JSON object")
    _check_depth(doc)
    return doc


def _descriptor(obj: Any, where: str) -> Descriptor:
    try:
        return Descriptor.from_dict(obj, where)
    except ManifestError as e:
        raise _invalid(str(e)) from None


def _list(doc: dict[str, Any], key: str, media_type: str, required: bool) -> list[Any]:
    value = doc.get(key)
    if value is None and not required:
        return []
    if value is None:
        raise _invalid(f"manifest {key}: required for {media_type}")
    if not isinstance(value, list):
        raise _invalid(f"manifest {key}: expected a list")
    return value


def _schema_version(doc: dict[str, Any], want: int) -> None:
    v = doc.get("schemaVersion")
    if v is None:
        raise _invalid(f"manifest schemaVersion: missing (expected {want})")
    if not isinstance(v, int) or isinstance(v, bool) or v != want:
        raise _invalid(f"manifest schemaVersion: {str(v)[:20]} (expected {want})")


def _kind(media_type: str) -> str:
    if mt.is_index(media_type):
        return "index"
    if mt.is_image(media_type):
        return "image"
    if media_type in _SCHEMA1:
        return "schema1"
    if _JSON_TYPE.fullmatch(media_type) is None:
        raise _invalid(
            f"manifest media type {media_type!r}: not a manifest type (expected an OCI or"
            " Docker manifest or index, or an application/...+json artifact type)"
        )
    return "artifact"


def inspect_manifest(raw: bytes, content_type: str | None, digest: Digest) -> PushedManifest:
    """Parse and validate ``raw``; raise :class:`ApiError` MANIFEST_INVALID naming the field."""
    doc = _load(raw)
    media_type = media_type_of(content_type, doc)
    kind = _kind(media_type)
    _schema_version(doc, 1 if kind == "schema1" else 2)
    blobs: list[Reference] = []
    children: list[Reference] = []
    if kind == "image" and doc.get("config") is None:
        raise _invalid(f"manifest config: required for {media_type}")
    if kind in ("image", "artifact") and doc.get("config") is not None:
        d = _descriptor(doc["config"], "manifest config")
        blobs.append(("config", d.digest, d.size))
    for i, layer in enumerate(_list(doc, "layers", media_type, kind == "image")):
        d = _descriptor(layer, f"manifest layers[{i}]")
        # Foreign / non-distributable layers live elsewhere and are not pushed.
        if kind != "index" and not d.urls and mt.is_distributable(d.media_type):
            blobs.append((f"layers[{i}]", d.digest, d.size))
    for i, entry in enumerate(_list(doc, "manifests", media_type, kind == "index")):
        d = _descriptor(entry, f"manifest manifests[{i}]")
        if kind in ("index", "artifact"):
            children.append((f"manifests[{i}]", d.digest, d.size))
    if kind == "schema1":
        for i, layer in enumerate(_list(doc, "fsLayers", media_type, True)):
            blob = layer.get("blobSum") if isinstance(layer, dict) else None
            try:
                blobs.append((f"fsLayers[{i}]", Digest.parse(blob), -1))  # type: ignore[arg-type]
            except ValueError:
                raise _invalid(f"manifest fsLayers[{i}].blobSum: expected a digest") from None
    subject = None
    if doc.get("subject") is not None:
        subject = _descriptor(doc["subject"], "manifest subject").digest
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("manifest artifactType: expected a string")
    if not artifact_type and isinstance(doc.get("config"), dict) and kind != "index":
        artifact_type = doc["config"].get("mediaType")
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise _invalid("manifest annotations: expected an object of strings")
    return PushedManifest(
        media_type=media_type,
        digest=digest,
        size=len(raw),
        blobs=tuple(d for _, d, _ in blobs),
        manifests=tuple(d for _, d, _ in children),
        subject=subject,
        artifact_type=artifact_type or None,
        annotations=dict(annotations),
        blob_refs=tuple(blobs),
        manifest_refs=tuple(children),
    )
