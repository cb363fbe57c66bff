"""The v1 image model: digests, descriptors, manifests, indexes, configs, platforms, and
the lazy Image, Layer and ImageIndex abstractions.

Names load on first use (PEP 562): ``pycrane.name`` needs only :mod:`pycrane.v1.digest`,
and a ``digest`` or ``manifest`` command should not build the config and image
dataclasses it never touches (tests/test_startup_imports.py keeps it so).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycrane.v1 import mediatypes as mediatypes
    from pycrane.v1.config import ConfigFile, History
    from pycrane.v1.descriptor import ANNOTATION_REF_NAME, Descriptor
    from pycrane.v1.digest import Digest, DigestHasher, VerifyingReader, sha256
    from pycrane.v1.image import (
        BytesLayer,
        Image,
        ImageBase,
        ImageIndex,
        ImageIndexBase,
        Layer,
        LayerBase,
        SimpleImage,
        SimpleIndex,
        is_index,
    )
    from pycrane.v1.manifest import Index, Manifest, canonical_json, parse_manifest
    from pycrane.v1.platform import Platform

#: Public name -> the submodule that defines it.
_LAZY: dict[str, str] = {
    "ANNOTATION_REF_NAME": "descriptor",
    "BytesLayer": "image",
    "ConfigFile": "config",
    "Descriptor": "descriptor",
    "Digest": "digest",
    "DigestHasher": "digest",
    "History": "config",
    "Image": "image",
    "ImageBase": "image",
    "ImageIndex": "image",
    "ImageIndexBase": "image",
    "Index": "manifest",
    "Layer": "image",
    "LayerBase": "image",
    "Manifest": "manifest",
    "Platform": "platform",
    "SimpleImage": "image",
    "SimpleIndex": "image",
    "VerifyingReader": "digest",
    "canonical_json": "manifest",
    "is_index": "image",
    "parse_manifest": "manifest",
    "sha256": "digest",
}


def __getattr__(name: str) -> Any:
    if name == "mediatypes":
        return importlib.import_module("pycrane.v1.mediatypes")
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'pycrane.v1' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"pycrane.v1.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"mediatypes"})


__all__ = [
    "ANNOTATION_REF_NAME",
    "BytesLayer",
    "ConfigFile",
    "Descriptor",
    "Digest",
    "DigestHasher",
    "History",
    "Image",
    "ImageBase",
    "ImageIndex",
    "ImageIndexBase",
    "Index",
    "Layer",
    "LayerBase",
    "Manifest",
    "Platform",
    "SimpleImage",
    "SimpleIndex",
    "VerifyingReader",
    "canonical_json",
    "is_index",
    "mediatypes",
    "parse_manifest",
    "sha256",
]
