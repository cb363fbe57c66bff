"""docker-save tarballs: writing, lazy reading, legacy format, local layers."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest

from pycrane import empty_image, random_image, tarball
from pycrane.errors import DigestMismatch, NotFoundError, SizeMismatch, TarballError
from pycrane.random import image_from_layers
from pycrane.v1 import mediatypes as mt
from pycrane.v1.digest import Digest
from pycrane.v1.image import BytesLayer, Image, SimpleImage
from pycrane.validate import validate_image
from tests.test_export_helpers import E, tar_bytes


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as t:
        return {m.name: m for m in t}


def read_json(path: Path, name: str) -> object:
    with tarfile.open(path) as t:
        f = t.extractfile(name)
        assert f is not None
        return json.loads(f.read())


def test_roundtrip_keeps_every_digest(tmp_path: Path) -> None:
    img = random_image(3, 4096, duplicate_empty_layers=2, seed=7)
    out = tmp_path / "img.tar"
    tarball.write(out, {"example.com/app:1": img})
    back = tarball.image_from_path(out)
    assert back.digest() == img.digest()
    assert back.raw_manifest() == img.raw_manifest()
    assert back.raw_config() == img.raw_config()
    assert [x.digest() for x in back.layers()] == [x.digest() for x in img.layers()]
    validate_image(back)


def test_docker_manifest_roundtrip_and_layout(tmp_path: Path) -> None:
    img = random_image(2, 100, seed=1, media_type=mt.DOCKER_MANIFEST)
    out = tmp_path / "d.tar"
    tarball.write(out, [(["ubuntu", "ubuntu:22.04"], img)])
    names = set(members(out))
    assert {"manifest.json", "index.json", "oci-layout", "repositories"} <= names
    mj = read_json(out, "manifest.json")
    assert isinstance(mj, list) and len(mj) == 1
    assert mj[0]["RepoTags"] == ["ubuntu:latest", "ubuntu:22.04"]
    assert mj[0]["Config"] == f"blobs/sha256/{img.config_name().hex}"
    assert mj[0]["Layers"] == [f"blobs/sha256/{x.digest().hex}" for x in img.layers()]
    assert read_json(out, "repositories") == {
        "ubuntu": {"latest": img.layers()[-1].digest().hex, "22.04": img.layers()[-1].digest().hex}
    }
    idx = read_json(out, "index.json")
    assert isinstance(idx, dict)
    assert {m["annotations"]["org.opencontainers.image.ref.name"] for m in idx["manifests"]} == {
        "latest",
        "22.04",
    }
    assert tarball.image_from_path(out, "ubuntu:22.04").digest() == img.digest()
    assert tarball.image_from_path(out, "docker.io/library/ubuntu").digest() == img.digest()


def test_shared_layers_are_stored_once(tmp_path: Path) -> None:
    a = random_image(2, 2000, duplicate_empty_layers=3, seed=1)
    # same layers and config, another manifest
    b = SimpleImage.build(a.config_file(), a.layers(), media_type=mt.DOCKER_MANIFEST)
    assert b.digest() != a.digest()
    c = random_image(1, 2000, seed=2)
    out = tmp_path / "multi.tar"
    tarball.write(out, [("a:1", a), ("b:1", b), ("c:1", c)])
    blob_members = [n for n in members(out) if n.startswith("blobs/sha256/")]
    assert len(blob_members) == len(set(blob_members))
    distinct = {x.digest() for x in a.layers()} | {x.digest() for x in c.layers()}
    configs = {a.config_name(), b.config_name(), c.config_name()}
    manifests = {a.digest(), b.digest(), c.digest()}
    assert len(blob_members) == len(distinct | configs | manifests)
    for ref, img in (("a:1", a), ("b:1", b), ("c:1", c)):
        assert tarball.image_from_path(out, ref).digest() == img.digest()
    with pytest.raises(TarballError, match="holds 3 images"):
        tarball.image_from_path(out)
    with pytest.raises(NotFoundError, match="no image tagged nope:1"):
        tarball.image_from_path(out, "nope:1")


def test_write_is_reproducible(tmp_path: Path) -> None:
    img = random_image(2, 1000, seed=3)
    tarball.write(tmp_path / "1.tar", {"x:1": img})
    tarball.write(tmp_path / "2.tar", {"x:1": img})
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()


def test_write_to_stream(tmp_path: Path) -> None:
    img = random_image(1, 100, seed=4)
    buf = io.BytesIO()
    tarball.write(buf, {"x:1": img})
    p = tmp_path / "s.tar"
    p.write_bytes(buf.getvalue())
    assert tarball.image_from_path(p).digest() == img.digest()
    assert tarball.image_from_fileobj(io.BytesIO(buf.getvalue())).digest() == img.digest()


class _Corrupt(BytesLayer):
    """A layer whose bytes do not match its descriptor."""

    def compressed(self):  # type: ignore[no-untyped-def]
        data = bytearray(self.data)
        data[-5] ^= 0xFF
        return io.BytesIO(bytes(data))


def test_corrupt_layer_fails_and_leaves_no_file(tmp_path: Path) -> None:
    good = random_image(1, 100, seed=5)
    layer = good.layers()[0]
    assert isinstance(layer, BytesLayer)
    bad = image_from_layers([_Corrupt(layer.data, layer.media_type(), diff_id=layer.diff_id())])
    out = tmp_path / "bad.tar"
    with pytest.raises(DigestMismatch, match="layer"):
        tarball.write(out, {"x:1": bad})
    assert list(tmp_path.iterdir()) == []


def test_existing_target_is_replaced_whole(tmp_path: Path) -> None:
    out = tmp_path / "t.tar"
    out.write_bytes(b"old content")
    img = random_image(1, 100, seed=6)
    tarball.write(out, {"x:1": img})
    assert tarball.image_from_path(out).digest() == img.digest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.tar"]


def classic_archive(path: Path, layers: list[bytes], *, gzip_layers: bool, dup: bool) -> bytes:
    """An old-style docker save: <id>/layer.tar members, a symlink for a repeated layer."""
    diff_ids = [str(Digest.from_bytes(x)) for x in layers]
    cfg = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids + (diff_ids[:1] if dup else [])},
        }
    ).encode()
    cfg_name = f"{Digest.from_bytes(cfg).hex}.json"
    names = []
    with tarfile.open(path, "w") as t:

        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))

        add(cfg_name, cfg)
        for i, raw in enumerate(layers):
            body = gzip.compress(raw, mtime=0) if gzip_layers else raw
            add(f"l{i}/layer.tar", body)
            names.append(f"l{i}/layer.tar")
        if dup:
            ti = tarfile.TarInfo("dup/layer.tar")
            ti.type = tarfile.SYMTYPE
            ti.linkname = "../l0/layer.tar"
            t.addfile(ti)
            names.append("dup/layer.tar")
        add(
            "manifest.json",
            json.dumps([{"Config": cfg_name, "RepoTags": ["old:1"], "Layers": names}]).encode(),
        )
    return cfg


@pytest.mark.parametrize("gzip_layers", [False, True], ids=["plain", "gzip"])
def test_classic_archive_is_read(tmp_path: Path, gzip_layers: bool) -> None:
    raws = [tar_bytes([E("a", "f", b"1")]), tar_bytes([E("b", "f", b"2" * 5000)])]
    p = tmp_path / "classic.tar"
    cfg = classic_archive(p, raws, gzip_layers=gzip_layers, dup=True)
    img = tarball.image_from_path(p, "old:1")
    assert img.raw_config() == cfg
    assert img.media_type() == mt.DOCKER_MANIFEST
    assert len(img.layers()) == 3
    assert [str(x.diff_id()) for x in img.layers()] == json.loads(cfg)["rootfs"]["diff_ids"]
    for layer, raw in zip(img.layers(), [*raws, raws[0]], strict=True):
        assert layer.media_type() == mt.DOCKER_LAYER
        with layer.uncompressed() as r:
            assert r.read() == raw
    validate_image(img)
    # reading twice gives the same synthesised manifest
    assert tarball.image_from_path(p).digest() == img.digest()


def test_gzipped_archive_is_read(tmp_path: Path) -> None:
    img = random_image(2, 500, seed=8)
    plain = tmp_path / "p.tar"
    tarball.write(plain, {"x:1": img})
    gz = tmp_path / "p.tar.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert tarball.image_from_path(gz).digest() == img.digest()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"this is not a tar archive at all" * 40, "not a valid tar archive|no manifest.json"),
        (tar_bytes([E("hello", "f", b"x")]), "no manifest.json"),
        (tar_bytes([E("manifest.json", "f", b"{nope")]), "manifest.json: not valid JSON"),
        (tar_bytes([E("manifest.json", "f", b"{}")]), "expected a list of images"),
        (tar_bytes([E("manifest.json", "f", b"[]")]), "lists no image"),
        (
            tar_bytes([E("manifest.json", "f", b'[{"Config": 3}]')]),
            r"manifest.json\[0\].Config: expected a member name",
        ),
        (
            tar_bytes([E("manifest.json", "f", b'[{"Config": "c.json", "Layers": []}]')]),
            "missing member 'c.json'",
        ),
    ],
)
def test_malformed_archives(tmp_path: Path, content: bytes, needle: str) -> None:
    p = tmp_path / "bad.tar"
    p.write_bytes(content)
    with pytest.raises(TarballError, match=needle) as info:
        tarball.image_from_path(p).raw_config()
    assert "\n" not in str(info.value)


def test_missing_file_is_a_tarball_error(tmp_path: Path) -> None:
    with pytest.raises(TarballError, match="cannot read it"):
        tarball.image_from_path(tmp_path / "nope.tar")


def test_legacy_format(tmp_path: Path) -> None:
    base = random_image(2, 300, seed=9, media_type=mt.DOCKER_MANIFEST)
    dup = image_from_layers([*base.layers(), base.layers()[0]], media_type=mt.DOCKER_MANIFEST)
    out = tmp_path / "legacy.tar"
    tarball.write_legacy(out, {"repo/app:v1": dup})
    m = members(out)
    mj = read_json(out, "manifest.json")
    assert isinstance(mj, list)
    layer_paths = mj[0]["Layers"]
    assert len(layer_paths) == 3 and len(set(layer_paths)) == 3
    ids = [p.split("/")[0] for p in layer_paths]
    for i, lid in enumerate(ids):
        assert m[f"{lid}/VERSION"].size == 3
        meta = read_json(out, f"{lid}/json")
        assert isinstance(meta, dict) and meta["id"] == lid
        assert meta.get("parent") == (ids[i - 1] if i else None)
    assert m[layer_paths[2]].issym()  # a repeated layer is a link to its first copy
    assert read_json(out, "repositories") == {"repo/app": {"v1": ids[-1]}}
    back = tarball.image_from_path(out)
    assert back.raw_config() == dup.raw_config()
    assert [x.diff_id() for x in back.layers()] == [x.diff_id() for x in dup.layers()]
    validate_image(back)


def test_layer_from_file_plain_and_compressed(tmp_path: Path) -> None:
    raw = tar_bytes([E("a", "f", b"hello" * 1000)])
    plain = tmp_path / "l.tar"
    plain.write_bytes(raw)
    gz = tmp_path / "l.tar.gz"
    gz.write_bytes(gzip.compress(raw, mtime=0))
    a = tarball.layer_from_file(plain)
    assert a.media_type() == mt.OCI_LAYER_GZIP
    assert a.diff_id() == Digest.from_bytes(raw)
    with a.uncompressed() as r:
        assert r.read() == raw
    b = tarball.layer_from_file(gz)
    assert b.digest() == Digest.from_bytes(gz.read_bytes())  # kept byte for byte
    assert b.diff_id() == a.diff_id()
    z = tarball.layer_from_file(plain, compression="zstd")
    assert z.media_type() == mt.OCI_LAYER_ZSTD and z.diff_id() == a.diff_id()
    n = tarball.layer_from_file(plain, compression="none")
    assert n.digest() == n.diff_id() == a.diff_id()


def test_layer_from_reader_streams_stdin_like_input() -> None:
    raw = tar_bytes([E("big", "f", os.urandom(3 << 20))])
    layer = tarball.layer_from_reader(io.BufferedReader(io.BytesIO(raw)))  # type: ignore[arg-type]
    assert layer.diff_id() == Digest.from_bytes(raw)
    with layer.compressed() as r:
        blob = r.read()
    assert Digest.from_bytes(blob) == layer.digest() and len(blob) == layer.size()
    assert gzip.decompress(blob) == raw


def test_layer_from_directory_is_reproducible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def build(root: Path, order: list[str]) -> None:
        (root / "sub").mkdir(parents=True)
        for name in order:
            (root / "sub" / name).write_bytes(name.encode())
        (root / "top").write_text("top")
        os.symlink("top", root / "link")
        os.link(root / "top", root / "hard")

    a, b = tmp_path / "a", tmp_path / "b"
    build(a, ["x", "y", "z"])
    build(b, ["z", "x", "y"])
    os.utime(b / "top", (12345, 12345))
    la = tarball.layer_from_directory(a)
    lb = tarball.layer_from_directory(b)
    assert la.digest() == lb.digest()
    with tarfile.open(fileobj=la.uncompressed(), mode="r|") as t:
        got = [(m.name, m.type, m.linkname, m.mtime, m.uid) for m in t]
    assert [g[0] for g in got] == ["hard", "link", "sub", "sub/x", "sub/y", "sub/z", "top"]
    assert {g[3] for g in got} == {0} and {g[4] for g in got} == {0}
    kinds = {g[0]: (g[1], g[2]) for g in got}
    assert kinds["link"] == (tarfile.SYMTYPE, "top")
    assert kinds["top"] == (tarfile.LNKTYPE, "hard")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    lc = tarball.layer_from_directory(a)
    assert lc.digest() != la.digest()
    with tarfile.open(fileobj=lc.uncompressed(), mode="r|") as t:
        assert {m.mtime for m in t} == {1700000000}


def test_empty_image_roundtrip(tmp_path: Path) -> None:
    img: Image = empty_image()
    tarball.write(tmp_path / "e.tar", {"e:1": img})
    assert tarball.image_from_path(tmp_path / "e.tar").digest() == img.digest()


class _Pipe(io.RawIOBase):
    """A write-only, non-seekable sink like stdout on a pipe."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def, override]
        self.data += bytes(b)
        return len(b)


