"""Platforms: parsing, containerd's normalisation, matching, the host platform, and
picking an index child."""

from __future__ import annotations

import platform as stdlib_platform
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycrane.errors import InvalidPlatform, ManifestError
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.match import select
from pycrane.v1.platform import DEFAULT_PLATFORM, Platform, _host_arch


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("windows/amd64:10.0.17763.1234", Platform("windows", "amd64", None, "10.0.17763.1234")),
        ("linux/arm/v7:1", Platform("linux", "arm", "v7", "1")),
        ("  linux/s390x \n", Platform("linux", "s390x")),
    ],
)
def test_parse(text: str, expected: Platform) -> None:
    p = Platform.parse(text)
    assert p == expected
    assert Platform.parse(str(p)) == p
    assert Platform.parse(p) is p


@pytest.mark.parametrize(
    "text",
    [
        "",
        "linux",
        "linux/",
        "/amd64",
        "linux//v7",
        "linux/arm/v7/extra",
        "linux/amd64:",
        "linux/amd64:a:b",
        "linux/ amd64",
        "linux/amd64/",
        "linux/amd64\n/v8",
        "lin ux/amd64",
        "linux/amd64:10 0",
        "linux/amd64:😀",
        "linux/a*",
        "**/amd64",
    ],
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(InvalidPlatform) as info:
        Platform.parse(text)
    assert str(info.value).isprintable()
    assert repr(text) in str(info.value)


def test_parse_non_string() -> None:
    with pytest.raises(InvalidPlatform, match="expected a string"):
        Platform.parse(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given_", "normal"),
    [
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("Linux/AMD64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm64/8", "linux/arm64"),
        ("linux/arm64/v8.0", "linux/arm64"),
        ("linux/arm64/9", "linux/arm64/v9"),
        ("linux/arm64/v9.0", "linux/arm64/v9"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/6", "linux/arm/v6"),
        ("linux/arm/5", "linux/arm/v5"),
        ("linux/arm/8", "linux/arm/v8"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armhf/v6", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("linux/i686", "linux/386"),
        ("linux/386/whatever", "linux/386"),
        ("macos/arm64", "darwin/arm64"),
        ("windows/amd64:10.0.1", "windows/amd64:10.0.1"),
        ("linux/riscv64", "linux/riscv64"),
    ],
)
def test_normalized(given_: str, normal: str) -> None:
    assert str(Platform.parse(given_).normalized()) == normal


@pytest.mark.parametrize(
    ("want", "offered", "ok"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/x86_64", True),
        ("linux/x86_64", "linux/amd64", True),
        ("linux/amd64", "linux/amd64/v3", True),  # no variant wanted: any goes
        ("linux/amd64/v3", "linux/amd64", False),
        ("linux/amd64/v1", "linux/amd64", True),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64/v8", "linux/arm64", True),
        ("linux/arm64/v8", "linux/aarch64", True),
        ("linux/aarch64", "linux/arm64/v8", True),
        ("linux/arm64/v8", "linux/arm64/v9", False),
        ("linux/arm", "linux/arm/v7", True),
        ("linux/arm", "linux/arm/v6", True),
        ("linux/arm/v7", "linux/arm", True),
        ("linux/arm/v7", "linux/armhf", True),
        ("linux/arm/v7", "linux/arm/v6", False),
        ("linux/arm/v6", "linux/armel", True),
        ("linux/amd64", "windows/amd64", False),
        ("linux/amd64", "linux/arm64", False),
        ("windows/amd64", "windows/amd64:10.0.17763.1", True),
        ("windows/amd64:10.0.17763.1", "windows/amd64:10.0.17763.1", True),
        ("windows/amd64:10.0.17763.1", "windows/amd64:10.0.20348.1", False),
        ("windows/amd64:10.0.17763.1", "windows/amd64", False),
        ("linux/*", "linux/arm64/v8", True),
        ("linux/*", "linux/s390x", True),
        ("linux/*", "windows/amd64", False),
        ("*/arm64", "darwin/aarch64", True),
        ("*/arm64", "linux/amd64", False),
        ("*/*", "plan9/mips", True),
        ("linux/arm/*", "linux/arm/v6", True),
        ("linux/arm/*", "linux/arm64", False),
    ],
)
def test_satisfied_by(want: str, offered: str, ok: bool) -> None:
    assert Platform.parse(want).satisfied_by(Platform.parse(offered)) is ok


def test_features_must_be_a_subset() -> None:
    want = Platform("windows", "amd64", os_features=("win32k",))
    assert want.satisfied_by(Platform("windows", "amd64", os_features=("win32k", "x")))
    assert not want.satisfied_by(Platform("windows", "amd64"))
    assert Platform("windows", "amd64").satisfied_by(want)


def test_dict_round_trip_and_errors() -> None:
    p = Platform("windows", "amd64", "v2", "10.0.1", ("win32k",), ("sse4",))
    d = p.to_dict()
    assert d == {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.1",
        "os.features": ["win32k"],
        "variant": "v2",
        "features": ["sse4"],
    }
    assert Platform.from_dict(d) == p
    assert Platform.from_dict({"os": "linux", "architecture": "arm", "variant": ""}).variant is None
    bad = [
        ([], "platform: expected an object"),
        ({"os": "linux"}, "'os' and 'architecture'"),
        ({"os": "linux", "architecture": 1}, "'os' and 'architecture'"),
        ({"os": "linux", "architecture": "arm", "variant": 7}, "platform.variant"),
        ({"os": "w", "architecture": "a", "os.version": 1}, "platform.os.version"),
        ({"os": "w", "architecture": "a", "os.features": "x"}, "platform.os.features"),
        ({"os": "w", "architecture": "a", "features": [1]}, "platform.features"),
    ]
    for obj, fragment in bad:
        with pytest.raises(ManifestError) as info:
            Platform.from_dict(obj)  # type: ignore[arg-type]
        assert fragment in str(info.value)


# --- the host ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", "linux/amd64"),
        ("AMD64", "linux/amd64"),  # Windows spells it this way
        ("aarch64", "linux/arm64"),
        ("arm64", "linux/arm64"),  # macOS
        ("armv7l", "linux/arm/v7"),
        ("armv6l", "linux/arm/v6"),
        ("armv5tel", "linux/arm/v5"),
        ("i686", "linux/386"),
        ("x86", "linux/386"),
        ("ppc64le", "linux/ppc64le"),
        ("s390x", "linux/s390x"),
        ("riscv64", "linux/riscv64"),
    ],
)
def test_host_arch(machine: str, expected: str) -> None:
    arch, variant = _host_arch(machine)
    assert str(Platform("linux", arch, variant or None).normalized()) == expected


def test_host() -> None:
    host = Platform.host()
    assert host == host.normalized()
    expected_os = {"linux": "linux", "darwin": "darwin", "win32": "windows"}.get(sys.platform)
    if expected_os:
        assert host.os == expected_os
    machine = stdlib_platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        assert host.architecture == "amd64"
    elif machine in ("aarch64", "arm64"):
        assert host.architecture == "arm64"
    assert host.satisfied_by(host)


# --- select --------------------------------------------------------------------------------------


def _child(platform: str | None, n: int) -> Descriptor:
    return Descriptor.from_bytes(
        mt.OCI_MANIFEST,
        f"manifest {n}".encode(),
        platform=Platform.parse(platform) if platform else None,
    )


def _pick(children: list[str | None], want: str) -> int | None:
    descs = [_child(p, i) for i, p in enumerate(children)]
    got = select(descs, want)
    return None if got is None else descs.index(got)


@pytest.mark.parametrize(
    ("children", "want", "index"),
    [
        (["linux/amd64", "linux/arm64"], "linux/arm64", 1),
        (["linux/arm64", "linux/arm64/v8"], "linux/arm64/v8", 1),  # exact spelling first
        (["linux/arm64/v8", "linux/arm64"], "linux/arm64", 1),
        (["linux/arm64/v8"], "linux/arm64", 0),
        (["linux/arm64"], "linux/aarch64", 0),
        (["linux/arm/v6", "linux/arm/v7"], "linux/arm", 1),  # arm means arm/v7
        (["linux/arm/v6", "linux/arm/v7"], "linux/arm/v6", 0),
        (["linux/arm/v6"], "linux/arm", 0),  # acceptable when nothing is better
        (["linux/arm/v6"], "linux/arm/v7", None),
        (["linux/arm/v6", "linux/arm/v7"], "linux/arm/v5", None),
        ([None], "linux/amd64", 0),  # no platform counts as linux/amd64
        ([None, "linux/amd64"], "linux/amd64", 1),  # ... below one that says so
        ([None, "linux/x86_64"], "linux/amd64", 0),
        ([None], "linux/arm64", None),
        (["unknown/unknown", "linux/amd64"], "linux/amd64", 1),
        (["linux/amd64", "linux/amd64"], "linux/amd64", 0),  # ties go to the first
        (["linux/amd64/v2", "linux/amd64"], "linux/amd64", 1),
        (["linux/amd64/v2", "linux/amd64/v3"], "linux/amd64", 0),
        (
            ["windows/amd64:10.0.17763.1", "windows/amd64:10.0.20348.1"],
            "windows/amd64:10.0.20348.1",
            1,
        ),
        (["windows/amd64:10.0.17763.1"], "windows/amd64", 0),
        ([], "linux/amd64", None),
        (["windows/amd64", "linux/s390x", "linux/amd64"], "linux/*", 1),
        (["linux/arm/v6", "linux/arm/v7"], "linux/arm/*", 0),
    ],
)
def test_select(children: list[str | None], want: str, index: int | None) -> None:
    assert _pick(children, want) == index


def test_select_accepts_platform_objects_and_default() -> None:
    descs = [_child("linux/arm64", 0), _child(None, 1)]
    assert select(descs, DEFAULT_PLATFORM) is descs[1]
    assert select(iter(descs), Platform("linux", "arm64")) is descs[0]
    with pytest.raises(InvalidPlatform):
        select(descs, "linux")


# --- properties ----------------------------------------------------------------------------------

_oses = st.sampled_from(["linux", "windows", "darwin", "Linux", "macos", "freebsd", "*"])
_arches = st.sampled_from(
    [
        *("amd64", "x86_64", "x86-64", "AMD64", "arm64", "aarch64", "arm", "armhf", "armel"),
        *("386", "i386", "i686", "ppc64le", "s390x", "riscv64", "mips64le", "*"),
    ]
)
_variants = st.sampled_from(
    [
        None,
        "v1",
        "v2",
        "v3",
        "v5",
        "v6",
        "v7",
        "v8",
        "v9",
        "5",
        "6",
        "7",
        "8",
        "9",
        "v8.0",
        "V8",
        "*",
    ]
)
_versions = st.sampled_from([None, "10.0.17763.1", "10.0.20348.2"])


@st.composite
def platforms(draw: st.DrawFn) -> Platform:
    return Platform(draw(_oses), draw(_arches), draw(_variants), draw(_versions))


@settings(max_examples=300, deadline=None)
@given(platforms())
def test_normalisation_is_idempotent(p: Platform) -> None:
    n = p.normalized()
    assert n.normalized() == n
    assert Platform.parse(str(p)) == p


@settings(max_examples=300, deadline=None)
@given(platforms())
def test_matching_is_reflexive(p: Platform) -> None:
    assert p.satisfied_by(p)
    assert p.satisfied_by(p.normalized())
    assert p.normalized().satisfied_by(p)


@settings(max_examples=300, deadline=None)
@given(platforms(), _variants)
def test_a_variantless_want_matches_every_variant(p: Platform, variant: str | None) -> None:
    want = Platform(p.os, p.architecture)
    assert want.satisfied_by(Platform(p.os, p.architecture, variant, p.os_version))
    assert Platform(p.os, p.architecture, "*").satisfied_by(
        Platform(p.os, p.architecture, variant, p.os_version)
    )


@settings(max_examples=300, deadline=None)
@given(platforms(), platforms())
def test_wildcards_accept_whatever_they_stand_for(want: Platform, offered: Platform) -> None:
    wild = Platform("*", "*", None, want.os_version)
    assert wild.satisfied_by(offered) == (
        want.os_version is None or want.os_version == offered.os_version
    )
    if want.satisfied_by(offered):
        assert Platform("*", want.architecture, want.variant, want.os_version).satisfied_by(offered)
        assert Platform(want.os, "*", None, want.os_version).satisfied_by(offered)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), platforms()), max_size=6), platforms())
def test_select_finds_the_best_acceptable_child(
    offered: list[Platform | None], want: Platform
) -> None:
    descs = [
        Descriptor.from_bytes(mt.OCI_MANIFEST, str(i).encode(), platform=p)
        for i, p in enumerate(offered)
    ]
    got = select(descs, want)
    acceptable = [d for d in descs if want.satisfied_by(d.platform or DEFAULT_PLATFORM)]
    if not acceptable:
        assert got is None
        return
    assert got in acceptable
    spelled = [
        d
        for d in acceptable
        if d.platform is not None
        and (d.platform.os, d.platform.architecture, d.platform.variant)
        == (want.os, want.architecture, want.variant)
    ]
    if spelled:
        assert got is spelled[0]
