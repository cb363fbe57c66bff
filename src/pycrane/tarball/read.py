"""Read ``docker save`` tarballs lazily.

The archive's member headers are indexed once (names, offsets, sizes); layer
bytes are read from their offsets on demand, so opening a 10 GiB tarball costs a
header scan. Both flavours are understood: Docker 25+ archives (an OCI layout
inside, whose ``index.json`` gives back the exact manifest bytes and digest) and
classic ones (``manifest.json`` only, whose manifest is synthesised like
go-containerregistry does). Layers may be stored gzip, zstd or uncompressed;
uncompressed ones are gzip-compressed once on first use.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from pycrane import _fs
from pycrane import compression as comp
from pycrane._concurrency import bounded_map
from pycrane.compression import CHUNK
from pycrane.errors import (
    DigestMismatch,
    InvalidReference,
    ManifestError,
    NotFoundError,
    TarballError,
)
from pycrane.name import Reference, Tag, parse_reference
from pycrane.tarball.archive import Archive, norm
from pycrane.tarball.layer import SpooledLayer, media_type_for, spool_tar
from pycrane.v1 import mediatypes as mt
from pycrane.v1.config import ConfigFile
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import ImageBase, Layer, LayerBase
from pycrane.v1.limits import CONFIG_LIMIT, MANIFEST_LIMIT
from pycrane.v1.manifest import Index, Manifest, parse_manifest
from pycrane.v1.memo import Memo

__all__ = [
    "Tarball",
    "TarballEntry",
    "TarballImage",
    "image_from_fileobj",
    "image_from_path",
    "open_tarball",
]


@dataclass(frozen=True)
class TarballEntry:
    """One ``manifest.json`` entry: a config, its tags and its layer member names."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