def test_write_to_pipe_and_failed_write_is_not_finished(tmp_path: Path) -> None:
    img = random_image(2, 300, seed=21)
    pipe = _Pipe()
    tarball.write(pipe, {"x:1": img})  # type: ignore[arg-type]
    p = tmp_path / "p.tar"
    p.write_bytes(bytes(pipe.data))
    assert tarball.image_from_path(p).digest() == img.digest()
    seekable = io.BytesIO()
    tarball.write(seekable, {"x:1": img})
    assert seekable.getvalue() == bytes(pipe.data)  # same bytes whatever the sink
    good = random_image(1, 100, seed=5)
    layer = good.layers()[0]
    assert isinstance(layer, BytesLayer)
    bad = image_from_layers([_Corrupt(layer.data, layer.media_type(), diff_id=layer.diff_id())])
    pipe = _Pipe()
    with pytest.raises(DigestMismatch):
        tarball.write(pipe, {"x:1": bad})  # type: ignore[arg-type]
    assert not bytes(pipe.data).endswith(b"\0" * 1024)  # no end-of-archive marker


def test_archive_with_nested_index_keeps_the_child_manifest(tmp_path: Path) -> None:
    """The containerd image store saves a multi-platform index in index.json and one
    platform's config in manifest.json: the child's exact manifest must be found."""
    from pycrane import random_index

    idx = random_index(seed=30)
    child_desc = idx.index_manifest().manifests[1]
    child = idx.image(child_desc.digest)
    out = tmp_path / "nested.tar"
    with tarfile.open(out, "w") as t:

        def add(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))

        def blob(d: Digest, data: bytes) -> str:
            add(f"blobs/sha256/{d.hex}", data)
            return f"blobs/sha256/{d.hex}"

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        blob(idx.digest(), idx.raw_manifest())
        blob(child.digest(), child.raw_manifest())
        cfg = blob(child.config_name(), child.raw_config())
        layers = []
        for layer in child.layers():
            with layer.compressed() as r:
                layers.append(blob(layer.digest(), r.read()))
        top = {
            "mediaType": idx.media_type(),
            "digest": str(idx.digest()),
            "size": idx.size(),
            "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"},
        }
        add("index.json", json.dumps({"schemaVersion": 2, "manifests": [top]}).encode())
        add(
            "manifest.json",
            json.dumps([{"Config": cfg, "RepoTags": ["multi:1"], "Layers": layers}]).encode(),
        )
    back = tarball.image_from_path(out, "multi:1")
    assert back.digest() == child.digest()
    validate_image(back)


