"""skopeo (containers/image) pushes to and pulls from pycrane's registry, digests kept.

The source images are built by umoci (an OCI layout) and by hand as a
``docker save`` tarball, so neither side of the test is pycrane's own client.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pycrane.registry import RegistryServer

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        shutil.which("skopeo") is None or shutil.which("umoci") is None,
        reason="needs skopeo and umoci",
    ),
]


def run(*args: str | os.PathLike[str]) -> str:
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{args}: {p.stderr}"
    return p.stdout


def skopeo(*args: str | os.PathLike[str]) -> str:
    return run("skopeo", "--insecure-policy", *args)


def umoci_image(tmp: Path, tag: str = "v1") -> Path:
    """An OCI layout with two layers (one of them 4 MiB of random bytes)."""
    layout = tmp / "umoci"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:{tag}")
    src = tmp / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hello").write_text("hello from umoci\n")
    run("umoci", "insert", "--image", f"{layout}:{tag}", src / "etc", "/etc")
    (src / "data").mkdir()
    (src / "data" / "random.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    run("umoci", "insert", "--image", f"{layout}:{tag}", src / "data", "/data")
    return layout


def layout_manifest(layout: Path) -> tuple[str, bytes]:
    index = json.loads((layout / "index.json").read_bytes())
    digest = index["manifests"][0]["digest"]
    return digest, (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def docker_archive(path: Path) -> None:
    """A ``docker save`` tarball with one layer, written with tarfile."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as t:
        data = b"docker archive layer\n" * 1000
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    layer = layer_buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": ["demo:latest"], "Layers": ["layer/layer.tar"]}]
    ).encode()
    with tarfile.open(path, "w") as t:
        for name, blob in [
            (config_name, config),
            ("layer/layer.tar", layer),
            ("manifest.json", manifest),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))


def inspect_raw(ref: str, *extra: str) -> bytes:
    p = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", *extra, ref],
        capture_output=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_skopeo_push_and_pull_oci_layout(tmp_path: Path, storage: str) -> None:
    layout = umoci_image(tmp_path)
    digest, raw = layout_manifest(layout)
    disk = tmp_path / "disk" if storage == "disk" else None
    with RegistryServer(disk=disk) as reg:
        dest = f"docker://{reg.host}/interop/umoci:v1"
        skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", dest)
        # The registry serves exactly the bytes skopeo pushed: the digest is kept.
        assert inspect_raw(dest) == raw
        assert inspect_raw(f"docker://{reg.host}/interop/umoci@{digest}") == raw
        out = tmp_path / "pulled"
        skopeo("copy", "--src-tls-verify=false", dest, f"oci:{out}:v1")
        pulled_digest, pulled_raw = layout_manifest(out)
        assert (pulled_digest, pulled_raw) == (digest, raw)
        for layer in json.loads(raw)["layers"]:
            hexd = layer["digest"].split(":")[1]
            blob = (out / "blobs" / "sha256" / hexd).read_bytes()
            assert hashlib.sha256(blob).hexdigest() == hexd
        tags = json.loads(
            skopeo("list-tags", "--tls-verify=false", f"docker://{reg.host}/interop/umoci")
        )
        assert tags["Tags"] == ["v1"]
        # Registry to registry inside the server: skopeo mounts or re-uploads, digests kept.
        skopeo(
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            dest,
            f"docker://{reg.host}/interop/copy:v1",
        )
        assert inspect_raw(f"docker://{reg.host}/interop/copy:v1") == raw
        # skopeo delete removes the manifest by digest: the tag goes with it.
        skopeo("delete", "--tls-verify=false", f"docker://{reg.host}/interop/copy:v1")
        p = subprocess.run(
            [
                "skopeo",
                "inspect",
                "--raw",
                "--tls-verify=false",
                f"docker://{reg.host}/interop/copy:v1",
            ],
            capture_output=True,
            text=True,
        )
        assert p.returncode != 0 and "manifest unknown" in p.stderr.lower()
        assert inspect_raw(dest) == raw  # the other repository keeps its own


def test_skopeo_docker_archive_with_auth_and_tls(
    tmp_path: Path, pycrane_registry_factory: Any
) -> None:
    archive = tmp_path / "image.tar"
    docker_archive(archive)
    reg = pycrane_registry_factory(disk=True, username="skopeo", password="s3cret", tls=True)
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(reg.ca_cert, certs / "ca.crt")
    creds = "skopeo:s3cret"
    dest = f"docker://{reg.host}/interop/archive:latest"
    skopeo(
        "copy", "--dest-cert-dir", certs, "--dest-creds", creds, f"docker-archive:{archive}", dest
    )
    raw = inspect_raw(dest, "--cert-dir", str(certs), "--creds", creds)
    manifest = json.loads(raw)
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    # Without credentials the registry refuses.
    p = subprocess.run(
        ["skopeo", "inspect", "--raw", "--cert-dir", str(certs), dest], capture_output=True
    )
    assert p.returncode != 0
    out = tmp_path / "out.tar"
    skopeo("copy", "--src-cert-dir", certs, "--src-creds", creds, dest, f"docker-archive:{out}")
    with tarfile.open(out) as t:
        names = t.getnames()
    assert "manifest.json" in names


def _write_blob(layout: Path, data: bytes) -> dict[str, Any]:
    hexd = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / hexd).write_bytes(data)
    return {"digest": f"sha256:{hexd}", "size": len(data)}


def multi_arch_layout(root: Path) -> tuple[Path, bytes]:
    """An OCI layout, written by hand, whose tag names an index of two platform images."""
    import gzip

    layout = root / "multi"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    children = []
    for arch in ("amd64", "arm64"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            data = f"hello {arch}\n".encode() * 100
            info = tarfile.TarInfo(f"{arch}.txt")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        tar = buf.getvalue()
        layer = _write_blob(layout, gzip.compress(tar, mtime=0))
        config = {
            "architecture": arch,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        }
        cfg = _write_blob(layout, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
        }
        desc = _write_blob(layout, json.dumps(manifest, indent=1).encode())
        children.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **desc,
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children,
    }
    raw = json.dumps(index, indent=2).encode()
    desc = _write_blob(layout, raw)
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                **desc,
                "annotations": {"org.opencontainers.image.ref.name": "multi"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(top))
    return layout, raw


def test_skopeo_copies_a_multi_arch_index(tmp_path: Path) -> None:
    layout, raw = multi_arch_layout(tmp_path)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    with RegistryServer(disk=tmp_path / "disk") as reg:
        dest = f"docker://{reg.host}/interop/multi:v1"
        skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:multi", dest)
        assert inspect_raw(dest) == raw
        for child in json.loads(raw)["manifests"]:
            got = inspect_raw(f"docker://{reg.host}/interop/multi@{child['digest']}")
            assert "sha256:" + hashlib.sha256(got).hexdigest() == child["digest"]
        out = tmp_path / "back"
        skopeo("copy", "--all", "--src-tls-verify=false", dest, f"oci:{out}:multi")
        index = json.loads((out / "index.json").read_bytes())
        assert index["manifests"][0]["digest"] == digest
        # Pulling one platform by the index's tag picks the child, as a client would.
        one = tmp_path / "one"
        skopeo(
            "--override-arch",
            "arm64",
            "copy",
            "--src-tls-verify=false",
            dest,
            f"oci:{one}:one",
        )
        arm = json.loads((one / "index.json").read_bytes())["manifests"][0]["digest"]
        assert arm == json.loads(raw)["manifests"][1]["digest"]
