"""pycrane's registry server with Docker as the client: docker pull and docker push."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pycrane import Client, mutate, random_image
from pycrane.registry import RegistryServer
from pycrane.remote import Keychain
from pycrane.validate import validate_image
from tests.fixtures_docker import Docker
from tests.test_export_helpers import E, layer_of

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("dockerd") is None, reason="dockerd is not installed"),
]


def _rootfs(path: Path, seed: int) -> Path:
    """A small root filesystem tarball for ``docker import`` (Docker compresses it itself)."""
    with tarfile.open(path, "w") as t:
        for name, data in (("etc/hello", b"hi\n"), ("bin/tool", bytes(range(256)) * (seed + 40))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(params=["memory", "disk"])
def registry(
    request: pytest.FixtureRequest, pycrane_registry_factory: Callable[..., RegistryServer]
) -> Any:
    return pycrane_registry_factory(disk=request.param == "disk")


def test_docker_pulls_from_our_registry(docker: Docker, registry: Any) -> None:
    img = mutate.append_layers(
        random_image(2, 100_000, duplicate_empty_layers=2, seed=41),
        [layer_of([E("etc", "d"), E("etc/hello", "f", b"hi\n")])],
    )
    ref = f"{registry.host}/docker/pull:1"
    Client().write_image(ref, img)
    docker.run("pull", ref)
    info = docker.inspect(ref)
    assert info["Id"] == str(img.config_name())
    assert f"{registry.host}/docker/pull@{img.digest()}" in info["RepoDigests"]
    docker.run("rmi", ref)


def test_docker_pushes_to_our_registry(docker: Docker, registry: Any, tmp_path: Path) -> None:
    ref = f"{registry.host}/docker/push:1"
    docker.run("import", str(_rootfs(tmp_path / "rootfs.tar", 1)), ref)
    out = docker.run("push", ref).stdout
    m = re.search(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)", out)
    assert m, out
    c = Client()
    desc = c.head(ref)
    assert (str(desc.digest), desc.size) == (m.group(1), int(m.group(2)))
    img = c.image(ref)
    validate_image(img)
    assert str(img.config_name()) == docker.inspect(ref)["Id"]
    # A second repository gets the layer by cross-repository mount, and pulls back.
    other = f"{registry.host}/docker/other:2"
    docker.run("tag", ref, other)
    assert "Mounted from docker/push" in docker.run("push", other).stdout
    assert c.head(other).digest == desc.digest
    docker.run("rmi", ref, other)
    docker.run("pull", other)
    assert docker.inspect(other)["Id"] == str(img.config_name())
    docker.run("rmi", other)


def test_logins_are_shared_with_docker(
    docker: Docker, pycrane_registry_factory: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    """What docker login stores, pycrane uses; what pycrane auth login stores, docker uses."""
    reg = pycrane_registry_factory(username="ci", password="s3cret")
    ref = f"{reg.host}/docker/shared:1"
    by_docker, by_pycrane = tmp_path / "by-docker", tmp_path / "by-pycrane"
    d = docker.with_config(by_docker)
    d.run("import", str(_rootfs(tmp_path / "rootfs.tar", 3)), ref)
    refused = d.run("push", ref, check=False)
    assert refused.returncode != 0 and "auth" in refused.stderr.lower()
    d.run("login", "-u", "ci", "--password-stdin", reg.host, stdin="s3cret\n")
    d.run("push", ref)
    img = Client(keychain=Keychain(env={"DOCKER_CONFIG": str(by_docker)})).image(ref)
    assert str(img.config_name()) == d.inspect(ref)["Id"]
    d.run("rmi", ref)

    env = {**os.environ, "DOCKER_CONFIG": str(by_pycrane)}
    login = [sys.executable, "-m", "pycrane", "auth", "login", "-u", "ci", "--password-stdin"]
    subprocess.run([*login, reg.host], input=b"s3cret", env=env, check=True, timeout=60)
    d = docker.with_config(by_pycrane)
    d.run("pull", ref)
    assert d.inspect(ref)["Id"] == str(img.config_name())
    d.run("rmi", ref)
