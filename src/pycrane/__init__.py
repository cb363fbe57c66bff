"""pycrane: container images and registries from Python.

Pull, push, copy, inspect and modify OCI and Docker images in registries, in OCI
image layouts on disk, and in ``docker save`` tarballs.

```python
import pycrane

ref = pycrane.parse_reference("127.0.0.1:5000/demo:latest")
with pycrane.Client() as client:                  # pycrane.remote.Client
    img = client.image(ref, platform="linux/amd64")
    pycrane.Layout.open_or_create("out").append_image(img, ref_name="latest")
```

Every name here loads on first use (PEP 562), the model included, so ``import
pycrane`` (which every CLI command pays) costs next to nothing and ``pycrane
version`` never builds the model's dataclasses.
"""

from __future__ import annotations

import importlib

# Not ``typing.TYPE_CHECKING``: importing typing is a third of ``pycrane version``'s
# start-up; mypy treats any name TYPE_CHECKING alike.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    # Submodules once imported eagerly: still reachable as attributes, now lazily.
    from pycrane import empty as empty
    from pycrane import errors, layout, mutate, remote, tarball, v1, validate
    from pycrane import random as random
    from pycrane.empty import empty_image, empty_index, empty_layer
    from pycrane.errors import (
        AuthenticationError,
        CompressionError,
        DigestMismatch,
        ErrorCode,
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
        RegistryNotFound,
        SizeMismatch,
        StoreError,
        TarballError,
        TransportError,
        UnsafePathError,
        VerificationError,
    )
    from pycrane.layout import BlobStore, Layout
    from pycrane.name import (
        DigestRef,
        Reference,
        Registry,
        Repository,
        Tag,
        familiar,
        parse_reference,
    )
    from pycrane.random import random_image, random_index, random_layer
    from pycrane.registry import RegistryServer
    from pycrane.remote import Client, Keychain
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
    from pycrane.validate import validate_image, validate_index

__version__ = "0.1.0"

# name -> (module, attribute or None for the module itself), loaded on first access.
_LAZY: dict[str, tuple[str, str | None]] = {
    "errors": ("pycrane.errors", None),
    "v1": ("pycrane.v1", None),
    "AuthenticationError": ("pycrane.errors", "AuthenticationError"),
    "CompressionError": ("pycrane.errors", "CompressionError"),
    "DigestMismatch": ("pycrane.errors", "DigestMismatch"),
    "ErrorCode": ("pycrane.errors", "ErrorCode"),
    "InvalidDigest": ("pycrane.errors", "InvalidDigest"),
    "InvalidPlatform": ("pycrane.errors", "InvalidPlatform"),
    "InvalidReference": ("pycrane.errors", "InvalidReference"),
    "LockTimeout": ("pycrane.errors", "LockTimeout"),
    "ManifestError": ("pycrane.errors", "ManifestError"),
    "NoMatchingPlatform": ("pycrane.errors", "NoMatchingPlatform"),
    "NotFoundError": ("pycrane.errors", "NotFoundError"),
    "PermissionDenied": ("pycrane.errors", "PermissionDenied"),
    "PycraneError": ("pycrane.errors", "PycraneError"),
    "RegistryError": ("pycrane.errors", "RegistryError"),
    "RegistryNotFound": ("pycrane.errors", "RegistryNotFound"),
    "SizeMismatch": ("pycrane.errors", "SizeMismatch"),
    "StoreError": ("pycrane.errors", "StoreError"),
    "TarballError": ("pycrane.errors", "TarballError"),
    "TransportError": ("pycrane.errors", "TransportError"),
    "UnsafePathError": ("pycrane.errors", "UnsafePathError"),
    "VerificationError": ("pycrane.errors", "VerificationError"),
    "DigestRef": ("pycrane.name", "DigestRef"),
    "Reference": ("pycrane.name", "Reference"),
    "Registry": ("pycrane.name", "Registry"),
    "Repository": ("pycrane.name", "Repository"),
    "Tag": ("pycrane.name", "Tag"),
    "familiar": ("pycrane.name", "familiar"),
    "parse_reference": ("pycrane.name", "parse_reference"),
    "ConfigFile": ("pycrane.v1", "ConfigFile"),
    "Descriptor": ("pycrane.v1", "Descriptor"),
    "Digest": ("pycrane.v1", "Digest"),
    "Image": ("pycrane.v1", "Image"),
    "ImageIndex": ("pycrane.v1", "ImageIndex"),
    "Index": ("pycrane.v1", "Index"),
    "Layer": ("pycrane.v1", "Layer"),
    "Manifest": ("pycrane.v1", "Manifest"),
    "Platform": ("pycrane.v1", "Platform"),
    "BlobStore": ("pycrane.layout", "BlobStore"),
    "Client": ("pycrane.remote", "Client"),
    "Keychain": ("pycrane.remote", "Keychain"),
    "Layout": ("pycrane.layout", "Layout"),
    "RegistryServer": ("pycrane.registry", "RegistryServer"),
    "empty": ("pycrane.empty", None),
    "empty_image": ("pycrane.empty", "empty_image"),
    "empty_index": ("pycrane.empty", "empty_index"),
    "empty_layer": ("pycrane.empty", "empty_layer"),
    "layout": ("pycrane.layout", None),
    "mutate": ("pycrane.mutate", None),
    "random": ("pycrane.random", None),
    "random_image": ("pycrane.random", "random_image"),
    "random_index": ("pycrane.random", "random_index"),
    "random_layer": ("pycrane.random", "random_layer"),
    "remote": ("pycrane.remote", None),
    "tarball": ("pycrane.tarball", None),
    "validate": ("pycrane.validate", None),
    "validate_image": ("pycrane.validate", "validate_image"),
    "validate_index": ("pycrane.validate", "validate_index"),
}


def _as_public(value: Any) -> Any:
    """Say ``pycrane.X`` in reprs, tracebacks and docs instead of the private module path."""
    if isinstance(value, type) or callable(value):
        try:
            if str(getattr(value, "__module__", "")).startswith("pycrane."):
                value.__module__ = "pycrane"
        except (AttributeError, TypeError):
            pass
    return value


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'pycrane' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = mod if attr is None else _as_public(getattr(mod, attr))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AuthenticationError",
    "BlobStore",
    "Client",
    "CompressionError",
    "ConfigFile",
    "Descriptor",
    "Digest",
    "DigestMismatch",
    "DigestRef",
    "ErrorCode",
    "Image",
    "ImageIndex",
    "Index",
    "InvalidDigest",
    "InvalidPlatform",
    "InvalidReference",
    "Keychain",
    "Layer",
    "Layout",
    "LockTimeout",
    "Manifest",
    "ManifestError",
    "NoMatchingPlatform",
    "NotFoundError",
    "PermissionDenied",
    "Platform",
    "PycraneError",
    "Reference",
    "Registry",
    "RegistryError",
    "RegistryNotFound",
    "RegistryServer",
    "Repository",
    "SizeMismatch",
    "StoreError",
    "Tag",
    "TarballError",
    "TransportError",
    "UnsafePathError",
    "VerificationError",
    "__version__",
    "empty_image",
    "empty_index",
    "empty_layer",
    "errors",
    "familiar",
    "layout",
    "mutate",
    "parse_reference",
    "random_image",
    "random_index",
    "random_layer",
    "remote",
    "tarball",
    "v1",
    "validate",
    "validate_image",
    "validate_index",
]
