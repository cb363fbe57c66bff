"""Choosing by platform: one image out of an index, or an index narrowed to some platforms.

Every command that takes ``--platform`` (pull, copy, digest, manifest, config,
``index filter``, mutate, ...) selects through these two functions, so they agree
on one set of rules:

- Wanted and offered platforms are compared after containerd's normalisation
  (:meth:`Platform.satisfied_by`): ``linux/arm64/v8`` is ``linux/arm64``, and a
  wanted platform without a variant accepts any variant.
- An **image** entry without a ``platform`` is taken to be linux/amd64, as
  go-containerregistry does, but ranks below an entry that states linux/amd64.
  Attestations and artifacts (``unknown/unknown``) match nothing.
- An **index** entry without a ``platform`` (an index nested for grouping) is
  looked into, up to :data:`MAX_DEPTH` levels: its children carry the platforms.
  An index entry that states a platform is matched by that platform; selecting an
  image then looks inside it for the same platform.

:func:`select_image` returns the single best image; :func:`filter_index` keeps
every entry that matches one of several platforms (rewriting nested indexes that
lose children) and returns the index itself when nothing was dropped, so its
digest is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pycrane.errors import NoMatchingPlatform
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import Image, ImageIndex, ImageIndexBase, is_index
from pycrane.v1.manifest import Index
from pycrane.v1.platform import DEFAULT_PLATFORM, Platform

__all__ = ["MAX_DEPTH", "filter_index", "matches", "select", "select_image"]

#: How deep nested indexes without a platform are searched.
MAX_DEPTH = 8


def _want(p: Platform | str) -> Platform:
    return Platform.parse(p) if isinstance(p, str) else p


def _rank(want: Platform, offered: Platform) -> int | None:
    """0: the same spelling; 1: the same after normalisation; 2: merely acceptable."""
    if not want.satisfied_by(offered):
        return None
    if (want.os, want.architecture, want.variant) == (
        offered.os,
        offered.architecture,
        offered.variant,
    ):
        return 0
    w, o = want.normalized(), offered.normalized()
    return 1 if w.variant == o.variant else 2


def select(descriptors: Iterable[Descriptor], wanted: Platform | str) -> Descriptor | None:
    """The index child that best fits ``wanted``, or ``None``.

    An exact spelling beats a normalised match (``arm64/v8`` vs ``arm64``), which
    beats an acceptable one (``linux/arm`` taking ``arm/v6``); ties go to the first
    child, as an index lists its preferred variants first. A child without a
    platform counts as :data:`DEFAULT_PLATFORM`, ranked below one that says so.
    """
    want = Platform.parse(wanted)
    best: Descriptor | None = None
    best_rank = 3
    for desc in descriptors:
        rank = _rank(want, desc.platform or DEFAULT_PLATFORM)
        if rank == 0 and desc.platform is None:
            rank = 1  # an assumed platform never beats one the index states
        if rank is not None and rank < best_rank:
            best, best_rank = desc, rank
            if rank == 0:
                break
    return best


def _grouping(d: Descriptor) -> bool:
    """An entry that is looked into rather than matched: an index without a platform."""
    return mt.is_index(d.media_type) and d.platform is None


def matches(desc: Descriptor, wanted: Sequence[Platform | str]) -> bool:
    """Whether an image entry matches one of ``wanted`` (no platform: linux/amd64)."""
    offered = desc.platform or DEFAULT_PLATFORM
    return any(_want(w).satisfied_by(offered) for w in wanted)


def select_image(index: ImageIndex, platform: Platform | str, what: str = "index") -> Image:
    """The image in ``index`` that best fits ``platform``.

    Raises :class:`NoMatchingPlatform` listing every platform the index offers.
    """
    want = _want(platform)
    offered: list[str] = []
    found = _select(index, want, offered, 0)
    if found is None:
        raise NoMatchingPlatform(
            f"{what}: no image for platform {want}; it offers "
            + (", ".join(dict.fromkeys(offered)) or "no platforms")
        )
    return found


def _select(index: ImageIndex, want: Platform, offered: list[str], depth: int) -> Image | None:
    manifests = index.index_manifest().manifests
    direct = [d for d in manifests if not _grouping(d)]
    offered.extend(str(d.platform or DEFAULT_PLATFORM) for d in direct)
    best = select(direct, want)
    if best is not None:
        child = index.child(best)
        if not is_index(child):
            return child
        if depth < MAX_DEPTH:
            found = _select(child, want, offered, depth + 1)
            if found is not None:
                return found
    if depth < MAX_DEPTH:
        for d in manifests:
            if _grouping(d):
                child = index.child(d)
                if is_index(child):
                    found = _select(child, want, offered, depth + 1)
                    if found is not None:
                        return found
    return None


def filter_index(
    index: ImageIndex, platforms: Sequence[Platform | str], what: str = "index"
) -> ImageIndex:
    """``index`` keeping only the entries that match one of ``platforms``.

    Nested indexes without a platform are filtered too (and replaced by the
    filtered version when they lose entries). The index's media type, annotations,
    subject and artifact type are kept. Raises :class:`NoMatchingPlatform` listing
    what the index offers when nothing matches.
    """
    wanted = [_want(p) for p in platforms]
    if not wanted:
        return index
    offered: list[str] = []
    out = _filter(index, wanted, offered, 0)
    if out is None:
        raise NoMatchingPlatform(
            f"{what}: no image for platforms {', '.join(map(str, wanted))}; it offers "
            + (", ".join(dict.fromkeys(offered)) or "no platforms")
        )
    return out


def _filter(
    index: ImageIndex, wanted: list[Platform], offered: list[str], depth: int
) -> ImageIndex | None:
    im = index.index_manifest()
    kept: list[Descriptor] = []
    replaced: dict[Digest, ImageIndex] = {}
    changed = False
    for d in im.manifests:
        if _grouping(d) and depth < MAX_DEPTH:
            child = index.child(d)
            inner = _filter(child, wanted, offered, depth + 1) if is_index(child) else None
            if inner is None:
                changed = True
            elif inner is child:
                kept.append(d)
            else:
                nd = Descriptor(
                    inner.media_type(),
                    inner.digest(),
                    inner.size(),
                    annotations=dict(d.annotations),
                )
                kept.append(nd)
                replaced[nd.digest] = inner
                changed = True
            continue
        offered.append(str(d.platform or DEFAULT_PLATFORM))
        if matches(d, wanted):
            kept.append(d)
        else:
            changed = True
    if not kept:
        return None
    if not changed:
        return index
    narrowed = Index.build(
        kept,
        media_type=im.media_type,
        annotations=im.annotations or None,
        subject=im.subject,
        artifact_type=im.artifact_type,
    )
    return _Narrowed(index, narrowed, replaced)


class _Narrowed(ImageIndexBase):
    """An index with fewer entries than ``base``; children still load lazily from ``base``."""

    def __init__(self, base: ImageIndex, index: Index, replaced: dict[Digest, ImageIndex]) -> None:
        super().__init__()
        self._base = base
        self._index = index
        self._replaced = replaced

    def raw_manifest(self) -> bytes:
        return self._index.raw

    def index_manifest(self) -> Index:
        return self._index

    def child(self, descriptor: Descriptor) -> Image | ImageIndex:
        inner = self._replaced.get(descriptor.digest)
        return inner if inner is not None else self._base.child(descriptor)

    def __repr__(self) -> str:
        return f"FilteredIndex({self._base!r} -> {self._index.digest})"
