"""Registries over the OCI distribution API: pull, push, copy, list, delete, referrers.

```python
from pycrane import remote

img = remote.image("ghcr.io/org/app:1.0")            # lazy; linux/amd64 out of an index
remote.digest("ghcr.io/org/app:1.0")                 # "sha256:..."
remote.copy("ghcr.io/org/app:1.0", "localhost:5000/app:1.0")
remote.push(img, "localhost:5000/app:copy")
```

The module-level functions mirror crane's commands and use a default
:class:`Client` (credentials from the Docker/containers config files); pass
``client=`` to reuse one with your own settings, or client options as keywords.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pycrane.errors import RegistryNotFound
from pycrane.name import Reference, Registry, Repository
from pycrane.progress import ProgressSink
from pycrane.remote._client import Client, Token
from pycrane.remote._image import RemoteDescriptor, RemoteImage, RemoteIndex, RemoteLayer
from pycrane.remote._limits import HostLimits, RateBudget
from pycrane.remote._retry import RetryPolicy
from pycrane.remote.keychain import ANONYMOUS, Credential, Keychain, StaticKeychain
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import Image, ImageIndex
from pycrane.v1.manifest import Index
from pycrane.v1.platform import Platform

__all__ = [
    "ANONYMOUS",
    "Client",
    "Credential",
    "HostLimits",
    "Keychain",
    "RateBudget",
    "RegistryNotFound",
    "RemoteDescriptor",
    "RemoteImage",
    "RemoteIndex",
    "RemoteLayer",
    "RetryPolicy",
    "StaticKeychain",
    "Token",
    "catalog",
    "config",
    "copy",
    "delete",
    "digest",
    "get",
    "image",
    "index",
    "list_tags",
    "manifest",
    "push",
    "referrers",
    "tag",
]


@contextmanager
def _client(client: Client | None, options: dict[str, Any]) -> Iterator[Client]:
    """The caller's client, or a new one closed when the call returns."""
    if client is not None:
        if options:
            raise TypeError("pass either client= or client options, not both")
        yield client
        return
    with Client(**options) as c:
        yield c


def get(ref: str | Reference, *, client: Client | None = None, **options: Any) -> RemoteDescriptor:
    """The raw manifest of ``ref`` with its media type and digest."""
    with _client(client, options) as c:
        return c.get(ref)


def image(
    ref: str | Reference,
    *,
    platform: Platform | str | None = None,
    client: Client | None = None,
    **options: Any,
) -> RemoteImage:
    """A lazy image (an index resolves to ``platform``, default linux/amd64)."""
    with _client(client, options) as c:
        return c.image(ref, platform)


def index(ref: str | Reference, *, client: Client | None = None, **options: Any) -> RemoteIndex:
    """A lazy index."""
    with _client(client, options) as c:
        return c.index(ref)


def digest(
    ref: str | Reference,
    *,
    platform: Platform | str | None = None,
    client: Client | None = None,
    **options: Any,
) -> Digest:
    """The digest of ``ref`` (HEAD first); with ``platform``, of that platform's image."""
    with _client(client, options) as c:
        if platform is not None:
            return c.image(ref, platform).digest()
        return c.head(ref).digest


def manifest(
    ref: str | Reference,
    *,
    platform: Platform | str | None = None,
    client: Client | None = None,
    **options: Any,
) -> bytes:
    """The raw manifest bytes (of ``platform``'s image when given)."""
    with _client(client, options) as c:
        if platform is not None:
            return c.image(ref, platform).raw_manifest()
        return c.get(ref).raw


def config(
    ref: str | Reference,
    *,
    platform: Platform | str | None = None,
    client: Client | None = None,
    **options: Any,
) -> bytes:
    """The raw config blob of the image."""
    with _client(client, options) as c:
        return c.image(ref, platform).raw_config()


def copy(
    src: str | Reference | Repository,
    dst: str | Reference | Repository,
    *,
    platforms: Sequence[Platform | str] | None = None,
    all_tags: bool = False,
    referrers: bool = False,
    jobs: int = 4,
    no_clobber: bool = False,
    progress: ProgressSink | None = None,
    client: Client | None = None,
    **options: Any,
) -> Descriptor | list[Descriptor]:
    """Copy between registries or repositories (see :meth:`Client.copy`)."""
    with _client(client, options) as c:
        return c.copy(
            src,
            dst,
            platforms=platforms,
            all_tags=all_tags,
            referrers=referrers,
            jobs=jobs,
            no_clobber=no_clobber,
            progress=progress,
        )


def list_tags(
    repo: str | Repository | Reference,
    *,
    page_size: int | None = None,
    client: Client | None = None,
    **options: Any,
) -> list[str]:
    """Every tag of a repository."""
    with _client(client, options) as c:
        return c.list_tags(repo, page_size)


def catalog(
    registry: str | Registry,
    *,
    page_size: int | None = None,
    client: Client | None = None,
    **options: Any,
) -> list[str]:
    """Every repository of a registry."""
    with _client(client, options) as c:
        return c.catalog(registry, page_size)


def delete(ref: str | Reference, *, client: Client | None = None, **options: Any) -> Digest:
    """Delete a manifest (a tag is resolved to its digest first; see :meth:`Client.delete`)."""
    with _client(client, options) as c:
        return c.delete(ref)


def tag(
    ref: str | Reference, new_tag: str, *, client: Client | None = None, **options: Any
) -> Descriptor:
    """Add ``new_tag`` in the same repository."""
    with _client(client, options) as c:
        return c.tag(ref, new_tag)


def push(
    obj: Image | ImageIndex,
    ref: str | Reference,
    *,
    jobs: int = 4,
    progress: ProgressSink | None = None,
    client: Client | None = None,
    **options: Any,
) -> Descriptor:
    """Push an image or index to ``ref``."""
    with _client(client, options) as c:
        return c.write(ref, obj, jobs=jobs, progress=progress)


def referrers(
    ref: str | Reference,
    *,
    artifact_type: str | None = None,
    client: Client | None = None,
    **options: Any,
) -> Index:
    """The referrers index of ``ref``."""
    with _client(client, options) as c:
        return c.referrers(ref, artifact_type)
