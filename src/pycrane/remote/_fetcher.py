"""Reading from registries: manifests (GET, HEAD), blobs (streamed, resumed), foreign URLs.

:class:`RemoteFetcher` is the read half of the client and the :class:`Fetcher`
that remote images hold. A manifest is kept as the bytes received and verified
when its reference is a digest (a tag's ``Docker-Content-Digest`` is not
trusted). A blob streams through :class:`BlobStream`, which resumes a dropped
connection with ``Range`` and is checked against its descriptor at EOF.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any, BinaryIO

from pycrane.errors import (
    DigestMismatch,
    ManifestError,
    NotFoundError,
    PermissionDenied,
    PycraneError,
    RegistryError,
    SizeMismatch,
    TransportError,
)
from pycrane.name import DigestRef, Reference, Repository
from pycrane.remote._api import RegistryAPI
from pycrane.remote._image import RemoteDescriptor, inline_data, read_all
from pycrane.remote._prefetch import Prefetcher
from pycrane.remote._retry import Retrier, RetryPolicy, retry_call
from pycrane.remote._transport import Response, _private_host, redact_url
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest, VerifyingReader
from pycrane.v1.limits import MANIFEST_LIMIT
from pycrane.v1.manifest import detect_media_type

__all__ = ["BlobStream", "RemoteFetcher"]

log = logging.getLogger("pycrane.remote")

#: Blobs larger than this are read ahead on a second thread (see _prefetch).
PREFETCH_MIN = 1 << 20
#: How often one blob download may resume after its connection drops.
MAX_RESUMES = 5
#: Resuming makes progress, so it waits little: 50 ms, growing to at most 1 s.
_RESUME_POLICY = RetryPolicy(backoff=0.05, factor=2.0, max_backoff=1.0, jitter=0.0)


def _body_broke(e: PycraneError) -> bool:
    return isinstance(e, TransportError) and e.kind == "read"


class RemoteFetcher:
    """Manifest and blob reads for one client (thread-safe)."""

    def __init__(
        self,
        api: RegistryAPI,
        *,
        insecure: bool = False,
        prefetch: bool = False,
        manifest_limit: int = MANIFEST_LIMIT,
    ) -> None:
        self.api = api
        self.insecure = insecure
        #: Read large blobs ahead on a second thread, overlapping receiving with hashing.
        self.prefetch = prefetch
        #: Manifests (and referrers indexes) larger than this are refused.
        self.manifest_limit = manifest_limit

    # -- manifests -------------------------------------------------------------------

    def _manifest_request(self, method: str, r: Reference, push: bool, **kw: Any) -> Response:
        repo = r.repository
        return self.api.request(
            method,
            repo.registry,
            f"/v2/{repo.path}/manifests/{r.identifier}",
            scopes=[repo.scope("pull,push" if push else "pull")],
            what=f"manifest {r}",
            headers={"Accept": mt.MANIFEST_ACCEPT},
            **kw,
        )

    def head(self, r: Reference) -> Descriptor:
        """A manifest's descriptor from a HEAD (a GET when the HEAD says too little)."""
        resp = self._manifest_request("HEAD", r, False)
        d = _descriptor_of(resp)
        if d is None or not mt.is_manifest(d.media_type):
            return self.get(r).descriptor
        if isinstance(r, DigestRef) and d.digest != r.digest:
            raise DigestMismatch(f"manifest {r}", str(r.digest), str(d.digest))
        return d

    def exists(self, r: Reference, *, push: bool = False) -> Descriptor | None:
        """The manifest's descriptor when it exists, else None (403 counts as absent)."""
        try:
            resp = self._manifest_request("HEAD", r, push, not_found=True)
        except PermissionDenied:
            return None  # the Artifactory quirk: 403 for a manifest that is not there
        if resp.status == 404:
            return None
        d = _descriptor_of(resp)
        if d is not None:
            return d
        try:
            return self.get(r).descriptor
        except NotFoundError:
            return None

    def get(self, r: Reference) -> RemoteDescriptor:
        """GET a manifest as raw bytes, verified when the reference is a digest."""

        def fetch() -> tuple[Response, bytes, bool]:
            resp = self._manifest_request("GET", r, False, stream=True)
            raw, too_long = resp.read_capped(self.manifest_limit)
            return resp, raw, too_long

        # A body that breaks off is simply asked for again: a manifest is small.
        resp, raw, too_long = retry_call(
            fetch, self.api.retry, f"manifest {r}", retry_on=_body_broke
        )
        if too_long:
            raise ManifestError(f"manifest {r}: larger than {self.manifest_limit} bytes")
        if isinstance(r, DigestRef):
            actual = Digest.from_bytes(raw, r.digest.algorithm)
            if actual != r.digest:
                raise DigestMismatch(f"manifest {r}", str(r.digest), str(actual))
        else:
            actual = Digest.from_bytes(raw)
        media = detect_media_type(raw, resp.header("Content-Type"), what=f"manifest {r}")
        return RemoteDescriptor(self, r, raw, media, actual)

    # -- blobs -----------------------------------------------------------------------

    def blob_exists(self, repo: Repository, digest: Digest, *, push: bool = False) -> bool:
        """HEAD a blob. ``push`` asks for the push scope up front (one token for a push)."""
        resp = self.api.request(
            "HEAD",
            repo.registry,
            f"/v2/{repo.path}/blobs/{digest}",
            scopes=[repo.scope("pull,push" if push else "pull")],
            what=f"blob {repo.name}@{digest}",
            not_found=True,
        )
        return resp.status == 200

    def blob_response(self, repo: Repository, digest: Digest, headers: dict[str, str]) -> Response:
        """A streaming GET of a blob (200, or 206 for a ``Range``)."""
        return self.api.request(
            "GET",
            repo.registry,
            f"/v2/{repo.path}/blobs/{digest}",
            scopes=[repo.scope("pull")],
            what=f"blob {repo.name}@{digest}",
            expected=(200, 206),
            headers=headers,
            stream=True,
        )

    def url_response(self, url: str, headers: dict[str, str], what: str) -> Response:
        """GET a foreign layer's URL: no credentials, https only unless ``insecure``."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" and not (self.insecure and parts.scheme == "http"):
            raise RegistryError(f"{what}: url {redact_url(url)} is not https")
        if _private_host(parts.hostname or "") and not self.insecure:
            raise RegistryError(f"{what}: url {redact_url(url)} is a private address")
        resp = self.api.transport.request("GET", url, headers=headers, stream=True)
        if resp.status not in (200, 206):
            resp.drain()
            raise RegistryError(
                f"{what}: GET {redact_url(url)} answered {resp.status}", status=resp.status
            )
        return resp

    def blob(self, repo: Repository, desc: Descriptor) -> BinaryIO:
        """A stream of the blob, resumed after drops and verified at EOF."""
        what = f"blob {repo.name}@{desc.digest}"
        raw: Any = BlobStream(self, repo, desc)
        if self.prefetch and (desc.size < 0 or desc.size > PREFETCH_MIN):
            raw = Prefetcher(raw)
        return VerifyingReader(raw, desc.digest, desc.size, what)  # type: ignore[return-value]

    def blob_at(self, repo: Repository, desc: Descriptor, offset: int) -> tuple[BinaryIO, int]:
        """The blob's raw bytes from ``offset`` on (``Range: bytes=N-``), and where they start.

        To continue a partial download kept on disk: the caller verifies the whole blob.
        A registry that answers 200 (ignoring Range), or 416, gives the whole blob
        again, from byte 0.
        """
        if offset <= 0:
            return BlobStream(self, repo, desc), 0  # type: ignore[return-value]
        try:
            stream = BlobStream(self, repo, desc, start=offset)
        except RegistryError as e:
            if e.status != 416:
                raise
            stream = BlobStream(self, repo, desc)
        raw: Any = stream
        if self.prefetch and (desc.size < 0 or desc.size - stream.start > PREFETCH_MIN):
            raw = Prefetcher(stream)
        return raw, stream.start

    def read_blob(self, repo: Repository, desc: Descriptor, limit: int, kind: str) -> bytes:
        """A small blob read whole and verified (``desc.data`` when it is inline)."""
        what = f"{kind} {repo.name}@{desc.digest}"
        data = inline_data(desc, what)
        if data is not None:
            return data
        if desc.size > limit:
            raise ManifestError(f"{what}: {desc.size} bytes is larger than {limit}")
        with self.blob(repo, desc) as r:
            return read_all(r)


def _descriptor_of(resp: Response) -> Descriptor | None:
    """A manifest descriptor from response headers, when they say enough."""
    digest = resp.header("Docker-Content-Digest")
    ctype = (resp.header("Content-Type") or "").split(";")[0].strip()
    length = resp.header("Content-Length") or ""
    if not digest or not length.isdigit():
        return None
    try:
        return Descriptor(media_type=ctype, digest=Digest.parse(digest), size=int(length))
    except PycraneError:
        return None


class _Broken(Exception):
    """A resumed response ended before the resume offset (internal: triggers another resume)."""


class BlobStream:
    """The raw bytes of a blob, resuming after dropped connections.

    When a read fails (or the body ends early) before ``size`` bytes, the blob is
    requested again with ``Range: bytes=N-``; a server that answers 200 instead
    of 206 is read from the start and the first ``N`` bytes are skipped. Not
    verified by itself: :meth:`RemoteFetcher.blob` wraps it in a
    :class:`~pycrane.v1.digest.VerifyingReader`.

    With ``start`` the stream begins at that byte (a partial download kept on disk
    continues); if the server answers that first request with the whole blob,
    ``start`` becomes 0 and the stream gives the whole blob.
    """

    def __init__(
        self,
        fetcher: RemoteFetcher,
        repository: Repository,
        desc: Descriptor,
        *,
        max_resumes: int = MAX_RESUMES,
        start: int = 0,
    ) -> None:
        self._fetcher = fetcher
        self._repo = repository
        self._desc = desc
        #: Where this stream's bytes begin in the blob.
        self.start = start
        self._may_restart = start > 0
        self._offset = start
        self._resp: Response | None = None
        self._closed = False
        self._retries = Retrier(_RESUME_POLICY, self.what, attempts=max_resumes + 1)
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
            resp = self._fetcher.url_response(self.source_url, headers, self.what)
        else:
            try:
                resp = self._fetcher.blob_response(self._repo, self._desc.digest, headers)
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
            elif self._may_restart:
                self._offset = self.start = 0  # 200: the whole blob, and the caller knows
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
        self._may_restart = False
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
                resp = self._fetcher.url_response(url, headers, self.what)
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
        while 0 <= self._offset < self._desc.size and self._retries.again(
            f"{reason} at byte {self._offset}"
        ):
            self.resumes += 1
            if self._resp is not None:
                self._resp.close()
                self._resp = None
            try:
                self._open()
                return True
            except _Broken as e:
                reason = str(e)  # dropped again while skipping
            except TransportError as e:
                if e.kind != "read":
                    raise
                reason = str(e)
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
            except TransportError as e:
                if self._resume("connection dropped"):
                    continue
                raise TransportError(
                    f"{self.what}: connection failed after {self._offset} bytes ({e})",
                    kind="read",
                    host=e.host,
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
