"""docker-save tarballs exchanged with skopeo (containers/image's docker-archive transport)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pycrane import mutate, random_image, tarball
from pycrane.layout import Layout
from pycrane.random import image_from_layers
from pycrane.v1 import mediatypes as mt
from pycrane.v1.image import Image
from pycrane.validate import validate_image
from tests.test_export_helpers import E, layer_of

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]

POLICY = '{"default":[{"type":"insecureAcceptAnything"}]}'


def skopeo(tmp: Path, *args: str) -> str:
    policy = tmp / "policy.json"
    policy.write_text(POLICY)
    r = subprocess.run(
        ["skopeo", "--policy", str(policy), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def oci_config(layout: Path, tag: str) -> tuple[str, bytes, dict]:
    index = json.loads((layout / "index.json").read_text())
    desc = next(
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag
    )
    manifest = json.loads((layout / "blobs" / "sha256" / desc["digest"][7:]).read_bytes())
    cfg_digest = manifest["config"]["digest"]
    raw = (layout / "blobs" / "sha256" / cfg_digest[7:]).read_bytes()
    return cfg_digest, raw, manifest


def images() -> list:
    return [
        pytest.param(random_image(3, 3000, duplicate_empty_layers=2, seed=11), id="oci-dup-empty"),
        pytest.param(
            random_image(2, 1000, seed=12, media_type=mt.DOCKER_MANIFEST), id="docker-manifest"
        ),
        pytest.param(
            image_from_layers(
                [layer_of([E("a", "f", b"a")]), layer_of([E("z", "f", b"z" * 999)], "zstd")]
            ),
            id="zstd-layer",
        ),
    ]


@pytest.mark.parametrize("img", images())
def test_skopeo_reads_our_tarball(img: Image, tmp_path: Path) -> None:
    out = tmp_path / "img.tar"
    tarball.write(out, {"example.com/app:1": img})
    info = json.loads(skopeo(tmp_path, "inspect", f"docker-archive:{out}"))
    assert info["Layers"] == [str(d) for d in img.config_file().diff_ids]
    raw_cfg = json.loads(skopeo(tmp_path, "inspect", "--config", f"docker-archive:{out}"))
    assert raw_cfg["rootfs"]["diff_ids"] == info["Layers"]
    dest = tmp_path / "oci"
    skopeo(tmp_path, "copy", f"docker-archive:{out}", f"oci:{dest}:copied")
    cfg_digest, raw, _ = oci_config(dest, "copied")
    # The config (the image ID) and every diff_id survive the trip byte for byte.
    assert cfg_digest == str(img.config_name())
    assert raw == img.raw_config()


def test_skopeo_reads_legacy_tarball(tmp_path: Path) -> None:
    img = random_image(3, 2000, duplicate_empty_layers=1, seed=13, media_type=mt.DOCKER_MANIFEST)
    out = tmp_path / "legacy.tar"
    tarball.write_legacy(out, {"legacy/app:2": img})
    dest = tmp_path / "oci"
    skopeo(tmp_path, "copy", f"docker-archive:{out}", f"oci:{dest}:x")
    cfg_digest, _, manifest = oci_config(dest, "x")
    assert cfg_digest == str(img.config_name())
    assert len(manifest["layers"]) == len(img.layers())


@pytest.mark.parametrize(
    "img",
    [
        images()[0],
        # skopeo 1.9 reads only OCI manifests from a layout: convert (layer bytes stay)
        pytest.param(
            mutate.media_type(
                random_image(2, 1000, seed=12, media_type=mt.DOCKER_MANIFEST), mt.OCI_MANIFEST
            ),
            id="docker-converted-to-oci",
        ),
    ],
)
def test_we_read_skopeo_written_archives(img: Image, tmp_path: Path) -> None:
    src = tmp_path / "src"
    Layout.create(src).append_image(img, ref_name="v1")
    out = tmp_path / "skopeo.tar"
    skopeo(tmp_path, "copy", f"oci:{src}:v1", f"docker-archive:{out}:example.com/app:v1")
    back = tarball.image_from_path(out, "example.com/app:v1")
    assert back.raw_config() == img.raw_config()
    assert [x.diff_id() for x in back.layers()] == list(img.config_file().diff_ids)
    validate_image(back)
    # and a pycrane tarball of what we read goes back through skopeo intact
    again = tmp_path / "again.tar"
    tarball.write(again, {"example.com/app:v2": back})
    dest = tmp_path / "oci2"
    skopeo(tmp_path, "copy", f"docker-archive:{again}", f"oci:{dest}:v2")
    assert oci_config(dest, "v2")[1] == img.raw_config()
