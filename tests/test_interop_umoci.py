"""Flatten/export compared with umoci's unpacked rootfs, the reference implementation
of OCI layer application (whiteouts, opaque dirs, replacements, links)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pycrane import mutate
from pycrane.layout import Layout
from pycrane.v1.image import Image
from tests.test_export_helpers import E, image_of, tree_of, untar

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed"),
]


def umoci_tree(img: Image, tmp: Path) -> tuple[dict, set]:
    layout = tmp / "layout"
    Layout.create(layout).append_image(img, ref_name="t")
    bundle = tmp / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:t", str(bundle)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return tree_of(bundle / "rootfs")


def ours_tree(img: Image, tmp: Path) -> tuple[dict, set]:
    with mutate.extract(img) as r:
        data = r.read()
    untar(data, tmp / "ours")
    return tree_of(tmp / "ours")


def flat_tree(img: Image, tmp: Path) -> tuple[dict, set]:
    flat = mutate.flatten(img)
    assert len(flat.layers()) == 1
    with flat.layers()[0].uncompressed() as r:
        data = r.read()
    untar(data, tmp / "flat")
    return tree_of(tmp / "flat")


LOWER = [
    E("etc", "d"),
    E("etc/a", "f", b"a-1"),
    E("etc/sub", "d"),
    E("etc/sub/x", "f", b"x"),
    E("etc/sub/y", "f", b"y", 0o600),
    E("var", "d"),
    E("var/keep", "f", b"keep"),
    E("var/drop", "f", b"drop"),
    E("var/dropdir", "d"),
    E("var/dropdir/deep", "f", b"deep"),
    E("opq", "d"),
    E("opq/o1", "f", b"o1"),
    E("opq/sub", "d"),
    E("opq/sub/o2", "f", b"o2"),
    E("rep", "d"),
    E("rep/inner", "f", b"inner"),
    E("file2dir", "f", b"was a file"),
    E("t", "f", b"target", 0o755),
    E("t_hl", "h", "t"),
    E("sl", "l", "etc/a"),
    E("abs_sl", "l", "/etc/a"),
    E("bin", "f", b"#!/bin/sh\n", 0o755),
]
MIDDLE = [
    E("var", "d"),
    E("var/.wh.drop"),
    E("var/.wh.dropdir"),
    E("opq", "d"),
    E("opq/.wh..wh..opq"),
    E("opq/o3", "f", b"o3"),
    E("rep", "f", b"now a file"),
    E("file2dir", "d", mode=0o750),
    E("file2dir/f", "f", b"f"),
    E("etc", "d"),
    E("etc/a", "f", b"a-2"),
    E("etc/a_hl", "h", "etc/a"),
    E("lower_hl", "h", "t"),
]
UPPER = [
    E(".wh.sl"),
    E("etc", "d"),
    E("etc/sub", "d"),
    E("etc/sub/.wh.x"),
    E("new", "d", mode=0o700),
    E("new/file", "f", b"new"),
    E("rep", "d"),
    E("rep/again", "f", b"dir again"),
]


@pytest.mark.parametrize(
    "layers",
    [
        pytest.param([LOWER], id="one-layer"),
        pytest.param([LOWER, MIDDLE], id="whiteouts-opaque-replacements"),
        pytest.param([LOWER, MIDDLE, UPPER], id="three-layers"),
    ],
)
def test_extract_matches_umoci(layers: list, tmp_path: Path) -> None:
    img = image_of(*layers)
    theirs = umoci_tree(img, tmp_path)
    ours = ours_tree(img, tmp_path)
    assert ours[0] == theirs[0]
    assert ours[1] == theirs[1]
    # flatten gives the same filesystem in a single layer
    assert flat_tree(img, tmp_path) == theirs


def test_scenario_is_not_trivial(tmp_path: Path) -> None:
    """The comparison above must exercise every rule: check a few landmarks directly."""
    tree, links = ours_tree(image_of(LOWER, MIDDLE, UPPER), tmp_path)
    assert "var/drop" not in tree and "var/dropdir" not in tree and "var/keep" in tree
    assert "opq/o1" not in tree and "opq/sub" not in tree and "opq/o3" in tree
    assert tree["rep"][0] == "d" and "rep/inner" not in tree and "rep/again" in tree
    assert tree["file2dir"] == ("d", 0o750) and "file2dir/f" in tree
    assert "sl" not in tree and tree["abs_sl"] == ("l", "/etc/a")
    assert "etc/sub/x" not in tree and tree["etc/sub/y"][1] == 0o600
    assert frozenset({"etc/a", "etc/a_hl"}) in links
    assert frozenset({"t", "t_hl", "lower_hl"}) in links


def test_hard_link_to_replaced_target_matches_umoci(tmp_path: Path) -> None:
    """A link made in layer 2 to a file that layer 3 replaces keeps layer 1's content."""
    img = image_of(
        [E("t", "f", b"old")],
        [E("hl", "h", "t"), E("hl2", "h", "t")],
        [E("t", "f", b"new")],
    )
    theirs = umoci_tree(img, tmp_path)
    ours = ours_tree(img, tmp_path)
    assert ours == theirs


# -- differential testing: random layer stacks, umoci as the oracle -------------------

