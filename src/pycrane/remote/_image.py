"""Lazy images, indexes and layers backed by a registry.

Nothing is fetched until asked: an image holds its manifest bytes, fetches its
config on first use, and streams each layer on ``compressed()``. Each object holds
a narrow :class:`Fetcher` (go-containerregistry's ``remoteImage`` holds a
``fetcher`` the same way): manifests by reference, blobs by descriptor, verified.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from pycrane.errors import ManifestError
from pycrane.name import DigestRef, Reference, Repository
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest, VerifyingReader
from pycrane.v1.image import Image, ImageBase, ImageIndex, ImageIndexBase, Layer, LayerBase
from pycrane.v1.limits import CONFIG_LIMIT
from pycrane.v1.manifest import Index, refuse_schema1
from pycrane.v1.match import select_image
from pycrane.v1.platform import DEFAULT_PLATFORM, Platform

__all__ = [
    "Fetcher",
    "RemoteDescriptor",
    "RemoteImage",
    "RemoteIndex",
    "RemoteLayer",
    "inline_data",
    "read_all",
]


class Fetcher(Protocol):
    """What remote images need from the client: manifests and verified blob streams."""

    def get(self, ref: Reference) -> RemoteDescriptor:
        """The manifest ``ref`` names, as raw bytes (verified when ``ref`` is a digest)."""
        ...

    def blob(self, repo: Repository, desc: Descriptor) -> BinaryIO:
        """A stream of the blob, checked against ``desc`` (size, digest) as it is read."""
        ...

    def read_blob(self, repo: Repository, desc: Descriptor, limit: int, kind: str) -> bytes:
        """A small blob (a config) read whole and verified; larger than ``limit`` is refused."""
        ...


def inline_data(desc: Descriptor, what: str) -> bytes | None:
    """A descriptor's embedded ``data``, verified; None when it has none."""
    if desc.data is None:
        return None
    return read_all(VerifyingReader(io.BytesIO(desc.data), desc.digest, desc.size, what))


def read_all(stream: BinaryIO | VerifyingReader) -> bytes:
    """Read to EOF (a verifying stream checks its digest only when it sees EOF)."""
    parts = []
    while chunk := stream.read(1 << 20):
        parts.append(chunk)
    return b"".join(parts)


@dataclass(frozen=True)
class RemoteDescriptor:
    """A manifest fetched from a registry: its raw bytes, media type and descriptor."""

    fetcher: Fetcher = field(repr=False)
    ref: Reference
    raw: bytes = field(repr=False)
    media_type: str
    digest: Digest

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=self.media_type, digest=self.digest, size=len(self.raw))

    def is_index(self) -> bool:
        return mt.is_index(self.media_type)

    def image(self, platform: Platform | str | None = None) -> RemoteImage:
        """This manifest as an image; an index resolves to ``platform`` (default linux/amd64)."""
        what = f"manifest {self.ref}"
        refuse_schema1(self.media_type, what)
        if mt.is_index(self.media_type):
            img = select_image(self.index(), platform or DEFAULT_PLATFORM, f"index {self.ref}")
            if not isinstance(img, RemoteImage):  # pragma: no cover - children are remote
                raise ManifestError(f"index {self.ref}: child {img.digest()} is not remote")
            return img
        if not mt.is_image(self.media_type):
            raise ManifestError(f"{what}: {self.media_type} is not an image")
        return RemoteImage(self.fetcher, self.ref, self.raw, self.media_type)

    def index(self) -> RemoteIndex:
        if not mt.is_index(self.media_type):
            raise ManifestError(f"manifest {self.ref}: expected an index, got {self.media_type}")
        return RemoteIndex(self.fetcher, self.ref, self.raw, self.media_type, self.descriptor)

    def image_or_index(self) -> RemoteImage | RemoteIndex:
        """What this manifest is: the whole index, or the image (schema 1 refused)."""
        if mt.is_index(self.media_type):
            return self.index()
        return self.image()


