"""The registry's storage interface, and the in-memory backend used by tests.

The HTTP handler talks only to :class:`Storage`; the memory backend here and the
disk backend in :mod:`pycrane.registry.disk` implement it. The model is the one
of CNCF distribution: blobs are content-addressed and shared by the whole
registry, and each repository holds *links* to the blobs and manifests it owns,
so a blob pushed to ``a`` is not readable through ``b`` until it is pushed or
mounted there. Tags map a name to a manifest digest; a manifest with a
``subject`` is listed by the referrers API of its repository.

Uploads are sessions: data is hashed while it is written and becomes a visible
blob only when the final ``PUT`` names the digest and the content matches it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from pycrane.errors import DigestMismatch, NotFoundError
from pycrane.layout.memory import MemoryBlobStore, MemoryIngest, StoreFull
from pycrane.registry.apierrors import ApiError
from pycrane.registry.manifests import PushedManifest
from pycrane.v1.digest import Digest

__all__ = [
    "CHUNK",
    "DEFAULT_MAX_MEMORY",
    "BlobManager",
    "BlobReader",
    "Body",
    "Catalog",
    "Ingester",
    "ManifestStore",
    "MemoryStorage",
    "Storage",
    "StoredManifest",
    "copy_body",
]

#: Transfer size: bodies are read and blobs are sent in pieces of this size.
CHUNK = 1024 * 1024
#: An upload session of the in-memory storage that received nothing for this long is
#: dropped (with its bytes) when the next upload starts or memory runs short: clients
#: that die or give up on a session would otherwise hold that memory for good.
UPLOAD_IDLE_LIMIT = 600.0
#: Default bound of the in-memory storage: stored blobs and manifests plus uploads in
#: flight (``registry serve --max-memory``). Past it writes get 413 DENIED.
DEFAULT_MAX_MEMORY = 1024**3


class Body(Protocol):
    """A request body: ``readinto`` fills a buffer and returns 0 at the end."""

    def readinto(self, buf: memoryview) -> int: ...


@dataclass(frozen=True)
class StoredManifest:
    """A manifest as the registry serves it: the exact bytes and the pushed media type."""

    digest: Digest
    media_type: str
    raw: bytes


class BlobReader(Protocol):
    """Reading blobs, as seen through one repository."""

    def blob_size(self, repo: str, digest: Digest) -> int | None:
        """The size of a blob linked into ``repo``, or None."""

    def blob_open(self, repo: str, digest: Digest) -> tuple[BinaryIO, int]:
        """An open stream and the size; raise ApiError BLOB_UNKNOWN when not linked."""


class BlobManager(Protocol):
    """Linking blobs into repositories: whole bodies, mounts, deletes."""

    def blob_put(self, repo: str, digest: Digest, body: Body) -> int:
        """Store a whole body as ``digest`` (verified) and link it; return the size."""

    def blob_mount(self, repo: str, digest: Digest, source: str) -> bool:
        """Link a blob that ``source`` owns into ``repo``; False when ``source`` lacks it."""

    def blob_delete(self, repo: str, digest: Digest) -> bool:
        """Unlink a blob from ``repo`` (content stays while others link it)."""


class Ingester(Protocol):
    """Upload sessions: data hashed as written, visible only once finished and verified."""

    def upload_start(self, repo: str) -> str:
        """Open a session; return its opaque id."""

    def upload_offset(self, repo: str, session: str) -> int:
        """Bytes received so far; raise ApiError BLOB_UPLOAD_UNKNOWN."""

    def upload_write(self, repo: str, session: str, body: Body, start: int | None) -> int:
        """Append a body; when ``start`` is given it must equal the offset (else 416)."""

    def upload_finish(self, repo: str, session: str, digest: Digest) -> int:
        """Verify and publish the upload as ``digest``, link it; the session ends either way."""

    def upload_cancel(self, repo: str, session: str) -> None:
        """Drop the session and its data; raise ApiError BLOB_UPLOAD_UNKNOWN."""


class ManifestStore(Protocol):
    """Manifests by digest, the tags pointing at them, and the referrers index."""

    def manifest_get(self, repo: str, reference: str | Digest) -> StoredManifest | None:
        """The manifest a tag or digest names in ``repo``."""

    def manifest_put(
        self, repo: str, manifest: PushedManifest, raw: bytes, tag: str | None
    ) -> None:
        """Store the raw bytes, link them, point ``tag`` at them, index the subject."""

    def manifest_delete(self, repo: str, digest: Digest) -> bool:
        """Remove a manifest, every tag pointing at it, and its referrers entry."""

    def tag_delete(self, repo: str, tag: str) -> bool:
        """Remove one tag."""

    def tags(self, repo: str) -> list[str] | None:
        """All tags of ``repo`` sorted; None when the repository is unknown."""

    def referrers(self, repo: str, subject: Digest) -> list[dict[str, Any]]:
        """Descriptors of the manifests in ``repo`` whose subject is ``subject``."""


class Catalog(Protocol):
    """The repositories that hold anything."""

    def repositories(self) -> list[str]:
        """All repository names, sorted."""


class Storage(BlobReader, BlobManager, Ingester, ManifestStore, Catalog, Protocol):
    """What the HTTP layer needs from a backend: every role. Names are validated first.

    ``tests/test_registry_storage_suite.py`` runs one conformance suite over every
    implementation (memory and disk), role by role.
    """


def copy_body(body: Body, write: Callable[[memoryview], object], limit: int | None = None) -> int:
    """Pump a request body into ``write`` in :data:`CHUNK` pieces through one reused buffer."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    while True:
        n = body.readinto(view)
        if not n:
            return total
        total += n
        if limit is not None and total > limit:
            raise ApiError("SIZE_INVALID", f"body longer than the {limit} bytes expected")
        write(view[:n])