@pytest.mark.parametrize("jobs", [1, 3, 8])
def test_concurrent_prefetch_gives_identical_archives(tmp_path: Path, jobs: int) -> None:
    """A stream is written in order (prefetching ahead); a file gets its layers filled
    in place in parallel: both must give the very same bytes."""
    a = random_image(5, 20_000, duplicate_empty_layers=2, seed=40)
    b = random_image(3, 20_000, seed=41)
    seq = io.BytesIO()
    tarball.write(seq, [("a:1", a), ("b:1", b)])
    ahead = io.BytesIO()
    tarball.write(ahead, [("a:1", a), ("b:1", b)], jobs=jobs)
    tarball.write(tmp_path / "par.tar", [("a:1", a), ("b:1", b)], jobs=jobs)
    assert seq.getvalue() == ahead.getvalue() == (tmp_path / "par.tar").read_bytes()
    assert tarball.image_from_path(tmp_path / "par.tar", "b:1").digest() == b.digest()


class _Endless(io.RawIOBase):
    """Hands out 1 KiB pieces slowly once ``go`` is set: a download still running."""

    def __init__(self, go: threading.Event) -> None:
        self._go = go
        self.pieces = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        self._go.wait(10)
        time.sleep(0.001)
        self.pieces += 1
        return b"\0" * 1024