class Tarball(Archive):
    """An indexed ``docker save`` archive; see :func:`open_tarball`."""

    def __init__(self, path: Path, *, keep: BinaryIO | None = None) -> None:
        super().__init__(path, keep=keep)
        self._oci_cache: list[tuple[Manifest, set[str]]] | None = None
        self.entries = self._parse_manifest_json()

    # -- manifest.json -------------------------------------------------------------
    def _parse_manifest_json(self) -> list[TarballEntry]:
        what = f"tarball {self.path}: manifest.json"
        if not self.has("manifest.json"):
            raise TarballError(f"tarball {self.path}: no manifest.json (not a docker save archive)")
        try:
            obj = json.loads(self.read_member("manifest.json", MANIFEST_LIMIT))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TarballError(f"{what}: not valid JSON ({e})") from None
        if not isinstance(obj, list):
            raise TarballError(f"{what}: expected a list of images")
        out = []
        for i, item in enumerate(obj):
            if not isinstance(item, dict):
                raise TarballError(f"{what}[{i}]: expected an object")
            cfg = item.get("Config")
            tags = item.get("RepoTags") or []
            layers = item.get("Layers") or []
            if not isinstance(cfg, str) or not cfg:
                raise TarballError(f"{what}[{i}].Config: expected a member name")
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise TarballError(f"{what}[{i}].RepoTags: expected a list of strings")
            if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
                raise TarballError(f"{what}[{i}].Layers: expected a list of member names")
            out.append(TarballEntry(cfg, tuple(tags), tuple(layers)))
        if not out:
            raise TarballError(f"{what}: lists no image")
        return out

    def _oci_manifests(self) -> list[tuple[Manifest, set[str]]]:
        """Manifests of the embedded OCI layout (Docker 25+), each with the image names
        its ``index.json`` entries give it (``io.containerd.image.name``)."""
        with self._memo_lock:
            cached = self._oci_cache
        if cached is not None:
            return cached
        found: dict[Digest, tuple[Manifest, set[str]]] = {}
        idx = None
        if self.has("index.json"):
            try:
                idx = parse_manifest(self.read_member("index.json", MANIFEST_LIMIT))
            except ManifestError:
                idx = None
        # (descriptor, name it is tagged with); nested indexes (a multi-platform image
        # saved by the containerd image store) are walked for their image children.
        todo = [
            (d, d.annotations.get("io.containerd.image.name"))
            for d in (idx.manifests if isinstance(idx, Index) else ())
        ]
        seen_indexes: set[Digest] = set()
        while todo:
            d, ref = todo.pop(0)
            name = f"blobs/{d.digest.algorithm}/{d.digest.hex}"
            if not (mt.is_image(d.media_type) or mt.is_index(d.media_type)) or not self.has(name):
                continue
            if mt.is_index(d.media_type):
                if d.digest in seen_indexes or len(seen_indexes) > 64:
                    continue
                seen_indexes.add(d.digest)
                nested = self._verified_document(name, d.digest)
                try:
                    child_idx = Index.parse(nested, d.media_type)
                except ManifestError as e:
                    raise TarballError(f"tarball {self.path}: {name}: {e}") from None
                todo.extend((c, ref) for c in child_idx.manifests)
                continue
            if d.digest not in found:
                raw = self._verified_document(name, d.digest)
                try:
                    found[d.digest] = (Manifest.parse(raw, d.media_type), set())
                except ManifestError as e:
                    raise TarballError(f"tarball {self.path}: {name}: {e}") from None
            if ref:
                with contextlib.suppress(InvalidReference):
                    found[d.digest][1].add(str(parse_reference(ref)))
        out = list(found.values())
        with self._memo_lock:
            self._oci_cache = out
        return out

    def _verified_document(self, name: str, digest: Digest) -> bytes:
        raw = self.read_member(name, MANIFEST_LIMIT)
        if Digest.from_bytes(raw, digest.algorithm) != digest:
            raise TarballError(f"tarball {self.path}: {name} does not match its digest")
        return raw

    # -- images ----------------------------------------------------------------------
    def find(self, tag: str | Reference | None = None) -> TarballEntry:
        """The entry for ``tag``; without a tag, the only entry."""
        if tag is None:
            if len(self.entries) == 1:
                return self.entries[0]
            names = ", ".join(t for e in self.entries for t in e.repo_tags) or "untagged"
            raise TarballError(
                f"tarball {self.path}: holds {len(self.entries)} images ({names});"
                " choose one by its tag"
            )
        want = parse_reference(tag)
        for e in self.entries:
            for t in e.repo_tags:
                try:
                    if parse_reference(t) == want:
                        return e
                except InvalidReference:
                    continue
        have = ", ".join(t for e in self.entries for t in e.repo_tags) or "none"
        raise NotFoundError(f"tarball {self.path}: no image tagged {tag} (tags: {have})")

    def image(self, tag: str | Reference | None = None) -> TarballImage:
        return TarballImage(self, self.find(tag))

    def image_of(self, entry: TarballEntry) -> TarballImage:
        """The image of one of :attr:`entries` (tagged or not)."""
        return TarballImage(self, entry)

    def images(self) -> list[tuple[list[Tag], TarballImage]]:
        """Every image with its tags, in archive order."""
        out = []
        for e in self.entries:
            tags = []
            for t in e.repo_tags:
                try:
                    ref = parse_reference(t)
                except InvalidReference:
                    continue
                if isinstance(ref, Tag):
                    tags.append(ref)
            out.append((tags, TarballImage(self, e)))
        return out


class _MemberLayer(LayerBase):
    """A compressed layer stored as a tar member: its digest is the member's hash."""

    def __init__(
        self,
        tb: Tarball,
        name: str,
        media_type: str,
        diff_id: Digest | None,
        desc: Descriptor | None,
    ) -> None:
        super().__init__(diff_id)
        self._memo = Memo()  # nested lookups
        self._tb = tb
        self._name = name
        self._mt = media_type
        self._desc = desc

    def digest(self) -> Digest:
        return self._desc.digest if self._desc is not None else self.descriptor().digest

    def size(self) -> int:
        return self._desc.size if self._desc is not None else self.descriptor().size

    def media_type(self) -> str:
        return self._desc.media_type if self._desc is not None else self._mt

    def descriptor(self) -> Descriptor:
        if self._desc is not None:
            # Named by an embedded OCI manifest: readers check the member against it as
            # they stream (an all-or-nothing push closes no upload session before that).
            return self._desc
        if self._diff_id is not None:
            return self._tb.describe_checked(self._name, self._mt, self._diff_id)
        return self._tb.describe(self._name, self._mt)

    def compressed(self) -> BinaryIO:
        return self._tb.open_member(self._name)


