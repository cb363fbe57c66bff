"""The flattened filesystem of an image, as one tar stream.

Layers are applied as an overlay filesystem would: a later layer's entry wins;
``.wh.NAME`` deletes NAME (and everything under it) from lower layers; an opaque
marker ``.wh..wh..opq`` hides everything a lower layer had in its directory; a
non-directory replaces a lower directory (its content disappears too).

Two streaming passes keep memory at one small record per path, like ggcr's
``mutate.Extract``, and fix what one top-down pass gets wrong:

1. top-down, headers only: decide which layer provides each path;
2. bottom-up: emit the winning entries, so a hard link always follows its target.

A hard link whose target was replaced or deleted by a higher layer keeps the
content the target had in its own layer: that older content is emitted under the
link's name. Paths are made safe on the way: leading ``/`` is dropped (as docker
does), while ``..`` escaping the root, hard links pointing outside, and entries
written through a symlinked parent raise :class:`UnsafePathError`.
"""

from __future__ import annotations

import copy
import io
import posixpath
import shutil
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from pycrane.compression import CHUNK, IterReader, decompressed_reader
from pycrane.errors import TarballError, UnsafePathError
from pycrane.v1.digest import VerifyingReader
from pycrane.v1.image import Image, Layer

__all__ = ["export", "extract", "iter_extract", "safe_name"]

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


def safe_name(name: str, what: str) -> str:
    """A tar member name relative to the root: leading ``/`` and ``./`` removed.

    Raises :class:`UnsafePathError` when ``..`` would climb above the root.
    """
    if not name.startswith("/"):
        rel = posixpath.normpath(name)
        if rel == ".." or rel.startswith("../"):
            raise UnsafePathError(f"{what}: path {name!r} escapes the root with '..'")
    n = posixpath.normpath("/" + name).lstrip("/")
    return "" if n == "." else n


def _ancestors(path: str) -> Iterator[str]:
    """Proper ancestors, nearest first, ending with the root ``""``."""
    while path:
        path = posixpath.dirname(path)
        yield path


@dataclass
class _Plan:
    """The result of the top-down pass."""

    winner: dict[str, int] = field(default_factory=dict)
    symlinks: set[str] = field(default_factory=set)
    # (layer, target path) -> link name to emit the target's content under
    materialize: dict[tuple[int, str], str] = field(default_factory=dict)
    # link name -> new target, for further links to a materialised target
    relink: dict[str, str] = field(default_factory=dict)
    materialized_links: set[str] = field(default_factory=set)
    # paths hard links point at: their metadata is copied onto the links
    link_targets: set[str] = field(default_factory=set)


def _members(layer: Layer) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """The members of a layer, whose blob is checked against its digest at the end.

    A tar reader stops at the end-of-archive marker, before the blob's EOF where
    the digest is compared, so the rest of the stream is drained to get there.
    """
    d = layer.descriptor()
    blob = VerifyingReader(layer.compressed(), d.digest, d.size, f"layer {d.digest}")
    with decompressed_reader(cast(BinaryIO, blob), None) as raw:
        try:
            tf = tarfile.open(  # noqa: SIM115 - closed below
                fileobj=cast(Any, raw),
                mode="r|",
                encoding=_ENCODING,
                errors=_ERRORS,  # default bufsize: stream mode re-slices its buffer per header
            )
        except tarfile.TarError as e:
            if str(e) == "empty file":  # a zero-length layer: no entries
                while raw.read(CHUNK):
                    pass
                return
            raise TarballError(f"layer {d.digest}: not a valid tar stream ({e})") from None
        with tf:
            members = iter(tf)
            while True:
                try:
                    m = next(members)
                except StopIteration:
                    break
                except tarfile.TarError as e:
                    raise TarballError(f"layer {d.digest}: not a valid tar stream ({e})") from None
                yield tf, m
        while raw.read(CHUNK):
            pass


