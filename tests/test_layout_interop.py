"""What pycrane writes, skopeo and umoci read; what they write, pycrane reads."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from pycrane.layout import Layout
from pycrane.random import random_image, random_index

pytestmark = pytest.mark.interop

skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
umoci = pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed")


def run(*args: str | Path) -> str:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc.stdout


def _policy(tmp_path: Path) -> Path:
    p = tmp_path / "policy.json"
    p.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return p


@skopeo
def test_skopeo_reads_and_copies_what_pycrane_writes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    lay = Layout.create(src)
    img = random_image(2, 4096, duplicate_empty_layers=3, seed=1)
    lay.append_image(img, ref_name="latest")
    idx = random_index(seed=2)
    lay.append_index(idx, ref_name="multi")
    info = json.loads(run("skopeo", "inspect", f"oci:{src}:latest"))
    assert info["Digest"] == str(img.digest())
    assert info["Layers"] == [str(x.digest()) for x in img.layers()]
    pol = _policy(tmp_path)
    dst = tmp_path / "dst"
    run("skopeo", "--policy", pol, "copy", f"oci:{src}:latest", f"oci:{dst}:copied")
    run("skopeo", "--policy", pol, "copy", "--all", f"oci:{src}:multi", f"oci:{dst}:multi")
    out = Layout.open(dst)
    assert out.validate() == []
    got = out.image("copied")
    assert [x.digest() for x in got.layers()] == [x.digest() for x in img.layers()]
    assert got.raw_config() == img.raw_config()
    assert out.image_index("multi").digest() == idx.digest()


@skopeo
def test_pycrane_appends_to_a_skopeo_layout_and_skopeo_still_reads_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    Layout.create(src).append_image(random_image(1, 100, seed=3), ref_name="a")
    pol = _policy(tmp_path)
    dst = tmp_path / "skopeo-made"
    run("skopeo", "--policy", pol, "copy", f"oci:{src}:a", f"oci:{dst}:a")
    lay = Layout.open(dst)
    img = random_image(1, 100, seed=4)
    lay.append_image(img, ref_name="b")
    assert lay.validate() == []
    info = json.loads(run("skopeo", "inspect", f"oci:{dst}:b"))
    assert info["Digest"] == str(img.digest())
    run("skopeo", "inspect", f"oci:{dst}:a")


@umoci
def test_umoci_unpacks_what_pycrane_writes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    lay = Layout.create(src)
    img = random_image(2, 1000, duplicate_empty_layers=2, seed=5)
    lay.append_image(img, ref_name="latest")
    assert "latest" in run("umoci", "ls", "--layout", src).split()
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--rootless", "--image", f"{src}:latest", bundle)
    names = set()
    for layer in img.layers():
        with layer.uncompressed() as f, tarfile.open(fileobj=f, mode="r|") as tar:
            names |= {m.name for m in tar}
    assert names and all((bundle / "rootfs" / n).exists() for n in names)
    # umoci's gc must not mind pycrane's extra files (ingest/, index.json.lock)...
    run("umoci", "gc", "--layout", src)
    # ...and must not have removed anything pycrane's image needs.
    assert Layout.open(src).validate() == []


@umoci
def test_pycrane_reads_what_umoci_writes(tmp_path: Path) -> None:
    lay_dir = tmp_path / "umoci"
    run("umoci", "init", "--layout", lay_dir)
    run("umoci", "new", "--image", f"{lay_dir}:base")
    payload = tmp_path / "hello.txt"
    payload.write_text("hello from umoci\n")
    run("umoci", "insert", "--rootless", "--image", f"{lay_dir}:base", payload, "/hello.txt")
    lay = Layout.open(lay_dir)
    assert lay.validate() == []
    img = lay.image("base")
    (layer,) = img.layers()
    with layer.compressed() as f:
        raw = gzip.decompress(f.read())
    assert b"hello from umoci" in raw
    assert img.config_file().diff_ids == (layer.diff_id(),)
    # pycrane can tag into it and umoci sees the new tag
    lay.append_image(img, ref_name="again")
    assert {"base", "again"} <= set(run("umoci", "ls", "--layout", lay_dir).split())