class _PlainMemberLayer(LayerBase):
    """An uncompressed layer member, gzip-compressed into a temp file on first use."""

    def __init__(self, tb: Tarball, name: str, media_type: str, diff_id: Digest | None) -> None:
        super().__init__(diff_id)
        self._memo = Memo()  # nested lookups
        self._tb = tb
        self._name = name
        self._mt = media_type

    def _spooled(self) -> SpooledLayer:
        def build() -> SpooledLayer:
            with self._tb.open_member(self._name) as f:
                sp = spool_tar(iter(lambda: f.read(CHUNK), b""), "gzip", media_type=self._mt)
            # The spool hashed the tar as it compressed it: the diff_id check is free.
            if self._diff_id is not None and sp.diff_id() != self._diff_id:
                raise DigestMismatch(
                    f"tarball {self._tb.path}: layer {self._name} does not match the config's "
                    "diff_id",
                    str(self._diff_id),
                    str(sp.diff_id()),
                )
            return sp

        return self._memo.get("spooled", build)

    def descriptor(self) -> Descriptor:
        return self._spooled().descriptor()

    def compressed(self) -> BinaryIO:
        return self._spooled().compressed()

    def diff_id(self) -> Digest:
        return self._spooled().diff_id()


class TarballImage(ImageBase):
    """An image of a ``docker save`` archive, read lazily from its members."""

    def __init__(self, tb: Tarball, entry: TarballEntry) -> None:
        super().__init__()
        self._memo = Memo()  # nested lookups
        self._tb = tb
        self.entry = entry
        self._layers_by_digest: dict[Digest, Layer] = {}

    def raw_config(self) -> bytes:
        return self._memo.get(
            "raw_config", lambda: self._tb.read_member(self.entry.config, CONFIG_LIMIT)
        )

    def _oci(self) -> Manifest | None:
        def find() -> Manifest | None:
            cfg = Digest.from_bytes(self.raw_config())
            names = [norm(n) for n in self.entry.layers]
            candidates = []
            for m, refs in self._tb._oci_manifests():
                if m.config.digest != cfg or len(m.layers) != len(names):
                    continue
                if all(
                    not n.startswith("blobs/") or n == f"blobs/{d.digest.algorithm}/{d.digest.hex}"
                    for n, d in zip(names, m.layers, strict=True)
                ):
                    candidates.append((m, refs))
            if not candidates:
                return None
            # Several manifests for one config and layer list: the tags tell them apart.
            tags = set()
            for t in self.entry.repo_tags:
                try:
                    tags.add(str(parse_reference(t)))
                except InvalidReference:
                    continue
            for m, refs in candidates:
                if refs & tags:
                    return m
            return candidates[0][0]

        return self._memo.get("oci", find)

    def raw_manifest(self) -> bytes:
        return self._memo.get("raw_manifest", self._build_manifest)

    def _media_type_hint(self) -> str | None:
        return None

    def _layer_objects(self) -> list[Layer]:
        def build() -> list[Layer]:
            try:
                diff_ids: Sequence[Digest | None] = ConfigFile.parse(self.raw_config()).diff_ids
            except (ManifestError, ValueError) as e:
                raise TarballError(f"tarball {self._tb.path}: {self.entry.config}: {e}") from None
            if len(diff_ids) != len(self.entry.layers):
                diff_ids = [None] * len(self.entry.layers)
            oci = self._oci()
            out: list[Layer] = []
            for i, name in enumerate(self.entry.layers):
                if oci is not None:
                    d = oci.layers[i]
                    out.append(_MemberLayer(self._tb, name, d.media_type, diff_ids[i], d))
                    continue
                kind = self._tb.sniff(name)
                if kind == "none":
                    out.append(_PlainMemberLayer(self._tb, name, mt.DOCKER_LAYER, diff_ids[i]))
                else:
                    out.append(
                        _MemberLayer(
                            self._tb, name, media_type_for(kind, docker=True), diff_ids[i], None
                        )
                    )
            return out

        return self._memo.get("layer_objects", build)

    def _build_manifest(self) -> bytes:
        oci = self._oci()
        if oci is not None:
            return oci.raw
        layers = self._layer_objects()
        # Hashing members is I/O bound and hashlib releases the GIL: describe in parallel.
        descs = bounded_map(lambda layer: layer.descriptor(), layers, 4)
        zstd = any(d.media_type == mt.OCI_LAYER_ZSTD for d in descs)
        raw_cfg = self.raw_config()
        if zstd:  # Docker schema 2 has no zstd type: describe the image as OCI
            descs = [
                Descriptor(
                    mt.OCI_LAYER_GZIP if d.media_type == mt.DOCKER_LAYER else d.media_type,
                    d.digest,
                    d.size,
                )
                for d in descs
            ]
            cfg_desc = Descriptor(mt.OCI_CONFIG, Digest.from_bytes(raw_cfg), len(raw_cfg))
            media = mt.OCI_MANIFEST
        else:
            cfg_desc = Descriptor(mt.DOCKER_CONFIG, Digest.from_bytes(raw_cfg), len(raw_cfg))
            media = mt.DOCKER_MANIFEST
        return Manifest.build(cfg_desc, descs, media_type=media).raw

    def layer_for(self, descriptor: Descriptor, diff_id: Digest | None) -> Layer:
        objs = self._layer_objects()
        m = self.manifest()
        for i, d in enumerate(m.layers):
            if d.digest == descriptor.digest:
                layer = objs[i]
                if layer.media_type() != d.media_type:
                    return _Retyped(layer, d)
                return layer
        raise NotFoundError(f"tarball image {self.digest()}: no layer {descriptor.digest}")


