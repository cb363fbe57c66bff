"""The v1 builders the layout tests rely on: random/empty images, memoised accessors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pycrane.empty import EMPTY_TAR, empty_image, empty_index, empty_layer
from pycrane.layout import Layout
from pycrane.random import random_image, random_index
from pycrane.v1 import Digest, Platform
from pycrane.v1 import mediatypes as mt
from pycrane.v1.image import ImageBase, Layer


def test_random_image_is_reproducible_and_seeds_differ() -> None:
    a = random_image(2, 500, seed=1)
    assert a.raw_manifest() == random_image(2, 500, seed=1).raw_manifest()
    assert a.digest() != random_image(2, 500, seed=2).digest()


def test_duplicate_empty_layers_share_one_digest() -> None:
    img = random_image(1, 100, duplicate_empty_layers=3, seed=1)
    digests = [layer.digest() for layer in img.layers()]
    assert len(digests) == 4 and len(set(digests)) == 2
    assert digests[1] == digests[2] == digests[3] == empty_layer().digest()


def test_empty_layer_decompresses_to_an_empty_tar() -> None:
    data = _read(empty_layer())
    # tarfile pads the two end-of-archive blocks to a 10 KiB record: all zeros.
    assert data.startswith(EMPTY_TAR) and data == bytes(len(data)) and len(data) % 512 == 0
    assert empty_layer().diff_id() == Digest.from_bytes(_read(empty_layer()))


def _read(layer: Layer) -> bytes:
    with layer.uncompressed() as f:
        return f.read()


def test_config_diff_ids_match_layers() -> None:
    img = random_image(3, 2000, duplicate_empty_layers=1, seed=3)
    ids = img.config_file().diff_ids
    assert ids == tuple(Digest.from_bytes(_read(layer)) for layer in img.layers())


def test_empty_image_and_index() -> None:
    img = empty_image(Platform.parse("linux/arm64"))
    assert img.layers() == []
    assert img.config_file().platform == Platform("linux", "arm64")
    assert empty_index().index_manifest().manifests == ()


def test_random_index_children_carry_platforms() -> None:
    idx = random_index(["linux/amd64", "linux/arm/v7"], seed=4)
    plats = [str(d.platform) for d in idx.index_manifest().manifests]
    assert plats == ["linux/amd64", "linux/arm/v7"]
    for d in idx.index_manifest().manifests:
        assert idx.image(d.digest).config_file().platform == d.platform


@pytest.mark.parametrize("media_type", [mt.OCI_MANIFEST, mt.DOCKER_MANIFEST])
def test_images_of_both_kinds_round_trip_through_a_layout(tmp_path: Path, media_type) -> None:
    img = random_image(2, 300, duplicate_empty_layers=2, seed=5, media_type=media_type)
    lay = Layout.create(tmp_path / "l")
    lay.append_image(img, ref_name="t")
    got = lay.image("t")
    assert got.raw_manifest() == img.raw_manifest()
    assert got.media_type() == media_type
    assert got.config_file() == img.config_file()
    assert [x.diff_id() for x in got.layers()] == [x.diff_id() for x in img.layers()]


def test_memoised_accessor_may_call_another_without_deadlock() -> None:
    """config_file() is memoised and calls raw_config(), which a source may memoise too."""

    class Nested(ImageBase):
        def __init__(self, inner: ImageBase) -> None:
            super().__init__()
            self.inner = inner

        def raw_manifest(self) -> bytes:
            return self._memo.get("m", self.inner.raw_manifest)

        def raw_config(self) -> bytes:
            return self._memo.get("c", self.inner.raw_config)

        def layer_for(self, descriptor, diff_id):  # type: ignore[no-untyped-def]
            return self.inner.layer_for(descriptor, diff_id)  # type: ignore[attr-defined]

    img = Nested(random_image(1, 10, seed=6))
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(img.config_file()), daemon=True)
    t.start()
    t.join(10)
    assert result, "config_file() deadlocked on a nested memoised call"


@pytest.mark.stress
def test_random_layer_larger_than_256_mib() -> None:
    # random.Random.randbytes overflows past 2**31 bits; large layers are drawn in pieces.
    from pycrane.random import random_layer

    layer = random_layer((256 << 20) + 1, seed=1)
    assert layer.size() > 256 << 20
    with layer.uncompressed() as r:
        total = 0
        while chunk := r.read(1 << 20):
            total += len(chunk)
    assert total > (256 << 20) + 512