def check_offset(start: int | None, offset: int, session: str, location: str) -> None:
    """Raise the spec's 416 (with the current Range) unless a chunk starts at ``offset``."""
    if start is not None and start != offset:
        raise ApiError(
            "RANGE_INVALID",
            f"upload {session}: chunk starts at byte {start}, expected {offset}",
            headers={"Range": f"0-{max(offset - 1, 0)}", "Location": location},
        )


def upload_location(repo: str, session: str) -> str:
    """The relative URL of an upload session."""
    return f"/v2/{repo}/blobs/uploads/{session}"


@dataclass
class _Upload:
    repo: str
    ingest: MemoryIngest
    lock: threading.Lock = field(default_factory=threading.Lock)
    touched: float = field(default_factory=time.monotonic)


@dataclass
class _Repo:
    blobs: set[Digest] = field(default_factory=set)
    manifests: dict[Digest, str] = field(default_factory=dict)
    tags: dict[str, Digest] = field(default_factory=dict)
    referrers: dict[Digest, dict[Digest, dict[str, Any]]] = field(default_factory=dict)
    subjects: dict[Digest, Digest] = field(default_factory=dict)


def _full(err: StoreFull) -> ApiError:
    return ApiError(
        "DENIED",
        f"the in-memory registry is full ({err.args[0]}, --max-memory):"
        " serve with --disk for large images",
        status=413,
    )


