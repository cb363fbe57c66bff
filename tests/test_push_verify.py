"""Push refuses a docker tarball whose layers do not hash to the config's diff_ids (issue 11.4).

crane pushes such an image and exits 0. pycrane hashes the uncompressed stream in
the same pass that digests (or compresses) the layer, before any upload, so a fresh
CNCF distribution registry holds no blob, manifest or tag afterwards.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_cli_e2e import Cli, cli  # noqa: F401

__all__: list[str] = []


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _docker_tarball(path: Path, layer: bytes, member: str, diff_id: str) -> None:
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    manifest = json.dumps(
        [{"Config": "config.json", "RepoTags": ["bad:v1"], "Layers": [member]}]
    ).encode()
    with tarfile.open(path, "w") as t:
        for name, data in (("config.json", config), (member, layer), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def _stored(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_push_refuses_layer_not_matching_diff_id(
    cli: Cli,  # noqa: F811
    distribution_factory: Callable[..., object],
    tmp_path: Path,
    compressed: bool,
) -> None:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed")
    reg = distribution_factory()
    plain = _layer_tar({"etc/motd": b"real content\n"})
    claimed = _sha(_layer_tar({"etc/motd": b"what the config says\n"}))
    layer = gzip.compress(plain) if compressed else plain
    member = "layer.tar.gz" if compressed else "layer.tar"
    tb = tmp_path / "bad.tar"
    _docker_tarball(tb, layer, member, claimed)
    root = reg.root  # type: ignore[attr-defined]
    before = _stored(root)
    line = cli.fails("push", str(tb), reg.ref("bad/img:v1"))  # type: ignore[attr-defined]
    assert member in line and claimed in line and _sha(plain) in line, line
    assert not [p for p in _stored(root) if p not in before and "/blobs/" in "/" + p], _stored(root)
    assert not [p for p in _stored(root) if "repositories" in p]
    # The same tarball with the right diff_id pushes: the check is not over-eager.
    _docker_tarball(tb, layer, member, _sha(plain))
    assert cli.out("push", str(tb), reg.ref("bad/img:v1")).startswith(reg.ref("bad/img@"))  # type: ignore[attr-defined]


def test_push_refuses_layout_blob_not_matching_its_name(
    cli: Cli,  # noqa: F811
    distribution_factory: Callable[..., object],
    tmp_path: Path,
) -> None:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed")
    from pycrane.errors import NotFoundError
    from pycrane.layout import Layout
    from pycrane.name import Repository
    from pycrane.random import random_image
    from pycrane.remote import Client

    reg = distribution_factory()
    img = random_image(3, 4096, seed=11)
    layout = tmp_path / "layout"
    Layout.create(layout).append(img, ref_name="v1")
    bad = img.layers()[2].digest()
    blob = layout / "blobs" / bad.algorithm / bad.hex
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    root = reg.root  # type: ignore[attr-defined]
    line = cli.fails("push", str(layout), reg.ref("bad/layout:v1"))  # type: ignore[attr-defined]
    assert str(bad) in line, line
    # No blob, layer link, manifest or tag. distribution keeps a hash-state file of
    # each cancelled upload session under _uploads/ (its own purger removes them):
    # session state, not content, and invisible through the API.
    stored = [p for p in _stored(root) if "/_uploads/" not in p]
    assert not [p for p in stored if "/blobs/" in "/" + p or "repositories" in p], stored
    repo = Repository.parse(reg.ref("bad/layout"))  # type: ignore[attr-defined]
    with Client(insecure=True) as c:
        for d in [img.config_name(), *(layer.digest() for layer in img.layers())]:
            assert not c.fetcher.blob_exists(repo, d), d
        with pytest.raises(NotFoundError):
            c.list_tags(repo)


def test_layout_push_reads_each_blob_once(
    pycrane_registry: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verifying before anything is committed costs no second read of any blob."""
    from collections import Counter

    from pycrane import crane
    from pycrane.layout import BlobStore, Layout
    from pycrane.random import random_image

    img = random_image(3, 64 << 10, seed=12)
    layout = tmp_path / "layout"
    Layout.create(layout).append(img, ref_name="v1")
    opened: Counter[str] = Counter()
    real_open = BlobStore.open

    def counting_open(self: BlobStore, digest: object) -> object:
        opened[str(digest)] += 1
        return real_open(self, digest)  # type: ignore[arg-type]

    monkeypatch.setattr(BlobStore, "open", counting_open)
    ref = f"{pycrane_registry.host}/verify/once:v1"  # type: ignore[attr-defined]
    assert str(crane.push(layout, ref)).endswith(str(img.digest()))
    layers = [str(layer.digest()) for layer in img.layers()]
    assert [opened[d] for d in layers] == [1, 1, 1], opened