def _plan(layers: Sequence[Layer]) -> _Plan:
    plan = _Plan()
    gone: set[str] = set()  # path and all below it deleted, from lower layers' view
    opaque: set[str] = set()  # everything below deleted, from lower layers' view
    # target -> [(link layer, link name)] for links whose target is not yet known
    wanted: dict[str, list[tuple[int, str]]] = {}

    def hidden(p: str) -> bool:
        if p in gone:
            return True
        return any(a in gone or a in opaque for a in _ancestors(p))

    for i in range(len(layers) - 1, -1, -1):
        what = f"layer {i} ({layers[i].digest()})"
        layer_gone: set[str] = set()
        layer_opaque: set[str] = set()
        layer_files: set[str] = set()  # regular files met so far in this layer
        for _, m in _members(layers[i]):
            name = safe_name(m.name, f"{what} entry {m.name!r}")
            if not name:
                continue
            base = posixpath.basename(name)
            parent = posixpath.dirname(name)
            if base == WHITEOUT_OPAQUE:
                layer_opaque.add(parent)
                continue
            if base.startswith(WHITEOUT_PREFIX):
                layer_gone.add(posixpath.join(parent, base[len(WHITEOUT_PREFIX) :]))
                continue
            is_hidden = hidden(name)
            w = plan.winner.get(name)
            survivor = not is_hidden and (w is None or w == i)
            if m.isreg():
                layer_files.add(name)
                if name in wanted:
                    _resolve_links(plan, wanted, name, i, survivor)
            elif m.islnk() and name in wanted:
                # Links above point at a hard link: they share its target's inode.
                target = safe_name(m.linkname, f"{what} hard link {m.name!r}")
                pending = _take_pending(wanted, name, i)
                if pending and survivor:
                    _relink(plan, name, pending)
                elif pending and target in layer_files:
                    if plan.winner.get(target) == i:
                        _relink(plan, target, pending)
                    else:
                        _materialize(plan, i, target, pending)
                elif pending:
                    # Resolved below this layer: this link came before anything
                    # later in this layer's tar.
                    wanted.setdefault(target, []).extend((i, ln) for _, ln in pending)
            if not m.isdir():
                layer_gone.add(name)  # a non-directory replaces whatever was below
            if not survivor:
                continue
            plan.winner[name] = i
            if m.issym():
                plan.symlinks.add(name)
            else:
                plan.symlinks.discard(name)
            if m.islnk():
                target = safe_name(m.linkname, f"{what} hard link {m.name!r}")
                plan.link_targets.add(target)
                if target in layer_files:  # earlier in this very layer: settled now
                    if plan.winner.get(target) != i:
                        _materialize(plan, i, target, [(i, name)])
                else:
                    wanted.setdefault(target, []).append((i, name))
        gone |= layer_gone
        opaque |= layer_opaque
    return plan


def _resolve_links(
    plan: _Plan,
    wanted: dict[str, list[tuple[int, str]]],
    target: str,
    layer: int,
    target_survives: bool,
) -> None:
    """A regular file ``target`` met in ``layer``: settle the links above that point at it.

    Only links of higher layers: a link met earlier in this same layer (top-down
    means before this entry was read) precedes it in the tar, so it points at
    the version below, which a lower layer will settle.
    """
    pending = _take_pending(wanted, target, layer)
    if not pending:
        return
    if target_survives:
        _relink(plan, target, pending)  # links forwarded from a chain now name the file
        return
    _materialize(plan, layer, target, pending)


def _take_pending(
    wanted: dict[str, list[tuple[int, str]]], target: str, layer: int
) -> list[tuple[int, str]]:
    """Remove and return the links of layers above ``layer`` waiting for ``target``."""
    pending = [(li, ln) for li, ln in wanted[target] if li > layer]
    rest = [(li, ln) for li, ln in wanted[target] if li <= layer]
    if rest:
        wanted[target] = rest
    else:
        del wanted[target]
    return pending


def _relink(plan: _Plan, target: str, links: list[tuple[int, str]]) -> None:
    plan.link_targets.add(target)
    for _, ln in links:
        plan.relink[ln] = target