class _Slow(BytesLayer):
    def __init__(self, data: bytes, go: threading.Event) -> None:
        super().__init__(data, mt.OCI_LAYER, diff_id=Digest.from_bytes(data))
        self._go = go

    def compressed(self):  # type: ignore[no-untyped-def]
        self.stream = _Endless(self._go)
        return self.stream


class _FailsAtEof(io.BytesIO):
    def __init__(self, data: bytes, eof: threading.Event) -> None:
        super().__init__(data)
        self._eof = eof

    def read(self, n: int | None = -1) -> bytes:
        data = super().read(n)
        if not data:
            self._eof.set()
        return data


class _CorruptSignals(BytesLayer):
    def __init__(self, data: bytes, eof: threading.Event) -> None:
        super().__init__(data, mt.OCI_LAYER, diff_id=Digest.from_bytes(data))
        self._eof = eof

    def compressed(self):  # type: ignore[no-untyped-def]
        data = bytearray(self.data)
        data[0] ^= 0xFF
        return _FailsAtEof(bytes(data), self._eof)


def test_parallel_fill_stops_the_others_and_reports_the_real_failure(tmp_path: Path) -> None:
    """Layer 0 is still downloading when layer 1 turns out corrupt: layer 0 must stop
    at its next piece (not run to its end), and the corruption is what is raised."""
    eof = threading.Event()
    slow = _Slow(bytes(64 << 20), eof)
    bad = _CorruptSignals(b"x" * 4096, eof)
    img = image_from_layers([slow, bad])
    with pytest.raises(DigestMismatch, match="layer"):
        tarball.write(tmp_path / "x.tar", {"x:1": img}, jobs=2)
    assert slow.stream.pieces < 64 * 1024  # stopped before its end
    assert list(tmp_path.iterdir()) == []


