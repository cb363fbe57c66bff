"""Copying between registries and repositories, streaming blobs from GET into upload.

No blob touches the disk: each layer's source stream is the upload's body, and a
copy within one registry mounts instead. ``--platform`` follows crane: one
platform copies that platform's image (the destination gets the child's
manifest, byte for byte); several keep a filtered index (pycrane's extension).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from pycrane._concurrency import SingleFlight
from pycrane.errors import RegistryError
from pycrane.name import DigestRef, Reference, Repository, Tag
from pycrane.progress import ProgressSink
from pycrane.remote._fetcher import RemoteFetcher
from pycrane.remote._image import RemoteDescriptor, RemoteImage
from pycrane.remote._list import Lister
from pycrane.remote._referrers import Referrers
from pycrane.remote._write import Writer
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import Image, ImageIndex, is_index
from pycrane.v1.manifest import refuse_schema1
from pycrane.v1.match import filter_index, select_image
from pycrane.v1.platform import Platform

__all__ = ["Copier"]

#: How deep referrers of referrers (signatures of SBOMs, ...) are followed.
REFERRER_DEPTH = 8


class Copier:
    """``copy`` for one client: one reference, or every tag of a repository."""

    def __init__(
        self, fetcher: RemoteFetcher, writer: Writer, referrers: Referrers, lister: Lister
    ) -> None:
        self.fetcher = fetcher
        self.writer = writer
        self.referrers = referrers
        self.lister = lister

    def copy_tags(
        self,
        src: Repository,
        dst: Repository,
        *,
        platforms: Sequence[Platform],
        with_referrers: bool,
        jobs: int,
        no_clobber: bool,
        progress: ProgressSink,
    ) -> list[Descriptor]:
        """Every tag of ``src`` to the same tag in ``dst``; a shared blob is sent once."""
        tags = self.lister.tags(src)
        if not tags:
            return []
        flight = SingleFlight()

        def one(t: str) -> Descriptor:
            return self.copy(
                Tag(src, t),
                Tag(dst, t),
                platforms=platforms,
                with_referrers=with_referrers,
                jobs=jobs,
                no_clobber=no_clobber,
                progress=progress,
                flight=flight,
            )

        # Every tag is tried; the first failure is raised once all have finished.
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

    def copy(
        self,
        src: Reference,
        dst: Reference,
        *,
        platforms: Sequence[Platform],
        with_referrers: bool,
        jobs: int,
        no_clobber: bool,
        progress: ProgressSink,
        flight: SingleFlight | None = None,
    ) -> Descriptor:
        """One image or index from ``src`` to ``dst``, narrowed by ``platforms``."""
        if no_clobber and isinstance(dst, Tag) and self.fetcher.exists(dst) is not None:
            raise RegistryError(f"copy to {dst}: the tag already exists (no_clobber)")
        rd = self.fetcher.get(src)
        return self._copy_fetched(rd, dst, platforms, with_referrers, jobs, progress, flight)

    def _copy_fetched(
        self,
        rd: RemoteDescriptor,
        dst: Reference,
        platforms: Sequence[Platform],
        with_referrers: bool,
        jobs: int,
        progress: ProgressSink,
        flight: SingleFlight | None,
    ) -> Descriptor:
        src = rd.ref
        refuse_schema1(rd.media_type, f"manifest {src}")
        obj: Image | ImageIndex
        subjects = [rd.digest]
        if rd.is_index():
            idx = rd.index()
            if len(platforms) == 1:
                obj = select_image(idx, platforms[0], f"index {src}")
                subjects = [obj.digest()]
            else:
                obj = filter_index(idx, platforms, f"index {src}") if platforms else idx
                subjects += [d.digest for d in idx.index_manifest().manifests]
        else:
            obj = RemoteImage(self.fetcher, rd.ref, rd.raw, rd.media_type)
        if is_index(obj):
            out = self.writer.write_index(dst, obj, jobs=jobs, progress=progress, flight=flight)
        else:
            out = self.writer.write_image(dst, obj, jobs=jobs, progress=progress, flight=flight)
        if with_referrers:
            for digest in subjects:
                self._copy_referrers(rd.ref.repository, dst.repository, digest, jobs, progress, 0)
        return out

    def _copy_referrers(
        self,
        src_repo: Repository,
        dst_repo: Repository,
        subject: Digest,
        jobs: int,
        progress: ProgressSink,
        depth: int,
    ) -> None:
        if depth > REFERRER_DEPTH:
            return
        for ref_desc in self.referrers.of(src_repo, subject).manifests:
            child = self.fetcher.get(DigestRef(src_repo, ref_desc.digest))
            dst = DigestRef(dst_repo, ref_desc.digest)
            self._copy_fetched(child, dst, (), False, jobs, progress, None)
            nested = [child.digest]
            if child.is_index():
                nested += [d.digest for d in child.index().index_manifest().manifests]
            for digest in nested:
                self._copy_referrers(src_repo, dst_repo, digest, jobs, progress, depth + 1)
