"""Image transforms: each returns a new lazy image and leaves its input alone."""

from __future__ import annotations

import datetime as dt
import io
import os
import tarfile
from pathlib import Path

import pytest

from pycrane import mutate, random_image, random_index, tarball
from pycrane.errors import ManifestError
from pycrane.mutate import ANNOTATION_BASE_DIGEST, ANNOTATION_BASE_NAME
from pycrane.random import image_from_layers
from pycrane.v1 import mediatypes as mt
from pycrane.v1.config import ConfigFile
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.image import Image, SimpleIndex
from pycrane.v1.platform import Platform
from pycrane.validate import validate, validate_image
from tests.test_export_helpers import E, layer_of, tar_bytes


def test_append_layers(tmp_path: Path) -> None:
    base = random_image(2, 500, seed=1)
    before = base.raw_manifest()
    new = layer_of([E("app", "f", b"app")])
    img = mutate.append_layers(base, [new], history=[{"created_by": "COPY app /"}])
    assert base.raw_manifest() == before
    assert [x.digest() for x in img.layers()] == [
        *(x.digest() for x in base.layers()),
        new.digest(),
    ]
    cfg = img.config_file()
    assert cfg.diff_ids == (*base.config_file().diff_ids, new.diff_id())
    assert cfg.history[-1].created_by == "COPY app /"
    assert img.layer_by_digest(new.digest()).digest() == new.digest()
    # base layer descriptors are kept byte for byte
    assert img.manifest().to_dict()["layers"][:2] == base.manifest().to_dict()["layers"]
    validate_image(img)
    with pytest.raises(ValueError, match="2 history entries for 1 layers"):
        mutate.append_layers(base, [new], history=[None, None])


def test_append_to_docker_image_uses_docker_layer_type() -> None:
    base = random_image(1, 100, seed=2, media_type=mt.DOCKER_MANIFEST)
    img = mutate.append_layers(base, [layer_of([E("x", "f", b"x")])])
    assert img.manifest().layers[-1].media_type == mt.DOCKER_LAYER
    assert img.layers()[-1].media_type() == mt.DOCKER_LAYER
    validate_image(img)


def test_append_many_plain_tar_files_compresses_each_once(tmp_path: Path) -> None:
    paths = []
    for i in range(4):
        p = tmp_path / f"l{i}.tar"
        p.write_bytes(tar_bytes([E(f"f{i}", "f", bytes([i]) * 200_000)]))
        paths.append(p)
    layers = [tarball.layer_from_file(p) for p in paths]
    img = mutate.append_layers(random_image(0, seed=3), layers)
    assert len(img.layers()) == 4
    validate_image(img)


