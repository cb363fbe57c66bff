"""Writing blobs: the upload-session protocol of the distribution API.

A blob already in the repository is skipped (HEAD), one in another repository of
the same registry is mounted, a small one goes in one PUT, a large one streams
through a PATCH, and a registry that asks for chunks (413, ``OCI-Chunk-Min-Length``)
gets chunked uploads that resume where the registry says it stopped. Concurrent
uploads of one blob, by one operation or by several sharing the client, are
merged by :class:`~pycrane._concurrency.SingleFlight`. An all-or-nothing push sends
every blob's bytes first and closes the sessions only when all have verified.

About 600 lines because those upload paths are one protocol whose session handling
(start, send, resume, commit, cancel) they share.
"""

from __future__ import annotations

import io
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, cast

from pycrane._concurrency import SingleFlight, bounded_map
from pycrane.errors import (
    ErrorCode,
    PycraneError,
    RegistryError,
    SizeMismatch,
    TransportError,
)
from pycrane.name import Repository
from pycrane.progress import ProgressSink
from pycrane.remote._api import RegistryAPI
from pycrane.remote._fetcher import RemoteFetcher
from pycrane.remote._retry import Retrier
from pycrane.remote._transport import CHUNK, Response
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest, verifying

__all__ = ["MONOLITHIC_LIMIT", "Pusher", "UploadBlob"]

log = logging.getLogger("pycrane.remote")

#: Blobs smaller than this are uploaded in one PUT; larger ones stream through a PATCH.
MONOLITHIC_LIMIT = 16 << 20
#: Chunk size when a registry forces chunked uploads (413) without saying how big.
DEFAULT_CHUNK = 8 << 20


@dataclass
class UploadBlob:
    """Something to upload: a descriptor, how to open it, and where it can be mounted from."""

    desc: Descriptor
    opener: Callable[[], BinaryIO]
    source: Repository | None = None


