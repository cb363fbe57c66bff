"""eStargz (``optimize``) checked against the format's spec (stargz-snapshotter docs/estargz.md)
by a reader written here from the spec: the footer gives the TOC's offset, the TOC's
digest is the descriptor's annotation, each file and chunk entry's offset starts a gzip
member whose first bytes are that chunk (matching chunkDigest), landmarks sit where the
spec puts them, and the whole blob stays an ordinary gzip tar of the same files."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from pycrane.mutate.estargz import (
    TOC_DIGEST_ANNOTATION,
    UNCOMPRESSED_SIZE_ANNOTATION,
    estargz_layer,
    optimize,
)
from pycrane.tarball import layer_from_reader
from pycrane.v1 import mediatypes as mt

__all__: list[str] = []

FILES = {
    "bin/tool": b"\x7fELF" + bytes(range(256)) * 10,  # 2564 bytes: three 1000-byte chunks
    "etc/motd": b"hello\n",
    "etc/empty": b"",
    "usr/share/doc/readme": b"r" * 5000,
}


def _layer_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs: set[str] = set()
        for name, data in FILES.items():
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_600_000_000
                    tf.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_600_000_000
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("bin/alias")
        link.type, link.linkname = tarfile.SYMTYPE, "tool"
        tf.addfile(link)
    return buf.getvalue()


def _read(blob: bytes, toc_digest: str) -> dict[str, Any]:
    foot = blob[-51:]
    assert foot[:4] == b"\x1f\x8b\x08\x04"
    assert struct.unpack("<H", foot[10:12])[0] == 26 and foot[12:14] == b"SG"
    assert struct.unpack("<H", foot[14:16])[0] == 22 and foot[32:38] == b"STARGZ"
    toc_offset = int(foot[16:32], 16)
    assert gzip.decompress(foot) == b""  # an empty, valid gzip member
    z = zlib.decompressobj(31)
    member = z.decompress(blob[toc_offset:])
    assert z.unused_data == foot  # the TOC member is followed by the footer only
    with tarfile.open(fileobj=io.BytesIO(member)) as tf:
        names = tf.getnames()
        assert names == ["stargz.index.json"]
        raw = tf.extractfile("stargz.index.json").read()  # type: ignore[union-attr]
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == toc_digest
    toc: dict[str, Any] = json.loads(raw)
    assert toc["version"] == 1
    return toc


def _check_chunks(blob: bytes, toc: dict[str, Any], files: dict[str, bytes]) -> None:
    size: dict[str, int] = {}
    for e in toc["entries"]:
        if e["type"] == "reg":
            size[e["name"]] = e.get("size", 0)
        if e["type"] not in ("reg", "chunk") or not size[e["name"]]:
            continue
        data = files[e["name"]]
        start = e.get("chunkOffset", 0)
        n = e.get("chunkSize") or size[e["name"]] - start
        got = zlib.decompressobj(31).decompress(blob[e["offset"] :])[:n]
        assert got == data[start : start + n], e
        assert e["chunkDigest"] == "sha256:" + hashlib.sha256(got).hexdigest()
        if e["type"] == "reg":
            assert e["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("prioritized", [[], ["etc/motd", "/usr/share/doc/readme", "nope"]])
def test_estargz_layer_follows_the_spec(prioritized: list[str]) -> None:
    src = layer_from_reader(io.BytesIO(_layer_tar()))
    layer, missing = estargz_layer(src, prioritized, chunk_size=1000)
    assert missing == (["nope"] if prioritized else [])
    desc = layer.descriptor()
    assert desc.media_type == mt.DOCKER_LAYER
    with layer.compressed() as f:
        blob = f.read()
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == str(desc.digest)
    plain = gzip.decompress(blob)  # an ordinary gzip tar for runtimes that know nothing of this
    assert "sha256:" + hashlib.sha256(plain).hexdigest() == str(layer.diff_id())
    assert desc.annotations[UNCOMPRESSED_SIZE_ANNOTATION] == str(len(plain))
    with tarfile.open(fileobj=io.BytesIO(plain)) as tf:
        names = [m.name for m in tf.getmembers()]
        contents = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert names[-1] == "stargz.index.json"
    for name, data in FILES.items():
        assert contents[name] == data
    toc = _read(blob, desc.annotations[TOC_DIGEST_ANNOTATION])
    order = [e["name"] for e in toc["entries"] if e["type"] != "chunk"]
    if prioritized:
        first = order[: order.index(".prefetch.landmark") + 1]
        assert first == ["etc/", "etc/motd", "usr/", "usr/share/", "usr/share/doc/",
                         "usr/share/doc/readme", ".prefetch.landmark"]  # fmt: skip
    else:
        assert order[0] == ".no.prefetch.landmark"
    assert [n.rstrip("/") for n in order] == [n for n in names[:-1]]
    _check_chunks(
        blob, toc, {**FILES, ".prefetch.landmark": b"\x0f", ".no.prefetch.landmark": b"\x0f"}
    )
    chunks = [e for e in toc["entries"] if e["name"] == "bin/tool"]
    assert [(e["type"], e.get("chunkOffset", 0), e.get("chunkSize")) for e in chunks] == [
        ("reg", 0, 1000), ("chunk", 1000, 1000), ("chunk", 2000, None),
    ]  # fmt: skip
    alias = next(e for e in toc["entries"] if e["name"] == "bin/alias")
    assert (alias["type"], alias["linkName"]) == ("symlink", "tool")


def test_optimize_image_and_index(tmp_path: Path) -> None:
    from pycrane import mutate
    from pycrane.empty import empty_image
    from pycrane.random import random_index

    base = empty_image(media_type=mt.OCI_MANIFEST)
    img = mutate.append_layers(base, [layer_from_reader(io.BytesIO(_layer_tar()))])
    new, missing = optimize(img, ["bin/tool", "absent"])
    assert missing == ["absent"]
    assert new.media_type() == mt.DOCKER_MANIFEST
    cfg = new.config_file()
    assert [str(d) for d in cfg.diff_ids] == [str(x.diff_id()) for x in new.layers()]
    assert "history" not in json.loads(new.raw_config())
    (layer,) = new.layers()
    assert TOC_DIGEST_ANNOTATION in layer.descriptor().annotations
    idx = random_index(("linux/amd64", "linux/arm64"), layers=1, seed=3)
    new_idx, gone = optimize(idx, ["nothing/here"])
    assert gone == ["nothing/here"]
    kids = new_idx.index_manifest().manifests  # type: ignore[union-attr]
    assert [str(k.platform) for k in kids] == ["linux/amd64", "linux/arm64"]
    for k in kids:
        child = new_idx.image(k.digest)  # type: ignore[union-attr]
        assert all(TOC_DIGEST_ANNOTATION in x.descriptor().annotations for x in child.layers())


def test_optimize_command(tmp_path: Path, pycrane_registry: Any) -> None:
    from tests.test_cli_e2e import Cli

    cli = Cli(tmp_path)
    tb = tmp_path / "l.tar"
    tb.write_bytes(_layer_tar())
    repo = f"{pycrane_registry.host}/estargz/app"
    cli.out("append", "-f", str(tb), "-t", f"{repo}:v1")
    assert cli.out("optimize", f"{repo}:v1", f"{repo}:esgz", "--prioritize", "bin/tool") == ""
    m = json.loads(cli("manifest", f"{repo}:esgz").stdout)
    (layer,) = m["layers"]
    assert layer["mediaType"] == mt.DOCKER_LAYER and TOC_DIGEST_ANNOTATION in layer["annotations"]
    fs = cli("export", f"{repo}:esgz", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(fs)) as tf:
        assert tf.extractfile("bin/tool").read() == FILES["bin/tool"]  # type: ignore[union-attr]
    line = cli.fails("opt", f"{repo}:v1", f"{repo}:never", "--prioritize", "no/such")
    assert "prioritized files were missing from image: no/such" in line
    assert cli.fails("manifest", f"{repo}:never")
