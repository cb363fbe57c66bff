"""The registry client: one object that pulls, pushes, copies, lists, deletes and finds referrers.

:class:`Client` is a small facade, as go-containerregistry's ``remote`` options
are: it parses each reference once, then hands the work to the part that owns it.

- :class:`~pycrane.remote._api.RegistryAPI`: auth sessions and error mapping;
- :class:`~pycrane.remote._fetcher.RemoteFetcher`: manifests and blob streams;
- :class:`~pycrane.remote._pusher.Pusher`: the upload-session protocol;
- :class:`~pycrane.remote._write.Writer`: images, indexes and manifests;
- :class:`~pycrane.remote._referrers.Referrers`, :class:`~pycrane.remote._list.Lister`
  and :class:`~pycrane.remote._copy.Copier`.

One client holds one connection pool and one auth session per registry, and is
safe to share between threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from pycrane.errors import AuthenticationError
from pycrane.name import DigestRef, Reference, Registry, Repository, Tag, parse_reference
from pycrane.progress import NULL_PROGRESS, ProgressSink
from pycrane.remote._api import RegistryAPI
from pycrane.remote._auth import RegistrySession
from pycrane.remote._fetcher import RemoteFetcher
from pycrane.remote._image import RemoteDescriptor, RemoteImage, RemoteIndex
from pycrane.remote._limits import HostLimits
from pycrane.remote._retry import RetryPolicy
from pycrane.remote._transport import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, Transport
from pycrane.remote.keychain import Credential, Keychain
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import Image, ImageIndex
from pycrane.v1.manifest import Index
from pycrane.v1.platform import Platform

if TYPE_CHECKING:
    from pycrane.remote._copy import Copier
    from pycrane.remote._list import Lister
    from pycrane.remote._pusher import Pusher
    from pycrane.remote._referrers import Referrers
    from pycrane.remote._write import Writer

__all__ = ["Client", "Token"]


@dataclass(frozen=True)
class Token:
    """A bearer token and the scopes it was asked for."""

    token: str = field(repr=False)
    expires_in: int
    scopes: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {"token": self.token, "expires_in": self.expires_in, "scopes": list(self.scopes)}


def _ref(value: str | Reference) -> Reference:
    return parse_reference(value) if isinstance(value, str) else value


def _repo(value: str | Repository | Reference) -> Repository:
    if isinstance(value, Repository):
        return value
    if isinstance(value, str):
        if "@" in value or ":" in value.rpartition("/")[2]:
            return parse_reference(value).repository
        return Repository.parse(value)
    return value.repository


def _platforms(values: Sequence[Platform | str] | None) -> list[Platform]:
    return [Platform.parse(p) if isinstance(p, str) else p for p in values or ()]


class Client:
    """A registry client. Thread-safe; reuse one for many operations.

    ```python
    c = Client()                                   # credentials from ~/.docker/config.json
    img = c.image("ghcr.io/org/app:1.0")           # lazy RemoteImage (linux/amd64 from an index)
    c.copy("ghcr.io/org/app:1.0", "localhost:5000/app:1.0", platforms=["linux/arm64"])
    ```

    ``insecure`` allows plain http and skips TLS verification (loopback registries
    always use http); ``ca_file`` adds a CA bundle; ``auth`` forces one credential
    for every registry instead of the keychain. ``timeout`` (seconds) bounds both
    how long connecting may take and how long a registry may stay silent mid-answer
    (defaults: 15 s and 30 s); ``retry`` says how often and for how long (60 s by
    default) a failing request is tried again. ``limits`` (a
    :class:`~pycrane.remote.HostLimits`, shareable between clients) caps requests
    in flight per registry host and paces them by the host's rate-limit budget.
    Blobs under ``monolithic_limit`` bytes (None: 16 MiB) go up in one PUT, larger
    ones stream through a PATCH (in ``chunk_size`` pieces when set).
    """

    def __init__(
        self,
        *,
        keychain: Keychain | None = None,
        auth: Credential | None = None,
        insecure: bool = False,
        ca_file: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        user_agent: str | None = None,
        jobs: int = 4,
        chunk_size: int | None = None,
        monolithic_limit: int | None = None,
        allow_nondistributable: bool = False,
        referrers_fallback: bool = True,
        prefetch: bool = False,
        limits: HostLimits | None = None,
    ) -> None:
        if timeout is not None:
            connect_timeout = read_timeout = timeout
        self.transport = Transport(
            insecure=insecure,
            ca_file=ca_file,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry=retry,
            user_agent=user_agent,
            pool_maxsize=max(16, jobs * 2),
            limits=limits,
        )
        self.keychain = keychain if keychain is not None else Keychain()
        self.insecure = insecure
        self.jobs = max(1, jobs)
        self.api = RegistryAPI(self.transport, self.keychain, auth=auth, insecure=insecure)
        #: Manifests and blob streams; what remote images hold.
        self.fetcher = RemoteFetcher(self.api, insecure=insecure, prefetch=prefetch)
        # The parts that write, list and copy are built on first use: a ``digest`` or
        # ``manifest`` command then never imports them (~5 ms of its start-up).
        self._chunk_size = chunk_size
        self._monolithic_limit = monolithic_limit
        self._allow_nondistributable = allow_nondistributable
        self._referrers_fallback = referrers_fallback
        self._parts_lock = threading.Lock()
        self._parts: dict[str, object] = {}

    # -- the parts built on first use (once, under a lock: they hold single-flight state) --

    def _part(self, name: str, build: Callable[[], object]) -> Any:
        with self._parts_lock:
            part = self._parts.get(name)
            if part is None:
                part = self._parts[name] = build()
            return part

    @property
    def pusher(self) -> Pusher:
        """The upload-session protocol (blobs, mounts, chunked and monolithic uploads)."""
        from pycrane.remote._pusher import MONOLITHIC_LIMIT, Pusher

        limit = self._monolithic_limit
        return cast(
            Pusher,
            self._part(
                "pusher",
                lambda: Pusher(
                    self.api,
                    self.fetcher,
                    chunk_size=self._chunk_size,
                    monolithic_limit=MONOLITHIC_LIMIT if limit is None else limit,
                    allow_nondistributable=self._allow_nondistributable,
                ),
            ),
        )

    @property
    def lister(self) -> Lister:
        """Tags and catalog listings."""
        from pycrane.remote._list import Lister, Paginator

        return cast(Lister, self._part("lister", lambda: Lister(self.api, Paginator(self.api))))

    @property
    def _referrers(self) -> Referrers:
        from pycrane.remote._referrers import Referrers

        lister = self.lister
        return cast(
            Referrers,
            self._part("referrers", lambda: Referrers(self.api, self.fetcher, lister.paginator)),
        )

    @property
    def writer(self) -> Writer:
        """Images, indexes and manifests to a registry."""
        from pycrane.remote._write import Writer

        parts = (self.fetcher, self.pusher, self._referrers)
        fallback = self._referrers_fallback
        return cast(
            Writer, self._part("writer", lambda: Writer(*parts, referrers_fallback=fallback))
        )

    @property
    def _copier(self) -> Copier:
        from pycrane.remote._copy import Copier

        parts = (self.fetcher, self.writer, self._referrers, self.lister)
        return cast(Copier, self._part("copier", lambda: Copier(*parts)))

    # -- settings that live in the parts -------------------------------------------------

    @property
    def limits(self) -> HostLimits | None:
        return self.transport.limits

    @property
    def auth(self) -> Credential | None:
        return self.api.auth

    @property
    def manifest_limit(self) -> int:
        """Manifests (and referrers indexes) larger than this are refused."""
        return self.fetcher.manifest_limit

    @manifest_limit.setter
    def manifest_limit(self, value: int) -> None:
        self.fetcher.manifest_limit = value

    @property
    def prefetch(self) -> bool:
        """Read large blobs ahead on a second thread (off: it measured no gain on 2 cores)."""
        return self.fetcher.prefetch

    @property
    def chunk_size(self) -> int | None:
        return self.pusher.chunk_size

    @property
    def monolithic_limit(self) -> int:
        return self.pusher.monolithic_limit

    @property
    def allow_nondistributable(self) -> bool:
        return self.pusher.allow_nondistributable

    @property
    def referrers_fallback(self) -> bool:
        writer = self._parts.get("writer")
        return (
            self._referrers_fallback
            if writer is None
            else cast("Writer", writer).referrers_fallback
        )

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def session(self, registry: Registry) -> RegistrySession:
        """The auth session (scheme, challenge, tokens) this client keeps for ``registry``."""
        return self.api.session(registry)

    # -- reading -------------------------------------------------------------------------

    def head(self, ref: str | Reference) -> Descriptor:
        """A manifest's descriptor from a HEAD (a GET when the HEAD says too little)."""
        return self.fetcher.head(_ref(ref))

    def exists(self, ref: str | Reference, *, push: bool = False) -> Descriptor | None:
        """The manifest's descriptor when it exists, else None (403 counts as absent)."""
        return self.fetcher.exists(_ref(ref), push=push)

    def get(self, ref: str | Reference) -> RemoteDescriptor:
        """GET a manifest as raw bytes, verified when the reference is a digest.

        ``Docker-Content-Digest`` is not trusted for tags: the digest is computed
        from the bytes received.
        """
        return self.fetcher.get(_ref(ref))

    def image(self, ref: str | Reference, platform: Platform | str | None = None) -> RemoteImage:
        """A lazy image; an index resolves to the child for ``platform`` (default linux/amd64)."""
        return self.fetcher.get(_ref(ref)).image(platform)

    def index(self, ref: str | Reference) -> RemoteIndex:
        """A lazy index (raises ManifestError if the reference is an image)."""
        return self.fetcher.get(_ref(ref)).index()

    def blob(self, repo: str | Repository | Reference, desc: Descriptor | Digest | str) -> BinaryIO:
        """A verified stream of a blob (resumes dropped connections).

        With a bare digest the size is unknown: only the digest is checked.
        """
        if not isinstance(desc, Descriptor):
            desc = Descriptor("application/octet-stream", Digest.parse(desc), -1)
        return self.fetcher.blob(_repo(repo), desc)

    def blob_exists(
        self, repo: str | Repository | Reference, digest: Digest | str, *, push: bool = False
    ) -> bool:
        """HEAD a blob. ``push`` asks for the push scope up front (one token for a push)."""
        return self.fetcher.blob_exists(_repo(repo), Digest.parse(digest), push=push)

    def token(
        self,
        repo: str | Repository | Reference,
        *,
        push: bool = False,
        mounts: Sequence[Repository] = (),
    ) -> Token:
        """A bearer token for ``repo`` (pull, or pull+push), plus pull on ``mounts``."""
        rp = _repo(repo)
        scopes = [rp.scope("pull,push" if push else "pull")]
        scopes += [m.scope("pull") for m in mounts]
        sess = self.api.session(rp.registry)
        sess.ping()
        if sess.challenge is None or sess.challenge.scheme != "bearer":
            raise AuthenticationError(f"registry {rp.registry}: does not use bearer tokens")
        value, expires_in = sess.token(scopes)
        return Token(value, expires_in, tuple(scopes))

    # -- writing -------------------------------------------------------------------------

    def write_blob(
        self,
        repo: str | Repository | Reference,
        blob: Descriptor | bytes,
        opener: Callable[[], BinaryIO] | None = None,
        *,
        source: Repository | None = None,
        progress: ProgressSink | None = None,
    ) -> Descriptor:
        """Upload one blob unless it is already there; returns its descriptor.

        ``blob`` is bytes, or a descriptor with an ``opener`` returning a fresh stream.
        """
        return self.pusher.write_blob(
            _repo(repo), blob, opener, source=source, progress=progress or NULL_PROGRESS
        )

    def put_manifest(
        self, ref: str | Reference, raw: bytes, media_type: str | None = None
    ) -> Descriptor:
        """PUT raw manifest bytes under a tag or digest; returns their descriptor.

        A manifest with a ``subject`` also updates the referrers tag index
        (``sha256-<hex>``) when the registry does not process subjects itself.
        """
        return self.writer.put_manifest(_ref(ref), raw, media_type)

    def write_image(
        self,
        ref: str | Reference,
        img: Image,
        *,
        jobs: int | None = None,
        progress: ProgressSink | None = None,
    ) -> Descriptor:
        """Push an image: blobs not already there (concurrently), then the manifest."""
        return self.writer.write_image(
            _ref(ref), img, jobs=jobs or self.jobs, progress=progress or NULL_PROGRESS
        )

    def write_index(
        self,
        ref: str | Reference,
        idx: ImageIndex,
        *,
        jobs: int | None = None,
        progress: ProgressSink | None = None,
    ) -> Descriptor:
        """Push an index: every child's blobs, children's manifests by digest, then the index."""
        return self.writer.write_index(
            _ref(ref), idx, jobs=jobs or self.jobs, progress=progress or NULL_PROGRESS
        )

    def write(
        self,
        ref: str | Reference,
        obj: Image | ImageIndex,
        *,
        jobs: int | None = None,
        progress: ProgressSink | None = None,
        all_or_nothing: bool = False,
    ) -> Descriptor:
        """Push an image or an index.

        ``all_or_nothing`` holds every upload session open until all the blobs' bytes
        are sent and their sources verified, then closes them: a local blob that does
        not hash to its name leaves the registry without any new blob, manifest or
        tag, and no source is read twice (one request more per blob).
        """
        return self.writer.write(
            _ref(ref),
            obj,
            jobs=jobs or self.jobs,
            progress=progress or NULL_PROGRESS,
            all_or_nothing=all_or_nothing,
        )

    def tag(self, ref: str | Reference, new_tag: str) -> Descriptor:
        """Point ``new_tag`` (in the same repository) at what ``ref`` points at."""
        return self.writer.tag(_ref(ref), new_tag)

    def copy(
        self,
        src: str | Reference | Repository,
        dst: str | Reference | Repository,
        *,
        platforms: Sequence[Platform | str] | None = None,
        all_tags: bool = False,
        referrers: bool = False,
        jobs: int | None = None,
        no_clobber: bool = False,
        progress: ProgressSink | None = None,
    ) -> Descriptor | list[Descriptor]:
        """Copy an image or index from one registry (or repository) to another.

        Blobs stream from the source GET straight into the upload (no temp files)
        and are mounted instead when both sides are on one registry. One platform
        in ``platforms`` copies that platform's image (as crane does); several keep
        only those children of an index (a new, filtered index is pushed).
        ``all_tags`` copies every tag of the source repository (returns a list).
        ``referrers`` also copies the manifests that refer to what was copied.
        """
        wanted = _platforms(platforms)
        jobs = jobs or self.jobs
        sink = progress or NULL_PROGRESS
        if all_tags:
            return self._copier.copy_tags(
                _repo(src),
                _repo(dst),
                platforms=wanted,
                with_referrers=referrers,
                jobs=jobs,
                no_clobber=no_clobber,
                progress=sink,
            )
        s = _ref(src) if not isinstance(src, Repository) else src.tag("latest")
        if isinstance(dst, Repository):
            d: Reference = Tag(dst, s.tag) if isinstance(s, Tag) else DigestRef(dst, s.digest)
        else:
            d = _ref(dst)
        return self._copier.copy(
            s,
            d,
            platforms=wanted,
            with_referrers=referrers,
            jobs=jobs,
            no_clobber=no_clobber,
            progress=sink,
        )

    # -- listing, deleting, referrers ----------------------------------------------------

    def list_tags(
        self, repo: str | Repository | Reference, page_size: int | None = None
    ) -> list[str]:
        """Every tag of a repository, following ``Link`` pagination."""
        return self.lister.tags(_repo(repo), page_size)

    def catalog(self, registry: str | Registry, page_size: int | None = None) -> list[str]:
        """Every repository of a registry (where the registry allows it)."""
        reg = Registry.parse(registry) if isinstance(registry, str) else registry
        return self.lister.catalog(reg, page_size)

    def delete(self, ref: str | Reference) -> Digest:
        """Delete a manifest by digest.

        A tag is first resolved to its digest and that manifest is deleted: every
        other tag pointing at the same digest goes with it (the distribution API
        has no way to delete just a tag).
        """
        r = _ref(ref)
        repo = r.repository
        digest = r.digest if isinstance(r, DigestRef) else self.fetcher.head(r).digest
        self.api.request(
            "DELETE",
            repo.registry,
            f"/v2/{repo.path}/manifests/{digest}",
            scopes=[repo.scope("pull,push,delete")],
            what=f"delete {repo.name}@{digest}",
            expected=(200, 202, 204),
        )
        return digest

    def referrers(self, ref: str | Reference, artifact_type: str | None = None) -> Index:
        """The manifests whose ``subject`` is ``ref`` (referrers API, else the tag schema)."""
        r = _ref(ref)
        digest = r.digest if isinstance(r, DigestRef) else self.fetcher.head(r).digest
        return self._referrers.of(r.repository, digest, artifact_type)