@pytest.mark.parametrize("chunk_size", [None, 10_000], ids=["one-patch", "chunked"])
def test_all_or_nothing_push_commits_only_when_every_blob_verified(
    pycrane_registry: object, tmp_path: Path, chunk_size: int | None
) -> None:
    """Through the library, both upload paths: a bad blob leaves no blob of the image at
    the registry; the same layout repaired pushes whole."""
    from pycrane import crane
    from pycrane.errors import DigestMismatch
    from pycrane.layout import Layout
    from pycrane.name import Repository
    from pycrane.random import random_image
    from pycrane.remote import Client

    img = random_image(3, 48 << 10, seed=13 + (chunk_size or 0))
    layout = tmp_path / "layout"
    Layout.create(layout).append(img, ref_name="v1")
    bad = img.layers()[1].digest()
    blob = layout / "blobs" / bad.algorithm / bad.hex
    good = blob.read_bytes()
    blob.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    host = pycrane_registry.host  # type: ignore[attr-defined]
    repo = Repository.parse(f"{host}/verify/chunks-{chunk_size or 0}")
    digests = [img.config_name(), *(layer.digest() for layer in img.layers())]
    with Client(chunk_size=chunk_size) as c:
        with pytest.raises(DigestMismatch, match=str(bad)):
            crane.push(layout, repo.tag("v1"), client=c)
        assert [d for d in digests if c.fetcher.blob_exists(repo, d)] == []
        blob.write_bytes(good)
        crane.push(layout, repo.tag("v1"), client=c)
        assert [d for d in digests if not c.fetcher.blob_exists(repo, d)] == []
        assert c.get(repo.tag("v1")).digest == img.digest()


@pytest.mark.parametrize("corrupt", ["layer", "none"])
def test_push_checks_an_oci_image_in_a_docker_tarball(
    cli: Cli,  # noqa: F811
    distribution_factory: Callable[..., object],
    tmp_path: Path,
    corrupt: str,
) -> None:
    """Docker 25+ tarballs embed OCI manifests: their layers are checked against the
    manifest's descriptors (and the config's diff_ids) before anything is sent."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed")
    from pycrane import tarball
    from pycrane.random import random_image

    img = random_image(3, 8192, seed=14)
    tb = tmp_path / "oci.tar"
    tarball.write(tb, {"example.com/oci:1": img})
    bad = img.layers()[1].digest()
    if corrupt == "layer":
        with tarfile.open(tb) as t:
            member = t.getmember(f"blobs/sha256/{bad.hex}")
        with open(tb, "r+b") as f:
            f.seek(member.offset_data + 10)
            byte = f.read(1)
            f.seek(member.offset_data + 10)
            f.write(bytes([byte[0] ^ 0xFF]))
    reg = distribution_factory()
    root = reg.root  # type: ignore[attr-defined]
    target = reg.ref("oci/tar:v1")  # type: ignore[attr-defined]
    if corrupt == "none":
        assert cli.out("push", str(tb), target).endswith(str(img.digest()))
        return
    line = cli.fails("push", str(tb), target)
    assert str(bad) in line and "digest mismatch" in line, line
    stored = [p for p in _stored(root) if "/_uploads/" not in p]  # see the layout test
    assert not [p for p in stored if "/blobs/" in "/" + p or "repositories" in p], stored


def test_all_or_nothing_push_survives_an_expired_session(
    pycrane_registry: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session the registry expired before its commit is sent again the usual way.

    pycrane's registry forgets idle sessions when a new one starts: with no idle time
    allowed, each staged session is gone by the time the next blob starts.
    """
    from pycrane import crane
    from pycrane.layout import Layout
    from pycrane.name import Repository
    from pycrane.random import random_image
    from pycrane.registry import storage
    from pycrane.remote import Client

    monkeypatch.setattr(storage, "UPLOAD_IDLE_LIMIT", -1.0)
    img = random_image(2, 32 << 10, seed=15)
    layout = tmp_path / "layout"
    Layout.create(layout).append(img, ref_name="v1")
    repo = Repository.parse(f"{pycrane_registry.host}/verify/expired")  # type: ignore[attr-defined]
    with Client() as c:
        assert str(crane.push(layout, repo.tag("v1"), jobs=1, client=c)).endswith(str(img.digest()))
        digests = [img.config_name(), *(layer.digest() for layer in img.layers())]
        assert [d for d in digests if not c.fetcher.blob_exists(repo, d)] == []