def test_parallel_fill_of_a_short_layer_fails(tmp_path: Path) -> None:
    class Short(BytesLayer):
        def compressed(self):  # type: ignore[no-untyped-def]
            return io.BytesIO(self.data[:-10])

    good = random_image(2, 5000, seed=43)
    layer = good.layers()[1]
    assert isinstance(layer, BytesLayer)
    short = Short(layer.data, layer.media_type(), diff_id=layer.diff_id())
    img = image_from_layers([good.layers()[0], short])
    with pytest.raises((SizeMismatch, TarballError)):
        tarball.write(tmp_path / "s.tar", {"x:1": img}, jobs=3)
    assert list(tmp_path.iterdir()) == []


def test_prefetch_failure_is_reported_and_cleans_up(tmp_path: Path) -> None:
    good = random_image(3, 1000, seed=42)
    layer = good.layers()[2]
    assert isinstance(layer, BytesLayer)
    bad = image_from_layers(
        [*good.layers()[:2], _Corrupt(layer.data, layer.media_type(), diff_id=layer.diff_id())]
    )
    with pytest.raises(DigestMismatch):
        tarball.write(tmp_path / "x.tar", {"x:1": bad}, jobs=4)
    assert list(tmp_path.iterdir()) == []


def test_truncated_archive_names_the_member(tmp_path: Path) -> None:
    img = random_image(1, 50_000, seed=50)
    out = tmp_path / "t.tar"
    tarball.write(out, {"x:1": img})
    with tarfile.open(out) as t:
        m = t.getmember(f"blobs/sha256/{img.layers()[0].digest().hex}")
    back = tarball.open_tarball(out).image()  # indexed while complete
    back.raw_manifest()
    with open(out, "r+b") as f:
        f.truncate(m.offset_data + 100)
    layer = back.layers()[0]
    with (
        pytest.raises(TarballError, match=r"member 'blobs/sha256/.*': truncated"),
        layer.compressed() as r,
    ):
        r.read()


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, object]] = []
        self.bytes: dict[str, int] = {}

    def start(self, digest: Digest, total: int | None, description: str = "") -> None:
        self.events.append(("start", str(digest), total))

    def advance(self, digest: Digest, nbytes: int) -> None:
        self.bytes[str(digest)] = self.bytes.get(str(digest), 0) + nbytes

    def finish(self, digest: Digest, *, skipped: bool = False) -> None:
        self.events.append(("finish", str(digest), skipped))


