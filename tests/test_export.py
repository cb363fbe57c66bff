"""Export/extract semantics that do not need umoci, and hostile layers."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from pycrane import mutate
from pycrane.errors import TarballError, UnsafePathError, VerificationError
from pycrane.mutate import safe_name
from pycrane.random import image_from_layers
from pycrane.v1.image import BytesLayer
from tests.test_export_helpers import E, image_of, names_in, tar_bytes, tree_of, untar


def export_bytes(*layers: list) -> bytes:
    out = io.BytesIO()
    mutate.export(image_of(*layers), out)
    return out.getvalue()


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name: m for m in t}


def test_directory_replaced_by_file_then_recreated_hides_old_children(tmp_path: Path) -> None:
    data = export_bytes(
        [E("x", "d"), E("x/old", "f", b"old")],
        [E("x", "f", b"file")],
        [E("x", "d"), E("x/new", "f", b"new")],
    )
    untar(data, tmp_path)
    tree, _ = tree_of(tmp_path)
    assert set(tree) == {"x", "x/new"}


def test_top_layer_wins_and_whiteouts_are_not_emitted() -> None:
    data = export_bytes(
        [E("a", "f", b"1"), E("b", "f", b"b")],
        [E("a", "f", b"2"), E(".wh.b")],
    )
    m = members(data)
    assert set(m) == {"a"}
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        f = t.extractfile("a")
        assert f is not None and f.read() == b"2"


def test_whiteout_of_missing_path_and_root_opaque() -> None:
    data = export_bytes(
        [E("keep", "f", b"k"), E("d", "d"), E("d/x", "f", b"x")],
        [E(".wh..wh..opq"), E("only", "f", b"o"), E(".wh.never-existed")],
    )
    assert names_in(data) == ["only"]


def test_hard_link_follows_its_target_in_output_order() -> None:
    data = export_bytes([E("t", "f", b"t")], [E("hl", "h", "t")])
    order = names_in(data)
    assert order.index("t") < order.index("hl")
    assert members(data)["hl"].linkname == "t"


def test_leading_slash_and_dot_slash_are_normalised() -> None:
    data = export_bytes([E("/abs", "f", b"a"), E("./rel/", "d"), E("./rel/f", "f", b"r")])
    assert sorted(names_in(data)) == ["abs", "rel", "rel/f"]


def test_long_names_and_non_ascii_survive(tmp_path: Path) -> None:
    long = "d/" + "n" * 200
    data = export_bytes([E("d", "d"), E(long, "f", b"x"), E("ü €", "f", b"u")])
    assert set(names_in(data)) == {"d", long, "ü €"}


def test_extract_is_deterministic() -> None:
    layers = ([E("a", "f", b"1"), E("z", "d")], [E("z/y", "f", b"2"), E(".wh.a")])
    assert export_bytes(*layers) == export_bytes(*layers)


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        pytest.param([E("../evil", "f", b"x")], "escapes the root", id="dotdot"),
        pytest.param([E("a/../../evil", "f", b"x")], "escapes the root", id="dotdot-inner"),
        pytest.param([E("hl", "h", "../../etc/passwd")], "escapes the root", id="hardlink-out"),
        pytest.param(
            [E("evil", "l", "/etc"), E("evil/passwd", "f", b"x")],
            "through symlink 'evil'",
            id="symlink-then-write-through",
        ),
        pytest.param(
            [E("evil", "l", "../../.."), E("evil/x", "d")],
            "through symlink 'evil'",
            id="symlink-dir-escape",
        ),
        pytest.param(
            [E("evil", "l", "/etc"), E("hl", "h", "evil/passwd")],
            "goes through symlink 'evil'",
            id="hardlink-through-symlink",
        ),
    ],
)
def test_malicious_layers_are_rejected(entries: list, needle: str) -> None:
    with pytest.raises(UnsafePathError, match=needle) as info:
        export_bytes(entries)
    assert "\n" not in str(info.value)


def test_symlink_in_lower_layer_then_write_through_in_upper_is_rejected() -> None:
    with pytest.raises(UnsafePathError, match="symlink 'lib'"):
        export_bytes([E("lib", "l", "/etc")], [E("lib", "d"), E("lib/x", "f", b"x")][1:])


def test_symlinks_with_absolute_targets_are_kept_verbatim() -> None:
    m = members(export_bytes([E("sh", "l", "/bin/busybox"), E("up", "l", "../x")]))
    assert m["sh"].linkname == "/bin/busybox" and m["up"].linkname == "../x"


def test_safe_name() -> None:
    assert safe_name("/a/b", "t") == "a/b"
    assert safe_name("./a//b/", "t") == "a/b"
    assert safe_name("/../a", "t") == "a"  # absolute: '..' stops at the root
    assert safe_name(".", "t") == ""
    with pytest.raises(UnsafePathError):
        safe_name("a/../..", "t")


def test_abandoned_extract_reader_can_be_closed() -> None:
    img = image_of([E(f"f{i}", "f", b"x" * 5000) for i in range(50)])
    r = mutate.extract(img)
    assert r.read(1000)
    r.close()  # must not hang or leak: the generator closes its layer streams


def test_corrupt_layer_fails_export() -> None:
    good = BytesLayer(gzip.compress(tar_bytes([E("a", "f", b"x" * 1000)]), mtime=0))

    class Tampered(BytesLayer):
        def compressed(self):  # type: ignore[no-untyped-def]
            # a valid gzip of a valid tar, but not the bytes the digest names
            return io.BytesIO(gzip.compress(tar_bytes([E("a", "f", b"y" * 1000)]), mtime=0))

    bad = Tampered(good.data, good.media_type(), diff_id=good.diff_id())
    out = io.BytesIO()
    with pytest.raises(VerificationError, match="digest mismatch"):
        mutate.export(image_from_layers([bad]), out)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"definitely not a tar archive" * 40, id="garbage"),
        pytest.param(tar_bytes([E("big", "f", b"x" * 5000)])[:3000], id="truncated"),
    ],
)
def test_malformed_layer_tar_is_one_clear_error(payload: bytes) -> None:
    img = image_from_layers([BytesLayer(gzip.compress(payload, mtime=0))])
    with pytest.raises(TarballError, match="layer") as info:
        mutate.export(img, io.BytesIO())
    assert "\n" not in str(info.value)


def test_zero_length_layer_is_an_empty_layer() -> None:
    img = image_from_layers([BytesLayer(b"", "application/vnd.oci.image.layer.v1.tar")])
    out = io.BytesIO()
    mutate.export(img, out)
    assert out.getvalue() == b"\0" * 1024
