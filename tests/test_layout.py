"""Layout: index.json under a lock, ordered writes, refs, lazy reads, gc and validate."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from pycrane import _fs
from pycrane.errors import DigestMismatch, ManifestError, NotFoundError, StoreError
from pycrane.layout import Layout
from pycrane.random import random_image, random_index
from pycrane.v1 import ANNOTATION_REF_NAME, Descriptor, Digest, Platform
from pycrane.v1 import mediatypes as mt
from pycrane.v1.image import Image


def test_create_open_and_not_a_layout(tmp_path: Path) -> None:
    lay = Layout.create(tmp_path / "l")
    assert json.loads((tmp_path / "l" / "oci-layout").read_bytes()) == {
        "imageLayoutVersion": "1.0.0"
    }
    assert lay.descriptors() == []
    assert Layout.open(tmp_path / "l").descriptors() == []
    with pytest.raises(StoreError) as e:
        Layout.create(tmp_path / "l")
    assert "already" in str(e.value)
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError) as e:
        Layout.open(tmp_path / "plain")
    assert "not an OCI image layout" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(StoreError):
        Layout.open(tmp_path / "missing")
    Layout.open_or_create(tmp_path / "new" / "nested")
    Layout.open_or_create(tmp_path / "new" / "nested")
    assert Layout.open(tmp_path / "new" / "nested").descriptors() == []


def test_write_image_dedups_and_orders_manifest_last(tmp_path: Path, monkeypatch) -> None:
    lay = Layout.create(tmp_path / "l")
    img = random_image(2, 1000, duplicate_empty_layers=3, seed=3)
    published: list[Digest] = []
    real = _fs.publish

    def spy(tmp, final, **kw):
        published.append(Digest("sha256", Path(final).name))
        return real(tmp, final, **kw)

    monkeypatch.setattr(_fs, "publish", spy)
    desc = lay.write_image(img, jobs=4)
    assert desc.digest == img.digest()
    layer_digests = [layer.digest() for layer in img.layers()]
    assert len(set(layer_digests)) == 3
    assert sorted(published[:-1]) == sorted({*layer_digests, img.config_name()})
    assert published[-1] == img.digest()
    assert lay.descriptors() == []  # write_image does not touch index.json


def test_append_and_ref_semantics(tmp_path: Path) -> None:
    lay = Layout.create(tmp_path / "l")
    a = random_image(1, 100, seed=1)
    b = random_image(1, 100, seed=2)
    lay.append_image(a, ref_name="v1")
    lay.append_image(a, ref_name="v1")  # same (digest, ref): still one entry
    assert len(lay.descriptors()) == 1
    lay.append_image(a)  # unnamed entry of the same digest is a separate entry
    lay.append_image(b, ref_name="v1")  # the name moves to b
    refs = [(d.digest, d.ref_name) for d in lay.descriptors()]
    assert refs == [(a.digest(), None), (b.digest(), "v1")]
    assert lay.image("v1").digest() == b.digest()
    assert lay.image(str(a.digest())).digest() == a.digest()
    with pytest.raises(NotFoundError):
        lay.image("nope")
    n = lay.remove_descriptors(lambda d: d.digest == a.digest())
    assert n == 1 and [d.digest for d in lay.descriptors()] == [b.digest()]


def test_append_keeps_unknown_index_fields(tmp_path: Path) -> None:
    lay = Layout.create(tmp_path / "l")
    raw = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "annotations": {"keep": "me"},
        "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "digest": "sha256:" + "a" * 64, "size": 1, "x-y": 1}
        ],
    }
    (tmp_path / "l" / "index.json").write_text(json.dumps(raw))
    lay.append_image(random_image(1, 10, seed=1), ref_name="t")
    got = json.loads((tmp_path / "l" / "index.json").read_bytes())
    assert got["annotations"] == {"keep": "me"}
    assert got["manifests"][0]["x-y"] == 1


def test_platform_and_annotations_on_entry(tmp_path: Path) -> None:
    lay = Layout.create(tmp_path / "l")
    d = lay.append_image(
        random_image(1, 10, seed=1),
        ref_name="t",
        annotations={"a": "b"},
        platform=Platform.parse("linux/arm64"),
    )
    (entry,) = lay.descriptors()
    assert entry == d
    assert entry.annotations == {"a": "b", ANNOTATION_REF_NAME: "t"}
    assert entry.platform == Platform("linux", "arm64")


def test_index_roundtrip_and_lazy_reads(tmp_path: Path) -> None:
    lay = Layout.create(tmp_path / "l")
    idx = random_index(seed=5)
    lay.append_index(idx, ref_name="multi")
    got = lay.image_index("multi")
    assert got.raw_manifest() == idx.raw_manifest()
    for child in idx.index_manifest().manifests:
        img = got.image(child.digest)
        src = idx.image(child.digest)
        assert img.raw_config() == src.raw_config()
        for la, lb in zip(img.layers(), src.layers(), strict=True):
            with la.compressed() as fa, lb.compressed() as fb:
                assert fa.read() == fb.read()
            assert la.diff_id() == lb.diff_id()
    root = lay.root_index()
    assert [d.digest for d in root.index_manifest().manifests] == [idx.digest()]
    assert root.image_index(idx.digest()).digest() == idx.digest()
    with pytest.raises(ManifestError, match="is an index, not an image"):
        lay.image("multi")


def test_nested_index_children_are_written_first(tmp_path: Path) -> None:
    from pycrane.v1.image import SimpleIndex

    inner = random_index(["linux/amd64", "linux/s390x"], seed=9)
    outer = SimpleIndex.build([(None, inner), (None, random_image(1, 10, seed=10))])
    lay = Layout.create(tmp_path / "l")
    lay.append_index(outer, ref_name="nested")
    assert lay.validate() == []
    assert lay.image_index("nested").image_index(inner.digest()).digest() == inner.digest()


def test_layout_layer_verifies_content(tmp_path: Path) -> None:
    lay = Layout.create(tmp_path / "l")
    img = random_image(1, 5000, seed=4)
    lay.append_image(img, ref_name="t")
    layer = lay.image("t").layers()[0]
    p = lay.store.path(layer.digest())
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    os.unlink(p)
    p.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch), layer.compressed() as f:
        while f.read(1 << 16):
            pass
    problems = lay.validate(fast=True)
    assert any(str(layer.digest()) in p for p in problems)


def test_validate_reports_missing_and_bad_diff_ids(tmp_path: Path) -> None:
    lay = Layout.create(tmp_path / "l")
    img = random_image(2, 100, seed=6)
    lay.append_image(img, ref_name="t")
    assert lay.validate() == []
    lay.store.delete(img.layers()[0].digest())
    problems = lay.validate()
    assert any("missing" in p for p in problems)


def test_validate_catches_wrong_diff_id(tmp_path: Path) -> None:
    from pycrane.v1 import ConfigFile, SimpleImage

    img = random_image(1, 100, seed=7)
    cfg = img.config_file().to_dict()
    cfg["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    bad = SimpleImage.build(ConfigFile.from_dict(cfg), img.layers())
    lay = Layout.create(tmp_path / "l")
    lay.append_image(bad)
    assert lay.validate(fast=True) == []
    assert any("diff_id" in p for p in lay.validate())


def test_gc_removes_only_unreachable(tmp_path: Path) -> None:
    lay = Layout.create(tmp_path / "l")
    keep = random_image(2, 100, seed=1)
    drop = random_image(2, 100, seed=2)
    lay.append_image(keep, ref_name="keep")
    lay.append_image(drop, ref_name="drop")
    lay.append_index(random_index(seed=3), ref_name="idx")
    before = set(lay.store.digests())
    lay.remove_descriptors(lambda d: d.ref_name == "drop")
    deleted = lay.gc()
    expected = {drop.digest(), drop.config_name(), *(x.digest() for x in drop.layers())}
    assert set(deleted) == expected
    assert set(lay.store.digests()) == before - expected
    assert lay.validate() == []


def test_append_rewrites_blobs_gc_deleted_meanwhile(tmp_path: Path) -> None:
    lay = Layout.create(tmp_path / "l")
    img = random_image(2, 100, seed=11)
    lay.write_image(img)  # blobs present, not referenced
    assert lay.gc()  # ...so gc removes them
    assert list(lay.store.digests()) == []
    # A writer that saw them present earlier must still end with a complete image.
    desc, blobs = lay._write_image(img, 1, None)
    Layout.open(tmp_path / "l").gc()
    lay._commit_entry(desc, blobs, lambda: lay._write_image(img, 1, None)[1])
    assert lay.validate() == []


def test_concurrent_appends_from_threads_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "l"
    Layout.create(path)
    images = [random_image(1, 64, duplicate_empty_layers=2, seed=i) for i in range(24)]
    errors: list[BaseException] = []

    def work(i: int, img: Image) -> None:
        try:
            Layout.open(path, fsync=False).append_image(img, ref_name=f"t{i}")
        except BaseException as e:
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i, img)) for i, img in enumerate(images)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    lay = Layout.open(path)
    assert {d.ref_name for d in lay.descriptors()} == {f"t{i}" for i in range(24)}
    assert lay.validate() == []


def test_index_json_held_open_on_windows(tmp_path: Path, windows_fs, monkeypatch) -> None:
    """A reader holding index.json: the writer waits (short hold) or fails clearly (long)."""
    lay = Layout.create(tmp_path / "l")
    windows_fs(tmp_path)
    monkeypatch.setattr(_fs, "RETRY_BUDGET", 0.5)
    f = open(tmp_path / "l" / "index.json", "rb")  # noqa: SIM115
    timer = threading.Timer(0.1, f.close)
    timer.start()
    lay.append_image(random_image(1, 10, seed=1), ref_name="short")
    timer.join()
    with open(tmp_path / "l" / "index.json", "rb"), pytest.raises(PermissionError):
        lay.append_image(random_image(1, 10, seed=2), ref_name="long")
    assert [d.ref_name for d in lay.descriptors()] == ["short"]
    leftovers = [p.name for p in (tmp_path / "l").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_layout_write_under_windows_emulator_with_antivirus(tmp_path: Path, windows_fs) -> None:
    fs = windows_fs(tmp_path, rename_window=0.001, antivirus=0.3, seed=3)
    lay = Layout.create(tmp_path / "l")
    img = random_image(2, 2000, duplicate_empty_layers=3, seed=1)
    lay.append_image(img, ref_name="t", jobs=8)
    lay.append_index(random_index(seed=2), ref_name="i", jobs=8)
    fs.wait_idle()
    assert lay.validate() == []
    assert Descriptor.from_dict(json.loads(lay.raw_index())["manifests"][0]).ref_name == "t"


def test_layout_on_the_ci_volume(tmp_path: Path) -> None:
    """On Windows CI, RUNNER_TEMP (D:) is not on %TEMP%'s volume (C:): a temp file made
    in %TEMP% and renamed into the layout would fail there with WinError 17."""
    import tempfile

    base = os.environ.get("OCI_LAYOUT_TEST_ROOT")
    root = Path(tempfile.mkdtemp(dir=base)) if base else tmp_path
    try:
        lay = Layout.create(root / "l")
        lay.append_image(random_image(2, 100, duplicate_empty_layers=2, seed=1), ref_name="t")
        w = lay.store.ingest("chunked")
        w.write(b"abc")
        w.commit(Digest.from_bytes(b"abc"))
        assert lay.validate() == []
    finally:
        if base:
            import shutil

            shutil.rmtree(root, ignore_errors=True)


def test_gc_skips_a_blob_held_open_on_windows_and_takes_it_later(
    tmp_path: Path, windows_fs
) -> None:
    lay = Layout.create(tmp_path / "l")
    img = random_image(1, 100, seed=12)
    lay.append_image(img, ref_name="t")
    lay.remove_descriptors(lambda d: True)
    fs = windows_fs(tmp_path)
    held = lay.store.path(img.layers()[0].digest())
    with open(held, "rb"):
        deleted = lay.gc()
        assert img.layers()[0].digest() not in deleted
        assert img.digest() in deleted
        assert fs.errors[32] > 0
        # A writer re-putting the blob that is still held finds it and succeeds.
        with img.layers()[0].compressed() as f:
            lay.store.put(f, digest=img.layers()[0].digest(), size=img.layers()[0].size())
    assert lay.gc() == [img.layers()[0].digest()]
    assert list(lay.store.digests()) == []


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["append", "remove"]), st.integers(0, 3), st.sampled_from([None, "a", "b"])
    ),
    max_size=12,
)


@settings(max_examples=25, deadline=None)
@given(ops=_OPS)
def test_index_json_follows_a_simple_model(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, str | None]]
) -> None:
    """One entry per (digest, ref name); a ref name moves; remove drops all of a digest."""
    images = [random_image(1, 16, seed=100 + i) for i in range(4)]
    lay = Layout.create(tmp_path_factory.mktemp("model") / "l", fsync=False)
    model: list[tuple[Digest, str | None]] = []
    for op, i, ref in ops:
        d = images[i].digest()
        if op == "append":
            lay.append_image(images[i], ref_name=ref)
            model = [
                (md, mr) for md, mr in model if not ((md, mr) == (d, ref) or (ref and mr == ref))
            ]
            model.append((d, ref))
        else:
            lay.remove_descriptors(lambda x, d=d: x.digest == d)
            model = [(md, mr) for md, mr in model if md != d]
    assert [(x.digest, x.ref_name) for x in lay.descriptors()] == model
    lay.gc()
    assert lay.validate(fast=True) == []


def test_bad_paths_and_a_torn_index_json_give_one_line_errors(tmp_path: Path) -> None:
    from pycrane.errors import ManifestError

    afile = tmp_path / "afile"
    afile.write_bytes(b"x")
    for call in (Layout.create, Layout.open_or_create, Layout.open):
        with pytest.raises(StoreError) as e:
            call(afile)
        assert "\n" not in str(e.value) and str(afile) in str(e.value)
    lay = Layout.create(tmp_path / "l")
    lay.append_image(random_image(1, 10, seed=1), ref_name="t")
    raw = (tmp_path / "l" / "index.json").read_bytes()
    (tmp_path / "l" / "index.json").write_bytes(raw[: len(raw) // 2])  # a foreign torn write
    with pytest.raises(ManifestError) as m:
        Layout.open(tmp_path / "l").descriptors()
    assert "index.json" in str(m.value) and "\n" not in str(m.value)
    with pytest.raises(ManifestError):
        lay.append_image(random_image(1, 10, seed=2), ref_name="u")
    (problem,) = lay.validate()
    assert "index.json" in problem


def test_a_failed_blob_stops_the_other_downloads_and_is_what_is_raised(tmp_path: Path) -> None:
    """Layer 0 is a long download still running when layer 1 turns out corrupt: layer 0
    gives up at its next chunk instead of running to its end, the corruption is raised,
    and nothing of either is left in the layout."""
    import io
    import time

    from pycrane.random import image_from_layers
    from pycrane.v1.image import BytesLayer

    failed = threading.Event()

    class Endless(io.RawIOBase):
        pieces = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:  # type: ignore[override]
            failed.wait(10)
            time.sleep(0.001)
            Endless.pieces += 1
            return b"\0" * 1024

    class Slow(BytesLayer):
        def compressed(self):  # type: ignore[no-untyped-def]
            return Endless()

    class Corrupt(BytesLayer):
        def compressed(self):  # type: ignore[no-untyped-def]
            class Once(io.BytesIO):
                def read(self, n: int | None = -1) -> bytes:
                    data = super().read(n)
                    if not data:
                        failed.set()
                    return data

            return Once(b"y" + self.data[1:])

    big = bytes(64 << 20)
    small = b"x" * 4096
    img = image_from_layers(
        [
            Slow(big, mt.OCI_LAYER, diff_id=Digest.from_bytes(big)),
            Corrupt(small, mt.OCI_LAYER, diff_id=Digest.from_bytes(small)),
        ]
    )
    lay = Layout.create(tmp_path / "l")
    with pytest.raises(DigestMismatch):
        lay.append_image(img, ref_name="t", jobs=2)
    assert Endless.pieces < 64 * 1024  # stopped before its end
    assert lay.validate() == []
    assert not (tmp_path / "l" / "blobs" / "sha256" / Digest.from_bytes(big).hex).exists()
    assert [p for p in (tmp_path / "l" / "ingest").rglob("*") if p.is_file()] == []
