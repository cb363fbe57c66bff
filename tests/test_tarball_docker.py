"""docker-save tarballs exchanged with Docker itself (Moby's own loader, not containers/image).

A private ``dockerd`` (vfs storage, no networking) is started for the module; the tests
skip when it cannot run here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycrane import mutate, random_image, tarball
from pycrane.random import image_from_layers
from pycrane.v1 import mediatypes as mt
from pycrane.v1.image import Image
from pycrane.validate import validate_image
from tests.test_export_helpers import E, layer_of

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("dockerd") is None, reason="dockerd is not installed"),
]


class Docker:
    def __init__(self, cli: str, sock: Path) -> None:
        self.cli, self.host = cli, f"unix://{sock}"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [self.cli, "-H", self.host, *args], capture_output=True, text=True, timeout=300
        )
        if check:
            assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr.strip()}"
        return r

    def inspect(self, ref: str) -> dict:
        return json.loads(self.run("image", "inspect", ref).stdout)[0]


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    dockerd = shutil.which("dockerd")
    assert dockerd is not None
    # The CLI packaged next to the daemon speaks its API version.
    sibling = Path(dockerd).resolve().parent.parent / "bin" / "docker"
    cli = str(sibling) if sibling.exists() else shutil.which("docker")
    if cli is None:
        pytest.skip("no docker CLI")
    root = tmp_path_factory.mktemp("dockerd")
    sock = root / "docker.sock"
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 - closed at teardown
    argv = [dockerd, "--storage-driver", "vfs", "--iptables=false", "--ip-masq=false"]
    argv += ["--bridge=none", "-H", f"unix://{sock}", "--pidfile", str(root / "dockerd.pid")]
    argv += ["--data-root", str(root / "data"), "--exec-root", str(root / "exec")]
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    d = Docker(cli, sock)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "dockerd.log").read_text(errors="replace")[-600:]
                pytest.skip(f"dockerd does not run here: {tail}")
            if sock.exists() and d.run("version", check=False).returncode == 0:
                break
            time.sleep(0.2)
        yield d
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def images() -> list:
    return [
        pytest.param(random_image(3, 3000, duplicate_empty_layers=2, seed=31), id="oci-dup-empty"),
        pytest.param(
            random_image(2, 1000, seed=32, media_type=mt.DOCKER_MANIFEST), id="docker-manifest"
        ),
        pytest.param(
            mutate.append_layers(
                random_image(1, 500, seed=33),
                [layer_of([E("etc", "d"), E("etc/hello", "f", b"hi\n")])],
            ),
            id="with-files",
        ),
    ]


def _check_loaded(d: Docker, ref: str, img: Image) -> None:
    info = d.inspect(ref)
    # The image ID is the config digest; the layers are the diff_ids, in order.
    assert info["Id"] == str(img.config_name())
    assert info["RootFS"]["Layers"] == [str(x) for x in img.config_file().diff_ids]
    assert ref in info["RepoTags"]


@pytest.mark.parametrize("img", images())
def test_docker_loads_our_tarball(docker: Docker, img: Image, tmp_path: Path) -> None:
    out = tmp_path / "img.tar"
    tag = f"example.com/pycrane/load-{img.config_name().hex[:8]}"
    tarball.write(out, {f"{tag}:1": img, f"{tag}:2": img})
    loaded = docker.run("load", "-i", str(out)).stdout
    assert f"Loaded image: {tag}:1" in loaded and f"Loaded image: {tag}:2" in loaded
    _check_loaded(docker, f"{tag}:1", img)
    _check_loaded(docker, f"{tag}:2", img)


def test_docker_loads_our_legacy_tarball(docker: Docker, tmp_path: Path) -> None:
    img = random_image(3, 2000, duplicate_empty_layers=1, seed=34, media_type=mt.DOCKER_MANIFEST)
    out = tmp_path / "legacy.tar"
    tarball.write_legacy(out, {"example.com/pycrane/legacy:1": img})
    docker.run("load", "-i", str(out))
    _check_loaded(docker, "example.com/pycrane/legacy:1", img)


def test_we_read_what_docker_saves(docker: Docker, tmp_path: Path) -> None:
    img = image_from_layers(
        [layer_of([E("a", "f", b"a" * 100)]), layer_of([E("b", "d"), E("b/c", "f", b"c")])]
    )
    src, saved = tmp_path / "src.tar", tmp_path / "saved.tar"
    tarball.write(src, {"example.com/pycrane/saved:1": img})
    docker.run("load", "-i", str(src))
    docker.run("tag", "example.com/pycrane/saved:1", "example.com/pycrane/saved:2")
    tags = ("example.com/pycrane/saved:1", "example.com/pycrane/saved:2")
    docker.run("save", "-o", str(saved), *tags)
    for tag in tags:
        back = tarball.image_from_path(saved, tag)
        # Docker keeps the config bytes (the image ID), so they come back unchanged.
        assert back.config_name() == img.config_name()
        assert [x.diff_id() for x in back.layers()] == list(img.config_file().diff_ids)
        validate_image(back)