def _materialize(plan: _Plan, layer: int, target: str, links: list[tuple[int, str]]) -> None:
    """The target was replaced or deleted above the links: keep its old content under
    the first link's name, and point the other links at that."""
    links.sort(key=lambda x: (x[0], x[1]))
    first = links[0][1]
    existing = plan.materialize.get((layer, target))
    if existing is not None:
        for _, ln in links:
            plan.relink[ln] = existing
        return
    plan.materialize[(layer, target)] = first
    plan.materialized_links.add(first)
    plan.link_targets.add(first)
    for _, ln in links[1:]:
        plan.relink[ln] = first


def _header(info: tarfile.TarInfo, name: str) -> bytes:
    out = copy.copy(info)
    out.pax_headers = {
        k: v for k, v in info.pax_headers.items() if k not in ("path", "linkpath", "size")
    }
    out.name = name
    if out.issparse():  # pragma: no cover - sparse members are expanded on read
        out.type = tarfile.REGTYPE
    return out.tobuf(tarfile.PAX_FORMAT, _ENCODING, _ERRORS)


def _data(tf: tarfile.TarFile, m: tarfile.TarInfo) -> Iterator[bytes]:
    f = tf.extractfile(m)
    if f is None:
        return
    n = 0
    while True:
        try:
            chunk = f.read(CHUNK)
        except tarfile.TarError as e:
            raise TarballError(f"layer entry {m.name!r}: truncated content ({e})") from None
        if not chunk:
            break
        n += len(chunk)
        yield chunk
    if n % 512:
        yield b"\0" * (512 - n % 512)


def iter_extract(img: Image) -> Iterator[bytes]:
    """The flattened filesystem of ``img`` as tar chunks (bounded memory)."""
    layers = img.layers()
    plan = _plan(layers)
    # A hard link shares its target's inode: give its header the target's metadata,
    # so extractors that chmod links (Python's tarfile) agree with those that do not.
    meta: dict[str, tarfile.TarInfo] = {}
    for i, layer in enumerate(layers):
        what = f"layer {i} ({layer.digest()})"
        for tf, m in _members(layer):
            name = safe_name(m.name, what)
            if not name:
                continue
            base = posixpath.basename(name)
            if base.startswith(WHITEOUT_PREFIX):
                continue
            alias = plan.materialize.get((i, name)) if m.isreg() else None
            if alias is not None:
                info = copy.copy(m)
                meta[alias] = info
                yield _header(info, alias)
                yield from _data(tf, m)
            if plan.winner.get(name) != i or name in plan.materialized_links:
                continue
            for a in _ancestors(name):
                if a in plan.symlinks:
                    raise UnsafePathError(
                        f"{what} entry {m.name!r}: would be written through symlink {a!r}"
                    )
            info = copy.copy(m)
            if m.islnk():
                target = plan.relink.get(name) or safe_name(m.linkname, what)
                for a in _ancestors(target):
                    if a in plan.symlinks:
                        raise UnsafePathError(
                            f"{what} hard link {m.name!r}: target {m.linkname!r} goes through "
                            f"symlink {a!r}"
                        )
                info.linkname = target
                src = meta.get(target)
                if src is not None:
                    for attr in ("mode", "uid", "gid", "uname", "gname", "mtime"):
                        setattr(info, attr, getattr(src, attr))
                yield _header(info, name)
                continue
            if m.isreg() and name in plan.link_targets:
                meta[name] = m
            yield _header(info, name)
            if m.isreg():
                yield from _data(tf, m)
    yield b"\0" * 1024


def extract(img: Image) -> BinaryIO:
    """A readable stream of the flattened filesystem tar of ``img``."""
    return cast(BinaryIO, io.BufferedReader(IterReader(iter_extract(img)), CHUNK))


def export(img: Image, fileobj: BinaryIO) -> None:
    """Write the flattened filesystem tar of ``img`` to ``fileobj``."""
    with extract(img) as r:
        shutil.copyfileobj(r, fileobj, CHUNK)
