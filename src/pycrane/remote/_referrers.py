"""Referrers: the manifests whose ``subject`` points at a given manifest.

A registry with the OCI 1.1 referrers API answers ``GET /v2/<name>/referrers/<digest>``
(paged with ``Link``); for one without it, clients keep an index under the tag
``<alg>-<hex>`` (the referrers tag schema), which :meth:`Referrers.add_fallback`
updates when a manifest with a subject is pushed and the registry did not
process the subject itself.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse

from pycrane.errors import ManifestError, NotFoundError
from pycrane.name import Repository, Tag
from pycrane.remote._api import RegistryAPI
from pycrane.remote._fetcher import RemoteFetcher
from pycrane.remote._list import Paginator
from pycrane.remote._manifest_put import put_manifest
from pycrane.remote._transport import Response
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.manifest import Index, Manifest, parse_manifest

__all__ = ["Referrers", "subject_of"]

log = logging.getLogger("pycrane.remote")


def subject_of(raw: bytes, media: str) -> Descriptor | None:
    """The ``subject`` of an image or index manifest, if it has one."""
    if not (mt.is_image(media) or mt.is_index(media)):
        return None
    try:
        return parse_manifest(raw, media).subject
    except ManifestError:
        return None


def _fallback_tag(repo: Repository, digest: Digest) -> Tag:
    return Tag(repo, f"{digest.algorithm}-{digest.hex}")


class Referrers:
    """Reading referrers (API or tag schema) and maintaining the tag schema's index."""

    def __init__(self, api: RegistryAPI, fetcher: RemoteFetcher, paginator: Paginator) -> None:
        self.api = api
        self.fetcher = fetcher
        self.paginator = paginator
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def of(self, repo: Repository, digest: Digest, artifact_type: str | None = None) -> Index:
        """The manifests whose ``subject`` is ``repo@digest`` (API, else the tag schema)."""
        what = f"referrers of {repo.name}@{digest}"
        path = f"/v2/{repo.path}/referrers/{digest}"
        if artifact_type:
            path += "?" + urllib.parse.urlencode({"artifactType": artifact_type})
        scopes = [repo.scope("pull")]
        headers = {"Accept": mt.OCI_INDEX}
        resp = self.api.request(
            "GET",
            repo.registry,
            path,
            scopes=scopes,
            what=what,
            expected=(200, 400, 404, 405, 406),
            headers=headers,
            stream=True,
        )
        ctype = (resp.header("Content-Type") or "").split(";")[0].strip()
        if resp.status == 200 and ctype == mt.OCI_INDEX:
            idx = self._merge_pages(repo, resp, scopes, what, headers)
        else:
            resp.drain()
            idx = self.fallback_index(repo, digest) or Index.build([])
        if artifact_type:
            kept = [d for d in idx.manifests if d.artifact_type == artifact_type]
            if len(kept) != len(idx.manifests):
                idx = Index.build(kept, annotations=idx.annotations)
        return idx

    def _merge_pages(
        self,
        repo: Repository,
        first: Response,
        scopes: list[str],
        what: str,
        headers: dict[str, str],
    ) -> Index:
        pages = []
        for page in self.paginator.pages(
            repo.registry, first, scopes=scopes, what=what, headers=headers, stream=True
        ):
            raw, too_long = page.read_capped(self.fetcher.manifest_limit)
            if too_long:
                raise ManifestError(f"{what}: response too large")
            pages.append(Index.parse(raw))
        if len(pages) == 1:
            return pages[0]
        manifests: list[Descriptor] = []
        seen: set[Digest] = set()
        for idx in pages:
            for d in idx.manifests:
                if d.digest not in seen:
                    seen.add(d.digest)
                    manifests.append(d)
        return Index.build(manifests, annotations=pages[0].annotations)

    def fallback_index(self, repo: Repository, digest: Digest) -> Index | None:
        """The referrers tag schema's index for ``digest``, when there is one."""
        try:
            rd = self.fetcher.get(_fallback_tag(repo, digest))
        except NotFoundError:
            return None
        try:
            return Index.parse(rd.raw)
        except ManifestError:
            return None

    def add_fallback(
        self, repo: Repository, subject: Descriptor, raw: bytes, media: str, desc: Descriptor
    ) -> None:
        """Add the manifest ``desc`` (with ``raw`` bytes) to its subject's tag-schema index."""
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
        tag = _fallback_tag(repo, subject.digest)
        with self._lock:
            lock = self._locks.setdefault(str(tag), threading.Lock())
        # The registry offers no conditional PUT: serialise our own writers, then
        # read back and try again if another client's write replaced ours.
        with lock:
            for _ in range(5):
                current = self.fallback_index(repo, subject.digest)
                existing = list(current.manifests) if current else []
                if any(d.digest == desc.digest for d in existing):
                    return
                existing.append(entry)
                existing.sort(key=lambda d: str(d.digest))
                new = Index.build(existing)
                put_manifest(self.api, tag, new.raw, new.media_type)
            log.debug("%s: lost the race to update the referrers tag 5 times", tag)