def test_progress_reports_every_blob_once_and_skips_duplicates(tmp_path: Path) -> None:
    img = random_image(2, 3000, duplicate_empty_layers=2, seed=60)
    rec = _Recorder()
    tarball.write(tmp_path / "p.tar", {"x:1": img}, progress=rec)
    layers = img.manifest().layers
    empty = str(layers[-1].digest)
    starts = [e[1] for e in rec.events if e[0] == "start"]
    assert sorted(starts) == sorted({str(d.digest) for d in layers} | {str(img.config_name())})
    assert ("finish", empty, True) in rec.events  # the repeated empty layer is skipped
    for d in layers:
        assert rec.bytes[str(d.digest)] == d.size


def test_failed_publish_leaves_no_temp_file(tmp_path: Path) -> None:
    """The target cannot be replaced (here: it is a directory, as a file held open
    on Windows would be): the error surfaces and the temp file is removed."""
    target = tmp_path / "out.tar"
    target.mkdir()
    with pytest.raises(OSError):
        tarball.write(target, {"x:1": random_image(1, 100, seed=70)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar"]
    assert target.is_dir() and not any(target.iterdir())


class _Trickle(io.RawIOBase):
    """A pipe-like reader that hands out small, uneven pieces."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._n = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        self._n += 1
        size = 1 + (self._n * 7919) % 65536
        out = bytes(self._data[:size])
        self._data = self._data[size:]
        return out


def test_layer_digest_does_not_depend_on_read_sizes(tmp_path: Path) -> None:
    raw = tar_bytes([E("a", "f", os.urandom(3 << 20)), E("b", "f", b"b" * 100_000)])
    whole = tarball.layer_from_reader(io.BytesIO(raw))
    trickled = tarball.layer_from_reader(_Trickle(raw))  # type: ignore[arg-type]
    p = tmp_path / "l.tar"
    p.write_bytes(raw)
    from_file = tarball.layer_from_file(p)
    assert whole.digest() == trickled.digest() == from_file.digest()


def test_parallel_fill_under_windows_emulator(tmp_path: Path, windows_fs) -> None:  # type: ignore[no-untyped-def]
    """Each fill opens its own handle on the temp archive while the writer's is open
    (CPython shares read and write, not delete); the archive is then replaced into
    place with every handle closed, also with a scanner holding new files."""
    fs = windows_fs(tmp_path, rename_window=0.001, antivirus=0.3, seed=5)
    img = random_image(6, 30_000, duplicate_empty_layers=2, seed=44)
    out = tmp_path / "w.tar"
    for _ in range(3):
        tarball.write(out, {"x:1": img}, jobs=4)
    fs.wait_idle()
    assert tarball.image_from_path(out).digest() == img.digest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.tar"]


def test_documents_are_bounded_by_the_shared_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tarball's manifest.json, manifests and configs are bounded as every reader's are
    (pycrane.v1.limits), not by a bound of its own."""
    from pycrane.tarball import read
    from pycrane.v1 import limits

    assert (read.MANIFEST_LIMIT, read.CONFIG_LIMIT) == (limits.MANIFEST_LIMIT, limits.CONFIG_LIMIT)
    img = random_image(1, 100, seed=51)
    out = tmp_path / "t.tar"
    tarball.write(out, {"x:1": img})
    monkeypatch.setattr(read, "CONFIG_LIMIT", len(img.raw_config()) - 1)
    with pytest.raises(TarballError, match=r"over the .*-byte limit for a manifest or config"):
        tarball.image_from_path(out).raw_config()
    monkeypatch.setattr(read, "CONFIG_LIMIT", len(img.raw_config()))
    assert tarball.image_from_path(out).raw_config() == img.raw_config()
    monkeypatch.setattr(read, "MANIFEST_LIMIT", 10)
    with pytest.raises(TarballError, match=r"manifest.json. is .* bytes, over the 10-byte limit"):
        tarball.image_from_path(out)
