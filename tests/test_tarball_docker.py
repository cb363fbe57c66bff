"""docker-save tarballs exchanged with Docker itself (Moby's own loader, not containers/image)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pycrane import mutate, random_image, tarball
from pycrane.random import image_from_layers
from pycrane.v1 import mediatypes as mt
from pycrane.v1.image import Image
from pycrane.validate import validate_image
from tests.fixtures_docker import Docker
from tests.test_export_helpers import E, layer_of

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("dockerd") is None, reason="dockerd is not installed"),
]


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
