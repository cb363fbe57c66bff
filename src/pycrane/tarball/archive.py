"""The member index of a tar archive: names, offsets, sizes, links, memoised digests.

:class:`Archive` is what a ``docker save`` tarball is below its manifests: it scans the
member headers once, opens a member's bytes at their offset on demand (following
symlinks and hard links, bounded), reads bounded documents, and hashes a member once
(optionally checking its uncompressed stream against a diff_id in the same read).
:mod:`pycrane.tarball.read` builds images on top of it.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from pycrane import compression as comp
from pycrane.compression import CHUNK
from pycrane.errors import CompressionError, DigestMismatch, TarballError, VerificationError
from pycrane.tarball.layer import slice_reader
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest, DigestHasher
from pycrane.v1.limits import MANIFEST_LIMIT

__all__ = ["Archive", "norm"]

_MAX_LINK_DEPTH = 16


@dataclass(frozen=True)
class _Member:
    offset: int
    size: int


def norm(name: str) -> str:
    """A member name as the index keys it: relative, ``/``-separated, normalised."""
    n = posixpath.normpath("/" + name.replace("\\", "/")).lstrip("/")
    return "" if n == "." else n


class Archive:
    """An indexed tar archive, read in place (or from ``keep``, a decompressed spool)."""

    def __init__(self, path: Path, *, keep: BinaryIO | None = None) -> None:
        self.path = path
        self._spool = keep  # an anonymous decompressed copy, for compressed archives
        self._lock = threading.Lock()
        self._members: dict[str, _Member] = {}
        self._links: dict[str, str] = {}
        self._memo_lock = threading.Lock()
        self._digests: dict[str, Descriptor] = {}
        self._checked: set[str] = set()  # members whose diff_id was verified too
        self._index()

    # -- indexing -----------------------------------------------------------------
    def _index(self) -> None:
        what = f"tarball {self.path}"
        src: Any = self._spool if self._spool is not None else str(self.path)
        try:
            if self._spool is not None:
                self._spool.seek(0)
                tf = tarfile.open(fileobj=cast(Any, self._spool), mode="r:")  # noqa: SIM115
            else:
                tf = tarfile.open(src, mode="r:")  # noqa: SIM115
            with tf:
                for info in tf:
                    name = norm(info.name)
                    if info.isreg():
                        self._members[name] = _Member(info.offset_data, info.size)
                        self._links.pop(name, None)
                    elif info.issym():
                        base = posixpath.dirname(name)
                        self._links[name] = norm(posixpath.join(base, info.linkname))
                    elif info.islnk():
                        self._links[name] = norm(info.linkname)
        except (tarfile.TarError, EOFError) as e:
            raise TarballError(f"{what}: not a valid tar archive ({e})") from None
        except OSError as e:
            raise TarballError(f"{what}: cannot read it ({e.strerror or e})") from None

    def _resolve(self, name: str) -> _Member:
        n = norm(name)
        for _ in range(_MAX_LINK_DEPTH):
            m = self._members.get(n)
            if m is not None:
                return m
            target = self._links.get(n)
            if target is None:
                break
            n = target
        raise TarballError(f"tarball {self.path}: missing member {name!r}")

    def has(self, name: str) -> bool:
        try:
            self._resolve(name)
        except TarballError:
            return False
        return True

    def open_member(self, name: str) -> BinaryIO:
        """A fresh stream of one member's bytes."""
        m = self._resolve(name)
        if self._spool is not None:
            return slice_reader(self._spool, self._lock, m.offset, m.size)
        f = open(self.path, "rb")  # noqa: SIM115
        f.seek(m.offset)
        return cast(BinaryIO, _Limited(f, m.size, f"tarball {self.path}: member {name!r}"))

    def read_member(self, name: str, limit: int | None = None) -> bytes:
        """A document member (manifest.json, index.json, a manifest or config), whole.

        Bounded as every reader bounds manifests and configs (:mod:`pycrane.v1.limits`;
        ``limit`` defaults to the manifest bound).
        """
        limit = MANIFEST_LIMIT if limit is None else limit
        m = self._resolve(name)
        if m.size > limit:
            raise TarballError(
                f"tarball {self.path}: member {name!r} is {m.size} bytes, "
                f"over the {limit}-byte limit for a manifest or config"
            )
        with self.open_member(name) as f:
            return f.read()

    def describe(self, name: str, media_type: str) -> Descriptor:
        """Digest and size of a member, hashed once and memoised."""
        n = norm(name)
        with self._memo_lock:
            d = self._digests.get(n)
        if d is None:
            h = DigestHasher()
            with self.open_member(n) as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
            d = Descriptor(media_type=media_type, digest=h.digest(), size=h.size)
            with self._memo_lock:
                self._digests[n] = d
        return d if d.media_type == media_type else Descriptor(media_type, d.digest, d.size)

    def describe_checked(self, name: str, media_type: str, diff_id: Digest) -> Descriptor:
        """:meth:`describe`, also checking the uncompressed stream against ``diff_id``.

        One read of the member feeds both hashes, so a layer that does not match the
        config's diff_id is refused before anything is pushed, without a second pass.
        """
        n = norm(name)
        with self._memo_lock:
            d = self._digests.get(n)
            checked = n in self._checked
        if d is None or not checked:
            h, diff = DigestHasher(), DigestHasher()
            with self.open_member(n) as f:
                tee = _Tee(f, h)
                try:
                    with comp.decompressed_reader(cast(BinaryIO, tee)) as plain:
                        while chunk := plain.read(CHUNK):
                            diff.update(chunk)
                        while tee.read(CHUNK):  # trailing bytes after the stream still count
                            pass
                except CompressionError as e:
                    raise VerificationError(f"tarball {self.path}: layer {name}: {e}") from None
            actual = diff.digest()
            if actual != diff_id:
                raise DigestMismatch(
                    f"tarball {self.path}: layer {name} does not match the config's diff_id",
                    str(diff_id),
                    str(actual),
                )
            d = Descriptor(media_type=media_type, digest=h.digest(), size=h.size)
            with self._memo_lock:
                self._digests[n] = d
                self._checked.add(n)
        return d if d.media_type == media_type else Descriptor(media_type, d.digest, d.size)

    def sniff(self, name: str) -> comp.Compression:
        with self.open_member(name) as f:
            return comp.detect(f.read(4))


class _Tee(io.RawIOBase):
    """Hands on what it reads from ``f`` after hashing it."""

    def __init__(self, f: BinaryIO, h: DigestHasher) -> None:
        self._f = f
        self._h = h

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._f.read(len(b))
        n = len(data)
        b[:n] = data
        self._h.update(data)
        return n


class _Limited(io.RawIOBase):
    def __init__(self, f: BinaryIO, size: int, what: str) -> None:
        self._f = f
        self._left = size
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = min(len(view), self._left)
        if n <= 0:
            return 0
        got = self._f.readinto(view[:n])  # type: ignore[attr-defined]
        if not got:
            raise TarballError(f"{self._what}: truncated ({self._left} bytes missing)")
        self._left -= got
        return int(got)

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            super().close()
