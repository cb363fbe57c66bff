"""The transforms: each takes an image (or index) and returns a new lazy one."""

# No ``from __future__ import annotations``: it would shadow the annotations() transform.

import datetime as _dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, BinaryIO, overload

from pycrane._concurrency import bounded_map
from pycrane.compression import Compression
from pycrane.errors import ManifestError
from pycrane.mutate.extract import iter_extract
from pycrane.mutate.image import (
    JSON,
    DerivedImage,
    DerivedIndex,
    docker_layer_type,
    oci_layer_type,
)
from pycrane.tarball.layer import SpooledLayer, media_type_for, spool_tar
from pycrane.v1 import mediatypes as mt
from pycrane.v1.config import ConfigFile
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import Image, ImageIndex, Layer, LayerBase, is_index
from pycrane.v1.memo import Memo
from pycrane.v1.platform import Platform

__all__ = [
    "ANNOTATION_BASE_DIGEST",
    "ANNOTATION_BASE_NAME",
    "annotations",
    "append_layers",
    "config",
    "created_at",
    "flatten",
    "media_type",
    "prefetch",
    "set_config_file",
]

ANNOTATION_BASE_NAME = "org.opencontainers.image.base.name"
ANNOTATION_BASE_DIGEST = "org.opencontainers.image.base.digest"
#: Docker buildx marks attestation children of an index with this annotation.
ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type"

_UNSET: Any = object()


def prefetch(layers: Sequence[Layer], max_workers: int = 4) -> None:
    """Compute layer descriptors concurrently (compression and hashing release the GIL)."""
    bounded_map(lambda layer: layer.descriptor(), layers, max_workers)


def append_layers(
    base: Image,
    layers: Sequence[Layer],
    *,
    history: Sequence[Mapping[str, Any] | None] | None = None,
) -> Image:
    """``base`` with ``layers`` on top (diff_ids and history entries added).

    On a Docker schema 2 base, OCI gzip layers are described with the Docker media
    type (same bytes). Layers still to be compressed are compressed in parallel.
    """
    if history is not None and len(history) != len(layers):
        raise ValueError(f"append_layers: {len(history)} history entries for {len(layers)} layers")
    prefetch(layers)
    hist = list(history) if history is not None else [None] * len(layers)
    return DerivedImage(base, append=list(zip(layers, hist, strict=True)))


