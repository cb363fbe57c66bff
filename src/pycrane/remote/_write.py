"""Pushing images, indexes and manifests: blobs first, then manifests, children before parents.

A manifest is written only after everything it references is in the registry, and
only when the registry does not already hold the same bytes under that name, so a
repeated push sends HEADs and nothing else. Blobs whose source lives in a registry
repository (the optional ``repository`` capability of remote images and layers)
are mounted when the destination is another repository of the same registry.
"""

from __future__ import annotations

import io
from typing import Protocol, runtime_checkable

from pycrane._concurrency import SingleFlight, bounded_map
from pycrane.errors import DigestMismatch
from pycrane.name import DigestRef, Reference, Repository, Tag
from pycrane.progress import ProgressSink
from pycrane.remote._fetcher import RemoteFetcher
from pycrane.remote._manifest_put import put_manifest
from pycrane.remote._pusher import Pusher, UploadBlob
from pycrane.remote._referrers import Referrers, subject_of
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import Image, ImageIndex, blob_layers, is_index
from pycrane.v1.manifest import detect_media_type

__all__ = ["FromRepository", "Writer", "source_repository"]


@runtime_checkable
class FromRepository(Protocol):
    """Optional capability: an image or layer whose blobs live in a registry repository."""

    @property
    def repository(self) -> Repository: ...


def source_repository(obj: object) -> Repository | None:
    """Where ``obj``'s blobs can be mounted from, when it lives in a registry."""
    return obj.repository if isinstance(obj, FromRepository) else None


class Writer:
    """Writes images, indexes and raw manifests through a :class:`Pusher`."""

    def __init__(
        self,
        fetcher: RemoteFetcher,
        pusher: Pusher,
        referrers: Referrers,
        *,
        referrers_fallback: bool = True,
    ) -> None:
        self.fetcher = fetcher
        self.pusher = pusher
        self.referrers = referrers
        self.referrers_fallback = referrers_fallback

    def put_manifest(self, r: Reference, raw: bytes, media_type: str | None) -> Descriptor:
        """PUT raw manifest bytes under a tag or digest; returns their descriptor.

        A manifest with a ``subject`` also updates the referrers tag index
        (``sha256-<hex>``) when the registry does not process subjects itself.
        """
        media = media_type or detect_media_type(raw, what=f"manifest {r}")
        if isinstance(r, DigestRef):
            actual = Digest.from_bytes(raw, r.digest.algorithm)
            if actual != r.digest:
                raise DigestMismatch(f"manifest {r}", str(r.digest), str(actual))
        result = put_manifest(self.pusher.api, r, raw, media)
        if self.referrers_fallback and not result.subject_handled:
            subject = subject_of(raw, media)
            if subject is not None:
                self.referrers.add_fallback(r.repository, subject, raw, media, result.descriptor)
        return result.descriptor

    def put_manifest_if_needed(self, r: Reference, raw: bytes, media: str) -> Descriptor:
        """Like :meth:`put_manifest`, but only a HEAD when the same bytes are already there."""
        have = self.fetcher.exists(r, push=True)
        digest = Digest.from_bytes(raw)
        if have is not None and have.digest == digest:
            return Descriptor(media_type=media, digest=digest, size=len(raw))
        return self.put_manifest(r, raw, media)

    def blobs_of(self, img: Image) -> list[UploadBlob]:
        """The config and layers of ``img`` as uploads, with their mount sources."""
        m = img.manifest()
        src_repo = source_repository(img)
        cfg = m.config
        if cfg.data is not None or src_repo is None:
            raw_cfg = img.raw_config()
            blobs = [UploadBlob(cfg, lambda: io.BytesIO(raw_cfg))]
        else:
            repo = src_repo
            blobs = [UploadBlob(cfg, lambda: self.fetcher.blob(repo, cfg), repo)]
        for layer in blob_layers(img):
            blobs.append(UploadBlob(layer.descriptor(), layer.compressed, source_repository(layer)))
        return blobs

    def write_image(
        self,
        r: Reference,
        img: Image,
        *,
        jobs: int,
        progress: ProgressSink,
        flight: SingleFlight | None = None,
        all_or_nothing: bool = False,
    ) -> Descriptor:
        """Push an image: blobs not already there (concurrently), then the manifest."""
        self.pusher.upload_all(
            r.repository,
            self.blobs_of(img),
            jobs,
            progress,
            flight or SingleFlight(),
            all_or_nothing=all_or_nothing,
        )
        return self.put_manifest_if_needed(r, img.raw_manifest(), img.media_type())

    def write_index(
        self,
        r: Reference,
        idx: ImageIndex,
        *,
        jobs: int,
        progress: ProgressSink,
        flight: SingleFlight | None = None,
        all_or_nothing: bool = False,
    ) -> Descriptor:
        """Push an index: every child's blobs, children's manifests by digest, then the index."""
        repo = r.repository
        levels: dict[int, list[tuple[bytes, str]]] = {}  # depth -> manifests at that depth
        blobs: list[UploadBlob] = []
        seen: set[Digest] = set()

        def walk(node: ImageIndex, depth: int) -> None:
            todo = []
            for d in node.index_manifest().manifests:
                if d.digest not in seen:
                    seen.add(d.digest)
                    todo.append(d)
            # Children's manifests are fetched concurrently (one round trip each).
            children = bounded_map(node.child, todo, jobs)
            for child in children:
                if is_index(child):
                    walk(child, depth + 1)
                else:
                    blobs.extend(self.blobs_of(child))
                levels.setdefault(depth, []).append((child.raw_manifest(), child.media_type()))

        walk(idx, 0)
        self.pusher.upload_all(
            repo, blobs, jobs, progress, flight or SingleFlight(), all_or_nothing=all_or_nothing
        )
        # Deepest first: a registry may check that an index's children exist.
        for depth in sorted(levels, reverse=True):
            bounded_map(
                lambda m: self.put_manifest_if_needed(
                    DigestRef(repo, Digest.from_bytes(m[0])), m[0], m[1]
                ),
                levels[depth],
                jobs,
            )
        return self.put_manifest_if_needed(r, idx.raw_manifest(), idx.media_type())

    def write(
        self,
        r: Reference,
        obj: Image | ImageIndex,
        *,
        jobs: int,
        progress: ProgressSink,
        all_or_nothing: bool = False,
    ) -> Descriptor:
        """Push an image or an index (``all_or_nothing``: see :meth:`Pusher.upload_all`)."""
        if is_index(obj):
            return self.write_index(
                r, obj, jobs=jobs, progress=progress, all_or_nothing=all_or_nothing
            )
        return self.write_image(r, obj, jobs=jobs, progress=progress, all_or_nothing=all_or_nothing)

    def tag(self, r: Reference, new_tag: str) -> Descriptor:
        """Point ``new_tag`` (in the same repository) at what ``r`` points at."""
        rd = self.fetcher.get(r)
        return self.put_manifest_if_needed(Tag(rd.ref.repository, new_tag), rd.raw, rd.media_type)
