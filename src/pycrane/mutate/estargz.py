"""eStargz layers: gzip tarballs a lazy-pulling runtime can read file by file (``optimize``).

The format (containerd/stargz-snapshotter docs/estargz.md) is an ordinary gzip tar,
still readable by every runtime, laid out so that each regular file's payload, and
each 4 MiB chunk of a large one, starts a gzip member of its own. A JSON table of
contents (``stargz.index.json``, the last tar entry, in a member of its own) records
every entry with the blob offset of its member and a digest per chunk, and a 51-byte
empty gzip member at the end carries the table's offset in its Extra field. The
layer descriptor carries the table's digest (``containerd.io/snapshot/stargz/toc.digest``)
so the table, and through it every chunk, can be verified.

Prioritized files (and the directories above them) come first, followed by the
``.prefetch.landmark`` file; without any, a ``.no.prefetch.landmark`` comes first:
a runtime prefetches everything before the landmark in one range request.

The layer is read once into a temp file (entries must be reordered), and the new
blob is written once into another; memory holds the entry headers only.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import posixpath
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Sequence
from typing import Any, BinaryIO, cast

from pycrane.compression import CHUNK
from pycrane.errors import TarballError
from pycrane.tarball.layer import SpooledLayer
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest, DigestHasher
from pycrane.v1.image import Image, ImageIndex, Layer, SimpleImage, is_index

__all__ = [
    "CHUNK_SIZE",
    "optimize",
    "TOC_DIGEST_ANNOTATION",
    "TOC_NAME",
    "UNCOMPRESSED_SIZE_ANNOTATION",
    "estargz_layer",
    "footer",
]

TOC_NAME = "stargz.index.json"
TOC_DIGEST_ANNOTATION = "containerd.io/snapshot/stargz/toc.digest"
UNCOMPRESSED_SIZE_ANNOTATION = "io.containers.estargz.uncompressed-size"
PREFETCH_LANDMARK = ".prefetch.landmark"
NO_PREFETCH_LANDMARK = ".no.prefetch.landmark"
#: Regular files larger than this are split into chunks of this size (stargz's default).
CHUNK_SIZE = 4 << 20

_TYPES = {
    tarfile.DIRTYPE: "dir",
    tarfile.REGTYPE: "reg",
    tarfile.AREGTYPE: "reg",
    tarfile.CONTTYPE: "reg",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block",
    tarfile.FIFOTYPE: "fifo",
}


def footer(toc_offset: int) -> bytes:
    """The 51-byte empty gzip member whose Extra field says where the TOC starts."""
    sub = b"%016xSTARGZ" % toc_offset
    extra = b"SG" + struct.pack("<H", len(sub)) + sub
    header = b"\x1f\x8b\x08\x04" + b"\x00\x00\x00\x00" + b"\x00\xff"
    return header + struct.pack("<H", len(extra)) + extra + b"\x01\x00\x00\xff\xff" + bytes(8)


def _clean(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


class _Entry:
    __slots__ = ("info", "offset")

    def __init__(self, info: tarfile.TarInfo, offset: int) -> None:
        self.info = info
        self.offset = offset  # of the payload in the spool


def _spool(layer: Layer, spool: BinaryIO) -> list[_Entry]:
    entries: list[_Entry] = []
    with layer.uncompressed() as raw:
        try:
            with tarfile.open(fileobj=cast(Any, raw), mode="r|") as tf:
                for m in tf:
                    if m.type not in _TYPES:
                        raise TarballError(
                            f"layer {layer.digest()}: entry {m.name!r} has tar type {m.type!r}, "
                            "which eStargz cannot describe"
                        )
                    if _clean(m.name) == TOC_NAME:
                        continue  # an old table of contents: a new one is written
                    offset = spool.tell()
                    if m.isreg() and m.size:
                        src = tf.extractfile(m)
                        assert src is not None
                        while data := src.read(CHUNK):
                            spool.write(data)
                    entries.append(_Entry(m, offset))
            # tarfile stops at the end-of-archive marker: read on to EOF, where the
            # layer's digest is checked.
            while raw.read(CHUNK):
                pass
        except tarfile.TarError as e:
            raise TarballError(f"layer {layer.digest()}: not a valid tar stream ({e})") from None
    return entries


def _landmark(name: str) -> _Entry:
    info = tarfile.TarInfo(name)
    info.size, info.mode = 1, 0o644
    return _Entry(info, -1)


def _order(entries: list[_Entry], prioritized: Sequence[str]) -> tuple[list[_Entry], list[str]]:
    """Prioritized files first (parents and hardlink targets before them), then the rest."""
    by_name: dict[str, list[_Entry]] = {}
    for e in entries:
        by_name.setdefault(_clean(e.info.name), []).append(e)
    taken: set[int] = set()
    first: list[_Entry] = []

    def take(name: str) -> None:
        # Every entry of that name, in archive order: a later one must still win.
        for e in by_name.get(name, ()):
            if id(e) in taken:
                continue
            taken.add(id(e))
            parent = posixpath.dirname(name)
            if parent:
                take(parent)
            if e.info.islnk():
                take(_clean(e.info.linkname))
            first.append(e)

    missing = []
    for p in prioritized:
        name = _clean(p)
        if name not in by_name:
            missing.append(p)
            continue
        take(name)
    rest = [e for e in entries if id(e) not in taken]
    if not first:
        return [_landmark(NO_PREFETCH_LANDMARK), *rest], missing
    return [*first, _landmark(PREFETCH_LANDMARK), *rest], missing


class _Blob:
    """Concatenated gzip members, hashed compressed (digest) and uncompressed (diff_id)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.offset = 0
        self.blob = DigestHasher()
        self.diff = DigestHasher()
        self._z: Any = None

    def _emit(self, data: bytes) -> None:
        if data:
            self.out.write(data)
            self.blob.update(data)
            self.offset += len(data)

    def write(self, data: bytes) -> None:
        if self._z is None:
            self._z = zlib.compressobj(6, zlib.DEFLATED, 31)
        self.diff.update(data)
        self._emit(self._z.compress(data))

    def close_member(self) -> None:
        if self._z is not None:
            self._emit(self._z.flush())
            self._z = None

    def raw(self, data: bytes) -> None:
        self.close_member()
        self._emit(data)


