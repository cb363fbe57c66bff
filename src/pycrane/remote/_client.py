"""The registry client: pull, push, copy, list, delete and referrers over the distribution API.

One :class:`Client` holds one connection pool and one auth session per registry,
and is safe to share between threads. Manifests are kept as raw bytes and
verified against their digest; blobs stream in 1 MiB chunks, checked on the way.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, TypeVar

from pycrane._concurrency import bounded_map
from pycrane.errors import (
    AuthenticationError,
    DigestMismatch,
    ManifestError,
    NoMatchingPlatform,
    NotFoundError,
    PermissionDenied,
    PycraneError,
    RegistryError,
    RegistryNotFound,
    SizeMismatch,
    TransportError,
)
from pycrane.name import DigestRef, Reference, Registry, Repository, Tag, parse_reference
from pycrane.progress import NULL_PROGRESS, ProgressSink
from pycrane.remote._auth import RegistrySession
from pycrane.remote._image import (
    RemoteImage,
    RemoteIndex,
    RemoteLayer,
    inline_data,
    read_all,
)
from pycrane.remote._transport import (
    CHUNK,
    Body,
    Response,
    RetryPolicy,
    Transport,
    _private_host,
    redact_url,
)
from pycrane.remote.keychain import Credential, Keychain
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import Image, ImageIndex, Layer, is_index
from pycrane.v1.manifest import Index, Manifest, detect_media_type, parse_manifest
from pycrane.v1.platform import Platform
from pycrane.v1.platform import select as select_platform

__all__ = ["Client", "RegistryNotFound", "RemoteDescriptor", "Token"]

log = logging.getLogger("pycrane.remote")

#: Manifests larger than this are refused (ggcr's limit).
MANIFEST_LIMIT = 100 << 20
#: Blobs smaller than this are uploaded in one PUT; larger ones stream through a PATCH.
MONOLITHIC_LIMIT = 16 << 20
#: Chunk size when a registry forces chunked uploads (413) without saying how big.
DEFAULT_CHUNK = 8 << 20
DEFAULT_PLATFORM = Platform("linux", "amd64")
OCI_SUBJECT_HEADER = "OCI-Subject"


@dataclass(frozen=True)
class Token:
    """A bearer token and the scopes it was asked for."""

    token: str = field(repr=False)
    expires_in: int
    scopes: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {"token": self.token, "expires_in": self.expires_in, "scopes": list(self.scopes)}


@dataclass(frozen=True)
class RemoteDescriptor:
    """A manifest fetched from a registry: its raw bytes, media type and descriptor."""

    client: Client = field(repr=False)
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
        """This manifest as an image; an index is resolved to the child for ``platform``."""
        return self.client._image_from(self, platform)

    def index(self) -> RemoteIndex:
        if not mt.is_index(self.media_type):
            raise ManifestError(f"manifest {self.ref}: expected an index, got {self.media_type}")
        return RemoteIndex(self.client, self.ref, self.raw, self.media_type, self.descriptor)


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


def _error_pairs(body: bytes) -> tuple[tuple[str, str], ...]:
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ()
    errs = obj.get("errors") if isinstance(obj, dict) else None
    if not isinstance(errs, list):
        return ()
    out = []
    for e in errs:
        if isinstance(e, dict):
            out.append((str(e.get("code") or "UNKNOWN"), str(e.get("message") or "")))
    return tuple(out)


class _SingleFlight:
    """Run each key's work once; callers arriving meanwhile wait for the first one's result.

    Per operation the result is kept (a blob is uploaded once however often it
    recurs). With ``forget`` the key is dropped when the work ends: the client uses
    that to merge concurrent uploads of one blob by separate operations, which some
    registries (distribution 2.8) do not survive, while later operations check again.
    """

    def __init__(self, *, forget: bool = False) -> None:
        self._lock = threading.Lock()
        self._futures: dict[str, Future[None]] = {}
        self._forget = forget

    def run(self, key: str, fn: Callable[[], None]) -> bool:
        """Whether this caller did the work (False: it waited for another's)."""
        with self._lock:
            fut = self._futures.get(key)
            owner = fut is None
            if fut is None:
                fut = Future()
                self._futures[key] = fut
        if not owner:
            fut.result()
            return False
        try:
            fn()
        except BaseException as e:
            fut.set_exception(e)
            raise
        else:
            fut.set_result(None)
        finally:
            if self._forget:
                with self._lock:
                    self._futures.pop(key, None)
        return True


@dataclass
class _Blob:
    """Something to upload: a descriptor, how to open it, and where it can be mounted from."""

    desc: Descriptor
    opener: Callable[[], BinaryIO]
    source: Repository | None = None


class Client:
    """A registry client. Thread-safe; reuse one for many operations.

    ```python
    c = Client()                                   # credentials from ~/.docker/config.json
    img = c.image("ghcr.io/org/app:1.0")           # lazy RemoteImage (linux/amd64 from an index)
    c.copy("ghcr.io/org/app:1.0", "localhost:5000/app:1.0", platforms=["linux/arm64"])
    ```

    ``insecure`` allows plain http and skips TLS verification (loopback registries
    always use http); ``ca_file`` adds a CA bundle; ``auth`` forces one credential
    for every registry instead of the keychain.
    """

    def __init__(
        self,
        *,
        keychain: Keychain | None = None,
        auth: Credential | None = None,
        insecure: bool = False,
        ca_file: str | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 30.0,
        read_timeout: float = 300.0,
        user_agent: str | None = None,
        jobs: int = 4,
        chunk_size: int | None = None,
        monolithic_limit: int = MONOLITHIC_LIMIT,
        allow_nondistributable: bool = False,
        referrers_fallback: bool = True,
        prefetch: bool = False,
    ) -> None:
        self.transport = Transport(
            insecure=insecure,
            ca_file=ca_file,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry=retry,
            user_agent=user_agent,
            pool_maxsize=max(16, jobs * 2),
        )
        self.keychain = keychain if keychain is not None else Keychain()
        self.auth = auth
        self.insecure = insecure
        self.jobs = max(1, jobs)
        self.chunk_size = chunk_size
        self.monolithic_limit = monolithic_limit
        self.allow_nondistributable = allow_nondistributable
        self.referrers_fallback = referrers_fallback
        #: Read large blobs ahead on a second thread, overlapping receiving with hashing.
        #: Off by default: against distribution on 2 shared cores it measured no gain.
        self.prefetch = prefetch
        #: Manifests (and referrers indexes) larger than this are refused.
        self.manifest_limit = MANIFEST_LIMIT
        self._sessions: dict[str, RegistrySession] = {}
        self._referrer_locks: dict[str, threading.Lock] = {}
        #: Uploads in progress, client-wide: concurrent operations share them.
        self._inflight = _SingleFlight(forget=True)
        self._lock = threading.Lock()
        #: Registries that forced chunked uploads, and the chunk size they need.
        self._chunked: dict[str, int] = {}

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------

    def session(self, registry: Registry) -> RegistrySession:
        with self._lock:
            s = self._sessions.get(registry.name)
            if s is None:
                cred = self.auth if self.auth is not None else self.keychain.resolve(registry.name)
                s = RegistrySession(self.transport, registry, cred, insecure=self.insecure)
                self._sessions[registry.name] = s
            return s

    def _request(
        self,
        method: str,
        registry: Registry,
        path_or_url: str,
        *,
        scopes: Sequence[str],
        what: str,
        expected: Iterable[int] = (200,),
        headers: dict[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        retry: bool = True,
        not_found: bool = False,
    ) -> Response:
        """A request to ``registry`` with auth, one re-auth on 401, and errors mapped.

        ``not_found`` returns 404 responses instead of raising (existence checks).
        """
        sess = self.session(registry)
        sess.ping()
        url = path_or_url if "://" in path_or_url else sess.base_url + path_or_url
        same_host = urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(sess.base_url).netloc
        scope_list = list(scopes)
        expected = set(expected)
        for attempt in range(2):
            hdrs = dict(headers or {})
            if same_host:
                authz = sess.authorization(scope_list)
                if authz:
                    hdrs["Authorization"] = authz
            resp = self.transport.request(
                method, url, headers=hdrs, body=body, stream=stream, retry=retry
            )
            if (
                resp.status == 401
                and attempt == 0
                and same_host
                and (body is None or isinstance(body, bytes) or callable(body))
                and sess.refresh(resp, scope_list)
            ):
                resp.drain()
                continue
            break
        if resp.status in expected:
            return resp
        if resp.status == 404 and not_found:
            resp.drain()
            return resp
        raise self._error(resp, what, scope_list)

    def _error(self, resp: Response, what: str, scopes: Sequence[str]) -> RegistryError:
        body = resp.content() if resp.method != "HEAD" else b""
        errors = _error_pairs(body)
        detail = "; ".join(f"{c}: {m}" if m else c for c, m in errors)
        status = resp.status
        url = redact_url(resp.url)
        scope_text = " ".join(scopes) or "no scope"
        if status == 401:
            return AuthenticationError(
                f"{what}: unauthorized (401) for {scope_text}" + (f": {detail}" if detail else ""),
                status=status,
                errors=errors,
                url=url,
            )
        if status == 403:
            return PermissionDenied(
                f"{what}: denied (403) for {scope_text}" + (f": {detail}" if detail else ""),
                status=status,
                errors=errors,
                url=url,
            )
        reason = resp.raw.reason or ""
        text = f"{what}: {resp.method} answered {status}" + (f" {reason}" if reason else "")
        if detail:
            text += f": {detail}"
        cls = RegistryNotFound if status == 404 else RegistryError
        return cls(text, status=status, errors=errors, url=url)

    # -- pull ------------------------------------------------------------------------

    def head(self, ref: str | Reference) -> Descriptor:
        """A manifest's descriptor from a HEAD (a GET when the HEAD says too little)."""
        r = _ref(ref)
        repo = r.repository
        resp = self._request(
            "HEAD",
            repo.registry,
            f"/v2/{repo.path}/manifests/{r.identifier}",
            scopes=[repo.scope("pull")],
            what=f"manifest {r}",
            headers={"Accept": mt.MANIFEST_ACCEPT},
        )
        digest = resp.header("Docker-Content-Digest")
        ctype = (resp.header("Content-Type") or "").split(";")[0].strip()
        length = resp.header("Content-Length")
        if not digest or not mt.is_manifest(ctype) or not length or not length.isdigit():
            return self.get(r).descriptor
        try:
            d = Digest.parse(digest)
        except PycraneError:
            return self.get(r).descriptor
        if isinstance(r, DigestRef) and d != r.digest:
            raise DigestMismatch(f"manifest {r}", str(r.digest), str(d))
        return Descriptor(media_type=ctype, digest=d, size=int(length))

    def exists(self, ref: str | Reference, *, push: bool = False) -> Descriptor | None:
        """The manifest's descriptor when it exists, else None (403 counts as absent)."""
        r = _ref(ref)
        repo = r.repository
        try:
            resp = self._request(
                "HEAD",
                repo.registry,
                f"/v2/{repo.path}/manifests/{r.identifier}",
                scopes=[repo.scope("pull,push" if push else "pull")],
                what=f"manifest {r}",
                headers={"Accept": mt.MANIFEST_ACCEPT},
                not_found=True,
            )
        except PermissionDenied:
            return None  # the Artifactory quirk: 403 for a manifest that is not there
        if resp.status == 404:
            return None
        digest = resp.header("Docker-Content-Digest")
        ctype = (resp.header("Content-Type") or "").split(";")[0].strip()
        length = resp.header("Content-Length") or ""
        if digest and length.isdigit():
            try:
                return Descriptor(media_type=ctype, digest=Digest.parse(digest), size=int(length))
            except PycraneError:
                pass
        try:
            return self.get(r).descriptor
        except NotFoundError:
            return None

    def get(self, ref: str | Reference) -> RemoteDescriptor:
        """GET a manifest as raw bytes, verified when the reference is a digest.

        ``Docker-Content-Digest`` is not trusted for tags: the digest is computed
        from the bytes received.
        """
        r = _ref(ref)
        repo = r.repository
        attempts = max(1, self.transport.retry.attempts)
        for attempt in range(attempts):
            resp = self._request(
                "GET",
                repo.registry,
                f"/v2/{repo.path}/manifests/{r.identifier}",
                scopes=[repo.scope("pull")],
                what=f"manifest {r}",
                headers={"Accept": mt.MANIFEST_ACCEPT},
                stream=True,
            )
            try:
                raw, too_long = resp.read_capped(self.manifest_limit)
                break
            except TransportError:
                # The body broke off: a manifest is small, so simply ask again.
                if attempt + 1 >= attempts:
                    raise
                time.sleep(self.transport.retry.delay(attempt))
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

    def _image_from(self, rd: RemoteDescriptor, platform: Platform | str | None) -> RemoteImage:
        if mt.is_schema1(rd.media_type):
            raise ManifestError(
                f"manifest {rd.ref}: Docker schema 1 ({rd.media_type}) is not supported; "
                "push it again with a v2 client"
            )
        if mt.is_index(rd.media_type):
            want = Platform.parse(platform) if isinstance(platform, str) else platform
            want = want or DEFAULT_PLATFORM
            idx = rd.index()
            return self._resolve_platform(idx, want, str(rd.ref))
        if not mt.is_image(rd.media_type):
            raise ManifestError(f"manifest {rd.ref}: {rd.media_type} is not an image")
        return RemoteImage(self, rd.ref, rd.raw, rd.media_type, None)

    def _resolve_platform(self, idx: RemoteIndex, want: Platform, what: str) -> RemoteImage:
        offered: list[str] = []
        found = self._find_platform(idx, want, offered, 0)
        if found is None:
            raise NoMatchingPlatform(
                f"index {what}: no image for platform {want}; it offers "
                + (", ".join(offered) if offered else "nothing")
            )
        return found

    def _find_platform(
        self, idx: RemoteIndex, want: Platform, offered: list[str], depth: int
    ) -> RemoteImage | None:
        """The best child for ``want``; nested indexes without a platform are searched too."""
        manifests = idx.index_manifest().manifests
        nested = [d for d in manifests if mt.is_index(d.media_type) and d.platform is None]
        direct = [d for d in manifests if d not in nested]
        offered.extend(str(d.platform or DEFAULT_PLATFORM) for d in direct)
        best = select_platform(direct, want)
        if best is not None:
            child = idx.child(best)
            if not is_index(child):
                return child  # type: ignore[return-value]
            found = self._find_platform(child, want, offered, depth + 1)  # type: ignore[arg-type]
            if found is not None:
                return found
        if depth < 8:
            for d in nested:
                found = self._find_platform(idx.child(d), want, offered, depth + 1)  # type: ignore[arg-type]
                if found is not None:
                    return found
        return None

    def image(self, ref: str | Reference, platform: Platform | str | None = None) -> RemoteImage:
        """A lazy image; an index resolves to the child for ``platform`` (default linux/amd64)."""
        return self.get(ref).image(platform)

    def index(self, ref: str | Reference) -> RemoteIndex:
        """A lazy index (raises ManifestError if the reference is an image)."""
        return self.get(ref).index()

    def _blob_get(self, repo: Repository, digest: Digest, headers: dict[str, str]) -> Response:
        return self._request(
            "GET",
            repo.registry,
            f"/v2/{repo.path}/blobs/{digest}",
            scopes=[repo.scope("pull")],
            what=f"blob {repo.name}@{digest}",
            expected=(200, 206),
            headers=headers,
            stream=True,
        )

    def _url_get(self, url: str, headers: dict[str, str], what: str) -> Response:
        """GET a foreign layer's URL: no credentials, https only unless ``insecure``."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" and not (self.insecure and parts.scheme == "http"):
            raise RegistryError(f"{what}: url {redact_url(url)} is not https")
        if _private_host(parts.hostname or "") and not self.insecure:
            raise RegistryError(f"{what}: url {redact_url(url)} is a private address")
        resp = self.transport.request("GET", url, headers=headers, stream=True)
        if resp.status not in (200, 206):
            resp.drain()
            raise RegistryError(
                f"{what}: GET {redact_url(url)} answered {resp.status}", status=resp.status
            )
        return resp

    def blob(self, repo: str | Repository | Reference, desc: Descriptor | Digest | str) -> BinaryIO:
        """A verified stream of a blob (resumes dropped connections).

        With a bare digest the size is unknown: only the digest is checked.
        """
        if not isinstance(desc, Descriptor):
            desc = Descriptor("application/octet-stream", Digest.parse(desc), -1)
        return RemoteLayer(self, _repo(repo), desc).compressed()

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
        sess = self.session(rp.registry)
        sess.ping()
        if sess.challenge is None or sess.challenge.scheme != "bearer":
            raise AuthenticationError(f"registry {rp.registry}: does not use bearer tokens")
        value, expires_in = sess.token(scopes)
        return Token(value, expires_in, tuple(scopes))

    def _fetch_blob(self, repo: Repository, desc: Descriptor, limit: int, kind: str) -> bytes:
        what = f"{kind} {repo.name}@{desc.digest}"
        data = inline_data(desc, what)
        if data is not None:
            return data
        if desc.size > limit:
            raise ManifestError(f"{what}: {desc.size} bytes is larger than {limit}")
        with RemoteLayer(self, repo, desc).compressed() as r:
            return read_all(r)

    def blob_exists(
        self, repo: str | Repository | Reference, digest: Digest | str, *, push: bool = False
    ) -> bool:
        """HEAD a blob. ``push`` asks for the push scope up front (one token for a push)."""
        rp = _repo(repo)
        d = Digest.parse(digest)
        resp = self._request(
            "HEAD",
            rp.registry,
            f"/v2/{rp.path}/blobs/{d}",
            scopes=[rp.scope("pull,push" if push else "pull")],
            what=f"blob {rp.name}@{d}",
            not_found=True,
        )
        return resp.status == 200

    # -- push ------------------------------------------------------------------------

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
        rp = _repo(repo)
        if isinstance(blob, bytes):
            data = blob
            desc = Descriptor.from_bytes("application/octet-stream", data)
            opener = lambda: io.BytesIO(data)  # noqa: E731
        else:
            desc = blob
            if opener is None:
                raise ValueError("write_blob: an opener is required with a descriptor")
        self._upload(rp, _Blob(desc, opener, source), progress or NULL_PROGRESS, force=True)
        return desc

    def _upload(
        self, repo: Repository, blob: _Blob, progress: ProgressSink, *, force: bool = False
    ) -> None:
        desc = blob.desc
        what = f"blob {repo.name}@{desc.digest}"
        if (
            not force
            and not self.allow_nondistributable
            and not mt.is_distributable(desc.media_type)
        ):
            log.debug("%s: non-distributable (%s), skipped", what, desc.media_type)
            return
        if self.blob_exists(repo, desc.digest, push=True):
            progress.finish(desc.digest, skipped=True)
            return
        push = [repo.scope("pull,push")]
        location: str | None = None
        if (
            blob.source is not None
            and blob.source.registry == repo.registry
            and blob.source.path != repo.path
        ):
            location = self._try_mount(repo, blob.source, desc)
            if location == "":
                progress.finish(desc.digest, skipped=True)
                return
        attempts = max(1, self.transport.retry.attempts)
        for attempt in range(attempts):
            try:
                if location is None:
                    location = self._start_upload(repo, push, what)
                self._send(repo, push, what, location, blob, progress)
                progress.finish(desc.digest)
                return
            except (TransportError, RegistryError) as e:
                if location and isinstance(e, RegistryError):
                    # Only when the registry answers: a DELETE to one that stopped
                    # answering could wait out the whole read timeout again.
                    self._cancel_upload(repo, push, what, location)
                location = None
                retryable = isinstance(e, TransportError) or (
                    getattr(e, "status", None) in self.transport.retry.statuses
                )
                if not retryable or attempt + 1 >= attempts:
                    raise
                log.debug("%s: upload failed (%s); starting over", what, e)
                time.sleep(self.transport.retry.delay(attempt))

    def _try_mount(self, repo: Repository, source: Repository, desc: Descriptor) -> str | None:
        """Cross-repository mount: "" when mounted, an upload URL on 202, None on failure."""
        q = urllib.parse.urlencode({"mount": str(desc.digest), "from": source.path})
        try:
            resp = self._request(
                "POST",
                repo.registry,
                f"/v2/{repo.path}/blobs/uploads/?{q}",
                scopes=[repo.scope("pull,push"), source.scope("pull")],
                what=f"mount {desc.digest} from {source.name} into {repo.name}",
                expected=(201, 202),
                headers={"Content-Length": "0"},
                body=b"",
            )
        except PycraneError as e:
            log.debug("mount of %s failed (%s); uploading instead", desc.digest, e)
            return None
        if resp.status == 201:
            return ""
        loc = resp.header("Location")
        return urllib.parse.urljoin(resp.url, loc) if loc else None

    def _start_upload(self, repo: Repository, scopes: list[str], what: str) -> str:
        resp = self._request(
            "POST",
            repo.registry,
            f"/v2/{repo.path}/blobs/uploads/",
            scopes=scopes,
            what=what,
            expected=(202,),
            headers={"Content-Length": "0"},
            body=b"",
        )
        loc = resp.header("Location")
        if not loc:
            raise RegistryError(f"{what}: upload started without a Location header")
        min_chunk = resp.header("OCI-Chunk-Min-Length")
        if min_chunk and min_chunk.isdigit() and int(min_chunk) > 0:
            # A minimum, not a target: small chunks would mean a request per few KiB.
            with self._lock:
                self._chunked.setdefault(repo.registry.name, max(int(min_chunk), DEFAULT_CHUNK))
        return urllib.parse.urljoin(resp.url, loc)

    def _send(
        self,
        repo: Repository,
        scopes: list[str],
        what: str,
        location: str,
        blob: _Blob,
        progress: ProgressSink,
    ) -> None:
        desc = blob.desc
        chunk = self.chunk_size or self._chunked.get(repo.registry.name)
        progress.start(desc.digest, desc.size, what)
        if chunk:
            self._send_chunked(repo, scopes, what, location, blob, progress, chunk)
            return
        if desc.size < self.monolithic_limit:
            resp = self._request(
                "PUT",
                repo.registry,
                _with_digest(location, desc.digest),
                scopes=scopes,
                what=what,
                expected=(201, 204, 413),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(desc.size),
                },
                body=_body(blob.opener, progress, desc, what),
                retry=False,
            )
        else:
            resp = self._request(
                "PATCH",
                repo.registry,
                location,
                scopes=scopes,
                what=what,
                expected=(202, 204, 413),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(desc.size),
                },
                body=_body(blob.opener, progress, desc, what),
                retry=False,
            )
            if resp.status != 413:
                loc = urllib.parse.urljoin(resp.url, resp.header("Location") or location)
                resp = self._commit_upload(repo, scopes, what, loc, desc.digest)
        if resp.status == 413:
            # Too large for one request: this registry wants chunks from now on.
            with self._lock:
                self._chunked.setdefault(repo.registry.name, DEFAULT_CHUNK)
            raise TransportError(f"{what}: registry refused a {desc.size}-byte body (413)")

    def _send_chunked(
        self,
        repo: Repository,
        scopes: list[str],
        what: str,
        location: str,
        blob: _Blob,
        progress: ProgressSink,
        chunk: int,
    ) -> None:
        desc = blob.desc
        offset = 0  # bytes the registry has acknowledged
        pending = b""  # bytes read from the source, not yet acknowledged
        resumes = max(0, self.transport.retry.attempts - 1)
        resumed = False
        src = blob.opener()
        try:
            while True:
                if not pending:
                    pending = _read_exact(src, chunk)
                    if not pending:
                        break
                end = offset + len(pending) - 1
                try:
                    resp = self._request(
                        "PATCH",
                        repo.registry,
                        location,
                        scopes=scopes,
                        what=what,
                        expected=(202, 204),
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Length": str(len(pending)),
                            "Content-Range": f"{offset}-{end}",
                        },
                        body=pending,
                        retry=False,
                    )
                except (TransportError, RegistryError) as e:
                    transient = (
                        isinstance(e, TransportError)
                        or e.status in (self.transport.retry.statuses | {416})
                        or _session_gone(e)
                    )
                    if resumes <= 0 or not transient:
                        raise
                    resumes -= 1
                    time.sleep(self.transport.retry.delay(0))
                    # Ask the registry how much it kept, and carry on from there.
                    try:
                        location, acked = self._upload_status(repo, scopes, what, location)
                    except RegistryError as gone:
                        if not _session_gone(gone):
                            raise
                        acked = None  # a chunk cut short killed the session (distribution)
                    if acked is not None and offset <= acked <= end + 1:
                        pending = pending[acked - offset :]
                    else:
                        # Unknown, or not what was acknowledged: a fresh session is the
                        # only start that does not depend on the registry's Range.
                        self._cancel_upload(repo, scopes, what, location)
                        location = self._start_upload(repo, scopes, what)
                        if offset:
                            src.close()
                            src = blob.opener()
                            pending = b""
                            progress.advance(desc.digest, -offset)  # to be sent again
                        acked = 0
                    log.debug("%s: chunk failed (%s); resuming at byte %d", what, e, acked)
                    resumed = True
                    offset = acked
                    continue
                location = urllib.parse.urljoin(resp.url, resp.header("Location") or location)
                offset += len(pending)
                progress.advance(desc.digest, len(pending))
                pending = b""
        finally:
            src.close()
        if desc.size >= 0 and offset != desc.size:
            raise SizeMismatch(what, desc.size, offset)
        try:
            self._commit_upload(repo, scopes, what, location, desc.digest)
        except RegistryError as e:
            if resumed and "DIGEST_INVALID" in e.codes:
                # Some registries append a PATCH wherever it says it starts: if the
                # resume point was wrong, only a fresh upload can repair it.
                raise TransportError(f"{what}: resumed upload did not verify ({e})") from e
            raise

    def _cancel_upload(self, repo: Repository, scopes: list[str], what: str, location: str) -> None:
        """Best effort: free an abandoned session's bytes at the registry now, not at expiry."""
        try:
            self._request(
                "DELETE",
                repo.registry,
                location,
                scopes=scopes,
                what=what,
                expected=(200, 202, 204, 404),
                retry=False,
            ).drain()
        except PycraneError as e:
            log.debug("%s: could not cancel the abandoned upload (%s)", what, e)

    def _commit_upload(
        self, repo: Repository, scopes: list[str], what: str, location: str, digest: Digest
    ) -> Response:
        """The closing PUT of an upload session whose bytes are all sent."""
        return self._request(
            "PUT",
            repo.registry,
            _with_digest(location, digest),
            scopes=scopes,
            what=what,
            expected=(201, 204),
            headers={"Content-Length": "0"},
            body=b"",
        )

    def _upload_status(
        self, repo: Repository, scopes: list[str], what: str, location: str
    ) -> tuple[str, int | None]:
        """GET an upload session: its (possibly new) URL and how many bytes it holds.

        ``None`` when that is unknown: no usable ``Range``, or ``0-0``, which
        distribution and most registries say of an empty session and which is also
        the inclusive range of a single byte.
        """
        resp = self._request(
            "GET", repo.registry, location, scopes=scopes, what=what, expected=(204,)
        )
        loc = urllib.parse.urljoin(resp.url, resp.header("Location") or location)
        rng = (resp.header("Range") or "").strip()
        if rng.lower().startswith("bytes="):
            rng = rng[6:]
        first, _, last = rng.partition("-")
        if first.strip() != "0" or not last.strip().isdigit() or int(last) == 0:
            return loc, None
        return loc, int(last) + 1

    def put_manifest(
        self, ref: str | Reference, raw: bytes, media_type: str | None = None
    ) -> Descriptor:
        """PUT raw manifest bytes under a tag or digest; returns their descriptor.

        A manifest with a ``subject`` also updates the referrers tag index
        (``sha256-<hex>``) when the registry does not process subjects itself.
        """
        r = _ref(ref)
        repo = r.repository
        media = media_type or detect_media_type(raw, what=f"manifest {r}")
        digest = Digest.from_bytes(
            raw, r.digest.algorithm if isinstance(r, DigestRef) else "sha256"
        )
        if isinstance(r, DigestRef) and digest != r.digest:
            raise DigestMismatch(f"manifest {r}", str(r.digest), str(digest))
        for attempt in range(3):
            try:
                resp = self._request(
                    "PUT",
                    repo.registry,
                    f"/v2/{repo.path}/manifests/{r.identifier}",
                    scopes=[repo.scope("pull,push")],
                    what=f"manifest {r}",
                    expected=(200, 201, 202, 204),
                    headers={"Content-Type": media, "Content-Length": str(len(raw))},
                    body=raw,
                )
                break
            except RegistryError as e:
                # Another writer may be committing a blob we rely on right now.
                if "MANIFEST_BLOB_UNKNOWN" not in e.codes or attempt == 2:
                    raise
                time.sleep(self.transport.retry.delay(attempt))
        desc = Descriptor(media_type=media, digest=digest, size=len(raw))
        if self.referrers_fallback and not resp.header(OCI_SUBJECT_HEADER):
            subject = _subject_of(raw, media)
            if subject is not None:
                self._add_referrer_fallback(repo, subject, raw, media, desc)
        return desc

    def _put_manifest_if_needed(self, ref: Reference, raw: bytes, media: str) -> Descriptor:
        have = self.exists(ref, push=True)
        digest = Digest.from_bytes(raw)
        if have is not None and have.digest == digest:
            return Descriptor(media_type=media, digest=digest, size=len(raw))
        return self.put_manifest(ref, raw, media)

    def _blobs_of(self, img: Image) -> list[_Blob]:
        m = img.manifest()
        src_repo = getattr(img, "repository", None)
        blobs: list[_Blob] = []
        cfg = m.config
        if cfg.data is not None or src_repo is None:
            raw_cfg = img.raw_config()
            blobs.append(_Blob(cfg, lambda: io.BytesIO(raw_cfg)))
        else:
            blobs.append(_Blob(cfg, RemoteLayer(self, src_repo, cfg).compressed, src_repo))
        if isinstance(img, RemoteImage):
            # No need for the config's diff_ids (a round trip) just to copy blobs.
            layers: list[Layer] = [img.layer_for(d, None) for d in m.layers]
        else:
            layers = img.layers()
        for layer in layers:
            source = layer.repository if isinstance(layer, RemoteLayer) else None
            blobs.append(_Blob(layer.descriptor(), layer.compressed, source))
        return blobs

    def _upload_all(
        self,
        repo: Repository,
        blobs: list[_Blob],
        jobs: int,
        progress: ProgressSink,
        flight: _SingleFlight,
    ) -> None:
        unique: dict[Digest, _Blob] = {}
        for b in blobs:
            unique.setdefault(b.desc.digest, b)
        if not unique:
            return
        key = repo.name

        def one(b: _Blob) -> None:
            name = f"{key}@{b.desc.digest}"

            def shared() -> None:
                if not self._inflight.run(name, lambda: self._upload(repo, b, progress)):
                    progress.finish(b.desc.digest, skipped=True)  # another operation sent it

            flight.run(name, shared)

        bounded_map(one, unique.values(), jobs)

    def write_image(
        self,
        ref: str | Reference,
        img: Image,
        *,
        jobs: int | None = None,
        progress: ProgressSink | None = None,
        _flight: _SingleFlight | None = None,
    ) -> Descriptor:
        """Push an image: blobs not already there (concurrently), then the manifest."""
        r = _ref(ref)
        sink = progress or NULL_PROGRESS
        flight = _flight or _SingleFlight()
        self._upload_all(r.repository, self._blobs_of(img), jobs or self.jobs, sink, flight)
        return self._put_manifest_if_needed(r, img.raw_manifest(), img.media_type())

    def write_index(
        self,
        ref: str | Reference,
        idx: ImageIndex,
        *,
        jobs: int | None = None,
        progress: ProgressSink | None = None,
        _flight: _SingleFlight | None = None,
    ) -> Descriptor:
        """Push an index: every child's blobs, children's manifests by digest, then the index."""
        r = _ref(ref)
        repo = r.repository
        sink = progress or NULL_PROGRESS
        jobs = jobs or self.jobs
        levels: dict[int, list[tuple[bytes, str]]] = {}  # depth -> manifests at that depth
        blobs: list[_Blob] = []
        seen: set[Digest] = set()

        def walk(node: ImageIndex, depth: int) -> None:
            todo = []
            for d in node.index_manifest().manifests:
                if d.digest not in seen:
                    seen.add(d.digest)
                    todo.append(d)
            # Children's manifests are fetched concurrently (one round trip each).
            children = _map(lambda d: _child(node, d), todo, jobs)
            for d, child in zip(todo, children, strict=True):
                if is_index(child):
                    walk(child, depth + 1)
                elif mt.is_image(d.media_type) or hasattr(child, "layers"):
                    blobs.extend(self._blobs_of(child))
                levels.setdefault(depth, []).append((child.raw_manifest(), child.media_type()))

        walk(idx, 0)
        self._upload_all(repo, blobs, jobs, sink, _flight or _SingleFlight())
        # Deepest first: a registry may check that an index's children exist.
        for depth in sorted(levels, reverse=True):
            _map(
                lambda m: self._put_manifest_if_needed(
                    DigestRef(repo, Digest.from_bytes(m[0])), m[0], m[1]
                ),
                levels[depth],
                jobs,
            )
        return self._put_manifest_if_needed(r, idx.raw_manifest(), idx.media_type())

    def write(
        self,
        ref: str | Reference,
        obj: Image | ImageIndex,
        *,
        jobs: int | None = None,
        progress: ProgressSink | None = None,
    ) -> Descriptor:
        """Push an image or an index."""
        if is_index(obj):
            return self.write_index(ref, obj, jobs=jobs, progress=progress)
        return self.write_image(ref, obj, jobs=jobs, progress=progress)

    def tag(self, ref: str | Reference, new_tag: str) -> Descriptor:
        """Point ``new_tag`` (in the same repository) at what ``ref`` points at."""
        rd = self.get(ref)
        dst = Tag(rd.ref.repository, new_tag)
        return self._put_manifest_if_needed(dst, rd.raw, rd.media_type)

    # -- copy ------------------------------------------------------------------------

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
        and are mounted instead when both sides are on one registry. ``platforms``
        keeps only those children of an index (a new, filtered index is pushed).
        ``all_tags`` copies every tag of the source repository (returns a list).
        ``referrers`` also copies the manifests that refer to what was copied.
        """
        jobs = jobs or self.jobs
        if all_tags:
            src_repo, dst_repo = _repo(src), _repo(dst)
            tags = self.list_tags(src_repo)
            flight = _SingleFlight()  # a blob shared by several tags is uploaded once

            def one(t: str) -> Descriptor:
                d = self._copy_one(
                    Tag(src_repo, t),
                    Tag(dst_repo, t),
                    platforms,
                    referrers,
                    jobs,
                    no_clobber,
                    progress,
                    flight,
                )
                return d

            if not tags:
                return []
            with ThreadPoolExecutor(max_workers=min(jobs, len(tags))) as pool:
                futures = [pool.submit(one, t) for t in tags]
                results = []
                first_error: BaseException | None = None
                for f in futures:
                    e = f.exception()
                    if e is not None and first_error is None:
                        first_error = e
                    elif e is None:
                        results.append(f.result())
            if first_error is not None:
                raise first_error
            return results
        s = _ref(src) if not isinstance(src, Repository) else src.tag("latest")
        if isinstance(dst, Repository):
            d: Reference = Tag(dst, s.tag) if isinstance(s, Tag) else DigestRef(dst, s.digest)
        else:
            d = _ref(dst)
        return self._copy_one(s, d, platforms, referrers, jobs, no_clobber, progress)

    def _copy_one(
        self,
        src: Reference,
        dst: Reference,
        platforms: Sequence[Platform | str] | None,
        referrers: bool,
        jobs: int,
        no_clobber: bool,
        progress: ProgressSink | None,
        flight: _SingleFlight | None = None,
    ) -> Descriptor:
        if no_clobber and isinstance(dst, Tag) and self.exists(dst) is not None:
            raise RegistryError(f"copy to {dst}: the tag already exists (no_clobber)")
        rd = self.get(src)
        if mt.is_schema1(rd.media_type):
            raise ManifestError(
                f"manifest {src}: Docker schema 1 ({rd.media_type}) is not supported; "
                "push it again with a v2 client"
            )
        if mt.is_index(rd.media_type):
            idx: ImageIndex = rd.index()
            if platforms:
                idx = _filter_index(rd.index(), [_plat(p) for p in platforms], str(src))
            out = self.write_index(dst, idx, jobs=jobs, progress=progress, _flight=flight)
        else:
            img = RemoteImage(self, rd.ref, rd.raw, rd.media_type)
            out = self.write_image(dst, img, jobs=jobs, progress=progress, _flight=flight)
        if referrers:
            self._copy_referrers(rd.ref.repository, dst.repository, rd, jobs, progress)
        return out

    def _copy_referrers(
        self,
        src_repo: Repository,
        dst_repo: Repository,
        rd: RemoteDescriptor,
        jobs: int,
        progress: ProgressSink | None,
        depth: int = 0,
    ) -> None:
        if depth > 8:
            return
        digests = [rd.digest]
        if mt.is_index(rd.media_type):
            digests += [d.digest for d in rd.index().index_manifest().manifests]
        for dg in digests:
            for ref_desc in self.referrers(DigestRef(src_repo, dg)).manifests:
                child = self.get(DigestRef(src_repo, ref_desc.digest))
                self._copy_one(
                    child.ref,
                    DigestRef(dst_repo, ref_desc.digest),
                    None,
                    False,
                    jobs,
                    False,
                    progress,
                )
                self._copy_referrers(src_repo, dst_repo, child, jobs, progress, depth + 1)

    # -- listing, deleting, referrers ------------------------------------------------

    def _paginate(
        self, registry: Registry, path: str, scopes: list[str], what: str, key: str
    ) -> Iterator[str]:
        url: str | None = path
        base = None
        while url:
            resp = self._request("GET", registry, url, scopes=scopes, what=what)
            if base is None:
                base = urllib.parse.urlsplit(resp.url)
            body = resp.content()
            try:
                obj = json.loads(body or b"{}")
            except ValueError:
                raise RegistryError(f"{what}: response is not JSON") from None
            items = obj.get(key) if isinstance(obj, dict) else None
            yield from (str(x) for x in items or [])
            url = _next_link(resp.header_values("Link"), resp.url)
            if url:
                nxt = urllib.parse.urlsplit(url)
                if (nxt.scheme, nxt.netloc) != (base.scheme, base.netloc):
                    raise RegistryError(f"{what}: pagination link to another host refused")

    def list_tags(
        self, repo: str | Repository | Reference, page_size: int | None = None
    ) -> list[str]:
        """Every tag of a repository, following ``Link`` pagination."""
        rp = _repo(repo)
        path = f"/v2/{rp.path}/tags/list"
        if page_size:
            path += f"?n={page_size}"
        return list(
            self._paginate(rp.registry, path, [rp.scope("pull")], f"tags of {rp.name}", "tags")
        )

    def catalog(self, registry: str | Registry, page_size: int | None = None) -> list[str]:
        """Every repository of a registry (where the registry allows it)."""
        reg = Registry.parse(registry) if isinstance(registry, str) else registry
        path = "/v2/_catalog" + (f"?n={page_size}" if page_size else "")
        return list(
            self._paginate(
                reg, path, ["registry:catalog:*"], f"catalog of {reg.name}", "repositories"
            )
        )

    def delete(self, ref: str | Reference) -> Digest:
        """Delete a manifest by digest.

        A tag is first resolved to its digest and that manifest is deleted: every
        other tag pointing at the same digest goes with it (the distribution API
        has no way to delete just a tag).
        """
        r = _ref(ref)
        repo = r.repository
        digest = r.digest if isinstance(r, DigestRef) else self.head(r).digest
        self._request(
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
        repo = r.repository
        digest = r.digest if isinstance(r, DigestRef) else self.head(r).digest
        path = f"/v2/{repo.path}/referrers/{digest}"
        if artifact_type:
            path += "?" + urllib.parse.urlencode({"artifactType": artifact_type})
        resp = self._request(
            "GET",
            repo.registry,
            path,
            scopes=[repo.scope("pull")],
            what=f"referrers of {repo.name}@{digest}",
            expected=(200, 400, 404, 405, 406),
            headers={"Accept": mt.OCI_INDEX},
            stream=True,
        )
        ctype = (resp.header("Content-Type") or "").split(";")[0].strip()
        if resp.status == 200 and ctype == mt.OCI_INDEX:
            raw, too_long = resp.read_capped(self.manifest_limit)
            if too_long:
                raise ManifestError(f"referrers of {repo.name}@{digest}: response too large")
            idx = Index.parse(raw)
            idx = self._more_referrers(repo, idx, resp, f"referrers of {repo.name}@{digest}")
        else:
            resp.drain()
            idx = self._fallback_index(repo, digest) or Index.build([])
        if artifact_type:
            kept = [d for d in idx.manifests if d.artifact_type == artifact_type]
            if len(kept) != len(idx.manifests):
                idx = Index.build(kept, annotations=idx.annotations)
        return idx

    def _more_referrers(self, repo: Repository, first: Index, resp: Response, what: str) -> Index:
        """Follow ``Link: <...>; rel="next"`` pages (same host only) and merge them."""
        manifests = list(first.manifests)
        seen_urls = {resp.url}
        seen = {d.digest for d in manifests}
        origin = urllib.parse.urlsplit(resp.url)
        url = _next_link(resp.header_values("Link"), resp.url)
        while url and url not in seen_urls and len(seen_urls) < 1000:
            nxt = urllib.parse.urlsplit(url)
            if (nxt.scheme, nxt.netloc) != (origin.scheme, origin.netloc):
                raise RegistryError(f"{what}: pagination link to another host refused")
            seen_urls.add(url)
            page = self._request(
                "GET",
                repo.registry,
                url,
                scopes=[repo.scope("pull")],
                what=what,
                headers={"Accept": mt.OCI_INDEX},
                stream=True,
            )
            raw, too_long = page.read_capped(self.manifest_limit)
            if too_long:
                raise ManifestError(f"{what}: response too large")
            for d in Index.parse(raw).manifests:
                if d.digest not in seen:
                    seen.add(d.digest)
                    manifests.append(d)
            url = _next_link(page.header_values("Link"), page.url)
        if len(manifests) == len(first.manifests):
            return first
        return Index.build(manifests, annotations=first.annotations)

    def _fallback_index(self, repo: Repository, digest: Digest) -> Index | None:
        tag = Tag(repo, f"{digest.algorithm}-{digest.hex}")
        try:
            rd = self.get(tag)
        except NotFoundError:
            return None
        try:
            return Index.parse(rd.raw)
        except ManifestError:
            return None

    def _add_referrer_fallback(
        self, repo: Repository, subject: Descriptor, raw: bytes, media: str, desc: Descriptor
    ) -> None:
        parsed = parse_manifest(raw, media)
        artifact_type = parsed.artifact_type
        if artifact_type is None and isinstance(parsed, Manifest):
            artifact_type = parsed.config.media_type
        entry = Descriptor(
            media_type=media,
            digest=desc.digest,
            size=desc.size,
            annotations=dict(parsed.annotations),
            artifact_type=artifact_type,
        )
        tag = Tag(repo, f"{subject.digest.algorithm}-{subject.digest.hex}")
        with self._lock:
            lock = self._referrer_locks.setdefault(str(tag), threading.Lock())
        # The registry offers no conditional PUT: serialise our own writers, then
        # read back and try again if another client's write replaced ours.
        with lock:
            for _ in range(5):
                current = self._fallback_index(repo, subject.digest)
                existing = list(current.manifests) if current else []
                if any(d.digest == desc.digest for d in existing):
                    return
                existing.append(entry)
                existing.sort(key=lambda d: str(d.digest))
                new = Index.build(existing)
                self.put_manifest(tag, new.raw, new.media_type)
            log.debug("%s: lost the race to update the referrers tag 5 times", tag)


# -- helpers ---------------------------------------------------------------------------


_T = TypeVar("_T")
_R = TypeVar("_R")


def _map(fn: Callable[[_T], _R], items: Sequence[_T], jobs: int) -> list[_R]:
    """``fn`` over ``items`` with up to ``jobs`` threads; the first error is raised."""
    return bounded_map(fn, items, jobs)


def _plat(p: Platform | str) -> Platform:
    return Platform.parse(p) if isinstance(p, str) else p


def _child(node: ImageIndex, d: Descriptor) -> Image | ImageIndex:
    child = getattr(node, "child", None)
    if child is not None:
        return child(d)  # type: ignore[no-any-return]
    if mt.is_index(d.media_type):
        return node.image_index(d.digest)
    return node.image(d.digest)


def _filter_index(idx: RemoteIndex, wanted: list[Platform], what: str) -> ImageIndex:
    """The index with only the children for ``wanted`` (nested indexes filtered too)."""
    offered: list[str] = []
    out = _filter(idx, wanted, offered, 0)
    if out is None:
        raise NoMatchingPlatform(
            f"index {what}: no image for platforms {', '.join(map(str, wanted))}; "
            f"it offers {', '.join(offered) or 'nothing'}"
        )
    return out


def _filter(
    idx: RemoteIndex, wanted: list[Platform], offered: list[str], depth: int
) -> ImageIndex | None:
    from pycrane.v1.image import SimpleIndex

    im = idx.index_manifest()
    kept: list[tuple[Descriptor | None, Image | ImageIndex]] = []
    changed = False
    for d in im.manifests:
        if mt.is_index(d.media_type) and d.platform is None and depth < 8:
            inner = _filter(idx.child(d), wanted, offered, depth + 1)  # type: ignore[arg-type]
            if inner is None:
                changed = True
            elif inner.digest() == d.digest:
                kept.append((d, inner))
            else:
                kept.append(
                    (
                        Descriptor(
                            inner.media_type(),
                            inner.digest(),
                            inner.size(),
                            annotations=dict(d.annotations),
                        ),
                        inner,
                    )
                )
                changed = True
            continue
        plat = d.platform or DEFAULT_PLATFORM
        offered.append(str(plat))
        if any(w.satisfied_by(plat) for w in wanted):
            kept.append((d, idx.child(d)))
        else:
            changed = True
    if not kept:
        return None
    if not changed:
        return idx
    return SimpleIndex.build(kept, media_type=im.media_type, annotations=im.annotations)


def _subject_of(raw: bytes, media: str) -> Descriptor | None:
    if not (mt.is_image(media) or mt.is_index(media)):
        return None
    try:
        return parse_manifest(raw, media).subject
    except ManifestError:
        return None


def _with_digest(location: str, digest: Digest) -> str:
    sep = "&" if urllib.parse.urlsplit(location).query else "?"
    return f"{location}{sep}digest={urllib.parse.quote(str(digest), safe=':')}"


def _next_link(values: list[str], current: str) -> str | None:
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if 'rel="next"' in part or "rel=next" in part:
                start, end = part.find("<"), part.find(">")
                if start != -1 and end > start:
                    return urllib.parse.urljoin(current, part[start + 1 : end])
    return None


def _session_gone(e: RegistryError) -> bool:
    """The upload session no longer exists, e.g. distribution after a PATCH cut short."""
    return e.status == 404 and bool(
        {"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"} & set(e.codes) or not e.codes
    )


def _read_exact(src: BinaryIO, n: int) -> bytes:
    parts = []
    got = 0
    while got < n:
        data = src.read(min(CHUNK, n - got))
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _body(
    opener: Callable[[], BinaryIO], progress: ProgressSink, desc: Descriptor, what: str
) -> Callable[[], Iterator[bytes]]:
    """A replayable body: each call opens the source again and yields 1 MiB chunks.

    The request declares ``desc.size`` as its Content-Length, so a source that is
    shorter or longer must fail here: a short body would leave the registry
    waiting for bytes that never come.
    """

    def gen() -> Iterator[bytes]:
        sent = 0
        with opener() as src:
            while chunk := src.read(CHUNK):
                sent += len(chunk)
                if 0 <= desc.size < sent:
                    raise SizeMismatch(what, desc.size, sent)
                progress.advance(desc.digest, len(chunk))
                yield chunk
        if 0 <= desc.size != sent:
            raise SizeMismatch(what, desc.size, sent)

    return gen
