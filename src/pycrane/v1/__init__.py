"""The v1 image model: digests, descriptors, manifests, indexes, configs, platforms, and
the lazy Image, Layer and ImageIndex abstractions."""

from pycrane.v1 import mediatypes
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
