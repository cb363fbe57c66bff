"""Random images, layers and indexes for tests, demos and benchmarks.

Content is drawn from a seeded generator, so a seed reproduces an image bit for bit.
"""

from __future__ import annotations

import io
import random as _random
import tarfile
from collections.abc import Sequence

from pycrane.compression import Compression, iter_compress
from pycrane.empty import empty_layer
from pycrane.v1 import mediatypes as mt
from pycrane.v1.config import ConfigFile
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import BytesLayer, Image, Layer, SimpleImage, SimpleIndex
from pycrane.v1.platform import Platform

__all__ = ["random_image", "random_index", "random_layer"]


def random_layer(
    size: int, *, seed: int | None = None, media_type: str = mt.OCI_LAYER_GZIP
) -> BytesLayer:
    """A gzip layer holding one file of ``size`` random bytes."""
    rng = _random.Random(seed)
    # randbytes(n) goes through one n*8-bit integer, which overflows past 256 MiB:
    # draw large payloads in 1 MiB pieces.
    piece = 1 << 20
    payload = b"".join(rng.randbytes(min(piece, size - i)) for i in range(0, size, piece))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"random-{rng.getrandbits(64):016x}")
        info.size = size
        info.mode = 0o644
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    raw = buf.getvalue()
    diff_id = Digest.from_bytes(raw)
    kind: Compression = "zstd" if mt.compression_of(media_type) == "zstd" else "gzip"
    compressed = b"".join(iter_compress(iter([raw]), kind))
    return BytesLayer(compressed, media_type, diff_id=diff_id)


def random_image(
    layers: int = 3,
    layer_size: int = 1024,
    *,
    duplicate_empty_layers: int = 0,
    seed: int | None = None,
    platform: Platform | None = None,
    media_type: str = mt.OCI_MANIFEST,
) -> SimpleImage:
    """An image of ``layers`` random layers, then ``duplicate_empty_layers`` identical empty ones.

    Identical empty layers are what triggered go-containerregistry's Windows
    rename race: several manifest entries share one digest.
    """
    rng = _random.Random(seed)
    docker = media_type == mt.DOCKER_MANIFEST
    layer_mt = mt.DOCKER_LAYER if docker else mt.OCI_LAYER_GZIP
    items: list[Layer] = [
        random_layer(layer_size, seed=rng.getrandbits(64), media_type=layer_mt)
        for _ in range(layers)
    ]
    empty = empty_layer(layer_mt)
    items.extend(empty for _ in range(duplicate_empty_layers))
    return image_from_layers(
        items, platform=platform, media_type=media_type, created_by=f"random seed={seed}"
    )


def image_from_layers(
    layers: Sequence[Layer],
    *,
    platform: Platform | None = None,
    media_type: str = mt.OCI_MANIFEST,
    created_by: str = "pycrane",
) -> SimpleImage:
    """An image of the given layers with a config that lists their diff_ids."""
    cfg = ConfigFile.new(platform).to_dict()
    cfg["rootfs"] = {"type": "layers", "diff_ids": [str(layer.diff_id()) for layer in layers]}
    cfg["history"] = [{"created_by": created_by} for _ in layers]
    return SimpleImage.build(ConfigFile.from_dict(cfg), list(layers), media_type=media_type)


def random_index(
    platforms: Sequence[Platform | str] = ("linux/amd64", "linux/arm64", "linux/arm/v7"),
    *,
    layers: int = 2,
    layer_size: int = 1024,
    seed: int | None = None,
    media_type: str = mt.OCI_INDEX,
) -> SimpleIndex:
    """An index with one random image per platform."""
    rng = _random.Random(seed)
    children: list[tuple[Descriptor | None, Image]] = []
    image_mt = mt.DOCKER_MANIFEST if media_type == mt.DOCKER_MANIFEST_LIST else mt.OCI_MANIFEST
    for p in platforms:
        plat = Platform.parse(p) if isinstance(p, str) else p
        img = random_image(
            layers, layer_size, seed=rng.getrandbits(64), platform=plat, media_type=image_mt
        )
        children.append((None, img))
    return SimpleIndex.build(children, media_type=media_type)
