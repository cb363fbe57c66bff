"""A tarball being pulled that an interruption keeps, for the next run of the same pull (issue 12).

The docker-save writer lays out every header first and fills each layer's region
in place (:meth:`pycrane.tarball._sink.TarSink.reserve`), so the archive's shape is
a function of the images alone. Beside the target ``T`` live:

- ``.T.pull``: the archive being written; published as ``T`` only when every
  member has verified.
- ``.T.pull.lock``: held (:mod:`pycrane._ownership`) by its writer for the file's
  whole life, so a later run can tell at once that the writer is gone.
- ``.T.pull.json``: the plan: the images' key (manifest digests and tags) and, for
  each layer region, its offset, size, digest and how many bytes were written.
  An interruption (Ctrl-C, SIGTERM, a lost network) writes it when it stops; while
  the layers stream it is also rewritten every :data:`CHECKPOINT` bytes (and at
  most every :data:`CHECKPOINT_INTERVAL` seconds), so a writer killed outright
  (``kill -9``) leaves a plan at most that much behind: 16 MiB, or a fifth of a
  second of transfer on a fast link.

A later pull to ``T`` that takes the lock adopts the file when the plan's key is
its own and the regions are where it puts them; each region's written prefix is
hashed again, the rest is fetched with ``Range``, and every member is verified
before anything is published (a prefix that does not verify is fetched whole). A
plan for other images, an unreadable one, or a file without a plan (its writer
was killed before its first checkpoint) is discarded. A run that cannot take the
lock (another live pull to ``T``, a file system without locks) writes to a fresh
temp file instead, as before.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from pycrane import _fs, _ownership
from pycrane._rollback import _missing_dirs, _remove_empty
from pycrane.v1.digest import Digest

__all__ = ["Member", "ResumableOutput"]

SUFFIX = ".pull"
_VERSION = 1
#: Layer bytes between two plan checkpoints of a running pull.
CHECKPOINT = 16 << 20
#: Seconds between two checkpoints at least: at 1 GB/s a checkpoint per 16 MiB was 64
#: plan rewrites a second, 3% of a 1 GiB pull's wall time (bench A/B, 2026-12-07).
CHECKPOINT_INTERVAL = 0.2

#: A layer region: (offset, size, digest).
Member = tuple[int, int, Digest]


class ResumableOutput:
    """Like :class:`pycrane._rollback.OutputFile`, plus :meth:`keep` and :meth:`adopted`."""

    durable = True

    def __init__(
        self, target: Path, held: _ownership.Held, made: list[Path], plan: dict[str, Any] | None
    ) -> None:
        self.target = target
        self.tmp = target.parent / f".{target.name}{SUFFIX}"
        self.plan_path = target.parent / f".{target.name}{SUFFIX}.json"
        self.lock_path = held.path
        self._held = held
        self._made = made
        self._plan = plan
        self._done = False
        if _fs.stat(self.tmp) is None:
            _fs.open_append(self.tmp).close()
        self.file: BinaryIO = _fs.open_update(self.tmp)

    @classmethod
    def open(cls, target: str | Any, key: str) -> ResumableOutput | None:
        """Take ``target``'s resumable temp file; None when another live writer has it."""
        target = Path(target).absolute()
        made = _missing_dirs(target.parent)
        _fs.makedirs(target.parent)
        lock_path = target.parent / f".{target.name}{SUFFIX}.lock"
        try:
            held = _ownership.try_lock(lock_path)
        except OSError:
            held = None  # no locks here: a plain temp file
        if held is None:
            _remove_empty(made)
            return None
        try:
            plan_path = target.parent / f".{target.name}{SUFFIX}.json"
            # Only the lock's holder writes plans: a temp file of one is a dead writer's.
            for name in _fs.listdir(target.parent):
                if name.startswith(f".{plan_path.name}.") and name.endswith(".tmp"):
                    _fs.discard(target.parent / name)
            plan = _read_plan(plan_path, key)
            if plan is None:  # nothing to adopt: whatever a dead writer left goes
                _fs.discard(plan_path)
                _fs.discard(target.parent / f".{target.name}{SUFFIX}")
            return cls(target, held, made, plan)
        except BaseException:
            held.release(remove=True)
            _remove_empty(made)
            raise

    def adopted(self, members: list[Member]) -> dict[int, int]:
        """Bytes already written per region offset, if the kept plan has exactly these regions."""
        plan = self._plan
        if plan is None:
            return {}
        kept = plan["members"]
        if [(m["offset"], m["size"], m["digest"]) for m in kept] != [
            (o, s, str(d)) for o, s, d in members
        ]:
            return {}
        st = _fs.stat(self.tmp)
        length = st.st_size if st is not None else 0
        return {
            m["offset"]: m["written"]
            for m in kept
            if 0 < m["written"] <= m["size"] and m["offset"] + m["written"] <= length
        }

    def commit(self) -> None:
        """Publish the archive (cut to its end: an adopted file may have been longer)."""
        if self._done:
            return
        try:
            self.file.truncate()
            self.file.flush()
            _fs.fsync_file(self.file)
            self.file.close()
            _fs.replace(self.tmp, self.target)
        except BaseException:
            self.abort()
            raise
        self._done = True
        _fs.discard(self.plan_path)
        self._release()
        with contextlib.suppress(OSError):
            _fs.fsync_dir(self.target.parent)

    def abort(self) -> None:
        """Remove the temp file, its plan and lock (and the directories made for them)."""
        if self._done:
            return
        self._done = True
        try:
            self.file.close()
        finally:
            _fs.discard(self.tmp)
            _fs.discard(self.plan_path)
            self._release()
            _remove_empty(self._made)

    def checkpoint(self, key: str, members: list[Member], written: Mapping[int, int]) -> None:
        """Record the progress so far, so that even a killed writer's file can be continued
        (best effort; what it claims is verified like any kept prefix)."""
        if self._done:
            return
        with contextlib.suppress(OSError):
            _fs.atomic_write_bytes(self.plan_path, _plan(key, members, written), durable=False)

    def keep(self, key: str, members: list[Member], written: Mapping[int, int]) -> int:
        """After an interruption: keep the file and write its plan; returns the bytes kept
        (0: nothing worth keeping, and everything was removed)."""
        if self._done:
            return 0
        total = sum(min(written.get(o, 0), s) for o, s, _ in members)
        if total <= 0:
            self.abort()
            return 0
        try:
            self.file.flush()
            _fs.fsync_file(self.file)
            self.file.close()
            _fs.atomic_write_bytes(self.plan_path, _plan(key, members, written))
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._release()
        return total

    def _release(self) -> None:
        self._held.release(remove=True)
        if _fs.IS_WINDOWS and _fs.stat(self.lock_path) is not None:
            # Windows: a scanner (or a waiting pull) had it open as the lock was dropped.
            # Retry like any sharing violation; a file someone holds open stays.
            with contextlib.suppress(OSError):
                _fs.unlink(self.lock_path)


def _plan(key: str, members: list[Member], written: Mapping[int, int]) -> bytes:
    plan = {
        "version": _VERSION,
        "key": key,
        "members": [
            {"offset": o, "size": s, "digest": str(d), "written": min(written.get(o, 0), s)}
            for o, s, d in members
        ],
    }
    return json.dumps(plan).encode()


def _read_plan(path: Path, key: str) -> dict[str, Any] | None:
    """The kept plan at ``path`` if it is for ``key`` and well formed."""
    try:
        raw = _fs.read_bytes(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None
    try:
        plan = json.loads(raw)
        if plan.get("version") != _VERSION or plan.get("key") != key:
            return None
        for m in plan["members"]:
            if not (
                isinstance(m["offset"], int)
                and isinstance(m["size"], int)
                and isinstance(m["written"], int)
                and isinstance(m["digest"], str)
            ):
                return None
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return plan if isinstance(plan, dict) else None
