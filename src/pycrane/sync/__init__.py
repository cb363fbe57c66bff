"""Mirror many repositories into a registry, incrementally, within rate limits, resumably.

```python
import pycrane

report = pycrane.sync("mirror.yaml")                       # a YAML or JSON configuration
report = pycrane.sync(source="ghcr.io/org", destination="mirror.example/org",
                      recursive=True, tags=pycrane.sync.TagFilter(semver=">=1.0", latest=3))
print(report.summary())                                    # "3 copied, 12 skipped, 0 failed (...)"
```

The parts: :mod:`~pycrane.sync.config` (the configuration and its JSON Schema,
``schema.json``), :mod:`~pycrane.sync.filters` (tag selection),
:mod:`~pycrane.sync.plan` (what to copy where), :mod:`~pycrane.sync.engine`
(copying what is missing or changed) and :mod:`~pycrane.sync.report` (what
happened). The module itself is callable: ``pycrane.sync(...)`` is :func:`sync`.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pycrane.progress import ProgressSink
from pycrane.remote import Client
from pycrane.sync.config import ConfigError, SourceSpec, SyncConfig, load_config, parse_platforms
from pycrane.sync.engine import Engine, ResultHook
from pycrane.sync.filters import SemverRange, TagFilter, Version
from pycrane.sync.plan import Plan, PlanItem, build_plan
from pycrane.sync.report import ImageResult, SyncReport
from pycrane.v1.platform import Platform

__all__ = [
    "ConfigError",
    "ImageResult",
    "Plan",
    "PlanItem",
    "SemverRange",
    "SourceSpec",
    "SyncConfig",
    "SyncReport",
    "TagFilter",
    "Version",
    "build_plan",
    "load_config",
    "sync",
]


def _config(
    config: SyncConfig | str | Path | Mapping[str, Any] | None,
    source: str | None,
    destination: str | None,
    recursive: bool,
    tags: TagFilter | None,
    platforms: Sequence[Platform | str] | str | None,
    referrers: bool,
) -> SyncConfig:
    if config is not None:
        if source is not None or destination is not None:
            raise TypeError("pass either a configuration or source= and destination=, not both")
        if isinstance(config, SyncConfig):
            return config
        if isinstance(config, Mapping):
            return SyncConfig.from_dict(dict(config))
        return load_config(config)
    if source is None or destination is None:
        raise TypeError("sync() needs a configuration, or source= and destination=")
    if isinstance(platforms, str):
        plats = parse_platforms(platforms)
    else:
        plats = tuple(Platform.parse(p) if isinstance(p, str) else p for p in platforms or ())
    spec = SourceSpec(
        source=source.rstrip("/"),
        destination=destination.rstrip("/"),
        recursive=recursive,
        tags=tags or TagFilter(),
        platforms=plats,
        referrers=referrers,
    )
    return SyncConfig((spec,))


def sync(
    config: SyncConfig | str | Path | Mapping[str, Any] | None = None,
    *,
    source: str | None = None,
    destination: str | None = None,
    recursive: bool = False,
    tags: TagFilter | None = None,
    platforms: Sequence[Platform | str] | str | None = None,
    referrers: bool = False,
    dry_run: bool = False,
    jobs: int | None = None,
    max_per_host: int | None = None,
    client: Client | None = None,
    progress: ProgressSink | None = None,
    on_result: ResultHook | None = None,
    **client_options: Any,
) -> SyncReport:
    """Bring destination repositories up to date with their sources; returns the report.

    Either ``config`` (a :class:`SyncConfig`, a parsed document, or the path of a
    YAML/JSON file) or ``source``/``destination`` with the per-source options
    (``recursive`` enumerates the source registry or namespace through its
    catalog). ``jobs`` images are copied at once (default: the configuration's,
    else 4); ``max_per_host`` caps requests in flight per registry host. With
    ``dry_run`` nothing is written: images to copy are reported as ``planned``.
    A failing image never stops the others; check ``report.ok``.
    """
    cfg = _config(config, source, destination, recursive, tags, platforms, referrers)
    n = jobs or cfg.jobs
    own = client is None
    if client is None:
        client = Client(jobs=n, limits=cfg.limits(max_per_host), **client_options)
    elif client_options:
        raise TypeError("pass either client= or client options, not both")
    try:
        started = time.monotonic()
        plan = build_plan(client, cfg.sources, jobs=n)
        engine = Engine(client, jobs=n, dry_run=dry_run, progress=progress, on_result=on_result)
        return engine.run(plan, started=started)
    finally:
        if own:
            client.close()


class _CallableModule(types.ModuleType):
    """``pycrane.sync`` is both this package and, called, :func:`sync`."""

    def __call__(self, *args: Any, **kwargs: Any) -> SyncReport:
        return sync(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
