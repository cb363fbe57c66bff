"""``pycrane sync``: configuration, tag filters, and mirroring between real registries.

The end-to-end tests seed a CNCF distribution registry with 60 repositories x 5
tags sharing two base layers (300 images; the incremental test uses the issue's
full 200 x 5, and ``bench/sync_bench.py`` times that set against skopeo), then mirror it
into a second distribution instance and into pycrane's own server, through
:class:`tests.faultproxy.FaultProxy` so every request the destination receives is
counted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

import pycrane
from pycrane.random import image_from_layers
from pycrane.remote import Client, HostLimits
from pycrane.remote._limits import parse_rate_header
from pycrane.sync import ConfigError, SyncConfig, TagFilter, load_config
from pycrane.sync._schema import SchemaError, validate
from pycrane.sync.filters import SemverRange, Version
from pycrane.sync.plan import destination_for, split_source
from tests.faultproxy import Fault, FaultProxy, RateLimit
from tests.sync_data import TAGS, base_layers, seed

REPOS = 60
#: The issue's scale (200 repositories x 5 tags), used by the incremental test.
FULL = 200

# -- filters, config, schema (no registry) -------------------------------------------------

TAGLIST = ["1.0.0", "1.2.3", "v1.4.0", "2.0.0", "2.0.0-rc.1", "latest", "1.2", "3.1.4", "edge"]


@pytest.mark.parametrize(
    ("flt", "want"),
    [
        (TagFilter(), TAGLIST),
        (TagFilter(exact=("latest", "edge", "nope")), ["latest", "edge"]),
        (TagFilter(glob=("1.*",)), ["1.0.0", "1.2.3", "1.2"]),
        (TagFilter(regex=(r"^v\d",)), ["v1.4.0"]),
        (TagFilter(semver=">=1.2 <2"), ["1.2.3", "v1.4.0", "1.2"]),
        (TagFilter(semver="^1.2"), ["1.2.3", "v1.4.0", "1.2"]),
        (TagFilter(semver="~1.2"), ["1.2.3", "1.2"]),
        (TagFilter(semver="1.x || >=3"), ["1.0.0", "1.2.3", "v1.4.0", "1.2", "3.1.4"]),
        (TagFilter(semver=">=2.0.0-rc.0"), ["2.0.0", "2.0.0-rc.1", "3.1.4"]),
        (TagFilter(latest=2), ["3.1.4", "2.0.0"]),
        (TagFilter(semver="<3", latest=2), ["2.0.0", "v1.4.0"]),
        (
            TagFilter(glob=("*",), exclude=("*-rc*", "edge", "latest")),
            ["1.0.0", "1.2.3", "v1.4.0", "2.0.0", "1.2", "3.1.4"],
        ),
    ],
)
def test_tag_filters(flt: TagFilter, want: list[str]) -> None:
    assert flt.apply(TAGLIST) == want


def test_versions_order_as_semver_says() -> None:
    order = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0"]
    parsed = [Version.parse(v) for v in order]
    assert all(p is not None for p in parsed)
    assert sorted(parsed) == parsed  # type: ignore[type-var]
    assert Version.parse("latest") is None
    with pytest.raises(ValueError, match="cannot read"):
        SemverRange.parse(">=1.2 <<2")
    with pytest.raises(ValueError, match="regex"):
        TagFilter(regex=("(",))


def test_schema_errors_say_where() -> None:
    ok = {"sync": [{"source": "a.io/x", "destination": "b.io/x", "tags": {"latest": 2}}]}
    validate(ok)
    bad: list[tuple[Any, str]] = [
        ({}, "'sync' is required"),
        ({"sync": []}, "sync: needs at least 1"),
        ({"sync": [{"source": "a.io/x"}]}, "sync[0]: 'destination' is required"),
        ({"sync": [{"source": "a", "destination": "b", "tag": {}}]}, "unknown key 'tag'"),
        ({"sync": [{"source": "a", "destination": "b", "tags": {"latest": 0}}]}, "at least 1"),
        ({"sync": [{"source": "a", "destination": "b", "platforms": "some"}]}, "platforms"),
        ({"jobs": "4", "sync": [{"source": "a", "destination": "b"}]}, "jobs: must be integer"),
        ({"hosts": {"a.io": 0}, "sync": [{"source": "a", "destination": "b"}]}, "hosts.a.io"),
    ]
    for doc, message in bad:
        with pytest.raises(SchemaError, match=message.replace("[", r"\[").replace("]", r"\]")):
            validate(doc)


def test_config_yaml_and_json(tmp_path: Path) -> None:
    yml = tmp_path / "mirror.yaml"
    yml.write_text(
        "jobs: 3\nmax_per_host: 6\nhosts: {registry-1.docker.io: 2}\n"
        "defaults:\n  platforms: [linux/amd64]\n  referrers: true\n"
        "sync:\n"
        "  - source: a.io/lib/alpine\n    destination: b.io/mirror/alpine\n"
        "    tags: {semver: '>=3.18', latest: 3}\n"
        "  - source: a.io/org\n    recursive: true\n    destination: b.io/o/{repo}\n"
        "    platforms: all\n"
    )
    cfg = load_config(yml)
    assert cfg.jobs == 3
    limits = cfg.limits()
    assert (limits.concurrency, limits.per_host) == (6, {"registry-1.docker.io": 2})
    first, second = cfg.sources
    assert first.tags == TagFilter(semver=">=3.18", latest=3)
    assert [str(p) for p in first.platforms] == ["linux/amd64"] and first.referrers
    assert second.recursive and second.platforms == ()
    js = tmp_path / "mirror.json"
    doc = {"sync": [s.as_dict() for s in cfg.sources], "jobs": 3, "max_per_host": 6}
    js.write_text(json.dumps({**doc, "hosts": {"registry-1.docker.io": 2}}))
    assert load_config(js) == cfg
    (tmp_path / "bad.yaml").write_text("sync: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_destination_templates() -> None:
    cfg = SyncConfig.from_dict({"sync": [{"source": "a.io/ns", "destination": "b.io/m"}]})
    spec = cfg.sources[0]
    src = pycrane.Repository.parse("a.io/ns/team/app")
    assert str(destination_for(spec, src, "team/app")) == "b.io/m/team/app"
    assert str(destination_for(spec, src, "")) == "b.io/m"
    for template, want in [
        ("b.io/x/{repo}", "b.io/x/team/app"),
        ("b.io/x/{name}", "b.io/x/app"),
        ("b.io/{path}", "b.io/ns/team/app"),
    ]:
        s = SyncConfig.from_dict({"sync": [{"source": "a.io/ns", "destination": template}]})
        assert str(destination_for(s.sources[0], src, "team/app")) == want
    assert split_source("localhost:5000") == (pycrane.Registry("localhost:5000"), "")
    assert split_source("a.io/ns/x")[1] == "ns/x"


def test_rate_limit_headers_and_pacing() -> None:
    assert parse_rate_header("100;w=21600") == (100, 21600.0)
    assert parse_rate_header("76") == (76, None)
    assert parse_rate_header("soon") is None
    limits = HostLimits(2, max_pause=0.01)
    limits.observe("h", {"RateLimit-Limit": "10;w=1", "RateLimit-Remaining": "1;w=1"})
    for _ in range(3):
        with limits.slot("h"):
            pass
    assert limits.budgets()["h"].remaining == 1
    assert limits.paused()["h"] > 0  # held back once the budget ran low


def test_progress_line_counts_images_and_bytes() -> None:
    from pycrane.cli.commands.sync import _Bar
    from pycrane.sync import ImageResult
    from pycrane.v1.digest import Digest

    bar = _Bar()
    with bar.shown():
        bar.advance(Digest.from_bytes(b"x"), 3 << 10)
        bar.on_result(ImageResult("a/b:1", "c/b:1", "copied", "missing"), 1, 4)
    [task] = bar._progress.tasks
    assert (task.completed, task.total) == (1, 4)
    assert task.fields["moved"].startswith("3.0 KiB at ")


# -- real registries -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.fixtures_distribution import start_distribution

    reg = start_distribution(tmp_path_factory.mktemp("sync-src"))
    with Client() as c:
        digests = seed(c, reg.host, repos=REPOS)
    reg.extra["digests"] = digests
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def source200(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The issue's full data set: 200 repositories x 5 tags (1000 images), for one test."""
    from tests.fixtures_distribution import start_distribution

    reg = start_distribution(tmp_path_factory.mktemp("sync-src200"))
    with Client() as c:
        reg.extra["digests"] = seed(c, reg.host, repos=FULL)
    yield reg
    reg.stop()