def test_config_changes() -> None:
    base_cfg = ConfigFile.new(Platform("linux", "amd64")).to_dict()
    base_cfg["config"] = {
        "Env": ["PATH=/bin", "A=1"],
        "Labels": {"keep": "1", "drop": "2"},
        "Cmd": ["sh"],
    }
    base_cfg["x-unknown"] = {"kept": True}
    base = mutate.set_config_file(random_image(0, seed=4), ConfigFile.from_dict(base_cfg))
    img = mutate.config(
        base,
        entrypoint=["/app"],
        cmd=None,
        env={"PATH": "/usr/bin:/bin", "NEW": "x"},
        labels={"drop": None, "add": "3"},
        user="1000:1000",
        workdir="/srv",
        exposed_ports=["80", "53/udp"],
        volumes=["/data"],
        platform="linux/arm64/v8",
        created=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
    )
    cfg = img.config_file()
    rc = cfg.config
    assert rc["Entrypoint"] == ["/app"] and rc["Cmd"] is None
    assert rc["Env"] == ["PATH=/usr/bin:/bin", "A=1", "NEW=x"]
    assert rc["Labels"] == {"keep": "1", "add": "3"}
    assert rc["User"] == "1000:1000" and rc["WorkingDir"] == "/srv"
    assert rc["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert rc["Volumes"] == {"/data": {}}
    assert (cfg.os, cfg.architecture, cfg.variant) == ("linux", "arm64", "v8")
    assert cfg.created == "2024-01-02T03:04:05Z"
    assert cfg.data["x-unknown"] == {"kept": True}
    assert base.config_file().config["Cmd"] == ["sh"]  # the input is untouched
    validate_image(img)
    assert mutate.created_at(base, 0).config_file().created == "1970-01-01T00:00:00Z"
    assert mutate.config(base, env=["B=2"]).config_file().config["Env"][-1] == "B=2"


def test_set_config_file_keeps_bytes_and_checks_diff_ids() -> None:
    base = random_image(2, 100, seed=5)
    raw = base.raw_config().replace(b"{", b'{ "x" : 1 ,', 1)
    img = mutate.set_config_file(base, raw)
    assert img.raw_config() == raw
    with pytest.raises(ManifestError, match="0 diff_ids for an image of 2 layers"):
        mutate.set_config_file(base, ConfigFile.new())


def test_annotations_on_image_and_index() -> None:
    img = random_image(1, 100, seed=6)
    a = mutate.annotations(img, {"org.example": "1"})
    assert a.manifest().annotations == {"org.example": "1"}
    b = mutate.annotations(a, {"org.example": None})
    assert b.manifest().annotations == {}
    idx = random_index(seed=7)
    ai = mutate.annotations(idx, {"org.opencontainers.image.title": "t"})
    assert ai.index_manifest().annotations == {"org.opencontainers.image.title": "t"}
    assert ai.index_manifest().manifests == idx.index_manifest().manifests
    validate(ai)


def test_media_type_conversion() -> None:
    oci = random_image(2, 100, seed=8)
    docker = mutate.media_type(oci, mt.DOCKER_MANIFEST)
    m = docker.manifest()
    assert m.media_type == mt.DOCKER_MANIFEST and m.config.media_type == mt.DOCKER_CONFIG
    assert {d.media_type for d in m.layers} == {mt.DOCKER_LAYER}
    assert [d.digest for d in m.layers] == [d.digest for d in oci.manifest().layers]
    validate_image(docker)
    back = mutate.media_type(docker, mt.OCI_MANIFEST)
    assert back.digest() == oci.digest()  # same document again, same digest
    zstd = image_from_layers([layer_of([E("a", "f", b"a")], "zstd")])
    with pytest.raises(ManifestError, match="zstd layers cannot be in a Docker manifest"):
        mutate.media_type(zstd, mt.DOCKER_MANIFEST).raw_manifest()
    idx = mutate.media_type(random_index(seed=9), mt.DOCKER_MANIFEST_LIST)
    assert idx.media_type() == mt.DOCKER_MANIFEST_LIST
    with pytest.raises(ManifestError, match="expected an index media type"):
        mutate.media_type(random_index(seed=9), mt.OCI_MANIFEST)


def _bases() -> tuple[Image, Image, Image]:
    old = random_image(2, 300, seed=10)
    new = random_image(3, 300, seed=11, platform=Platform("linux", "arm64"))
    app = mutate.append_layers(
        old, [layer_of([E("app", "f", b"app")])], history=[{"created_by": "app"}]
    )
    return old, new, app


def test_rebase() -> None:
    old, new, app = _bases()
    out = mutate.rebase(app, old, new)
    assert [x.digest() for x in out.layers()] == [
        *(x.digest() for x in new.layers()),
        app.layers()[-1].digest(),
    ]
    cfg = out.config_file()
    assert cfg.architecture == "arm64"
    assert len(cfg.history) == len(new.config_file().history) + 1
    assert cfg.history[-1].created_by == "app"
    validate_image(out)


def test_rebase_refuses_an_image_not_built_on_old_base() -> None:
    old, new, app = _bases()
    with pytest.raises(ManifestError, match=r"not based on .*: layer 0 is"):
        mutate.rebase(app, new, old)
    with pytest.raises(ManifestError, match="the image only"):
        mutate.rebase(old, app, new)


def test_rebase_infers_bases_from_annotations() -> None:
    old, new, app = _bases()
    with pytest.raises(ManifestError, match="cannot infer the base images"):
        mutate.rebase(app)
    annotated = mutate.annotations(
        app, {ANNOTATION_BASE_NAME: "example.com/base:1", ANNOTATION_BASE_DIGEST: str(old.digest())}
    )
    with pytest.raises(ManifestError, match="pass resolve="):
        mutate.rebase(annotated)
    registry = {f"example.com/base@{old.digest()}": old, "example.com/base:1": new}
    out = mutate.rebase(annotated, resolve=registry.__getitem__)
    assert out.layers()[0].digest() == new.layers()[0].digest()
    assert out.manifest().annotations[ANNOTATION_BASE_DIGEST] == str(new.digest())
    validate_image(out)


def _files(img: Image) -> dict[str, bytes]:
    out = {}
    with mutate.extract(img) as r, tarfile.open(fileobj=r, mode="r|") as t:
        for m in t:
            f = t.extractfile(m)
            out[m.name] = f.read() if f else b""
    return out


def test_flatten_image_is_reproducible() -> None:
    img = image_from_layers(
        [layer_of([E("a", "f", b"1"), E("b", "f", b"b")]), layer_of([E(".wh.b"), E("c", "d")])]
    )
    flat = mutate.flatten(img)
    assert len(flat.layers()) == 1
    assert flat.digest() == mutate.flatten(img).digest()
    assert _files(flat) == _files(img) == {"a": b"1", "c": b""}
    assert len(flat.config_file().history) == 1
    validate_image(flat)
    z = mutate.flatten(img, compression="zstd")
    assert z.layers()[0].media_type() == mt.OCI_LAYER_ZSTD
    validate_image(z)


def test_flatten_index_drops_attestations() -> None:
    idx = random_index(seed=12)
    att = random_image(1, 50, seed=13)
    att_desc = Descriptor(
        media_type=att.media_type(),
        digest=att.digest(),
        size=att.size(),
        annotations={"vnd.docker.reference.type": "attestation-manifest"},
        platform=Platform("unknown", "unknown"),
    )
    children = [(d, idx.image(d.digest)) for d in idx.index_manifest().manifests]
    with_att = SimpleIndex.build([*children, (att_desc, att)])
    flat = mutate.flatten(with_att)
    descs = flat.index_manifest().manifests
    assert len(descs) == len(children)
    for (old_desc, old_img), d in zip(children, descs, strict=True):
        assert d.platform == old_desc.platform
        child = flat.image(d.digest)
        assert len(child.layers()) == 1
        assert _files(child) == _files(old_img)
    validate(flat)


def test_extract_of_empty_image_is_an_empty_tar() -> None:
    data = io.BytesIO()
    mutate.export(random_image(0, seed=14), data)
    assert data.getvalue() == b"\0" * 1024


def test_rebase_onto_a_base_of_the_other_manifest_family() -> None:
    old, _, app = _bases()
    docker_base = random_image(2, 300, seed=15, media_type=mt.DOCKER_MANIFEST)
    out = mutate.rebase(app, old, docker_base)
    assert out.media_type() == mt.OCI_MANIFEST
    assert {d.media_type for d in out.manifest().layers} == {mt.OCI_LAYER_GZIP}
    assert out.manifest().layers[0].digest == docker_base.manifest().layers[0].digest
    validate_image(out)


def test_building_twice_gives_the_same_digest(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('hi')\n")
    (tmp_path / "app" / "data").mkdir()
    (tmp_path / "app" / "data" / "x.bin").write_bytes(bytes(range(256)) * 100)

    def build() -> Image:
        base = random_image(2, 500, seed=16)
        layer = tarball.layer_from_directory(tmp_path / "app")
        img = mutate.append_layers(base, [layer], history=[{"created_by": "COPY app /app"}])
        img = mutate.config(img, entrypoint=["python", "/main.py"], env={"A": "1"})
        return mutate.flatten(mutate.annotations(img, {"org.example": "x"}))

    first = build()
    os.utime(tmp_path / "app" / "main.py", (1, 1))  # mtimes do not leak into layers
    assert build().digest() == first.digest()
