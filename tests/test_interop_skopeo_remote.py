"""Interop with skopeo through a real distribution registry, in both directions."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pycrane.random import random_image, random_index
from pycrane.remote import Client
from pycrane.v1 import mediatypes as mt
from pycrane.v1.image import Image, ImageIndex, is_index

pytestmark = [pytest.mark.interop, pytest.mark.distribution]

SKOPEO = shutil.which("skopeo")
if SKOPEO is None:
    pytest.skip("skopeo is not installed", allow_module_level=True)


def skopeo(*args: str) -> str:
    proc = subprocess.run(
        [SKOPEO, "--insecure-policy", *args],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"skopeo {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def write_layout(root: Path, obj: Image | ImageIndex, tag: str) -> None:
    """A minimal OCI layout (test-only writer, so this test does not depend on the store)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def put(data: bytes) -> None:
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)

    def add_image(img: Image) -> None:
        put(img.raw_manifest())
        put(img.raw_config())
        for layer in img.layers():
            with layer.compressed() as r:
                put(r.read())

    if is_index(obj):
        idx: Any = obj
        for d in idx.index_manifest().manifests:
            add_image(idx.image(d.digest))
        put(idx.raw_manifest())
    else:
        add_image(obj)  # type: ignore[arg-type]
    desc = obj.descriptor().to_dict()
    desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (root / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [desc]})
    )


def test_skopeo_reads_what_pycrane_pushed(distribution: Any, tmp_path: Path) -> None:
    img = random_image(3, 4096, duplicate_empty_layers=1, seed=501)
    ref = f"{distribution.host}/interop/pushed:v1"
    Client().write_image(ref, img)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}")
    assert raw.encode() == img.raw_manifest()
    cfg = skopeo("inspect", "--config", "--raw", "--tls-verify=false", f"docker://{ref}")
    assert cfg.encode() == img.raw_config()
    out = tmp_path / "layout"
    skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{out}:v1")
    for layer in img.layers():
        blob = out / "blobs" / "sha256" / layer.digest().hex
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == layer.digest().hex


def test_skopeo_reads_pushed_index(distribution: Any, tmp_path: Path) -> None:
    idx = random_index(["linux/amd64", "linux/arm64"], seed=502)
    ref = f"{distribution.host}/interop/multi:v1"
    Client().write_index(ref, idx)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}")
    assert raw.encode() == idx.raw_manifest()
    out = tmp_path / "arm"
    skopeo(
        "--override-arch",
        "arm64",
        "copy",
        "--src-tls-verify=false",
        f"docker://{ref}",
        f"oci:{out}:arm",
    )
    (entry,) = json.loads((out / "index.json").read_text())["manifests"]
    arm = [d for d in idx.index_manifest().manifests if str(d.platform) == "linux/arm64"]
    assert entry["digest"] == str(arm[0].digest)


def test_pycrane_reads_what_skopeo_pushed(distribution: Any, tmp_path: Path) -> None:
    img = random_image(2, 8192, seed=503)
    layout = tmp_path / "src"
    write_layout(layout, img, "v1")
    ref = f"{distribution.host}/interop/fromskopeo:v1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{ref}")
    c = Client()
    got = c.image(ref)
    assert got.digest() == img.digest()
    assert got.raw_config() == img.raw_config()
    for mine, theirs in zip(img.layers(), got.layers(), strict=True):
        with mine.compressed() as a, theirs.compressed() as b:
            data = b.read(1 << 30)
            assert b.read(1) == b""  # EOF: the verifying stream has checked the digest
            assert data == a.read()


def test_pycrane_reads_skopeo_converted_docker_v2s2(distribution: Any, tmp_path: Path) -> None:
    img = random_image(2, 2048, seed=504)
    layout = tmp_path / "src"
    write_layout(layout, img, "v1")
    ref = f"{distribution.host}/interop/v2s2:v1"
    skopeo(
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        f"oci:{layout}:v1",
        f"docker://{ref}",
    )
    c = Client()
    got = c.image(ref)
    assert got.media_type() == mt.DOCKER_MANIFEST
    assert [layer.digest() for layer in got.layers()] == [layer.digest() for layer in img.layers()]
    assert got.config_file().diff_ids == img.config_file().diff_ids
    for layer in got.layers():
        assert layer.diff_id() in img.config_file().diff_ids


def test_pycrane_reads_skopeo_pushed_index(distribution: Any, tmp_path: Path) -> None:
    idx = random_index(["linux/amd64", "linux/arm64", "linux/arm/v7"], seed=505)
    layout = tmp_path / "idx"
    write_layout(layout, idx, "multi")
    ref = f"{distribution.host}/interop/skopeo-multi:v1"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:multi", f"docker://{ref}")
    c = Client()
    assert c.get(ref).raw == idx.raw_manifest()
    for d in idx.index_manifest().manifests:
        assert d.platform is not None
        assert c.image(ref, d.platform).digest() == d.digest


def test_remote_image_streams_into_layout_that_skopeo_reads(
    distribution: Any, tmp_path: Path
) -> None:
    """Registry -> pycrane.layout (lazy RemoteImage layers stream to disk) -> skopeo."""
    layout_mod = pytest.importorskip("pycrane.layout")
    img = random_image(2, 50_000, duplicate_empty_layers=2, seed=506)
    ref = f"{distribution.host}/interop/tolayout:v1"
    c = Client()
    c.write_image(ref, img)
    lay = layout_mod.Layout.create(tmp_path / "lay")
    lay.append_image(c.image(ref), ref_name="v1", jobs=4)
    raw = skopeo("inspect", "--raw", f"oci:{tmp_path / 'lay'}:v1")
    assert raw.encode() == img.raw_manifest()
    back = f"{distribution.host}/interop/fromlayout:v1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'lay'}:v1", f"docker://{back}")
    assert c.get(back).raw == img.raw_manifest()


def test_docker_archive_through_skopeo(distribution: Any, tmp_path: Path) -> None:
    """pycrane.tarball docker-save -> skopeo docker-archive: -> registry -> pycrane pull."""
    tarball = pytest.importorskip("pycrane.tarball")
    from pycrane.name import parse_reference

    img = random_image(2, 4096, seed=507, media_type=mt.DOCKER_MANIFEST)
    archive = tmp_path / "img.tar"
    tarball.write(archive, {parse_reference("example.com/interop/arch:v1"): img})
    ref = f"{distribution.host}/interop/archive:v1"
    skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}", f"docker://{ref}")
    got = Client().image(ref)
    assert got.config_file().diff_ids == img.config_file().diff_ids
    assert got.raw_config() == img.raw_config()
    for layer in got.layers():
        with layer.compressed() as r:
            while r.read(1 << 16):
                pass  # read to EOF: the digest is verified
        assert layer.diff_id() in img.config_file().diff_ids