class _Retyped(LayerBase):
    """A layer served under another (equivalent) media type."""

    def __init__(self, inner: Layer, desc: Descriptor) -> None:
        super().__init__()
        self._memo = Memo()  # nested lookups
        self._inner = inner
        self._desc = desc

    def descriptor(self) -> Descriptor:
        return self._desc

    def compressed(self) -> BinaryIO:
        return self._inner.compressed()

    def diff_id(self) -> Digest:
        return self._inner.diff_id()


def open_tarball(path: str | os.PathLike[str]) -> Tarball:
    """Index a ``docker save`` archive (plain, or gzip/zstd-compressed as a whole)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            kind = comp.detect(f.read(4))
    except OSError as e:
        raise TarballError(f"tarball {p}: cannot read it ({e.strerror or e})") from None
    if kind == "none":
        return Tarball(p)
    with open(p, "rb") as f:
        return Tarball(p, keep=_spool(comp.decompressed_reader(f, kind), p))


def _spool(reader: BinaryIO, p: Path) -> BinaryIO:
    tmp = cast(BinaryIO, tempfile.TemporaryFile())  # noqa: SIM115
    try:
        while chunk := reader.read(CHUNK):
            _fs.write_all(tmp, chunk)
    except (OSError, EOFError, ValueError) as e:
        tmp.close()
        raise TarballError(f"tarball {p}: cannot decompress it ({e})") from None
    except Exception:
        tmp.close()
        raise
    tmp.flush()
    return tmp


def image_from_path(
    path: str | os.PathLike[str], tag: str | Reference | None = None
) -> TarballImage:
    """The image tagged ``tag`` in a ``docker save`` archive (the only one when None)."""
    return open_tarball(path).image(tag)


def image_from_fileobj(
    fileobj: BinaryIO, tag: str | Reference | None = None, *, name: str = "<stream>"
) -> TarballImage:
    """Like :func:`image_from_path` for a one-pass stream (stdin): spooled to a temp file."""
    head = fileobj.read(4)
    kind = comp.detect(head)
    reader: BinaryIO = cast(BinaryIO, comp.PrefixedReader(head, fileobj))
    if kind != "none":
        reader = comp.decompressed_reader(reader, kind)
    return Tarball(Path(name), keep=_spool(reader, Path(name))).image(tag)