class RemoteLayer(LayerBase):
    """A blob in a registry repository; ``repository`` is where it can be mounted from."""

    def __init__(
        self,
        fetcher: Fetcher,
        repository: Repository,
        desc: Descriptor,
        diff_id: Digest | None = None,
    ) -> None:
        super().__init__(diff_id)
        self._fetcher = fetcher
        self.repository = repository
        self._desc = desc

    def descriptor(self) -> Descriptor:
        return self._desc

    def compressed(self) -> BinaryIO:
        """A verified stream of the blob (size and digest checked at EOF)."""
        d = self._desc
        data = inline_data(d, f"blob {self.repository.name}@{d.digest}")
        if data is not None:
            return io.BytesIO(data)
        return self._fetcher.blob(self.repository, d)

    def compressed_at(self, offset: int) -> tuple[BinaryIO, int]:
        """The blob's bytes from ``offset`` on, *not* verified, and where they really start
        (0 when the registry ignores ``Range``): a kept partial download continues with it,
        and the caller verifies the whole blob."""
        at = getattr(self._fetcher, "blob_at", None)
        d = self._desc
        if at is None or offset <= 0 or d.data is not None:
            return self.compressed(), 0
        got: tuple[BinaryIO, int] = at(self.repository, d, offset)
        return got

    def verified(self) -> BinaryIO:
        return self.compressed()  # already verified; do not hash twice

    def __repr__(self) -> str:
        return f"RemoteLayer({self.repository.name}@{self._desc.digest})"


class RemoteImage(ImageBase):
    """An image manifest fetched from a registry; config and layers load lazily."""

    def __init__(
        self,
        fetcher: Fetcher,
        ref: Reference,
        raw: bytes,
        media_type: str,
        descriptor: Descriptor | None = None,
    ) -> None:
        super().__init__()
        self._fetcher = fetcher
        self.reference = ref
        self._raw = raw
        self._media_type = media_type
        self._desc = descriptor

    @property
    def repository(self) -> Repository:
        """Where this image's blobs can be read, or mounted from on the same registry."""
        return self.reference.repository

    def raw_manifest(self) -> bytes:
        return self._raw

    def _media_type_hint(self) -> str | None:
        return self._media_type

    def descriptor(self) -> Descriptor:
        base = super().descriptor()
        if self._desc is not None:
            return Descriptor(
                media_type=base.media_type,
                digest=base.digest,
                size=base.size,
                annotations=dict(self._desc.annotations),
                platform=self._desc.platform,
                artifact_type=base.artifact_type or self._desc.artifact_type,
            )
        return base

    def raw_config(self) -> bytes:
        def fetch() -> bytes:
            cdesc = self.manifest().config
            return self._fetcher.read_blob(self.repository, cdesc, CONFIG_LIMIT, "config")

        return self._memo.get("raw_config", fetch)

    def layer_for(self, descriptor: Descriptor, diff_id: Digest | None) -> Layer:
        return RemoteLayer(self._fetcher, self.repository, descriptor, diff_id)

    def blob_layers(self) -> list[Layer]:
        """The manifest's layers without their diff_ids: copying needs no config round trip."""
        return [self.layer_for(d, None) for d in self.manifest().layers]

    def __repr__(self) -> str:
        return f"RemoteImage({self.reference})"


class RemoteIndex(ImageIndexBase):
    """An index (or manifest list) fetched from a registry; children load lazily."""

    def __init__(
        self,
        fetcher: Fetcher,
        ref: Reference,
        raw: bytes,
        media_type: str,
        descriptor: Descriptor | None = None,
    ) -> None:
        super().__init__()
        self._fetcher = fetcher
        self.reference = ref
        self._raw = raw
        self._media_type = media_type
        self._desc = descriptor
        self._children: dict[Digest, Image | ImageIndex] = {}
        self._children_lock = threading.Lock()

    @property
    def repository(self) -> Repository:
        return self.reference.repository

    def raw_manifest(self) -> bytes:
        return self._raw

    def index_manifest(self) -> Index:
        def parse() -> Index:
            try:
                return Index.parse(self._raw, self._media_type)
            except ManifestError:
                return Index.parse(self._raw)

        return self._memo.get("index", parse)

    def child(self, descriptor: Descriptor) -> Image | ImageIndex:
        # Memoised, but fetched outside the lock so children load concurrently.
        with self._children_lock:
            cached = self._children.get(descriptor.digest)
        if cached is not None:
            return cached
        child = self._fetch_child(descriptor)
        with self._children_lock:
            return self._children.setdefault(descriptor.digest, child)

    def _fetch_child(self, descriptor: Descriptor) -> Image | ImageIndex:
        ref = DigestRef(self.repository, descriptor.digest)
        what = f"manifest {ref}"
        raw = inline_data(descriptor, what)
        if raw is None:
            rd = self._fetcher.get(ref)
            raw, media = rd.raw, rd.media_type
        else:
            media = descriptor.media_type
        if mt.is_index(media):
            return RemoteIndex(self._fetcher, ref, raw, media, descriptor)
        refuse_schema1(media, what)
        return RemoteImage(self._fetcher, ref, raw, media, descriptor)

    def __repr__(self) -> str:
        return f"RemoteIndex({self.reference})"