def _proxy(upstream: str) -> FaultProxy:
    return FaultProxy(upstream=upstream).start()


def _writes(proxy: FaultProxy) -> list[str]:
    return [f"{e.method} {e.path}" for e in proxy.log if e.method not in ("GET", "HEAD")]


@pytest.mark.distribution
def test_sync_mirrors_incrementally(source200: Any, distribution_factory: Any) -> None:
    source, n = source200, FULL
    dst = distribution_factory()
    proxy = _proxy(dst.host)
    try:
        report = pycrane.sync(
            source=f"{source.host}/src", destination=f"{proxy.host}/m", recursive=True, jobs=6
        )
        digests: dict[str, str] = source.extra["digests"]
        assert report.ok, report.failed[:3]
        assert len(report.copied) == len(digests) == n * len(TAGS)
        # Two base layers: each sent once, then mounted into every other repository.
        unique = n * (len(TAGS) - 1)  # "latest" aliases 2.0.0
        assert report.blobs_sent == 2 + 2 * unique  # bases, plus a config and a layer each
        uploads = [e for e in proxy.log if e.method == "POST" and "mount=" not in e.path]
        assert len(uploads) == report.blobs_sent
        with Client() as c:
            assert sorted(c.catalog(dst.host)) == [f"m/r{i:03d}" for i in range(n)]
            for key in ("src/r000:1.0.0", "src/r031:latest", f"src/r{n - 1:03d}:2.0.0"):
                got = c.head(f"{dst.host}/{key.replace('src/', 'm/')}").digest
                assert str(got) == digests[key]  # byte-identical
        # Second run: nothing but HEADs reach the destination, and nothing is copied.
        proxy.clear()
        again = pycrane.sync(
            source=f"{source.host}/src", destination=f"{proxy.host}/m", recursive=True, jobs=6
        )
        assert again.ok and len(again.copied) == 0 and len(again.skipped) == len(digests)
        assert again.blobs_sent == 0
        assert {e.method for e in proxy.log} <= {"HEAD", "GET"}
        assert [e for e in proxy.log if e.method == "GET" and e.path != "/v2/"] == []
    finally:
        proxy.stop()


