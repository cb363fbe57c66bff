"""Registry storage on disk: one BlobStore for content, small link files per repository.

Layout under the ``--disk`` directory::

    blobs/<alg>/<hex>          every blob and manifest, once (BlobStore)
    ingest/...                 uploads in flight (BlobStore ingests, ref "upload-<session>"),
                               temp files
    repositories/<name>/       one directory per repository name component: the links,
                               tags, referrers and upload markers of
                               :mod:`pycrane.registry.disk_records`

Why this shape (it is CNCF distribution's):

* Content is published only by :class:`~pycrane.layout.BlobStore` (verify, then
  publish without replacing), so several server processes on one directory and
  concurrent uploads of one blob are safe: the first writer wins, the others
  find the blob there.
* Link files are created with an exclusive publish and never rewritten, so they
  need no lock. Tags are the only mutable records: each is replaced atomically
  through a temp file (last writer wins, readers never see a torn file).
* Deleting a blob or manifest removes the repository's link only. The content
  stays in ``blobs/`` (other repositories may link it) until
  :meth:`DiskStorage.collect_garbage` runs, offline, like distribution's
  ``garbage-collect``.

:class:`DiskStorage` is the facade over the three parts: the BlobStore, the
repository records, and the upload sessions of :mod:`pycrane.registry.disk_uploads`
(a writer idle for :data:`IDLE_RELEASE` seconds, read when the storage is made,
is closed with its data kept, so another server process can continue the session).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

from pycrane.errors import DigestMismatch, NotFoundError, StoreError
from pycrane.layout import BlobStore
from pycrane.registry.apierrors import ApiError
from pycrane.registry.disk_records import RepositoryRecords
from pycrane.registry.disk_uploads import UploadSessions, commit
from pycrane.registry.manifests import PushedManifest
from pycrane.registry.storage import Body, StoredManifest, copy_body
from pycrane.v1.digest import Digest

__all__ = ["IDLE_RELEASE", "DiskStorage"]

#: Verified manifest bytes kept in memory (content is immutable per digest).
MANIFEST_CACHE_BYTES = 16 * 1024 * 1024
#: Seconds an upload writer may sit idle before its lock is released.
IDLE_RELEASE = 1.0
#: Abandoned ingests older than this are swept (at start, then at most every SWEEP_EVERY s).
SWEEP_AGE = 24 * 3600.0
SWEEP_EVERY = 3600.0


class DiskStorage:
    """:class:`~pycrane.registry.storage.Storage` on a directory; see the module docstring."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.store = BlobStore(self.root, fsync=fsync)
        self.records = RepositoryRecords(self.root / "repositories", fsync=fsync)
        self.uploads = UploadSessions(self.store, self.records, idle_release=IDLE_RELEASE)
        self._swept = time.monotonic()
        self._manifests: OrderedDict[Digest, bytes] = OrderedDict()
        self._manifests_size = 0
        self._manifests_lock = threading.Lock()
        self.sweep()

    # -- blobs --------------------------------------------------------------------------------

    def blob_size(self, repo: str, digest: Digest) -> int | None:
        if not self.records.has_blob(repo, digest):
            return None
        return self.store.size(digest)

    def blob_open(self, repo: str, digest: Digest) -> tuple[BinaryIO, int]:
        unknown = ApiError(
            "BLOB_UNKNOWN", f"blob {digest} unknown to {repo}", detail={"digest": str(digest)}
        )
        if not self.records.has_blob(repo, digest):
            raise unknown
        try:
            f = self.store.open(digest)
        except NotFoundError:
            raise unknown from None
        return f, os.fstat(f.fileno()).st_size

    def blob_mount(self, repo: str, digest: Digest, source: str) -> bool:
        if self.blob_size(source, digest) is None:
            return False
        self.records.link_blob(repo, digest)
        return True

    def blob_delete(self, repo: str, digest: Digest) -> bool:
        return self.records.unlink_blob(repo, digest)

    def blob_put(self, repo: str, digest: Digest, body: Body) -> int:
        with self.store.ingest(None, digest.algorithm) as writer:
            copy_body(body, writer.write)
            size = writer.offset
            commit(writer, digest)
        self.records.link_blob(repo, digest)
        return size

    # -- uploads ------------------------------------------------------------------------------

    def upload_start(self, repo: str) -> str:
        if time.monotonic() - self._swept > SWEEP_EVERY:
            self._swept = time.monotonic()
            self.sweep()
        return self.uploads.start(repo)

    def upload_offset(self, repo: str, session: str) -> int:
        return self.uploads.offset(repo, session)

    def upload_write(self, repo: str, session: str, body: Body, start: int | None) -> int:
        return self.uploads.write(repo, session, body, start)

    def upload_finish(self, repo: str, session: str, digest: Digest) -> int:
        size = self.uploads.finish(repo, session, digest)
        self.records.link_blob(repo, digest)
        return size

    def upload_cancel(self, repo: str, session: str) -> None:
        self.uploads.cancel(repo, session)

    def sweep(self, older_than: float = SWEEP_AGE) -> int:
        """Drop upload sessions and ingests untouched for ``older_than`` seconds; count them."""
        removed = self.store.sweep(older_than)
        return removed + self.uploads.sweep(older_than)

    def close(self) -> None:
        """Release every open upload writer (their data stays for a later session)."""
        self.uploads.close()

    # -- manifests ----------------------------------------------------------------------------

    def manifest_get(self, repo: str, reference: str | Digest) -> StoredManifest | None:
        digest = (
            self.records.tag_target(repo, reference) if isinstance(reference, str) else reference
        )
        if digest is None:
            return None
        media_type = self.records.revision_media_type(repo, digest)
        if media_type is None:
            return None
        raw = self._manifest_bytes(digest)
        if raw is None:
            return None
        return StoredManifest(digest, media_type, raw)

    def _manifest_bytes(self, digest: Digest) -> bytes | None:
        """The verified bytes of a manifest, from the small in-memory cache when there."""
        with self._manifests_lock:
            raw = self._manifests.get(digest)
            if raw is not None:
                self._manifests.move_to_end(digest)
                return raw
        try:
            raw = self.store.read_bytes(digest, verify=True)
        except NotFoundError:
            return None
        except (DigestMismatch, StoreError) as e:
            raise StoreError(f"manifest {digest}: stored content is damaged: {e}") from e
        with self._manifests_lock:
            if digest not in self._manifests:
                self._manifests[digest] = raw
                self._manifests_size += len(raw)
            while self._manifests_size > MANIFEST_CACHE_BYTES:
                _, old = self._manifests.popitem(last=False)
                self._manifests_size -= len(old)
        return raw

    def manifest_put(
        self, repo: str, manifest: PushedManifest, raw: bytes, tag: str | None
    ) -> None:
        self.store.put(raw, digest=manifest.digest, size=len(raw))
        self.records.add_revision(repo, manifest, tag)

    def manifest_delete(self, repo: str, digest: Digest) -> bool:
        return self.records.delete_revision(repo, digest)

    def tag_delete(self, repo: str, tag: str) -> bool:
        return self.records.delete_tag(repo, tag)

    def tags(self, repo: str) -> list[str] | None:
        return self.records.tags(repo)

    def repositories(self, *, uploads: bool = False) -> list[str]:
        """Repositories with content (and, with ``uploads``, those with only sessions)."""
        return self.records.repositories(uploads=uploads)

    def referrers(self, repo: str, subject: Digest) -> list[dict[str, Any]]:
        return self.records.referrers(repo, subject)

    # -- maintenance --------------------------------------------------------------------------

    def collect_garbage(self, *, dry_run: bool = False) -> tuple[int, int]:
        """Delete blobs that no repository links any more; return ``(count, bytes)``.

        Run it only while no server writes to this directory: a blob that a push
        has published but not linked yet looks unreferenced. Everything a
        repository links (layers, configs, manifests) is kept.
        """
        keep = set(self.records.linked())
        count = size = 0
        for digest in list(self.store.digests()):
            if digest in keep:
                continue
            blob_size = self.store.size(digest) or 0
            if dry_run or self.store.delete(digest):
                count += 1
                size += blob_size
        return count, size