class MemoryStorage:
    """Repositories in dicts under one lock, content in one :class:`MemoryBlobStore`.

    Meant for tests and small images: every blob lives in RAM, and so does an
    upload in progress. The blob store verifies what becomes visible, keeps each
    blob once for all repositories, and bounds stored content and uploads in flight
    together by ``max_bytes`` (None: no bound); a write past it is refused with 413
    ``DENIED`` and its upload session dropped.
    """

    def __init__(self, max_bytes: int | None = DEFAULT_MAX_MEMORY) -> None:
        self._lock = threading.RLock()
        self._content = MemoryBlobStore(max_bytes=max_bytes)
        self._repos: dict[str, _Repo] = {}
        self._uploads: dict[str, _Upload] = {}

    @property
    def max_bytes(self) -> int | None:
        return self._content.max_bytes

    @property
    def used(self) -> int:
        """Bytes held: stored blobs and manifests, uploads and monolithic bodies in flight."""
        return self._content.used

    def _expire_idle(self) -> int:
        """Drop upload sessions idle for :data:`UPLOAD_IDLE_LIMIT`; how many."""
        with self._lock:
            idle = time.monotonic() - UPLOAD_IDLE_LIMIT
            stale = [
                (key, up)
                for key, up in self._uploads.items()
                if up.touched < idle and not up.lock.locked()
            ]
            for key, up in stale:
                del self._uploads[key]
                up.ingest.abort()
            return len(stale)

    def _writer(self, ingest: MemoryIngest) -> Callable[[memoryview], None]:
        """``ingest.write``, retried once after idle sessions are dropped when memory is short."""

        def write(piece: memoryview) -> None:
            try:
                ingest.write(piece)
            except StoreFull as err:
                if not self._expire_idle():
                    raise _full(err) from None
                try:
                    ingest.write(piece)
                except StoreFull as again:
                    raise _full(again) from None

        return write

    def _repo(self, name: str) -> _Repo:
        repo = self._repos.get(name)
        if repo is None:
            repo = self._repos[name] = _Repo()
        return repo

    # Blobs
    def blob_size(self, repo: str, digest: Digest) -> int | None:
        with self._lock:
            r = self._repos.get(repo)
            if r is None or digest not in r.blobs:
                return None
            return self._content.size(digest)

    def blob_open(self, repo: str, digest: Digest) -> tuple[BinaryIO, int]:
        with self._lock:
            r = self._repos.get(repo)
            size = self._content.size(digest) if r is not None and digest in r.blobs else None
            if size is not None:
                return self._content.open(digest), size
        raise ApiError(
            "BLOB_UNKNOWN", f"blob {digest} unknown to {repo}", detail={"digest": str(digest)}
        )

    def blob_mount(self, repo: str, digest: Digest, source: str) -> bool:
        with self._lock:
            src = self._repos.get(source)
            if src is None or digest not in src.blobs or not self._content.exists(digest):
                return False
            self._repo(repo).blobs.add(digest)
            return True

    def blob_delete(self, repo: str, digest: Digest) -> bool:
        with self._lock:
            r = self._repos.get(repo)
            if r is None or digest not in r.blobs:
                return False
            r.blobs.discard(digest)
            self._collect(digest)
            return True

    def _collect(self, digest: Digest) -> None:
        """Drop blob bytes no repository links any more (memory is the scarce thing here)."""
        if not any(digest in r.blobs or digest in r.manifests for r in self._repos.values()):
            self._content.delete(digest)

    def _commit(self, repo: str, digest: Digest, ingest: MemoryIngest) -> int:
        """Verify and publish what ``ingest`` holds as ``digest``, linked into ``repo``."""
        size = ingest.offset
        try:
            ingest.commit(digest)
        except DigestMismatch:
            ingest.abort()
            raise ApiError(
                "DIGEST_INVALID",
                f"blob content is {ingest.digest()}, not {digest}",
                detail={"digest": str(digest)},
            ) from None
        with self._lock:
            self._repo(repo).blobs.add(digest)
        return size

    def blob_put(self, repo: str, digest: Digest, body: Body) -> int:
        with self._content.ingest(algorithm=digest.algorithm) as ingest:
            copy_body(body, self._writer(ingest))
            return self._commit(repo, digest, ingest)

    # Uploads
    def upload_start(self, repo: str) -> str:
        session = uuid.uuid4().hex
        with self._lock:
            self._expire_idle()
            self._repo(repo)
            self._uploads[session] = _Upload(repo, self._content.ingest(session))
        return session

    def _upload(self, repo: str, session: str) -> _Upload:
        with self._lock:
            up = self._uploads.get(session)
        if up is None or up.repo != repo:
            raise ApiError("BLOB_UPLOAD_UNKNOWN", f"upload {session} unknown to {repo}")
        return up

    def upload_offset(self, repo: str, session: str) -> int:
        return self._upload(repo, session).ingest.offset

    def upload_write(self, repo: str, session: str, body: Body, start: int | None) -> int:
        up = self._upload(repo, session)
        with up.lock:
            if self._uploads.get(session) is not up:  # finished while we waited
                raise ApiError("BLOB_UPLOAD_UNKNOWN", f"upload {session} unknown to {repo}")
            check_offset(start, up.ingest.offset, session, upload_location(repo, session))
            up.touched = time.monotonic()
            try:
                copy_body(body, self._writer(up.ingest))
            except ApiError as err:
                if err.status == 413:  # out of memory: the session cannot finish, free it
                    with self._lock:
                        if self._uploads.pop(session, None) is up:
                            up.ingest.abort()
                raise
            finally:
                up.touched = time.monotonic()
            return up.ingest.offset

    def upload_finish(self, repo: str, session: str, digest: Digest) -> int:
        up = self._upload(repo, session)
        with up.lock, self._lock:
            if self._uploads.pop(session, None) is not up:
                raise ApiError("BLOB_UPLOAD_UNKNOWN", f"upload {session} unknown to {repo}")
        ingest = up.ingest
        if digest.algorithm != "sha256":
            # Sessions hash with sha256; reopening the ref hashes it in the digest's.
            ingest.close()
            ingest = self._content.ingest(session, digest.algorithm)
        return self._commit(repo, digest, ingest)

    def upload_cancel(self, repo: str, session: str) -> None:
        self._upload(repo, session)
        with self._lock:
            up = self._uploads.pop(session, None)
        if up is not None:
            with up.lock:
                up.ingest.abort()

    # Manifests
    def manifest_get(self, repo: str, reference: str | Digest) -> StoredManifest | None:
        with self._lock:
            r = self._repos.get(repo)
            if r is None:
                return None
            digest = r.tags.get(reference) if isinstance(reference, str) else reference
            if digest is None or digest not in r.manifests:
                return None
            try:
                raw = self._content.read_bytes(digest, verify=False)
            except NotFoundError:
                return None
            return StoredManifest(digest, r.manifests[digest], raw)

    def manifest_put(
        self, repo: str, manifest: PushedManifest, raw: bytes, tag: str | None
    ) -> None:
        with self._lock:
            try:
                self._content.put(raw, digest=manifest.digest)
            except StoreFull as err:
                raise _full(err) from None
            r = self._repo(repo)
            r.manifests[manifest.digest] = manifest.media_type
            if tag is not None:
                r.tags[tag] = manifest.digest
            if manifest.subject is not None:
                r.referrers.setdefault(manifest.subject, {})[manifest.digest] = (
                    manifest.referrer_descriptor()
                )
                r.subjects[manifest.digest] = manifest.subject

    def manifest_delete(self, repo: str, digest: Digest) -> bool:
        with self._lock:
            r = self._repos.get(repo)
            if r is None or digest not in r.manifests:
                return False
            del r.manifests[digest]
            for tag in [t for t, d in r.tags.items() if d == digest]:
                del r.tags[tag]
            subject = r.subjects.pop(digest, None)
            if subject is not None:
                r.referrers.get(subject, {}).pop(digest, None)
            self._collect(digest)
            return True

    def tag_delete(self, repo: str, tag: str) -> bool:
        with self._lock:
            r = self._repos.get(repo)
            return r is not None and r.tags.pop(tag, None) is not None

    def tags(self, repo: str) -> list[str] | None:
        with self._lock:
            r = self._repos.get(repo)
            return None if r is None else sorted(r.tags)

    def repositories(self) -> list[str]:
        with self._lock:
            return sorted(n for n, r in self._repos.items() if r.blobs or r.manifests)

    def referrers(self, repo: str, subject: Digest) -> list[dict[str, Any]]:
        with self._lock:
            r = self._repos.get(repo)
            if r is None:
                return []
            return [r.referrers[subject][d] for d in sorted(r.referrers.get(subject, {}))]