@dataclass
class _Turn:
    """Whose turn it is to upload one digest to one registry."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class Pusher:
    """Blob uploads for one client (thread-safe)."""

    def __init__(
        self,
        api: RegistryAPI,
        fetcher: RemoteFetcher,
        *,
        chunk_size: int | None = None,
        monolithic_limit: int = MONOLITHIC_LIMIT,
        allow_nondistributable: bool = False,
    ) -> None:
        self.api = api
        self.fetcher = fetcher
        self.chunk_size = chunk_size
        self.monolithic_limit = monolithic_limit
        self.allow_nondistributable = allow_nondistributable
        #: Uploads in progress, client-wide: concurrent operations share them.
        self._inflight = SingleFlight(forget=True)
        self._lock = threading.Lock()
        #: Registries that forced chunked uploads, and the chunk size they need.
        self._chunked: dict[str, int] = {}
        #: (registry, digest) -> a repository there known to hold the blob: a mount source
        #: for the next repository of that registry that needs it (copy -a, sync).
        self._located: dict[tuple[str, Digest], Repository] = {}
        #: registry -> a repository there known to be complete (a sync's up-to-date image):
        #: a blob no repository is known to hold is first offered as a mount from it.
        self._hints: dict[str, Repository] = {}
        #: Uploads of one digest to one registry run one at a time (the later ones mount).
        self._by_registry: dict[tuple[str, Digest], _Turn] = {}

    # -- blobs -----------------------------------------------------------------------

    def write_blob(
        self,
        repo: Repository,
        blob: Descriptor | bytes,
        opener: Callable[[], BinaryIO] | None,
        *,
        source: Repository | None,
        progress: ProgressSink,
    ) -> Descriptor:
        """Upload one blob unless it is already there (non-distributable ones too)."""
        if isinstance(blob, bytes):
            data = blob
            desc = Descriptor.from_bytes("application/octet-stream", data)
            opener = lambda: io.BytesIO(data)  # noqa: E731
        else:
            desc = blob
            if opener is None:
                raise ValueError("write_blob: an opener is required with a descriptor")
        self.upload(repo, UploadBlob(desc, opener, source), progress, force=True)
        return desc

    def upload_all(
        self,
        repo: Repository,
        blobs: list[UploadBlob],
        jobs: int,
        progress: ProgressSink,
        flight: SingleFlight,
        *,
        all_or_nothing: bool = False,
    ) -> None:
        """Upload each distinct blob once, ``jobs`` at a time; ``flight`` spans an operation.

        ``all_or_nothing`` sends every blob's bytes first and closes the upload
        sessions (the PUT that makes a blob exist) only once every source has been
        read to its end and verified: a source that fails, a local blob that does
        not hash to its name say, cancels every session, so the registry gains no
        blob. Each source is still read once.
        """
        unique: dict[Digest, UploadBlob] = {}
        for b in blobs:
            unique.setdefault(b.desc.digest, b)
        if not unique:
            return
        if all_or_nothing:
            self._upload_staged(repo, list(unique.values()), jobs, progress)
            return
        key = repo.name

        def one(b: UploadBlob) -> None:
            name = f"{key}@{b.desc.digest}"

            def shared() -> None:
                if not self._inflight.run(name, lambda: self._upload_now(repo, b, progress)):
                    progress.finish(b.desc.digest, skipped=True)  # another operation sent it

            flight.run(name, shared)

        bounded_map(one, unique.values(), jobs)

    def _upload_now(self, repo: Repository, b: UploadBlob, progress: ProgressSink) -> None:
        key = (repo.registry.name, b.desc.digest)
        if self.located(repo, b.desc.digest) is not None:
            self.upload(repo, b, progress)  # a mount: no need to wait for a turn
            return
        with self._lock:
            turn = self._by_registry.setdefault(key, _Turn())
            turn.users += 1
        try:
            # Another repository of this registry receiving the same blob right now is
            # waited for: then this one mounts it from there instead of sending it again.
            with turn.lock:
                self.upload(repo, b, progress)
        finally:
            with self._lock:
                turn.users -= 1
                if turn.users == 0:
                    self._by_registry.pop(key, None)

    def located(self, repo: Repository, digest: Digest) -> Repository | None:
        """Another repository of ``repo``'s registry known (to this client) to hold ``digest``."""
        with self._lock:
            found = self._located.get((repo.registry.name, digest))
        return found if found is not None and found.path != repo.path else None

    def hint(self, repo: Repository) -> None:
        """``repo`` holds complete images: try mounting otherwise unknown blobs from it.

        A miss costs nothing where the registry answers a failed mount by opening an
        upload session (the spec's way, which that upload then uses).
        """
        with self._lock:
            self._hints[repo.registry.name] = repo

    def _mount_source(self, repo: Repository, digest: Digest) -> Repository | None:
        found = self.located(repo, digest)
        if found is None:
            with self._lock:
                found = self._hints.get(repo.registry.name)
        return found if found is not None and found.path != repo.path else None

    def _note(self, repo: Repository, digest: Digest) -> None:
        with self._lock:
            self._located[(repo.registry.name, digest)] = repo

    def _upload_staged(
        self, repo: Repository, blobs: list[UploadBlob], jobs: int, progress: ProgressSink
    ) -> None:
        staged: list[tuple[str, UploadBlob]] = []
        lock = threading.Lock()
        push = [repo.scope("pull,push")]

        def stage(b: UploadBlob) -> None:
            d, opener = b.desc, b.opener
            what = f"blob {repo.name}@{d.digest}"
            # Every source is checked as it streams (once: a self-verifying one as is).
            checked = UploadBlob(
                d, lambda: cast(BinaryIO, verifying(opener(), d.digest, d.size, what)), b.source
            )
            location = self.upload(repo, checked, progress, commit=False)
            if location is not None:
                with lock:
                    staged.append((location, b))

        def commit(item: tuple[str, UploadBlob]) -> None:
            location, b = item
            what = f"blob {repo.name}@{b.desc.digest}"
            try:
                self._commit_upload(repo, push, what, location, b.desc.digest)
            except RegistryError as e:
                if not _session_gone(e):
                    raise
                # The registry expired the session while the others were sent (a very
                # long push): this blob, already verified, goes again the usual way.
                log.debug("%s: upload session expired before its commit; sending again", what)
                self.upload(repo, b, progress)

        try:
            bounded_map(stage, blobs, jobs)
        except Exception:
            # Nothing was committed: cancelling the sessions leaves the registry as it
            # was (an interrupted push leaves them to expire).
            for location, b in staged:
                self._cancel_upload(repo, push, f"blob {repo.name}@{b.desc.digest}", location)
            raise
        bounded_map(commit, staged, jobs)

    def upload(
        self,
        repo: Repository,
        blob: UploadBlob,
        progress: ProgressSink,
        *,
        force: bool = False,
        commit: bool = True,
    ) -> str | None:
        """One blob: skipped if present, mounted if possible, else uploaded (with retries).

        Without ``commit`` the bytes are sent but the session is left open: its URL
        is returned for the caller to close (:meth:`_commit_upload`) or cancel.
        """
        desc = blob.desc
        what = f"blob {repo.name}@{desc.digest}"
        if (
            not force
            and not self.allow_nondistributable
            and not mt.is_distributable(desc.media_type)
        ):
            log.debug("%s: non-distributable (%s), skipped", what, desc.media_type)
            return None
        source = blob.source
        elsewhere = source is None or source.registry != repo.registry or source.path == repo.path
        # Known to be in another repository here: mount at once (201 also when it is
        # already in this one), one request instead of a HEAD and a mount.
        known = self.located(repo, desc.digest) if elsewhere else None
        headed = known is None
        if headed and self.fetcher.blob_exists(repo, desc.digest, push=True):
            self._note(repo, desc.digest)
            progress.finish(desc.digest, skipped=True)
            return None
        push = [repo.scope("pull,push")]
        location: str | None = None
        if elsewhere:
            source = known or self._mount_source(repo, desc.digest)
        if source is not None:
            location = self._try_mount(repo, source, desc)
            if location == "":
                self._note(repo, desc.digest)
                progress.finish(desc.digest, skipped=True)
                return None
            if (
                location is None
                and not headed
                and self.fetcher.blob_exists(repo, desc.digest, push=True)
            ):
                progress.finish(desc.digest, skipped=True)  # the mount failed; it is here anyway
                return None
        retries = Retrier(self.api.retry, what)
        while True:
            try:
                if location is None:
                    location = self._start_upload(repo, push, what)
                staged = self._send(repo, push, what, location, blob, progress, commit=commit)
                if commit:
                    self._note(repo, desc.digest)
                progress.finish(desc.digest)
                return staged
            except (TransportError, RegistryError) as e:
                if location and isinstance(e, RegistryError):
                    # Only when the registry answers: a DELETE to one that stopped
                    # answering could wait out the whole read timeout again.
                    self._cancel_upload(repo, push, what, location)
                location = None
                if not e.is_temporary() or not retries.again(f"upload failed ({e})"):
                    raise
            except Exception:
                if location:
                    # The source failed (a blob that does not hash to its name, say):
                    # free the session now rather than at the registry's expiry.
                    self._cancel_upload(repo, push, what, location)
                raise

    def _try_mount(self, repo: Repository, source: Repository, desc: Descriptor) -> str | None:
        """Cross-repository mount: "" when mounted, an upload URL on 202, None on failure."""
        q = urllib.parse.urlencode({"mount": str(desc.digest), "from": source.path})
        try:
            resp = self.api.request(
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
        resp = self.api.request(
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
        blob: UploadBlob,
        progress: ProgressSink,
        *,
        commit: bool = True,
    ) -> str | None:
        """Send the bytes; without ``commit``, return the open session's URL (not closed)."""
        desc = blob.desc
        chunk = self.chunk_size or self._chunked.get(repo.registry.name)
        progress.start(desc.digest, desc.size, what)
        if chunk:
            return self._send_chunked(
                repo, scopes, what, location, blob, progress, chunk, commit=commit
            )
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
        body = _body(blob.opener, progress, desc, what)
        if commit and desc.size < self.monolithic_limit:
            resp = self.api.request(
                "PUT",
                repo.registry,
                _with_digest(location, desc.digest),
                scopes=scopes,
                what=what,
                expected=(201, 204, 413),
                headers=headers,
                body=body,
                retry=False,
            )
        else:
            resp = self.api.request(
                "PATCH",
                repo.registry,
                location,
                scopes=scopes,
                what=what,
                expected=(202, 204, 413),
                headers=headers,
                body=body,
                retry=False,
            )
            if resp.status != 413:
                loc = urllib.parse.urljoin(resp.url, resp.header("Location") or location)
                if not commit:
                    return loc
                resp = self._commit_upload(repo, scopes, what, loc, desc.digest)
        if resp.status == 413:
            # Too large for one request: this registry wants chunks from now on.
            with self._lock:
                self._chunked.setdefault(repo.registry.name, DEFAULT_CHUNK)
            raise TransportError(f"{what}: registry refused a {desc.size}-byte body (413)")
        return None

    def _send_chunked(
        self,
        repo: Repository,
        scopes: list[str],
        what: str,
        location: str,
        blob: UploadBlob,
        progress: ProgressSink,
        chunk: int,
        *,
        commit: bool = True,
    ) -> str | None:
        desc = blob.desc
        offset = 0  # bytes the registry has acknowledged
        pending = b""  # bytes read from the source, not yet acknowledged
        retries = Retrier(self.api.retry, what)
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
                    resp = self.api.request(
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
                    if not _chunk_resumable(e) or not retries.again(f"chunk failed ({e})"):
                        raise
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
                    log.debug("%s: resuming at byte %d", what, acked)
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
        if not commit:
            return location
        try:
            self._commit_upload(repo, scopes, what, location, desc.digest)
        except RegistryError as e:
            if resumed and e.has_code(ErrorCode.DIGEST_INVALID):
                # Some registries append a PATCH wherever it says it starts: if the
                # resume point was wrong, only a fresh upload can repair it.
                raise TransportError(f"{what}: resumed upload did not verify ({e})") from e
            raise
        return None

    def _cancel_upload(self, repo: Repository, scopes: list[str], what: str, location: str) -> None:
        """Best effort: free an abandoned session's bytes at the registry now, not at expiry."""
        try:
            self.api.request(
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
        return self.api.request(
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
        resp = self.api.request(
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


def _chunk_resumable(e: TransportError | RegistryError) -> bool:
    """A failed chunk worth asking the session about: transient, 416, or session gone."""
    if e.is_temporary():
        return True
    return isinstance(e, RegistryError) and (e.status == 416 or _session_gone(e))


def _session_gone(e: RegistryError) -> bool:
    """The upload session no longer exists, e.g. distribution after a PATCH cut short."""
    return e.status == 404 and (
        e.has_code(ErrorCode.BLOB_UPLOAD_UNKNOWN, ErrorCode.BLOB_UPLOAD_INVALID) or not e.codes
    )


def _with_digest(location: str, digest: Digest) -> str:
    sep = "&" if urllib.parse.urlsplit(location).query else "?"
    return f"{location}{sep}digest={urllib.parse.quote(str(digest), safe=':')}"


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
