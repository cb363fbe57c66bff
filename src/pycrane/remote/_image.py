"""Lazy images, indexes and layers backed by a registry.

Nothing is fetched until asked: an image holds its manifest bytes, fetches its
config on first use, and streams each layer on ``compressed()``. Every blob
stream is checked against its descriptor (size and digest) and resumes with a
``Range`` request when a connection drops mid-blob.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, BinaryIO

from urllib3.exceptions import HTTPError as _Urllib3Error

from pycrane.errors import (
    ManifestError,
    NotFoundError,
    PycraneError,
    SizeMismatch,
    TransportError,
)
from pycrane.name import DigestRef, Reference, Repository
from pycrane.remote._prefetch import Prefetcher
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest, VerifyingReader
from pycrane.v1.image import Image, ImageBase, ImageIndex, ImageIndexBase, Layer, LayerBase
from pycrane.v1.manifest import Index

if TYPE_CHECKING:
    from pycrane.remote._client import Client
    from pycrane.remote._transport import Response

__all__ = ["BlobStream", "RemoteImage", "RemoteIndex", "RemoteLayer", "read_all"]

log = logging.getLogger("pycrane.remote")

#: Blobs larger than this are read ahead on a second thread (see _prefetch).
PREFETCH_MIN = 1 << 20
#: Config blobs (JSON) larger than this are refused.
CONFIG_LIMIT = 100 << 20


class _Broken(Exception):
    """A resumed response ended before the resume offset (internal: triggers another resume)."""


class BlobStream:
    """The raw bytes of a blob, resuming after dropped connections.

    When a read fails (or the body ends early) before ``size`` bytes, the blob is
    requested again with ``Range: bytes=N-``; a server that answers 200 instead
    of 206 is read from the start and the first ``N`` bytes are skipped. Not
    verified by itself: wrap it in :class:`~pycrane.v1.digest.VerifyingReader`.
    """

    def __init__(
        self, client: Client, repository: Repository, desc: Descriptor, *, max_resumes: int = 5
    ) -> None:
        self._client = client
        self._repo = repository
        self._desc = desc
        self._offset = 0
        self._resumes_left = max_resumes
        self._resp: Response | None = None
        self._closed = False
        self.resumes = 0
        #: Where the bytes come from when the registry lacks them (a foreign layer's URL).
        self.source_url: str | None = None
        self._open()

    @property
    def what(self) -> str:
        return f"blob {self._repo.name}@{self._desc.digest}"

    def _open(self) -> None:
        headers = {}
        if self._offset:
            headers["Range"] = f"bytes={self._offset}-"
        if self.source_url is not None:
            resp = self._client._url_get(self.source_url, headers, self.what)
        else:
            try:
                resp = self._client._blob_get(self._repo, self._desc.digest, headers)
            except NotFoundError:
                if not self._desc.urls:
                    raise
                resp = self._from_urls(headers)
        skip = 0
        if self._offset:
            if resp.status == 206:
                start = _content_range_start(resp.header("Content-Range"))
                if start is not None and start != self._offset:
                    if start > self._offset:
                        resp.close()
                        raise TransportError(
                            f"{self.what}: server resumed at byte {start}, expected {self._offset}"
                        )
                    skip = self._offset - start
            else:
                skip = self._offset  # 200: the whole blob again
        else:
            length = resp.header("Content-Length")
            if (
                resp.status == 200
                and length is not None
                and length.isdigit()
                and self._desc.size >= 0
                and int(length) != self._desc.size
            ):
                resp.close()
                raise SizeMismatch(self.what, self._desc.size, int(length))
        self._resp = resp
        while skip:
            data = resp.read(min(skip, 1 << 20))  # a drop here is handled by _resume
            if not data:
                raise _Broken("body ended while skipping to the resume offset")
            skip -= len(data)

    def _from_urls(self, headers: dict[str, str]) -> Response:
        """A foreign layer: the registry does not have it, its descriptor says where it is."""
        errors = []
        for url in self._desc.urls:
            try:
                resp = self._client._url_get(url, headers, self.what)
            except PycraneError as e:
                errors.append(str(e))
                continue
            self.source_url = url
            return resp
        raise NotFoundError(
            f"{self.what}: not in the registry, nor at its urls ({'; '.join(errors)})"
        )

    def _resume(self, reason: str) -> bool:
        """Re-request from the current offset; False once the resume budget is spent."""
        while self._resumes_left > 0 and 0 <= self._offset < self._desc.size:
            self._resumes_left -= 1
            self.resumes += 1
            log.debug("%s: %s at byte %d; resuming", self.what, reason, self._offset)
            if self._resp is not None:
                self._resp.close()
                self._resp = None
            time.sleep(min(0.05 * self.resumes, 1.0))
            try:
                self._open()
                return True
            except (_Broken, _Urllib3Error, OSError) as e:
                reason = str(e) or type(e).__name__  # dropped again while skipping
        return False

    def read(self, n: int = -1) -> bytes:
        if self._closed:
            raise ValueError("read from a closed blob stream")
        if n is None or n < 0:
            chunks = []
            while chunk := self.read(1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        if n == 0:
            return b""
        while True:
            assert self._resp is not None
            try:
                data = self._resp.read(n)
            except (_Urllib3Error, OSError) as e:
                if self._resume(type(e).__name__):
                    continue
                raise TransportError(
                    f"{self.what}: connection failed after {self._offset} bytes ({e})"
                ) from None
            short = not data and self._desc.size >= 0 and self._offset < self._desc.size
            if short and self._resume("body ended early"):
                continue
            self._offset += len(data)
            return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(buf))
        memoryview(buf)[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._closed = True
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _content_range_start(value: str | None) -> int | None:
    if not value:
        return None
    v = value.strip()
    if v.lower().startswith("bytes"):
        v = v[5:].strip()
    start = v.split("-", 1)[0].strip()
    return int(start) if start.isdigit() else None


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


class RemoteLayer(LayerBase):
    """A blob in a registry repository; ``repository`` is where it can be mounted from."""

    def __init__(
        self,
        client: Client,
        repository: Repository,
        desc: Descriptor,
        diff_id: Digest | None = None,
    ) -> None:
        super().__init__(diff_id)
        self._client = client
        self.repository = repository
        self._desc = desc

    def descriptor(self) -> Descriptor:
        return self._desc

    def compressed(self) -> BinaryIO:
        """A verified stream of the blob (size and digest checked at EOF)."""
        d = self._desc
        what = f"blob {self.repository.name}@{d.digest}"
        data = inline_data(d, what)
        if data is not None:
            return io.BytesIO(data)
        raw: Any = BlobStream(self._client, self.repository, d)
        if self._client.prefetch and (d.size < 0 or d.size > PREFETCH_MIN):
            raw = Prefetcher(raw)
        return VerifyingReader(raw, d.digest, d.size, what)  # type: ignore[return-value]

    def verified(self) -> BinaryIO:
        return self.compressed()  # already verified; do not hash twice

    def __repr__(self) -> str:
        return f"RemoteLayer({self.repository.name}@{self._desc.digest})"


class RemoteImage(ImageBase):
    """An image manifest fetched from a registry; config and layers load lazily."""

    def __init__(
        self,
        client: Client,
        ref: Reference,
        raw: bytes,
        media_type: str,
        descriptor: Descriptor | None = None,
    ) -> None:
        super().__init__()
        self._client = client
        self.reference = ref
        self._raw = raw
        self._media_type = media_type
        self._desc = descriptor

    @property
    def repository(self) -> Repository:
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
            return self._client._fetch_blob(self.repository, cdesc, CONFIG_LIMIT, "config")

        return self._memo.get("raw_config", fetch)

    def layer_for(self, descriptor: Descriptor, diff_id: Digest | None) -> Layer:
        return RemoteLayer(self._client, self.repository, descriptor, diff_id)

    def __repr__(self) -> str:
        return f"RemoteImage({self.reference})"


class RemoteIndex(ImageIndexBase):
    """An index (or manifest list) fetched from a registry; children load lazily."""

    def __init__(
        self,
        client: Client,
        ref: Reference,
        raw: bytes,
        media_type: str,
        descriptor: Descriptor | None = None,
    ) -> None:
        super().__init__()
        self._client = client
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
            rd = self._client.get(ref)
            raw, media = rd.raw, rd.media_type
        else:
            media = descriptor.media_type
        if mt.is_index(media):
            return RemoteIndex(self._client, ref, raw, media, descriptor)
        if mt.is_schema1(media):
            raise ManifestError(
                f"{what}: Docker schema 1 ({media}) is not supported; "
                "push it again with a v2 client"
            )
        return RemoteImage(self._client, ref, raw, media, descriptor)

    def __repr__(self) -> str:
        return f"RemoteIndex({self.reference})"
