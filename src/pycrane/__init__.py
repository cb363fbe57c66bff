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

The model (digests, descriptors, manifests, configs, platforms, and the lazy
``Image``/``Layer``/``ImageIndex`` abstractions) is imported eagerly; the
registry client, layout store, tarball and mutate APIs and the empty/random
image builders load on first use, so ``import pycrane`` (which every CLI
command pays) stays cheap for tools that need only part of it.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING, Any

from pycrane import errors, v1
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
from pycrane.name import (
    DigestRef,
    Reference,
    Registry,
    Repository,
    Tag,
    familiar,
    parse_reference,
)
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

if TYPE_CHECKING:
    # Submodules once imported eagerly: still reachable as attributes, now lazily.
    from pycrane import empty as empty
    from pycrane import layout, mutate, remote, tarball, validate
    from pycrane import random as random
    from pycrane.empty import empty_image, empty_index, empty_layer
    from pycrane.layout import BlobStore, Layout
    from pycrane.random import random_image, random_index, random_layer
    from pycrane.registry import RegistryServer
    from pycrane.remote import Client, Keychain
    from pycrane.validate import validate_image, validate_index

__version__ = "0.1.0"

# name -> (module, attribute or None for the module itself), loaded on first access.
_LAZY: dict[str, tuple[str, str | None]] = {
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
        with contextlib.suppress(AttributeError, TypeError):
            if str(getattr(value, "__module__", "")).startswith("pycrane."):
                value.__module__ = "pycrane"
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

for _name in __all__:
    if _name not in _LAZY and _name != "__version__":
        _as_public(globals()[_name])
del _name
