"""The sync configuration: YAML or JSON, checked against ``schema.json``, into dataclasses.

```yaml
jobs: 8                      # images copied at once
max_per_host: 8              # requests in flight per registry host
hosts: {registry-1.docker.io: 2}   # ... or for given hosts
defaults:
  platforms: all             # or a list: [linux/amd64, linux/arm64]
  referrers: true            # signatures, SBOMs
sync:
  - source: docker.io/library/alpine
    destination: mirror.example/library/alpine
    tags: {semver: ">=3.18", latest: 3}
  - source: ghcr.io/org      # a namespace: every repository under it
    recursive: true
    destination: mirror.example/org/{repo}
    tags: {glob: ["v*"], exclude: ["*-rc*"]}
```

YAML needs PyYAML, imported only when a YAML file is read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycrane.remote._limits import HostLimits
from pycrane.sync._schema import SchemaError, validate
from pycrane.sync.filters import TagFilter
from pycrane.v1.platform import Platform

__all__ = ["ConfigError", "SourceSpec", "SyncConfig", "load_config"]


class ConfigError(ValueError):
    """A configuration that cannot be read or does not follow the schema (one line)."""


@dataclass(frozen=True)
class SourceSpec:
    """One entry of ``sync:``: what to copy from where to where.

    ``source`` is a repository, or (with ``recursive`` or ``repositories``) a
    registry or namespace. ``destination`` is a repository prefix (each source
    repository's path below ``source`` is appended), or a template with
    ``{repo}`` (that relative path), ``{name}`` (its last component), ``{path}``
    (the full source path) and ``{registry}`` (the source registry).
    ``platforms`` empty means all of them.
    """

    source: str
    destination: str
    repositories: tuple[str, ...] | None = None
    recursive: bool = False
    tags: TagFilter = field(default_factory=TagFilter)
    platforms: tuple[Platform, ...] = ()
    referrers: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "destination": self.destination}
        if self.repositories is not None:
            out["repositories"] = list(self.repositories)
        if self.recursive:
            out["recursive"] = True
        if self.tags != TagFilter():
            out["tags"] = self.tags.as_dict()
        out["platforms"] = [str(p) for p in self.platforms] or "all"
        out["referrers"] = self.referrers
        return out


@dataclass(frozen=True)
class SyncConfig:
    """A whole sync: its sources, how many images at once, requests per host.

    ``hosts`` caps requests in flight for given hosts (``host[:port]`` as in URLs,
    ``registry-1.docker.io`` for Docker Hub), over ``max_per_host`` for the rest.
    """

    sources: tuple[SourceSpec, ...]
    jobs: int = 4
    max_per_host: int | None = None
    hosts: Mapping[str, int] = field(default_factory=dict)

    def limits(self, max_per_host: int | None = None) -> HostLimits:
        """The per-host limits this configuration asks for (``max_per_host`` overrides)."""
        return HostLimits(max_per_host or self.max_per_host, per_host=dict(self.hosts))

    @classmethod
    def from_dict(cls, doc: Any, *, where: str = "config") -> SyncConfig:
        """Validate ``doc`` against the schema and build the configuration."""
        try:
            validate(doc)
        except SchemaError as e:
            raise ConfigError(f"{where}: {e}") from None
        defaults: Mapping[str, Any] = doc.get("defaults") or {}
        sources = []
        for i, entry in enumerate(doc["sync"]):
            merged = {**defaults, **entry}
            try:
                sources.append(_source(merged))
            except ValueError as e:
                raise ConfigError(f"{where}: sync[{i}]: {e}") from None
        return cls(
            tuple(sources),
            jobs=int(doc.get("jobs", 4)),
            max_per_host=doc.get("max_per_host"),
            hosts=dict(doc.get("hosts") or {}),
        )


def parse_platforms(value: str | Sequence[str] | None) -> tuple[Platform, ...]:
    """``"all"``/None -> () (every platform); a list -> those platforms."""
    if value is None or value == "all":
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(Platform.parse(p) for p in items if p != "all")


def _source(d: Mapping[str, Any]) -> SourceSpec:
    repos = d.get("repositories")
    return SourceSpec(
        source=str(d["source"]).rstrip("/"),
        destination=str(d["destination"]).rstrip("/"),
        repositories=None if repos is None else tuple(str(r).strip("/") for r in repos),
        recursive=bool(d.get("recursive", False)),
        tags=TagFilter.from_dict(dict(d.get("tags") or {})),
        platforms=parse_platforms(d.get("platforms")),
        referrers=bool(d.get("referrers", False)),
    )


def load_config(path: str | Path) -> SyncConfig:
    """Read a ``.yaml``/``.yml`` or ``.json`` file (JSON is tried first for other names)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the configuration ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file") from None
    doc: Any
    if p.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"{p}: not valid JSON ({e})") from None
    else:
        try:
            doc = json.loads(text)
        except ValueError:
            doc = _yaml(p, text)
    return SyncConfig.from_dict(doc, where=str(p))


def _yaml(p: Path, text: str) -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a dependency
        raise ConfigError(f"{p}: reading YAML needs PyYAML (pip install pyyaml)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{p}: not valid YAML{at} ({problem})") from None
