"""The ``ingest/`` area of a blob store: what lives there, and what a sweep may remove.

Every file in ``ingest/`` has a writer that holds an OS advisory lock
(:mod:`pycrane._ownership`) for as long as the file matters, so a sweep can tell
at once whether that writer is alive, and never touches a live writer's file:

- ``<label>.<token>.<n>.tmp``: an unnamed temp file of the process owning
  ``owner.<token>.lock``. Removed as soon as that owner is gone.
- ``<alg>-<hex>.partial`` (with ``<alg>-<hex>.lock``): the download of one blob,
  named by its digest so that a later run can resume it. A dead writer's partial is
  *kept* for that run (it is checked over the whole blob before anything trusts
  it); ``partials=True`` (``layout gc``) removes it, and so does a sweep once it is
  :data:`PARTIAL_MAX_AGE` old, or once its blob is published (a writer killed
  between linking the partial to its blob and removing the partial).
- ``<ref>/`` (with ``<ref>.lock``): a resumable ingest by reference (a registry
  upload session). Between requests no process holds it, so it is removed by age.
- ``corrupt.*.tmp``: a quarantined blob. Removed at once.
- a ``.lock`` whose data is gone: removed at once when nobody holds it.

Temp files without an owner token (older pycrane versions, a file system without
locks) are removed by age only.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from pycrane import _fs, _ownership

__all__ = ["PARTIAL_MAX_AGE", "PARTIAL_SUFFIX", "StaleIngest", "sweep"]

PARTIAL_SUFFIX = ".partial"
#: A dead writer's partial download nobody resumed for this long is removed by any sweep.
PARTIAL_MAX_AGE = 7 * 24 * 3600.0


@dataclass(frozen=True)
class StaleIngest:
    """A file (or ingest directory) in ``ingest/`` whose writer is gone.

    ``kind`` is ``"partial"`` (a resumable download), ``"temp"``, ``"lock"``,
    ``"upload"`` (an abandoned ingest by reference) or ``"corrupt"`` (quarantined);
    ``removed`` says whether this sweep removed it (a kept partial waits for the
    next run to resume it).
    """

    name: str
    kind: str
    size: int
    removed: bool


def _size(path: str) -> int:
    st = _fs.stat(path)
    return st.st_size if st is not None else 0


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            total += _size(os.path.join(dirpath, f))
    return total


def _remove(path: str) -> bool:
    try:
        return _fs.unlink(path, budget=0)
    except OSError:
        return False  # still held open (Windows, antivirus): the next sweep


def sweep(
    ingest: Path,
    *,
    older_than: float = 3600.0,
    partials: bool = False,
    partial_max_age: float = PARTIAL_MAX_AGE,
    blobs: Path | None = None,
) -> list[StaleIngest]:
    """Remove what dead writers left in ``ingest`` (see the module docstring).

    ``blobs`` is the store's ``blobs/`` directory: a dead writer's partial whose blob
    is there already has nothing left to resume and goes at once.
    """
    try:
        entries = list(os.scandir(ingest))
    except (FileNotFoundError, NotADirectoryError):
        return []
    now = time.time()
    found: list[StaleIngest] = []
    names = {e.name for e in entries}
    owners: dict[str, _ownership.Held | str | None] = {}

    def owner_state(token: str) -> _ownership.Held | str | None:
        if token not in owners:
            owners[token] = _ownership.probe(ingest / f"{_ownership.OWNER_PREFIX}{token}.lock")
        return owners[token]

    try:
        for entry in entries:
            name = entry.name
            if name.startswith(_ownership.OWNER_PREFIX) and name.endswith(".lock"):
                owner_state(name[len(_ownership.OWNER_PREFIX) : -len(".lock")])
        for entry in entries:
            name = entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.is_dir(follow_symlinks=False):
                _sweep_ref_dir(ingest, entry, st, now - older_than, found)
            elif name.endswith(".tmp"):
                token = _ownership.temp_token(name)
                if name.startswith("corrupt."):
                    kind = "corrupt"
                elif token is not None:
                    if owner_state(token) == _ownership.LIVE:
                        continue
                    kind = "temp"
                elif st.st_mtime < now - older_than:
                    kind = "temp"
                else:
                    continue
                found.append(StaleIngest(name, kind, st.st_size, _remove(entry.path)))
            elif name.endswith(PARTIAL_SUFFIX):
                _sweep_partial(ingest, entry, st, partials, now - partial_max_age, blobs, found)
            elif name.endswith(".lock") and not name.startswith(_ownership.OWNER_PREFIX):
                base = name[: -len(".lock")]
                if base in names or base + PARTIAL_SUFFIX in names:
                    continue  # judged with its data
                held = _ownership.probe(entry.path)
                if not isinstance(held, _ownership.Held):
                    continue
                if os.path.lexists(ingest / base) or os.path.lexists(
                    ingest / (base + PARTIAL_SUFFIX)
                ):
                    held.release()  # its data appeared meanwhile: judged next time
                    continue
                held.release(remove=True)
                found.append(StaleIngest(name, "lock", 0, not os.path.lexists(entry.path)))
    finally:
        for token, state in owners.items():
            if isinstance(state, _ownership.Held):
                state.release(remove=True)
                found.append(StaleIngest(f"{_ownership.OWNER_PREFIX}{token}.lock", "lock", 0, True))
    return found


def _sweep_partial(
    ingest: Path,
    entry: os.DirEntry[str],
    st: os.stat_result,
    partials: bool,
    cutoff: float,
    blobs: Path | None,
    found: list[StaleIngest],
) -> None:
    base = entry.name[: -len(PARTIAL_SUFFIX)]
    held = _ownership.probe(ingest / f"{base}.lock")
    if held == _ownership.LIVE:
        return
    remove = partials or st.st_mtime < cutoff or _published(blobs, base)
    try:
        removed = _remove(entry.path) if remove else False
        found.append(StaleIngest(entry.name, "partial", st.st_size, removed))
    finally:
        if isinstance(held, _ownership.Held):
            held.release(remove=remove)


def _published(blobs: Path | None, base: str) -> bool:
    """Whether the blob a partial named ``<alg>-<hex>`` was downloading is in ``blobs``."""
    alg, sep, hex_ = base.partition("-")
    return blobs is not None and bool(sep) and os.path.lexists(blobs / alg / hex_)


def _sweep_ref_dir(
    ingest: Path,
    entry: os.DirEntry[str],
    st: os.stat_result,
    cutoff: float,
    found: list[StaleIngest],
) -> None:
    data = _fs.stat(Path(entry.path, "data"))
    mtime = max(st.st_mtime, data.st_mtime if data is not None else 0.0)
    if mtime >= cutoff:
        return
    held = _ownership.probe(ingest / f"{entry.name}.lock")
    if held == _ownership.LIVE:
        return
    size = _tree_size(entry.path)
    try:
        _fs.rmtree(entry.path)
        removed = True
    except OSError:
        removed = False
    finally:
        if isinstance(held, _ownership.Held):
            held.release(remove=True)
    found.append(StaleIngest(entry.name, "upload", size, removed))