def _modtime(info: tarfile.TarInfo) -> str | None:
    if not info.mtime:
        return None
    when = _dt.datetime.fromtimestamp(int(info.mtime), _dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _toc_entry(info: tarfile.TarInfo, name: str) -> dict[str, Any]:
    ent: dict[str, Any] = {"name": name, "type": _TYPES[info.type]}
    if info.isreg():
        ent["size"] = info.size
    if (t := _modtime(info)) is not None:
        ent["modtime"] = t
    if info.issym() or info.islnk():
        ent["linkName"] = info.linkname
    ent["mode"] = info.mode
    ent["uid"], ent["gid"] = info.uid, info.gid
    if info.uname:
        ent["userName"] = info.uname
    if info.gname:
        ent["groupName"] = info.gname
    if info.ischr() or info.isblk():
        ent["devMajor"], ent["devMinor"] = info.devmajor, info.devminor
    xattrs = {
        k[len("SCHILY.xattr.") :]: base64.b64encode(v.encode("utf-8", "surrogateescape")).decode()
        for k, v in info.pax_headers.items()
        if k.startswith("SCHILY.xattr.")
    }
    if xattrs:
        ent["xattrs"] = xattrs
    return ent


def _pad(n: int) -> bytes:
    return bytes(-n % tarfile.BLOCKSIZE)


def estargz_layer(
    layer: Layer, prioritized: Sequence[str] = (), *, chunk_size: int = CHUNK_SIZE
) -> tuple[SpooledLayer, list[str]]:
    """``layer`` rewritten as eStargz, and the ``prioritized`` paths it does not hold.

    The result is a Docker gzip layer (as crane's optimize gives) whose descriptor
    carries the TOC digest and uncompressed-size annotations.
    """
    with cast(BinaryIO, tempfile.TemporaryFile()) as spool:
        entries = _spool(layer, spool)
        ordered, missing = _order(entries, prioritized)
        out = cast(BinaryIO, tempfile.TemporaryFile())  # noqa: SIM115 - owned by the layer
        try:
            blob = _Blob(out)
            toc: list[dict[str, Any]] = []
            for e in ordered:
                info = e.info
                header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
                blob.write(header)
                name = info.name + ("/" if info.isdir() and not info.name.endswith("/") else "")
                ent = _toc_entry(info, name)
                toc.append(ent)
                if not info.isreg() or not info.size:
                    continue
                spool.seek(max(e.offset, 0))
                first, whole = ent, DigestHasher()
                done = 0
                while done < info.size:
                    n = min(chunk_size, info.size - done)
                    blob.close_member()
                    if done:
                        ent = {"name": name, "type": "chunk"}
                        toc.append(ent)
                    ent["offset"] = blob.offset
                    if done:
                        ent["chunkOffset"] = done
                    if n == chunk_size and done + n < info.size:
                        ent["chunkSize"] = n
                    piece = DigestHasher()
                    left = n
                    while left:
                        data = b"\x0f" if e.offset < 0 else spool.read(min(CHUNK, left))
                        if not data:
                            raise TarballError(f"layer {layer.digest()}: {name} ended early")
                        piece.update(data)
                        whole.update(data)
                        blob.write(data)
                        left -= len(data)
                    ent["chunkDigest"] = str(piece.digest())
                    done += n
                first["digest"] = str(whole.digest())
                blob.write(_pad(info.size))
            blob.close_member()
            toc_offset = blob.offset
            toc_json = json.dumps({"version": 1, "entries": toc}, separators=(",", ":")).encode()
            toc_info = tarfile.TarInfo(TOC_NAME)
            toc_info.size, toc_info.mode = len(toc_json), 0o644
            blob.write(toc_info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            blob.write(toc_json + _pad(len(toc_json)))
            blob.write(bytes(2 * tarfile.BLOCKSIZE))  # end of archive
            blob.raw(footer(toc_offset))
            out.flush()
        except BaseException:
            out.close()
            raise
    desc = Descriptor(
        media_type=mt.DOCKER_LAYER,
        digest=blob.blob.digest(),
        size=blob.blob.size,
        annotations={
            TOC_DIGEST_ANNOTATION: str(Digest.from_bytes(toc_json)),
            UNCOMPRESSED_SIZE_ANNOTATION: str(blob.diff.size),
        },
    )
    return SpooledLayer(out, desc, blob.diff.digest()), missing


def optimize(
    obj: Image | ImageIndex, prioritized: Sequence[str] = ()
) -> tuple[Image | ImageIndex, list[str]]:
    """Every layer of ``obj`` as eStargz, as crane's ``optimize`` does; also returns the
    ``prioritized`` paths that no image holds (crane refuses to push then).

    An image keeps its config but for the history (dropped) and the diff_ids (the
    new layers'); an index gets each image child optimized, attestations dropped.
    """
    from pycrane.mutate.image import DerivedIndex
    from pycrane.mutate.ops import _is_attestation

    if not is_index(obj):
        return _optimize_image(obj, prioritized)
    replace: dict[Digest, Image | ImageIndex | None] = {}
    missing = set(prioritized)
    for d in obj.index_manifest().manifests:
        if _is_attestation(d.annotations):
            replace[d.digest] = None
        elif mt.is_index(d.media_type) or mt.is_image(d.media_type):
            child = obj.image_index(d.digest) if mt.is_index(d.media_type) else obj.image(d.digest)
            new, gone = optimize(child, prioritized)
            replace[d.digest] = new
            missing &= set(gone)
    return DerivedIndex(obj, children=replace), [p for p in prioritized if p in missing]


def _optimize_image(img: Image, prioritized: Sequence[str]) -> tuple[Image, list[str]]:
    from pycrane.v1.config import ConfigFile

    missing = set(prioritized)
    layers = []
    for layer in img.layers():
        new, gone = estargz_layer(layer, prioritized)
        layers.append(new)
        missing &= set(gone)
    cfg = img.config_file().to_dict()
    cfg.pop("history", None)
    cfg["rootfs"] = {"type": "layers", "diff_ids": [str(x.diff_id()) for x in layers]}
    out = SimpleImage.build(ConfigFile.from_dict(cfg), layers, media_type=mt.DOCKER_MANIFEST)
    return out, [p for p in prioritized if p in missing]
