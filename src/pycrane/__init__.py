"""pycrane: container images and registries from Python.

Pull, push, copy, inspect and modify OCI and Docker images in registries, in OCI
image layouts on disk, and in ``docker save`` tarballs.
"""

from pycrane import errors, v1
from pycrane.empty import empty_image, empty_index, empty_layer
from pycrane.errors import (
    AuthenticationError,
    DigestMismatch,
    InvalidDigest,
    InvalidPlatform,
    InvalidReference,
    LockTimeout,
    ManifestError,
    NoMatchingPlatform,
    NotFoundError,
    PermissionDenied,
    PycraneError,
    RegistryError,
    SizeMismatch,
    StoreError,
    TarballError,
    TransportError,
    UnsafePathError,
    VerificationError,
)
from pycrane.random import random_image, random_index, random_layer
from pycrane.v1 import (
    ConfigFile,
    Descriptor,
    Digest,
    Image,
    ImageIndex,
    Index,
    Layer,
    Manifest,
    Platform,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "ConfigFile",
    "Descriptor",
    "Digest",
    "DigestMismatch",
    "Image",
    "ImageIndex",
    "Index",
    "InvalidDigest",
    "InvalidPlatform",
    "InvalidReference",
    "Layer",
    "LockTimeout",
    "Manifest",
    "ManifestError",
    "NoMatchingPlatform",
    "NotFoundError",
    "PermissionDenied",
    "Platform",
    "PycraneError",
    "RegistryError",
    "SizeMismatch",
    "StoreError",
    "TarballError",
    "TransportError",
    "UnsafePathError",
    "VerificationError",
    "__version__",
    "empty_image",
    "empty_index",
    "empty_layer",
    "errors",
    "random_image",
    "random_index",
    "random_layer",
    "v1",
]