@pytest.mark.distribution
def test_filters_select_exactly(source: Any, pycrane_registry: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "filters.yaml"
    h = source.host
    d = pycrane_registry.host
    cfg.write_text(
        f"jobs: 4\nsync:\n"
        f"  - {{source: {h}/src/r001, destination: {d}/f/exact, tags: {{exact: ['1.1.0']}}}}\n"
        f"  - {{source: {h}/src/r002, destination: {d}/f/glob, tags: {{glob: ['1.*']}}}}\n"
        f"  - {{source: {h}/src/r003, destination: {d}/f/regex, tags: {{regex: ['^2']}}}}\n"
        f"  - {{source: {h}/src/r004, destination: {d}/f/semver, tags: {{semver: '~1.1'}}}}\n"
        f"  - {{source: {h}/src/r005, destination: {d}/f/latest, tags: {{latest: 2}}}}\n"
        f"  - source: {h}/src\n    repositories: [r006, r007]\n"
        f"    destination: {d}/f/listed/{{name}}\n"
        f"    tags: {{glob: ['*'], exclude: ['1.*', latest]}}\n"
    )
    report = pycrane.sync(cfg)
    assert report.ok, report.failed
    want = {
        "f/exact": ["1.1.0"],
        "f/glob": ["1.0.0", "1.1.0", "1.2.0"],
        "f/regex": ["2.0.0"],
        "f/semver": ["1.1.0"],
        "f/latest": ["1.2.0", "2.0.0"],
        "f/listed/r006": ["2.0.0"],
        "f/listed/r007": ["2.0.0"],
    }
    with Client() as c:
        assert sorted(r for r in c.catalog(d) if r.startswith("f/")) == sorted(want)
        for repo, tags in want.items():
            assert sorted(c.list_tags(f"{d}/{repo}")) == tags, repo
    assert len(report.copied) == sum(len(t) for t in want.values())


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYCRANE_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "pycrane", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.mark.distribution
def test_cli_dry_run_report_and_failures(
    source: Any, distribution_factory: Any, tmp_path: Path
) -> None:
    dst = distribution_factory()
    src = f"{source.host}/src/r010"
    dry = _cli("sync", src, f"{dst.host}/dry", "--dry-run", "--tag-glob", "1.*")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines == [f"copy {src}:{t} -> {dst.host}/dry:{t} (missing)" for t in TAGS[:3]], lines
    with Client() as c:
        assert c.catalog(dst.host) == []  # nothing written
    # One failing image (its source manifest answers 500) does not stop the others.
    proxy = _proxy(source.host)
    proxy.add(Fault("status", status=500, match=r"r011/manifests/1\.1\.0", count=-1))
    via = proxy.host
    try:
        out = tmp_path / "report.json"
        run = _cli(
            "sync",
            f"{proxy.host}/src/r011",
            f"{dst.host}/one",
            "--report",
            str(out),
            "--timeout",
            "5",
        )
    finally:
        proxy.stop()
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    doc = json.loads(out.read_text())
    assert doc["summary"]["copied"] == 4 and doc["summary"]["failed"] == 1
    [failed] = [i for i in doc["images"] if i["status"] == "failed"]
    assert failed["source"].endswith("r011:1.1.0") and "500" in failed["reason"]
    assert f"failed: {via}/src/r011:1.1.0" in run.stderr
    with Client() as c:
        assert sorted(c.list_tags(f"{dst.host}/one")) == sorted(set(TAGS) - {"1.1.0"})


@pytest.mark.distribution
def test_copy_recursive(source: Any, pycrane_registry: Any) -> None:
    # A namespace is a path prefix: "src/r02" holds nothing ("src/r020" is not under it).
    run = _cli("copy", "-r", f"{source.host}/src/r02", f"{pycrane_registry.host}/cpr")
    assert run.returncode == 0, run.stderr
    with Client() as c:
        assert [r for r in c.catalog(pycrane_registry.host) if r.startswith("cpr/")] == []
    run = _cli("copy", "-r", f"{source.host}/src", f"{pycrane_registry.host}/cpr")
    assert run.returncode == 0, run.stderr
    with Client() as c:
        repos = sorted(r for r in c.catalog(pycrane_registry.host) if r.startswith("cpr/"))
        assert repos == [f"cpr/r{i:03d}" for i in range(REPOS)]
        for i in (0, 20, REPOS - 1):
            assert sorted(c.list_tags(f"{pycrane_registry.host}/cpr/r{i:03d}")) == sorted(TAGS)


@pytest.mark.distribution
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_kill_then_resume(source: Any, distribution_factory: Any, tmp_path: Path) -> None:
    dst = distribution_factory()
    cfg = tmp_path / "kill.json"
    cfg.write_text(
        json.dumps(
            {
                "jobs": 2,
                "sync": [
                    {
                        "source": f"{source.host}/src",
                        "recursive": True,
                        "destination": f"{dst.host}/k",
                    }
                ],
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "PYCRANE_DEBUG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pycrane", "sync", str(cfg), "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        with Client() as c:
            while time.monotonic() < deadline and len(c.catalog(dst.host)) < REPOS // 3:
                time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    digests: dict[str, str] = source.extra["digests"]
    finished = set()
    finished_blobs: set[str] = set()
    with Client() as c:
        for key in digests:
            ref = f"{dst.host}/{key.replace('src/', 'k/')}"
            if c.exists(ref) is not None:
                finished.add(ref)
                m = json.loads(c.get(ref).raw)
                finished_blobs |= {m["config"]["digest"], *(x["digest"] for x in m["layers"])}
    assert 0 < len(finished) < len(digests)
    proxy = _proxy(dst.host)
    try:
        cfg.write_text(cfg.read_text().replace(dst.host, proxy.host))
        report = pycrane.sync(cfg)
    finally:
        proxy.stop()
    assert report.ok, report.failed[:3]
    assert len(report.copied) == len(digests) - len(finished)
    finished_here = {f.replace(dst.host, proxy.host) for f in finished}
    assert {r.destination for r in report.skipped} == finished_here
    # No finished image's manifest is written again.
    puts = {e.path for e in proxy.log if e.method == "PUT" and "/manifests/" in e.path}
    for ref in finished:
        repo, _, tag = ref.removeprefix(f"{dst.host}/").rpartition(":")
        assert f"/v2/{repo}/manifests/{tag}" not in puts
    # No blob of a finished image is sent again, except a shared base layer at most once: a new
    # process does not know which destination repository holds it until it has sent it once.
    sent = [
        urllib.parse.parse_qs(urllib.parse.urlsplit(e.path).query)["digest"][0]
        for e in proxy.log
        if e.method == "PUT" and "/blobs/uploads/" in e.path and "digest=" in e.path
    ]
    bases = {str(b.digest()) for b in base_layers()}
    again = [d for d in sent if d in finished_blobs]
    assert set(again) <= bases and len(again) == len(set(again)), again
    with Client() as c:
        for key, digest in digests.items():
            assert str(c.head(f"{dst.host}/{key.replace('src/', 'k/')}").digest) == digest


@pytest.mark.distribution
def test_rate_limits_and_drops(source: Any, distribution_factory: Any) -> None:
    dst = distribution_factory()
    src_proxy = _proxy(source.host)
    dst_proxy = _proxy(dst.host)
    # Docker Hub's way: a budget on manifest requests, 429 + Retry-After once spent. The
    # run starts with the budget nearly spent, so the client must slow down at once.
    src_proxy.rate_limit = RateLimit(limit=100, window=1.0, spent=94, match=r"/manifests/")
    # And connections that break: mid-body on blob reads, before answering on uploads.
    src_proxy.add(Fault("drop", match=r"/blobs/sha256:", after=100, count=5))
    dst_proxy.add(Fault("reset", match=r"/blobs/uploads/", method="PUT", count=5))
    dst_proxy.add(Fault("status", status=503, match=r"/manifests/", method="PUT", count=3))
    try:
        report = pycrane.sync(
            source=f"{src_proxy.host}/src",
            destination=f"{dst_proxy.host}/rl",
            recursive=True,
            tags=TagFilter(exact=("1.0.0", "2.0.0")),
            jobs=6,
            client=Client(jobs=6, limits=HostLimits(6, max_pause=0.05)),
        )
    finally:
        src_proxy.stop()
        dst_proxy.stop()
    assert report.ok, report.failed[:3]
    assert len(report.copied) == 2 * REPOS
    budget = report.rate_limits[src_proxy.host]
    assert budget["limit"] == 100 and budget["window"] == 1.0
    assert src_proxy.rate_limit.refused > 0  # each 429 was waited out (Retry-After) and retried
    assert report.paused[src_proxy.host] > 0  # and requests were spaced while the budget was low
    assert src_proxy.faults[0].hits == 5  # every dropped blob read was resumed
    print(
        f"fault run: {report.summary()}; 429s {src_proxy.rate_limit.refused}, "
        f"paused {report.paused[src_proxy.host]:.2f} s, drops {src_proxy.faults[0].hits}, "
        f"resets/503s {sum(f.hits for f in dst_proxy.faults)}"
    )
    assert sum(f.hits for f in dst_proxy.faults) == 8  # every injected fault was met
    digests: dict[str, str] = source.extra["digests"]
    with Client() as c:
        for i in range(0, REPOS, 7):
            for t in ("1.0.0", "2.0.0"):
                got = c.head(f"{dst.host}/rl/r{i:03d}:{t}").digest
                assert str(got) == digests[f"src/r{i:03d}:{t}"]


@pytest.mark.distribution
def test_requests_per_host_are_capped(source: Any, pycrane_registry: Any) -> None:
    proxy = _proxy(pycrane_registry.host)
    try:
        report = pycrane.sync(
            source=f"{source.host}/src",
            destination=f"{proxy.host}/cap",
            recursive=True,
            tags=TagFilter(exact=("1.0.0", "1.1.0")),
            jobs=8,
            max_per_host=2,
        )
    finally:
        proxy.stop()
    assert report.ok, report.failed[:3]
    assert len(report.copied) == 2 * REPOS
    assert 1 <= proxy.max_waiting <= 2  # 8 images at once, never more than 2 requests waiting


def test_platforms_and_incremental_on_indexes(pycrane_registry: Any) -> None:
    from pycrane.random import random_index

    h = pycrane_registry.host
    idx = random_index(("linux/amd64", "linux/arm64", "linux/arm/v7"), seed=7)
    with Client() as c:
        c.write_index(f"{h}/multi/app:1", idx)
        arm64 = c.image(f"{h}/multi/app:1", "linux/arm64").digest()
    for platforms, check in [
        (["linux/arm64"], lambda d: d == arm64),  # one platform: that image, as crane copies it
        (["linux/amd64", "linux/arm64"], lambda d: d not in (arm64, idx.digest())),
        ("all", lambda d: d == idx.digest()),
    ]:
        dst = f"{h}/plat/{len(platforms)}"
        first = pycrane.sync(source=f"{h}/multi/app", destination=dst, platforms=platforms)
        assert len(first.copied) == 1, first.images
        with Client() as c:
            got = c.head(f"{dst}:1").digest
            assert check(got), platforms
            if isinstance(platforms, list) and len(platforms) == 2:
                kept = [m.platform for m in c.index(f"{dst}:1").index_manifest().manifests]
                assert sorted(str(p) for p in kept) == platforms
        again = pycrane.sync(source=f"{h}/multi/app", destination=dst, platforms=platforms)
        assert len(again.skipped) == 1 and again.skipped[0].digest == str(got)


def test_referrers_follow_and_late_signatures_are_picked_up(pycrane_registry: Any) -> None:
    from tests.test_remote import _artifact

    h = pycrane_registry.host
    img = image_from_layers([base_layers()[0]], created_by="signed")
    sig = _artifact(img.descriptor(), "application/vnd.example.sig", b'{"sig":1}')
    late = _artifact(img.descriptor(), "application/vnd.example.sbom", b'{"sbom":1}')
    with Client() as c:
        c.write_image(f"{h}/signed/app:1", img)
        c.write_image(f"{h}/signed/app@{sig.digest()}", sig)
        first = pycrane.sync(source=f"{h}/signed/app", destination=f"{h}/sref", referrers=True)
        assert len(first.copied) == 1, first.images
        have = {d.digest for d in c.referrers(f"{h}/sref@{img.digest()}").manifests}
        assert have == {sig.digest()}
        # A signature made after the image was mirrored arrives on the next run.
        c.write_image(f"{h}/signed/app@{late.digest()}", late)
        again = pycrane.sync(source=f"{h}/signed/app", destination=f"{h}/sref", referrers=True)
        assert len(again.skipped) == 1
        have = {d.digest for d in c.referrers(f"{h}/sref@{img.digest()}").manifests}
        assert have == {sig.digest(), late.digest()}
        # Without referrers, none are copied.
        pycrane.sync(source=f"{h}/signed/app", destination=f"{h}/snoref")
        assert c.referrers(f"{h}/snoref@{img.digest()}").manifests == ()


@pytest.mark.distribution
def test_mounts_work_with_bearer_tokens(source: Any, distribution_token: Any) -> None:
    from pycrane.remote import StaticKeychain
    from pycrane.remote.keychain import Credential

    dst = distribution_token
    proxy = _proxy(dst.host)
    keychain = StaticKeychain({proxy.host: Credential(dst.username, dst.password)})
    try:
        with Client(keychain=keychain, jobs=4) as c:
            report = pycrane.sync(
                source=f"{source.host}/src",
                destination=f"{proxy.host}/tok",
                recursive=True,
                tags=TagFilter(exact=("1.0.0",)),
                client=c,
            )
    finally:
        proxy.stop()
    assert report.ok, report.failed[:3]
    assert len(report.copied) == REPOS
    # Each base layer sent once, then mounted (a token with pull on the other repository).
    assert report.blobs_sent == 2 + 2 * REPOS
    mounts = [e for e in proxy.log if e.method == "POST" and "mount=" in e.path]
    assert len([e for e in mounts if e.status == 201]) == REPOS - 2
