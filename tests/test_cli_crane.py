"""``pycrane.crane``, the facade the CLI runs, used in-process from Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pycrane import crane
from pycrane.cli import main
from pycrane.errors import ManifestError, NoMatchingPlatform, NotFoundError, VerificationError
from pycrane.layout import Layout
from pycrane.random import random_image, random_index
from pycrane.remote import Client
from pycrane.v1.image import is_index


@pytest.fixture
def client() -> Any:
    with Client() as c:
        yield c


def test_push_pull_round_trip_in_every_format(
    pycrane_registry: Any, tmp_path: Path, client: Client
) -> None:
    idx = random_index(("linux/amd64", "linux/arm64"), seed=21)
    src = tmp_path / "src"
    Layout.create(src).append(idx, ref_name="v1")
    ref = f"{pycrane_registry.host}/crane/idx:v1"
    pushed = crane.push(src, ref, client=client)
    assert str(pushed) == f"{pycrane_registry.host}/crane/idx@{idx.digest()}"

    whole = crane.image_or_index(ref, client=client)
    assert is_index(whole) and whole.digest() == idx.digest()
    arm = crane.image_or_index(ref, ["linux/arm64"], client=client)
    assert not is_index(arm)
    with pytest.raises(NoMatchingPlatform, match="linux/amd64, linux/arm64"):
        crane.image_or_index(ref, ["linux/s390x", "linux/ppc64le"], client=client)

    crane.pull(
        [ref],
        tmp_path / "oci",
        format="oci",
        platforms=["linux/amd64", "linux/arm64"],
        client=client,
    )
    (entry,) = Layout.open(tmp_path / "oci").descriptors()
    assert entry.digest == idx.digest()  # both platforms kept: the filtered index is the same
    crane.validate_path(tmp_path / "oci")

    crane.pull([ref], tmp_path / "arm.tar", platforms=["linux/arm64"], client=client)
    crane.validate_path(tmp_path / "arm.tar")
    assert crane.load(tmp_path / "arm.tar").digest() == arm.digest()
    with pytest.raises(ManifestError, match="single images"):
        crane.pull(
            [ref], tmp_path / "x.tar", platforms=["linux/amd64", "linux/arm64"], client=client
        )
    assert not (tmp_path / "x.tar").exists()


def test_load_needs_index_for_several_entries(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path / "l")
    layout.append(random_image(1, 10, seed=1), ref_name="a")
    layout.append(random_image(1, 10, seed=2), ref_name="b")
    with pytest.raises(ManifestError, match="found 2"):
        crane.load(tmp_path / "l")
    assert is_index(crane.load(tmp_path / "l", index=True))


def test_validate_catches_a_corrupt_blob(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = random_image(2, 4096, seed=3)
    Layout.create(tmp_path / "l").append(img, ref_name="v1")
    assert main(["validate", "--layout", str(tmp_path / "l")]) == 0
    assert capsys.readouterr().out == f"PASS: {tmp_path / 'l'}\n"
    blob = tmp_path / "l" / "blobs" / "sha256" / img.manifest().layers[1].digest.hex
    data = bytearray(blob.read_bytes())
    data[-5] ^= 1
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    with pytest.raises(VerificationError):
        crane.validate_path(tmp_path / "l")
    assert main(["validate", "--layout", str(tmp_path / "l")]) == 1
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err.startswith(f"pycrane: error: FAIL: {tmp_path / 'l'}: ")
    assert img.manifest().layers[1].digest.hex[:12] in cap.err


def test_cache_serves_repeat_pulls_from_disk(
    pycrane_registry: Any, tmp_path: Path, client: Client
) -> None:
    img = random_image(2, 2048, seed=9)
    src = tmp_path / "src"
    Layout.create(src).append(img, ref_name="v1")
    ref = f"{pycrane_registry.host}/crane/cached:v1"
    crane.push(src, ref, client=client)
    cache = tmp_path / "cache"
    crane.pull([ref], tmp_path / "a", format="oci", cache_path=cache, client=client)
    assert sorted(p.name for p in (cache / "blobs" / "sha256").iterdir()) == sorted(
        d.digest.hex for d in img.manifest().layers
    )
    # Delete the layer blobs from the registry: a cached pull still works, a plain one cannot.
    import urllib3

    http = urllib3.PoolManager()
    for d in img.manifest().layers:
        r = http.request("DELETE", f"{pycrane_registry.url}/v2/crane/cached/blobs/{d.digest}")
        assert r.status in (202, 204), r.status
    crane.pull([ref], tmp_path / "b.tar", cache_path=cache, client=client)
    crane.validate_path(tmp_path / "b.tar")
    with pytest.raises(NotFoundError):
        crane.pull([ref], tmp_path / "c.tar", client=client)
    assert not (tmp_path / "c.tar").exists()


def test_layout_gc_removes_only_unreferenced_blobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keep, drop = random_image(2, 512, seed=31), random_image(2, 512, seed=32)
    layout = Layout.create(tmp_path / "l")
    layout.append(keep, ref_name="keep")
    layout.append(drop, ref_name="drop")
    layout.remove_descriptors(lambda d: d.ref_name == "drop")
    assert main(["layout", "gc", str(tmp_path / "l")]) == 0
    removed = set(capsys.readouterr().out.split())
    expected = {str(d.digest) for d in drop.manifest().layers} | {
        str(drop.digest()),
        str(drop.manifest().config.digest),
    }
    assert removed == expected
    assert main(["validate", "--layout", str(tmp_path / "l")]) == 0
    assert main(["layout", "gc", str(tmp_path / "l")]) == 0
    assert capsys.readouterr().out == f"PASS: {tmp_path / 'l'}\n"  # second gc: nothing left
