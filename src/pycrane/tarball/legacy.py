"""Write the legacy (pre-OCI) ``docker save`` format, as ``crane pull --format legacy``.

Each layer is a directory named by a v1 layer ID, holding ``VERSION``, ``json`` and
an uncompressed ``layer.tar``; ``repositories`` maps tags to the top layer's ID.
``manifest.json`` and ``<config hex>.json`` are written too, as docker 1.10+ did,
so newer tools read the same archive. The v1 IDs chain like go-containerregistry's
(sha256 of the layer digest, the parent ID and, for the top layer, the config), so
both tools name the same image's layers alike.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from typing import Any, BinaryIO, cast

from pycrane.compression import CHUNK, decompressed_reader
from pycrane.errors import ManifestError
from pycrane.name import familiar
from pycrane.progress import ProgressSink
from pycrane.tarball._sink import Target, TarSink
from pycrane.tarball.write import ImagesArg, normalize_images
from pycrane.v1.digest import Digest, DigestHasher, VerifyingReader
from pycrane.v1.image import Layer

__all__ = ["v1_layer_id", "write_legacy"]

_EPOCH = "1970-01-01T00:00:00Z"


def v1_layer_id(digest: Digest, parent_id: str, raw_config: bytes = b"") -> str:
    """The v1 ID of a layer: chained on its parent, and on the config for the top layer."""
    s = f"{digest.hex} {parent_id}"
    if raw_config:
        s = f"{s} {raw_config.decode('utf-8', 'replace')}"
    return hashlib.sha256(s.encode()).hexdigest()


def _spool_uncompressed(layer: Layer) -> BinaryIO:
    """The layer's tar in an anonymous temp file, fetched once and checked twice:
    the blob against its digest, the tar against its diff_id."""
    d = layer.descriptor()
    diff_id = layer.diff_id()
    fh = cast(BinaryIO, tempfile.TemporaryFile())  # noqa: SIM115 - returned open
    try:
        blob = VerifyingReader(layer.compressed(), d.digest, d.size, f"layer {d.digest}")
        h = DigestHasher(diff_id.algorithm)
        with decompressed_reader(cast(BinaryIO, blob), None) as r:
            while chunk := r.read(CHUNK):
                h.update(chunk)
                fh.write(chunk)
        h.verify(f"layer {d.digest} (uncompressed)", diff_id)
        fh.seek(0)
        return fh
    except BaseException:
        fh.close()
        raise


def write_legacy(
    target: Target,
    images: ImagesArg,
    *,
    progress: ProgressSink | None = None,
) -> None:
    """Write images in the legacy v1 layout to a path or a writable stream.

    ``layer.tar`` holds the uncompressed layer (checked against the config's
    diff_id); a layer repeated under another ID is a symlink to the first copy, as
    ``docker save`` did. Each layer is fetched once and decompressed into a temp
    file (the tar member needs its size up front), so memory stays bounded.
    """
    entries = normalize_images(images)
    if not entries:
        raise ManifestError("tarball: no images to write")
    with TarSink(target, progress) as sink:
        seen_ids: set[str] = set()
        first_copy: dict[Digest, str] = {}
        configs: set[Digest] = set()
        manifest_json: list[dict[str, Any]] = []
        repositories: dict[str, dict[str, str]] = {}
        for tags, img in entries:
            raw_config = img.raw_config()
            cfg = img.config_file()
            name = f"{img.config_name().hex}.json"
            if img.config_name() not in configs:
                sink.add_bytes(name, raw_config)
                configs.add(img.config_name())
            layers = img.layers()
            parent = ""
            layer_paths = []
            for i, layer in enumerate(layers):
                top = i == len(layers) - 1
                lid = v1_layer_id(layer.digest(), parent, raw_config if top else b"")
                layer_paths.append(f"{lid}/layer.tar")
                if lid not in seen_ids:
                    seen_ids.add(lid)
                    sink.add_bytes(f"{lid}/VERSION", b"1.0")
                    meta: dict[str, Any]
                    if top:
                        meta = cfg.to_dict()
                        meta.pop("rootfs", None)
                        meta.pop("history", None)
                    else:
                        meta = {"created": _EPOCH, "container_config": {"Cmd": None}}
                    meta["id"] = lid
                    if parent:
                        meta["parent"] = parent
                    sink.add_bytes(f"{lid}/json", json.dumps(meta, sort_keys=True).encode())
                    diff_id = layer.diff_id()
                    if diff_id in first_copy:
                        sink.add_symlink(f"{lid}/layer.tar", f"../{first_copy[diff_id]}/layer.tar")
                    else:
                        with _spool_uncompressed(layer) as tar:
                            size = tar.seek(0, 2)
                            tar.seek(0)
                            sink.add_stream(
                                f"{lid}/layer.tar",
                                tar,
                                diff_id,
                                size,
                                f"layer {layer.digest()} (uncompressed)",
                            )
                        first_copy[diff_id] = lid
                parent = lid
            manifest_json.append(
                {
                    "Config": name,
                    "RepoTags": [familiar(t) for t in tags] or None,
                    "Layers": layer_paths,
                }
            )
            for t in tags:
                if parent:
                    repositories.setdefault(familiar(t.repository), {})[t.tag] = parent
        sink.add_bytes("manifest.json", json.dumps(manifest_json).encode())
        sink.add_bytes("repositories", json.dumps(repositories).encode())