_PATHS = ["a", "b", "a/x", "a/y", "a/x/deep", "a/x/e", "b/z", "b/z/q", "c", "d"]


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _draw_layer(draw: st.DrawFn, lower_files: set[str]) -> list[tuple]:
    """One layer's entries; hard links may point at files of this layer or, when
    nothing in this layer touched them, at regular files of the layers below."""
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["f", "d", "l", "wh", "opq", "h", "h"]),
                st.sampled_from(_PATHS),
                st.binary(max_size=8),
            ),
            min_size=1,
            max_size=14,
        )
    )
    entries: list[tuple] = []
    used: set[str] = set()  # paths this layer already says something about
    non_dirs: set[str] = set()  # paths that are files/links/whiteouts in this layer
    opaque: set[str] = set()
    files: list[str] = []
    dirs_done: set[str] = set()

    def ok(path: str) -> bool:
        return path not in used and not any(p in non_dirs for p in _parents(path))

    def add_dirs(path: str) -> bool:
        for p in _parents(path):
            if p in non_dirs:
                return False
        for p in _parents(path):
            if p not in dirs_done:
                entries.append(E(p, "d"))
                dirs_done.add(p)
                used.add(p)
        return True

    def lower_ok(target: str) -> bool:
        return (
            target in lower_files
            and target not in used
            and not any(p in used and p not in dirs_done for p in _parents(target))
            and not any(p in opaque for p in _parents(target))
        )

    # opaque markers first, right after their directory
    for kind, path, _ in ops:
        if kind == "opq" and path not in used and add_dirs(path + "/m"):
            entries.append(E(path + "/.wh..wh..opq"))
            opaque.add(path)
    for kind, path, data in ops:
        if kind == "opq" or not ok(path) or any(path.startswith(d + "/") for d in non_dirs):
            continue
        if kind == "d":
            if path in dirs_done or not add_dirs(path):
                continue
            entries.append(E(path, "d"))
            dirs_done.add(path)
        elif path in dirs_done:
            continue
        elif kind == "h":
            if not add_dirs(path):
                continue
            targets = [
                t
                for t in files + sorted(t for t in lower_files if lower_ok(t))
                if t != path and not t.startswith(path + "/")
            ]
            if not targets:
                continue
            entries.append(E(path, "h", targets[len(data) % len(targets)]))
        elif not add_dirs(path):
            continue
        elif kind == "f":
            entries.append(E(path, "f", data))
            files.append(path)
        elif kind == "l":
            entries.append(E(path, "l", "/" + _PATHS[len(data) % len(_PATHS)]))
        elif kind == "wh":
            parent, _, base = path.rpartition("/")
            entries.append(E(f"{parent}/.wh.{base}" if parent else f".wh.{base}"))
        used.add(path)
        if kind != "d":
            non_dirs.add(path)
    return entries


def _apply(files: set[str], entries: list[tuple]) -> set[str]:
    """The regular files after a layer: a tiny overlay model for choosing link targets."""
    out = set(files)

    def drop(p: str, *, below_only: bool = False) -> None:
        for f in list(out):
            if f.startswith(p + "/") or (not below_only and f == p):
                out.discard(f)

    for name, kind, _, _ in entries:
        parent, _, base = name.rpartition("/")
        if base == ".wh..wh..opq":
            drop(parent, below_only=True)
        elif base.startswith(".wh."):
            drop(f"{parent}/{base[4:]}" if parent else base[4:])
        elif kind in ("f", "h"):
            drop(name, below_only=True)
            out.add(name)
        else:
            drop(name)
    return out


@st.composite
def _stack(draw: st.DrawFn) -> list[list[tuple]]:
    layers = []
    files: set[str] = set()
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        entries = _draw_layer(draw, files)
        layers.append(entries)
        files = _apply(files, entries)
    return layers


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(layers=_stack())
def test_random_layer_stacks_match_umoci(
    layers: list, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("stack")
    img = image_of(*layers)
    assert ours_tree(img, tmp) == umoci_tree(img, tmp)


def test_link_to_a_file_replaced_later_in_the_same_layer_matches_umoci(tmp_path: Path) -> None:
    """Found by the differential test: the link precedes the replacement in the tar,
    so it keeps the lower layer's content."""
    img = image_of(
        [E("b", "d"), E("b/z", "f", b"old")],
        [E("a", "h", "b/z"), E("b", "d"), E("b/z", "f", b"new")],
    )
    assert ours_tree(img, tmp_path) == umoci_tree(img, tmp_path)


def test_link_to_a_lower_hard_link_matches_umoci(tmp_path: Path) -> None:
    """Found by the differential test: a link to a lower layer's hard link, whose own
    name is then replaced, shares the inode of that link's target."""
    img = image_of(
        [E("a", "f", b"old"), E("b", "h", "a")],
        [E("a", "h", "b"), E("b", "f", b"new")],
    )
    assert ours_tree(img, tmp_path) == umoci_tree(img, tmp_path)


@pytest.mark.parametrize(
    "layers",
    [
        pytest.param(
            [
                [E("a", "f", b"old"), E("b", "h", "a")],
                [E("d", "h", "b")],
                [E("a", "h", "d"), E("d", "f", b"new")],
            ],
            id="chain-ends-at-surviving-link",
        ),
        pytest.param(
            [
                [E("a", "f", b"old")],
                [E("b", "h", "a"), E("a", "f", b"new1")],
                [E("d", "h", "b"), E("b", "f", b"new2")],
            ],
            id="chain-through-replaced-link",
        ),
    ],
)
def test_hard_link_chains_match_umoci(layers: list, tmp_path: Path) -> None:
    """Found by the differential test with longer stacks."""
    img = image_of(*layers)
    assert ours_tree(img, tmp_path) == umoci_tree(img, tmp_path)
