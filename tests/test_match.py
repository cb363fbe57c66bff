"""The one platform matcher (pycrane.v1.match), and the commands that select through it.

The case that once split them: an index holding a nested index whose entry has no
platform. Selecting, filtering, pulling, copying and ``index filter`` must agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pycrane.cli import main
from pycrane.errors import NoMatchingPlatform
from pycrane.layout import Layout
from pycrane.random import random_image, random_index
from pycrane.remote import Client
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.image import Image, ImageIndex, SimpleIndex, is_index
from pycrane.v1.match import filter_index, matches, select_image
from pycrane.v1.platform import Platform
from tests.test_remote import unique


def _nested() -> tuple[SimpleIndex, Image, ImageIndex]:
    """outer = [amd64 image (platform stated), nested index (no platform) = [arm64, ppc64le]]."""
    inner = random_index(["linux/arm64", "linux/ppc64le"], seed=51)
    amd = random_image(1, 64, seed=52, platform=Platform("linux", "amd64"))
    outer = SimpleIndex.build([(None, amd), (inner.descriptor(), inner)])
    assert outer.index_manifest().manifests[1].platform is None
    return outer, amd, inner


def _platforms_of(idx: ImageIndex) -> list[str]:
    out = []
    for d in idx.index_manifest().manifests:
        child = idx.child(d)
        if is_index(child):
            out += _platforms_of(child)
        else:
            out.append(str(d.platform))
    return sorted(out)


def test_select_looks_into_a_nested_index_without_platform() -> None:
    outer, amd, inner = _nested()
    assert select_image(outer, "linux/amd64").digest() == amd.digest()
    arm = select_image(outer, "linux/arm64/v8")  # normalised: arm64/v8 is arm64
    assert arm.digest() == inner.image(inner.index_manifest().manifests[0].digest).digest()
    with pytest.raises(NoMatchingPlatform, match="linux/amd64, linux/arm64, linux/ppc64le"):
        select_image(outer, "linux/s390x")


def test_filter_keeps_platforms_inside_a_nested_index() -> None:
    outer, _, _ = _nested()
    both = filter_index(outer, ["linux/amd64", "linux/arm64"])
    assert _platforms_of(both) == ["linux/amd64", "linux/arm64"]
    assert filter_index(outer, ["linux/amd64", "linux/arm64", "linux/ppc64le"]) is outer
    only_nested = filter_index(outer, ["linux/ppc64le"])
    assert _platforms_of(only_nested) == ["linux/ppc64le"]
    with pytest.raises(NoMatchingPlatform, match="offers linux/amd64, linux/arm64"):
        filter_index(outer, ["windows/amd64"])


def test_an_image_without_platform_is_linux_amd64_ranked_below_a_stated_one() -> None:
    plain = random_image(1, 64, seed=53)
    stated = random_image(1, 64, seed=54, platform=Platform("linux", "amd64"))
    no_plat = plain.descriptor()
    assert no_plat.platform is None
    assert matches(no_plat, ["linux/amd64"]) and not matches(no_plat, ["linux/arm64"])
    idx = SimpleIndex.build([(no_plat, plain), (None, stated)])
    assert select_image(idx, "linux/amd64").digest() == stated.digest()
    alone = SimpleIndex.build([(no_plat, plain)])
    assert select_image(alone, "linux/amd64").digest() == plain.digest()
    unknown = stated.descriptor().with_platform(Platform("unknown", "unknown"))
    assert not matches(unknown, ["linux/amd64"])


def test_filter_keeps_media_type_annotations_and_subject() -> None:
    subject = Descriptor.from_bytes(mt.OCI_MANIFEST, b"{}")
    a = random_image(1, 64, seed=55, platform=Platform("linux", "amd64"))
    b = random_image(1, 64, seed=56, platform=Platform("linux", "arm64"))
    base = SimpleIndex.build([(None, a), (None, b)], media_type=mt.DOCKER_MANIFEST_LIST)
    im = base.index_manifest()
    from pycrane.v1.manifest import Index

    raw = Index.build(
        im.manifests, media_type=im.media_type, annotations={"k": "v"}, subject=subject
    )
    idx = SimpleIndex(raw, {a.digest(): a, b.digest(): b})
    out = filter_index(idx, ["linux/arm64"]).index_manifest()
    assert out.media_type == mt.DOCKER_MANIFEST_LIST
    assert out.annotations == {"k": "v"}
    assert out.subject == subject
    assert [d.digest for d in out.manifests] == [b.digest()]


@pytest.fixture
def nested_ref(pycrane_registry: Any) -> str:
    outer, _, _ = _nested()
    ref = f"{pycrane_registry.host}/{unique('match/nested')}:v"
    with Client() as c:
        c.write_index(ref, outer)
    return ref


def test_pull_copy_and_index_filter_agree_on_a_nested_index(
    nested_ref: str, pycrane_registry: Any, tmp_path: Path
) -> None:
    plats = "linux/amd64,linux/arm64"
    # pull --format oci: both platforms kept (it once said "offers no platforms").
    out = tmp_path / "oci"
    assert main(["pull", "--format", "oci", "--platform", plats, nested_ref, str(out)]) == 0
    (entry,) = Layout.open(out).descriptors()
    pulled = Layout.open(out).image_index(entry.digest)
    assert _platforms_of(pulled) == ["linux/amd64", "linux/arm64"]
    # copy: the same filtered index, by digest.
    dst = f"{pycrane_registry.host}/{unique('match/copy')}:v"
    assert main(["copy", "--platform", plats, nested_ref, dst]) == 0
    with Client() as c:
        assert c.head(dst).digest == entry.digest
        # index filter: the same again.
        flt = f"{pycrane_registry.host}/{unique('match/filter')}:v"
        assert main(["index", "filter", nested_ref, "--platform", plats, "-t", flt]) == 0
        assert c.head(flt).digest == entry.digest
        # One platform: copy and pull write that platform's image.
        one = f"{pycrane_registry.host}/{unique('match/one')}:v"
        assert main(["copy", "--platform", "linux/arm64", nested_ref, one]) == 0
        arm = c.image(nested_ref, "linux/arm64")
        assert c.get(one).raw == arm.raw_manifest()
    single = tmp_path / "single"
    assert (
        main(["pull", "--format", "oci", "--platform", "linux/arm64", nested_ref, str(single)]) == 0
    )
    (entry1,) = Layout.open(single).descriptors()
    assert entry1.digest == arm.digest()
