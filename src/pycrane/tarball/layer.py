"""Layers made from local files, directories and streams.

Uncompressed input is compressed once into an anonymous temp file (hashing the
tar for the diff_id and the blob for the digest in the same pass), so memory
stays bounded and later reads do not compress again. Input that is already
gzip or zstd is kept byte for byte: its digest is that of the file.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast

from pycrane import compression as comp
from pycrane.compression import CHUNK, Compression
from pycrane.errors import TarballError
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest, DigestHasher
from pycrane.v1.image import LayerBase
from pycrane.v1.memo import Memo

__all__ = [
    "FileLayer",
    "SpooledLayer",
    "layer_from_directory",
    "layer_from_file",
    "layer_from_reader",
    "media_type_for",
    "source_date_epoch",
    "spool_tar",
]


def media_type_for(compression: str, *, docker: bool = False) -> str:
    """The layer media type for a compression, OCI unless ``docker``."""
    if compression == "zstd":
        return mt.OCI_LAYER_ZSTD
    if compression == "gzip":
        return mt.DOCKER_LAYER if docker else mt.OCI_LAYER_GZIP
    return mt.DOCKER_UNCOMPRESSED_LAYER if docker else mt.OCI_LAYER


def source_date_epoch(default: int = 0) -> int:
    """``$SOURCE_DATE_EPOCH`` when set (reproducible builds), else ``default``."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        return default


class _SliceReader(io.RawIOBase):
    """Reads ``[start, start+length)`` of a file shared by several readers.

    Each read seeks under a lock, so concurrent readers of one temp file (there is
    no name to reopen it by) never see each other's position.
    """

    def __init__(self, fh: BinaryIO, lock: threading.Lock, start: int, length: int) -> None:
        self._fh = fh
        self._lock = lock
        self._pos = start
        self._end = start + length

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = min(len(view), self._end - self._pos)
        if n <= 0:
            return 0
        with self._lock:
            self._fh.seek(self._pos)
            data = self._fh.read(n)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


def slice_reader(fh: BinaryIO, lock: threading.Lock, start: int, length: int) -> BinaryIO:
    """A buffered stream over a byte range of a shared open file."""
    return cast(BinaryIO, io.BufferedReader(_SliceReader(fh, lock, start, length), CHUNK))


class SpooledLayer(LayerBase):
    """A layer whose blob lives in an anonymous temp file (deleted when collected)."""

    def __init__(
        self,
        fh: BinaryIO,
        descriptor: Descriptor,
        diff_id: Digest | None,
    ) -> None:
        super().__init__(diff_id)
        self._memo = Memo()  # nested lookups
        self._fh = fh
        self._lock = threading.Lock()
        self._desc = descriptor

    def descriptor(self) -> Descriptor:
        return self._desc

    def compressed(self) -> BinaryIO:
        return slice_reader(self._fh, self._lock, 0, self._desc.size)


class _SpoolWriter:
    """A write-only sink: hash the tar, compress, hash and store the blob."""

    def __init__(self, compression: Compression, level: int | None = None) -> None:
        self.fh = cast(BinaryIO, tempfile.TemporaryFile())  # noqa: SIM115
        self.diff = DigestHasher()
        self.blob = DigestHasher()
        self._cobj = comp.compressobj(compression, level)
        self._pending: list[bytes] = []
        self._pending_size = 0

    def tell(self) -> int:
        """Bytes written so far (lets ``tarfile`` use its direct, unbuffered mode)."""
        return self.diff.size

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        if not n:
            return 0
        b = bytes(data)
        self.diff.update(b)
        self._pending.append(b)
        self._pending_size += n
        if self._pending_size >= CHUNK:  # batch tarfile's small writes for the compressor
            self._flush_pending()
        return n

    def _flush_pending(self) -> None:
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        self._store(self._cobj.compress(data))

    def _store(self, out: bytes) -> None:
        if out:
            self.blob.update(out)
            self.fh.write(out)

    def finish(self, media_type: str, annotations: Mapping[str, str] | None) -> SpooledLayer:
        if self._pending:
            self._flush_pending()
        self._store(self._cobj.flush())
        self.fh.flush()
        desc = Descriptor(
            media_type=media_type,
            digest=self.blob.digest(),
            size=self.blob.size,
            annotations=dict(annotations or {}),
        )
        return SpooledLayer(self.fh, desc, self.diff.digest())


def spool_tar(
    chunks: Iterable[bytes],
    compression: Compression = "gzip",
    *,
    media_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
    level: int | None = None,
) -> SpooledLayer:
    """Compress an uncompressed tar stream into a temp-file layer in one pass."""
    w = _SpoolWriter(compression, level)
    try:
        for chunk in chunks:
            w.write(chunk)
        return w.finish(media_type or media_type_for(compression), annotations)
    except BaseException:
        w.fh.close()
        raise


def _spool_raw(
    head: bytes, reader: BinaryIO, media_type: str, annotations: Mapping[str, str] | None
) -> SpooledLayer:
    """Keep already-compressed bytes as they are, hashing them on the way in."""
    fh = cast(BinaryIO, tempfile.TemporaryFile())  # noqa: SIM115
    h = DigestHasher()
    try:
        data = head
        while data:
            h.update(data)
            fh.write(data)
            data = reader.read(CHUNK)
        fh.flush()
    except BaseException:
        fh.close()
        raise
    desc = Descriptor(
        media_type=media_type, digest=h.digest(), size=h.size, annotations=dict(annotations or {})
    )
    return SpooledLayer(fh, desc, None)


def _sniff(reader: BinaryIO) -> tuple[bytes, Compression]:
    head = b""
    while len(head) < 4:
        more = reader.read(4 - len(head))
        if not more:
            break
        head += more
    return head, comp.detect(head)


