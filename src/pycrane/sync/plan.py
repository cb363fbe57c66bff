"""The plan of a sync: every (source tag, destination tag) pair its configuration selects.

Sources are enumerated the way gcrane's ``cp -r`` does: a registry or namespace
through the catalog (repositories under the prefix), or the listed repositories,
or one repository; then each repository's tags, narrowed by the entry's
:class:`~pycrane.sync.filters.TagFilter`. Listing failures become failed results
(one per repository), so the rest of the plan still runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pycrane._concurrency import bounded_map
from pycrane.errors import PycraneError
from pycrane.name import Registry, Repository, Tag
from pycrane.remote import Client
from pycrane.sync.config import SourceSpec
from pycrane.sync.report import ImageResult

__all__ = ["Plan", "PlanItem", "build_plan", "destination_for", "split_source"]

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class PlanItem:
    """One image to bring up to date: ``source`` tag to ``destination`` tag."""

    source: Tag
    destination: Tag
    spec: SourceSpec


@dataclass
class Plan:
    items: list[PlanItem] = field(default_factory=list)
    #: What could not be enumerated (a catalog or tag list that failed).
    errors: list[ImageResult] = field(default_factory=list)

    def describe(self) -> list[str]:
        return [f"{i.source} -> {i.destination}" for i in self.items]


def split_source(source: str) -> tuple[Registry, str]:
    """``host[:port][/prefix]`` -> (registry, prefix); no host means Docker Hub."""
    first, _, rest = source.partition("/")
    if "." in first or ":" in first or first == "localhost":
        return Registry.parse(first), rest.strip("/")
    return Repository.parse(source + "/x").registry, source.strip("/")


def destination_for(spec: SourceSpec, src: Repository, relative: str) -> Repository:
    """Where ``src`` (``relative`` to the entry's source) goes, by the entry's destination."""
    dst = spec.destination
    name = relative.rpartition("/")[2] if relative else src.path.rpartition("/")[2]
    if "{" in dst:
        text = dst.format(
            repo=relative or name, name=name, path=src.path, registry=src.registry.name
        )
    else:
        text = f"{dst}/{relative}" if relative else dst
    return Repository.parse(text)


def _safe_map(fn: Callable[[_T], _R], items: Sequence[_T], jobs: int) -> list[_R | Exception]:
    def wrapped(x: _T) -> _R | Exception:
        try:
            return fn(x)
        except PycraneError as e:
            return e

    return bounded_map(wrapped, items, jobs)


def _repositories(client: Client, spec: SourceSpec) -> list[tuple[Repository, str]]:
    registry, prefix = split_source(spec.source)
    if spec.repositories is not None:
        base = f"{prefix}/" if prefix else ""
        return [(registry.repository(base + r), r) for r in spec.repositories]
    if spec.recursive:
        out = []
        for path in client.catalog(registry):
            if not prefix:
                out.append((registry.repository(path), path))
            elif path == prefix:
                out.append((registry.repository(path), ""))
            elif path.startswith(prefix + "/"):
                out.append((registry.repository(path), path[len(prefix) + 1 :]))
        return out
    return [(Repository.parse(spec.source), "")]


def build_plan(client: Client, specs: Sequence[SourceSpec], jobs: int = 8) -> Plan:
    """Enumerate every entry's repositories and tags (tag lists fetched ``jobs`` at once)."""
    plan = Plan()
    work: list[tuple[SourceSpec, Repository, Repository]] = []
    for spec in specs:
        try:
            repos = _repositories(client, spec)
        except PycraneError as e:
            plan.errors.append(ImageResult(spec.source, spec.destination, "failed", str(e)))
            continue
        for src, relative in repos:
            try:
                work.append((spec, src, destination_for(spec, src, relative)))
            except (PycraneError, KeyError, ValueError, IndexError) as e:
                why = f"destination {spec.destination!r}: {e}"
                plan.errors.append(ImageResult(str(src), spec.destination, "failed", why))
    listed = _safe_map(lambda w: client.list_tags(w[1]), work, jobs)
    seen: dict[Tag, Tag] = {}
    for (spec, src, dst), tags in zip(work, listed, strict=True):
        if isinstance(tags, Exception):
            plan.errors.append(ImageResult(str(src), str(dst), "failed", str(tags)))
            continue
        for t in spec.tags.apply(sorted(tags)):
            item = PlanItem(Tag(src, t), Tag(dst, t), spec)
            earlier = seen.get(item.destination)
            if earlier is not None:
                if earlier != item.source:
                    why = f"{item.destination} is also the destination of {earlier}"
                    plan.errors.append(
                        ImageResult(str(item.source), str(item.destination), "failed", why)
                    )
                continue
            seen[item.destination] = item.source
            plan.items.append(item)
    return plan