def _rfc3339(when: _dt.datetime | str | int | float) -> str:
    if isinstance(when, str):
        return when
    if isinstance(when, (int, float)):
        when = _dt.datetime.fromtimestamp(when, _dt.timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _env_list(env: Mapping[str, str] | Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    items = env.items() if isinstance(env, Mapping) else (e.partition("=")[::2] for e in env)
    for k, v in items:
        if not k:
            raise ValueError(f"env entry {k}={v}: expected KEY=VALUE")
        pairs.append((k, v))
    return pairs


def config(
    img: Image,
    *,
    entrypoint: Sequence[str] | None = _UNSET,
    cmd: Sequence[str] | None = _UNSET,
    env: Mapping[str, str] | Iterable[str] = _UNSET,
    labels: Mapping[str, str | None] = _UNSET,
    user: str = _UNSET,
    workdir: str = _UNSET,
    exposed_ports: Iterable[str] = _UNSET,
    volumes: Iterable[str] = _UNSET,
    platform: Platform | str = _UNSET,
    created: _dt.datetime | str | int | float = _UNSET,
    author: str = _UNSET,
    stop_signal: str = _UNSET,
) -> Image:
    """``img`` with its run config changed; only the given fields change.

    ``env`` entries are merged by key (a key keeps its position); ``labels`` are
    merged (a ``None`` value removes one); ``exposed_ports`` and ``volumes`` are
    added; ``entrypoint``/``cmd`` of ``None`` clear them.
    """

    def edit(cfg: JSON) -> JSON:
        rc: JSON = cfg.get("config") or {}
        cfg["config"] = rc
        if entrypoint is not _UNSET:
            rc["Entrypoint"] = list(entrypoint) if entrypoint is not None else None
        if cmd is not _UNSET:
            rc["Cmd"] = list(cmd) if cmd is not None else None
        if env is not _UNSET:
            current = list(rc.get("Env") or [])
            index = {e.partition("=")[0]: i for i, e in enumerate(current)}
            for k, v in _env_list(env):
                if k in index:
                    current[index[k]] = f"{k}={v}"
                else:
                    index[k] = len(current)
                    current.append(f"{k}={v}")
            rc["Env"] = current
        if labels is not _UNSET:
            cur = dict(rc.get("Labels") or {})
            for key, value in labels.items():
                if value is None:
                    cur.pop(key, None)
                else:
                    cur[key] = value
            rc["Labels"] = cur or None
        if user is not _UNSET:
            rc["User"] = user
        if workdir is not _UNSET:
            rc["WorkingDir"] = workdir
        if exposed_ports is not _UNSET:
            ports = dict(rc.get("ExposedPorts") or {})
            for port in exposed_ports:
                ports[port if "/" in port else f"{port}/tcp"] = {}
            rc["ExposedPorts"] = ports
        if volumes is not _UNSET:
            vols = dict(rc.get("Volumes") or {})
            for v in volumes:
                vols[v] = {}
            rc["Volumes"] = vols
        if stop_signal is not _UNSET:
            rc["StopSignal"] = stop_signal
        if platform is not _UNSET:
            plat = Platform.parse(platform) if isinstance(platform, str) else platform
            cfg["os"] = plat.os
            cfg["architecture"] = plat.architecture
            for key, val in (("variant", plat.variant), ("os.version", plat.os_version)):
                if val:
                    cfg[key] = val
                else:
                    cfg.pop(key, None)
            if plat.os_features:
                cfg["os.features"] = list(plat.os_features)
            else:
                cfg.pop("os.features", None)
        if created is not _UNSET:
            cfg["created"] = _rfc3339(created)
        if author is not _UNSET:
            cfg["author"] = author
        return cfg

    return DerivedImage(img, config=edit)


def created_at(img: Image, when: _dt.datetime | str | int | float) -> Image:
    """``img`` with its config's ``created`` time set (RFC 3339, UTC)."""
    return config(img, created=when)


def set_config_file(img: Image, cfg: ConfigFile | bytes) -> Image:
    """``img`` with a config replaced byte for byte (its diff_ids must match the layers)."""
    parsed = cfg if isinstance(cfg, ConfigFile) else ConfigFile.parse(cfg)
    n_layers = len(img.manifest().layers)
    if mt.is_config(img.manifest().config.media_type) and len(parsed.diff_ids) != n_layers:
        raise ManifestError(
            f"config {parsed.digest}: {len(parsed.diff_ids)} diff_ids for an image "
            f"of {n_layers} layers"
        )
    return DerivedImage(img, raw_config=parsed.raw)


def _edit_annotations(mapping: Mapping[str, str | None]) -> Callable[[JSON], JSON]:
    def edit(obj: JSON) -> JSON:
        ann = dict(obj.get("annotations") or {})
        for k, v in mapping.items():
            if v is None:
                ann.pop(k, None)
            else:
                ann[k] = v
        if ann:
            obj["annotations"] = ann
        else:
            obj.pop("annotations", None)
        return obj

    return edit


@overload
def annotations(obj: Image, mapping: Mapping[str, str | None]) -> Image: ...
@overload
def annotations(obj: ImageIndex, mapping: Mapping[str, str | None]) -> ImageIndex: ...
def annotations(obj: Image | ImageIndex, mapping: Mapping[str, str | None]) -> Any:
    """An image or index with manifest annotations merged in (``None`` removes one)."""
    if is_index(obj):
        return DerivedIndex(obj, manifest=_edit_annotations(mapping))
    return DerivedImage(obj, manifest=_edit_annotations(mapping))


@overload
def media_type(obj: Image, new: str) -> Image: ...
@overload
def media_type(obj: ImageIndex, new: str) -> ImageIndex: ...
def media_type(obj: Image | ImageIndex, new: str) -> Any:
    """An image or index re-described with another manifest media type.

    Switching an image between OCI and Docker schema 2 renames its config and
    layer media types too (the bytes stay); zstd layers cannot be Docker.
    """
    if is_index(obj):
        if not mt.is_index(new):
            raise ManifestError(f"media type {new!r}: expected an index media type")

        def edit_index(o: JSON) -> JSON:
            o["mediaType"] = new
            return o

        return DerivedIndex(obj, manifest=edit_index)
    if not mt.is_image(new):
        raise ManifestError(f"media type {new!r}: expected an image manifest media type")

    def edit(o: JSON) -> JSON:
        o["mediaType"] = new
        cfg = o.get("config") or {}
        if new == mt.DOCKER_MANIFEST:
            if cfg.get("mediaType") == mt.OCI_CONFIG:
                cfg["mediaType"] = mt.DOCKER_CONFIG
            for layer in o.get("layers") or []:
                t = layer.get("mediaType")
                if t in (mt.OCI_LAYER_ZSTD, mt.OCI_RESTRICTED_LAYER_ZSTD):
                    raise ManifestError(
                        f"layer {layer.get('digest')}: zstd layers cannot be in a Docker manifest"
                    )
                layer["mediaType"] = docker_layer_type(t)
        elif new == mt.OCI_MANIFEST:
            if cfg.get("mediaType") == mt.DOCKER_CONFIG:
                cfg["mediaType"] = mt.OCI_CONFIG
            for layer in o.get("layers") or []:
                layer["mediaType"] = oci_layer_type(layer.get("mediaType"))
        return o

    return DerivedImage(obj, manifest=edit)


def _is_attestation(desc_annotations: Mapping[str, str]) -> bool:
    return desc_annotations.get(ANNOTATION_REFERENCE_TYPE) == "attestation-manifest"


@overload
def flatten(obj: Image, *, compression: Compression = "gzip") -> Image: ...
@overload
def flatten(obj: ImageIndex, *, compression: Compression = "gzip") -> ImageIndex: ...
def flatten(obj: Image | ImageIndex, *, compression: Compression = "gzip") -> Any:
    """One layer holding the image's merged filesystem; on an index, each child flattened.

    History becomes one entry; the run config is kept. Attestation children of an
    index are dropped (they describe the layers that no longer exist). Children are
    flattened in parallel when the index is serialised.
    """
    if is_index(obj):
        idx: ImageIndex = obj
        replace: dict[Any, Image | ImageIndex | None] = {}
        todo: list[Image | ImageIndex] = []
        for d in idx.index_manifest().manifests:
            if _is_attestation(d.annotations):
                replace[d.digest] = None
            elif mt.is_index(d.media_type) or mt.is_image(d.media_type):
                child = (
                    idx.image_index(d.digest) if mt.is_index(d.media_type) else idx.image(d.digest)
                )
                new: Image | ImageIndex = flatten(child, compression=compression)
                replace[d.digest] = new
                todo.append(new)
        return _ParallelIndex(idx, replace, todo)
    img: Image = obj
    docker = img.media_type() == mt.DOCKER_MANIFEST
    lazy = _FlatLayer(img, compression, media_type_for(compression, docker=docker))

    def edit(cfg: JSON) -> JSON:
        cfg["rootfs"] = {"type": "layers", "diff_ids": [str(lazy.diff_id())]}
        cfg["history"] = [
            {
                "created": cfg.get("created") or "1970-01-01T00:00:00Z",
                "created_by": "pycrane flatten",
                "comment": f"flattened from {img.digest()}",
            }
        ]
        return cfg

    return DerivedImage(img, config=edit, layers=[lazy])


class _ParallelIndex(DerivedIndex):
    def __init__(
        self,
        base: ImageIndex,
        replace: Mapping[Any, Image | ImageIndex | None],
        todo: Sequence[Image | ImageIndex],
    ) -> None:
        super().__init__(base, children=replace)
        self._todo = list(todo)

    def raw_manifest(self) -> bytes:
        def build() -> bytes:
            bounded_map(lambda c: c.digest(), self._todo, 4)
            return self._build()

        return self._memo.get("raw", build)


class _FlatLayer(LayerBase):
    """The extracted filesystem of an image, compressed into a temp file on first use."""

    def __init__(self, img: Image, compression: Compression, media_type: str) -> None:
        super().__init__()
        self._memo = Memo()  # nested lookups
        self._img = img
        self._compression = compression
        self._media_type = media_type

    def _spooled(self) -> SpooledLayer:
        return self._memo.get(
            "spooled",
            lambda: spool_tar(
                iter_extract(self._img), self._compression, media_type=self._media_type
            ),
        )

    def descriptor(self) -> Descriptor:
        return self._spooled().descriptor()

    def compressed(self) -> BinaryIO:
        return self._spooled().compressed()

    def diff_id(self) -> Digest:
        return self._spooled().diff_id()
