"""Interrupted tarball pulls resume through the layer cache (issue 12, ``pull -c``).

A tarball appears whole or not at all (issue 11.3), so an interrupted ``pull
--format tarball`` keeps nothing beside its target. With ``-c/--cache_path`` the
layers are downloaded into that BlobStore first, as digest-named partials under
their writer's lock: after Ctrl-C, SIGTERM or a lost network they stay, and the
same pull continues them with ``Range``. Bytes are counted at the registry side
(tests/faultproxy.py), as in tests/test_resume.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pycrane import crane, tarball
from pycrane.errors import DigestMismatch, TransportError
from tests.faultproxy import Fault, FaultProxy
from tests.test_resume import CHUNK, IMG, _cli, blob_gets, client, layer_digests, partials, push

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def ref(pycrane_registry: Any) -> str:
    return push(pycrane_registry, "resume/tarball", IMG)


@pytest.fixture
def proxy(pycrane_registry: Any) -> Iterator[FaultProxy]:
    p = FaultProxy(pycrane_registry.host).start()
    try:
        yield p
    finally:
        p.stop()


def _via(ref: str, proxy: FaultProxy) -> str:
    return ref.replace(ref.split("/", 1)[0], proxy.host)


def _sizes() -> int:
    return sum(d.size for d in IMG.manifest().layers)


def _match() -> str:
    return rf"/blobs/sha256:({'|'.join(d.hex for d in layer_digests(IMG))})"


def _lose_network(proxy: FaultProxy, after: int, *, parallel: bool = True) -> None:
    """Every running layer's connection breaks after ``after`` bytes, and no resume
    gets through (the legacy writer fetches one layer at a time)."""
    n = len(IMG.layers()) if parallel else 1
    proxy.add(Fault("drop", match=_match(), method="GET", after=after, count=n))
    proxy.add(Fault("reset", match=_match(), method="GET", skip=n, count=-1))


def _check_tarball(path: Path) -> None:
    img = tarball.image_from_path(path)
    assert img.digest() == IMG.digest()
    for layer in img.layers():
        with layer.compressed() as f:  # verified against its digest as it is read
            while f.read(1 << 20):
                pass


def _beside(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir())


@pytest.mark.parametrize("fmt", ["tarball", "legacy"])
def test_network_loss_keeps_cached_partials_and_the_rerun_fetches_only_the_rest(
    proxy: FaultProxy, ref: str, tmp_path: Path, fmt: str
) -> None:
    out, cache = tmp_path / "out" / "img.tar", tmp_path / "cache"
    _lose_network(proxy, after=2_500_000, parallel=fmt == "tarball")
    with client() as c, pytest.raises(TransportError) as info:
        crane.pull([_via(ref, proxy)], out, format=fmt, cache_path=cache, jobs=3, client=c)
    proxy.clear()
    assert not out.parent.exists()  # nothing half-written beside the target
    kept = partials(cache)
    assert kept and all(0 < n <= 2_500_000 for n in kept.values()), kept
    notes = getattr(info.value, "__notes__", [])
    assert len(notes) == 1 and "run the same command again to resume" in notes[0], notes
    missing = _sizes() - sum(kept.values())

    with client() as c:
        crane.pull([_via(ref, proxy)], out, format=fmt, cache_path=cache, jobs=3, client=c)
    gets = blob_gets(proxy, IMG)
    assert len(gets) == len(IMG.layers()), gets
    assert sum(1 for g in gets if g.range is not None and g.status == 206) == len(kept), gets
    fetched = sum(g.sent for g in gets)
    print(f"\n{fmt}: kept {sum(kept.values())}, missing {missing}, re-fetched {fetched}")
    assert fetched <= missing + CHUNK * len(gets), (fetched, missing)
    assert partials(cache) == {}
    assert _beside(out) == ["img.tar"]
    if fmt == "tarball":
        _check_tarball(out)


def test_a_registry_that_ignores_range_gives_a_full_download(
    proxy: FaultProxy, ref: str, tmp_path: Path
) -> None:
    out, cache = tmp_path / "img.tar", tmp_path / "cache"
    _lose_network(proxy, after=2_000_000)
    with client() as c, pytest.raises(TransportError):
        crane.pull([_via(ref, proxy)], out, cache_path=cache, jobs=3, client=c)
    proxy.clear()
    kept = partials(cache)
    assert kept
    proxy.add(Fault("ignore_range", count=-1))
    with client() as c:
        crane.pull([_via(ref, proxy)], out, cache_path=cache, jobs=3, client=c)
    gets = blob_gets(proxy, IMG)
    assert sum(1 for g in gets if g.fault == "ignore_range") == len(kept), gets
    assert all(g.status == 200 for g in gets)
    assert sum(g.sent for g in gets) == _sizes()
    _check_tarball(out)
    assert partials(cache) == {}


def test_a_failure_that_is_not_an_interruption_leaves_no_partial(
    proxy: FaultProxy, ref: str, tmp_path: Path
) -> None:
    """A digest mismatch is a failure: no tarball, no temp file, no partial in the cache."""
    out, cache = tmp_path / "out" / "img.tar", tmp_path / "cache"
    bad = layer_digests(IMG)[0]
    proxy.add(Fault("corrupt", match=f"/blobs/{bad}", method="GET", after=3_000_000, count=-1))
    with client() as c, pytest.raises(DigestMismatch) as info:
        crane.pull([_via(ref, proxy)], out, cache_path=cache, jobs=3, client=c)
    assert not getattr(info.value, "__notes__", [])
    assert not out.parent.exists()
    assert partials(cache) == {}


def test_cli_network_loss_says_so_in_one_line_and_the_rerun_resumes(
    proxy: FaultProxy, ref: str, tmp_path: Path
) -> None:
    out, cache = tmp_path / "img.tar", tmp_path / "cache"
    src = _via(ref, proxy)
    proxy.add(Fault("drop", match=_match(), after=500_000, count=-1))
    p = _cli(["pull", "--timeout", "5", "-c", str(cache), src, str(out)])
    _, err = p.communicate(timeout=120)
    assert p.returncode == 1, err
    lines = err.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("pycrane: error: ") and lines[0].endswith(
        "run the same command again to resume"
    ), lines[0]
    assert _beside(out) == ["cache"]
    kept = partials(cache)
    assert kept
    missing = _sizes() - sum(kept.values())
    proxy.clear()
    p = _cli(["pull", "-c", str(cache), src, str(out)])
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    gets = blob_gets(proxy, IMG)
    assert sum(g.sent for g in gets) <= missing + CHUNK * len(gets)
    _check_tarball(out)


def test_without_a_cache_an_interrupted_tarball_pull_keeps_nothing(
    proxy: FaultProxy, ref: str, tmp_path: Path
) -> None:
    """The documented limit: without -c nothing outlives the run, and nothing is claimed."""
    out = tmp_path / "out" / "img.tar"
    _lose_network(proxy, after=2_000_000)
    with client() as c, pytest.raises(TransportError) as info:
        crane.pull([_via(ref, proxy)], out, jobs=3, client=c)
    assert not out.parent.exists()
    assert not getattr(info.value, "__notes__", [])