def layer_from_reader(
    reader: BinaryIO,
    *,
    compression: Compression = "gzip",
    media_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> SpooledLayer:
    """A layer from a one-pass stream (stdin): spooled to a temp file, memory bounded.

    Gzip or zstd input is kept byte for byte; an uncompressed tar is compressed
    with ``compression`` while it is spooled.
    """
    head, found = _sniff(reader)
    if found != "none":
        return _spool_raw(head, reader, media_type or media_type_for(found), annotations)

    def chunks() -> Iterable[bytes]:
        if head:
            yield head
        while data := reader.read(CHUNK):
            yield data

    return spool_tar(chunks(), compression, media_type=media_type, annotations=annotations)


class FileLayer(LayerBase):
    """An already-compressed layer file used in place; hashed once, lazily."""

    def __init__(
        self,
        path: Path,
        media_type: str,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self._memo = Memo()  # nested lookups
        self._path = path
        self._media_type = media_type
        self._annotations = dict(annotations or {})

    def _describe(self) -> Descriptor:
        h = DigestHasher()
        with open(self._path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return Descriptor(
            media_type=self._media_type,
            digest=h.digest(),
            size=h.size,
            annotations=self._annotations,
        )

    def descriptor(self) -> Descriptor:
        return self._memo.get("descriptor", self._describe)

    def compressed(self) -> BinaryIO:
        return open(self._path, "rb")


def layer_from_file(
    path: str | os.PathLike[str],
    *,
    compression: Compression = "gzip",
    media_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> LayerBase:
    """A layer from a tar file on disk.

    A gzip or zstd file is used as is (its digest is the file's); a plain tar is
    compressed with ``compression`` (``"none"`` keeps it uncompressed) into a temp
    file once, on first use of its digest or bytes.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            _, found = _sniff(f)
    except OSError as e:
        raise TarballError(f"layer file {p}: cannot read it ({e.strerror or e})") from None
    if found != "none" or compression == "none":
        return FileLayer(p, media_type or media_type_for(found), annotations)
    return _LazySpool(p, compression, media_type, annotations)


class _LazySpool(LayerBase):
    """Compress a plain tar file on first use, then serve the spooled blob."""

    def __init__(
        self,
        path: Path,
        compression: Compression,
        media_type: str | None,
        annotations: Mapping[str, str] | None,
    ) -> None:
        super().__init__()
        self._memo = Memo()  # nested lookups
        self._path = path
        self._compression = compression
        self._media_type = media_type
        self._annotations = annotations

    def _spooled(self) -> SpooledLayer:
        def build() -> SpooledLayer:
            with open(self._path, "rb") as f:
                return spool_tar(
                    iter(lambda: f.read(CHUNK), b""),
                    self._compression,
                    media_type=self._media_type,
                    annotations=self._annotations,
                )

        return self._memo.get("spooled", build)

    def descriptor(self) -> Descriptor:
        return self._spooled().descriptor()

    def compressed(self) -> BinaryIO:
        return self._spooled().compressed()

    def diff_id(self) -> Digest:
        return self._spooled().diff_id()


def _tarinfo_for(
    full: Path, arcname: str, mtime: int, inodes: dict[tuple[int, int], str]
) -> tarfile.TarInfo | None:
    st = os.lstat(full)
    info = tarfile.TarInfo(arcname)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = stat.S_IMODE(st.st_mode)
    if os.name == "nt":  # Windows has no POSIX modes: use what a Linux build would
        info.mode = 0o755 if stat.S_ISDIR(st.st_mode) else 0o644
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        target = os.readlink(full)
        info.linkname = target.replace("\\", "/") if os.name == "nt" else target
    elif stat.S_ISREG(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in inodes:
            info.type = tarfile.LNKTYPE
            info.linkname = inodes[key]
        else:
            if st.st_nlink > 1:
                inodes[key] = arcname
            info.type = tarfile.REGTYPE
            info.size = st.st_size
    else:
        return None  # sockets, fifos and devices have no place in a built layer
    return info


def _walk_sorted(root: Path) -> Iterable[tuple[Path, str]]:
    """Every entry under ``root``, depth first, names in byte order (reproducible)."""
    stack: list[tuple[Path, str]] = [
        (root / n, n) for n in sorted(os.listdir(root), key=os.fsencode, reverse=True)
    ]
    while stack:
        full, arc = stack.pop()
        yield full, arc
        if full.is_dir() and not full.is_symlink():
            names = sorted(os.listdir(full), key=os.fsencode, reverse=True)
            stack.extend((full / n, f"{arc}/{n}") for n in names)


def layer_from_directory(
    directory: str | os.PathLike[str],
    *,
    compression: Compression = "gzip",
    mtime: int | None = None,
    media_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> SpooledLayer:
    """A reproducible layer of a directory's content (the directory itself is the root).

    Entries are sorted, owned by 0:0 with no names, and stamped with ``mtime``
    (default ``$SOURCE_DATE_EPOCH`` or 0), so the same tree gives the same digest
    on every machine. Symlinks and hard links are kept; special files are skipped.
    """
    root = Path(directory)
    if not root.is_dir():
        raise TarballError(f"layer directory {root}: expected an existing directory")
    stamp = source_date_epoch() if mtime is None else mtime
    w = _SpoolWriter(compression)
    try:
        with tarfile.open(fileobj=cast(Any, w), mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.copybufsize = CHUNK  # type: ignore[attr-defined]
            inodes: dict[tuple[int, int], str] = {}
            for full, arc in _walk_sorted(root):
                info = _tarinfo_for(full, arc, stamp, inodes)
                if info is None:
                    continue
                if info.type == tarfile.REGTYPE:
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        return w.finish(media_type or media_type_for(compression), annotations)
    except BaseException:
        w.fh.close()
        raise
