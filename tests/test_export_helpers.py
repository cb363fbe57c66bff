"""Helpers shared by the tarball, mutate and export tests (no tests here).

Layers are built entry by entry so tests can state exactly what each layer holds,
including whiteouts, links and crafted (malicious) names.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pycrane import tarball
from pycrane.random import image_from_layers
from pycrane.v1.image import Image, Layer

__all__ = ["E", "image_of", "layer_of", "tar_bytes", "tree_of", "untar"]


def E(name: str, kind: str = "f", value: Any = b"", mode: int | None = None) -> tuple:
    """An entry: kind f (file, bytes), d (dir), l (symlink -> value), h (hard link -> value)."""
    return (name, kind, value, mode)


def tar_bytes(entries: Iterable[tuple], *, mtime: int = 0) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, value, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = mtime
            if kind == "f":
                ti.size = len(value)
                ti.mode = 0o644 if mode is None else mode
                t.addfile(ti, io.BytesIO(value))
                continue
            if kind == "d":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755 if mode is None else mode
            elif kind == "l":
                ti.type = tarfile.SYMTYPE
                ti.linkname = value
                ti.mode = 0o777
            elif kind == "h":
                ti.type = tarfile.LNKTYPE
                ti.linkname = value
                ti.mode = 0o644 if mode is None else mode
            else:  # pragma: no cover
                raise ValueError(kind)
            t.addfile(ti)
    return buf.getvalue()


def layer_of(entries: Iterable[tuple], compression: str = "gzip") -> Layer:
    return tarball.layer_from_reader(
        io.BytesIO(tar_bytes(entries)),
        compression=compression,  # type: ignore[arg-type]
    )


def image_of(*layers: Sequence[tuple]) -> Image:
    return image_from_layers([layer_of(entries) for entries in layers])


def untar(data: bytes, dest: Path) -> None:
    """Extract a trusted tar (our own sanitised output) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        if hasattr(tarfile, "fully_trusted_filter"):
            t.extractall(dest, filter="fully_trusted")
        else:  # pragma: no cover - Python without extraction filters
            t.extractall(dest)


def tree_of(root: Path) -> tuple[dict[str, tuple], set[frozenset[str]]]:
    """Every path under ``root``: (kind, permission bits, content hash or link target),
    plus the groups of paths that are hard links of each other."""
    out: dict[str, tuple] = {}
    inodes: dict[tuple[int, int], set[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            st = os.lstat(full)
            perm = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", perm)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("f", perm, hashlib.sha256(full.read_bytes()).hexdigest()[:16])
                inodes.setdefault((st.st_dev, st.st_ino), set()).add(rel)
            else:
                out[rel] = ("other",)
    groups = {frozenset(g) for g in inodes.values() if len(g) > 1}
    return out, groups


def names_in(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return [m.name for m in t]
