"""validate: every digest recomputed; the first problem raised as one line."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from pycrane import random_image, random_index, tarball
from pycrane.errors import DigestMismatch, ManifestError, SizeMismatch, VerificationError
from pycrane.v1.config import ConfigFile
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.image import BytesLayer, Image, SimpleImage, SimpleIndex
from pycrane.v1.manifest import Manifest
from pycrane.validate import validate, validate_image, validate_index, validate_layer


class _Flipped(BytesLayer):
    """Serves its bytes with one flipped: what a corrupt disk or proxy would do."""

    def compressed(self):  # type: ignore[no-untyped-def]
        data = bytearray(self.data)
        data[len(data) // 2] ^= 0x01
        return io.BytesIO(bytes(data))


def _with_layers(img: Image, layers: list) -> SimpleImage:
    return SimpleImage(img.manifest(), img.raw_config(), layers)


def test_good_images_and_indexes_pass() -> None:
    validate_image(random_image(3, 1000, duplicate_empty_layers=2, seed=1))
    validate_index(random_index(seed=2))
    validate(random_index(seed=2), fast=True)


def test_corrupt_layer_is_named() -> None:
    img = random_image(2, 4000, seed=3)
    layers = img.layers()
    bad = layers[1]
    assert isinstance(bad, BytesLayer)
    broken = _with_layers(
        img, [layers[0], _Flipped(bad.data, bad.media_type(), diff_id=bad.diff_id())]
    )
    validate_image(broken, fast=True)  # fast mode reads no layer bytes
    with pytest.raises(VerificationError, match=r"layer 1 \(sha256:") as info:
        validate_image(broken)
    assert "\n" not in str(info.value)


def test_wrong_diff_id_is_found() -> None:
    img = random_image(1, 500, seed=4)
    cfg = img.config_file().to_dict()
    cfg["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    new_cfg = ConfigFile.from_dict(cfg)
    bad = SimpleImage.build(new_cfg, img.layers())
    with pytest.raises(DigestMismatch, match=r"\(uncompressed\): digest mismatch"):
        validate_image(bad)


def test_config_bytes_must_match_the_manifest() -> None:
    img = random_image(1, 100, seed=5)
    other = ConfigFile.new().raw
    bad = SimpleImage(img.manifest(), other, img.layers())
    with pytest.raises(VerificationError, match="config"):
        validate_image(bad, fast=True)


def test_diff_id_count_must_match_layers() -> None:
    img = random_image(2, 100, seed=6)
    bad = SimpleImage.build(ConfigFile.new(), img.layers())
    with pytest.raises(ManifestError, match="0 diff_ids for 2 layers"):
        validate_image(bad, fast=True)


def test_layer_descriptor_must_agree_with_manifest() -> None:
    img = random_image(1, 100, seed=7)
    d = img.manifest().layers[0]
    lying = Manifest.build(img.manifest().config, [Descriptor(d.media_type, d.digest, d.size + 1)])
    layer = img.layers()[0]
    bad = SimpleImage(lying, img.raw_config(), [layer])
    with pytest.raises(SizeMismatch, match="layer 0"):
        validate_image(bad, fast=True)


def test_index_child_descriptor_is_checked() -> None:
    child = random_image(1, 100, seed=8)
    d = child.descriptor()
    wrong = Descriptor(d.media_type, d.digest, d.size + 5)
    idx = SimpleIndex.build([(wrong, child)])
    with pytest.raises(SizeMismatch, match="child 0"):
        validate_index(idx, fast=True)


def test_validate_layer_alone() -> None:
    layer = random_image(1, 100, seed=9).layers()[0]
    validate_layer(layer)
    with pytest.raises(DigestMismatch):
        validate_layer(layer, digest=random_image(1, 100, seed=10).layers()[0].digest())


def test_corrupted_tarball_member_is_caught(tmp_path: Path) -> None:
    img = random_image(2, 5000, seed=11)
    out = tmp_path / "img.tar"
    tarball.write(out, {"x:1": img})
    target = f"blobs/sha256/{img.layers()[0].digest().hex}"
    with tarfile.open(out) as t:
        member = t.getmember(target)
    data = bytearray(out.read_bytes())
    data[member.offset_data + member.size // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    back = tarball.image_from_path(out)
    validate_image(back, fast=True)  # documents are intact
    with pytest.raises(VerificationError, match="layer 0"):
        validate_image(back)


def test_undecodable_but_faithful_blob_is_reported_as_such() -> None:
    junk = b"\x1f\x8b" + b"not really gzip" * 20  # gzip magic, then garbage
    layer = BytesLayer(junk)
    img = SimpleImage.build(
        ConfigFile.from_dict(
            {"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]}, "os": "linux"}
        ),
        [layer],
    )
    with pytest.raises(VerificationError, match=r"gzip|decompress") as info:
        validate_image(img)
    assert not isinstance(info.value, DigestMismatch)
    assert "\n" not in str(info.value)
