"""Smoke run of the benchmark harness (bench/run.py), so CI proves it still runs.

Nothing here is timed: the checks are that every tool's run completed and was
verified (the floors hash every blob and compare with its digest; pulls check every
blob of the layout), and that the measurement itself is sound (peak RSS is the
tool's own, not the harness's inherited across fork).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TOOLS = ("docker-registry", "skopeo", "curl", "openssl", "/usr/bin/time")

pytestmark = [
    pytest.mark.distribution,
    pytest.mark.interop,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in TOOLS), reason="bench needs " + ", ".join(TOOLS)
    ),
]


@pytest.fixture(scope="module")
def procs():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(BENCH))
    try:
        from benchlib import procs as mod

        yield mod
    finally:
        sys.path.remove(str(BENCH))


def test_peak_rss_is_the_tools_own(procs) -> None:  # type: ignore[no-untyped-def]
    small = procs.run_measured(["true"])
    big = procs.run_measured(
        [sys.executable, "-c", "b = bytearray(160 << 20); b[::4096] = b'x' * len(b[::4096])"]
    )
    assert small.ok and big.ok
    assert small.maxrss_kib < 16 * 1024, small
    assert big.maxrss_kib > 160 * 1024, big


def test_failed_command_is_reported(procs) -> None:  # type: ignore[no-untyped-def]
    s = procs.run_measured(["sh", "-c", "echo something broke >&2; exit 3"])
    assert s.rc == 3
    assert not s.ok
    assert "something broke" in s.err


def test_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    cases = "pull-oci/small,pull-tar/index,push/small,copy-tags/*,server-pull/big [curl]"
    argv = [
        sys.executable,
        str(BENCH / "run.py"),
        "--quick",
        "--cases",
        cases,
        "--out",
        str(out),
        "--settle",
        "0",
        "--timeout",
        "30",
        "--workdir",
        str(tmp_path),
    ]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        try:
            stdout, stderr = p.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            p.terminate()  # the harness stops its registries on SIGTERM
            stdout, stderr = p.communicate(timeout=60)
            pytest.fail("bench/run.py --quick did not finish: " + stderr[-2000:])
    assert p.returncode == 0, stderr[-2000:]
    md = out.read_text()
    assert md.strip() in stdout
    for heading in ("| CPU |", "| skopeo |", "| distribution |", "## targets"):
        assert heading in md
    raw = json.loads(out.with_suffix(".json").read_text())
    names = {c["name"] for c in raw["cases"]}
    assert names == {
        "pull-oci/small",
        "pull-tar/index",
        "push/small",
        "copy-tags/10",
        "server-pull/big [curl]",
    }
    for case in raw["cases"]:
        variants = case["variants"]
        assert "pycrane" in variants or "pycrane-server" in variants
        # the reference tools must run and pass their checks every time
        for tool in ("skopeo", "curl+openssl", "curl", "distribution"):
            if tool in variants:
                samples = variants[tool]["samples"]
                assert len(samples) == 1, (case["name"], tool)
                s = samples[0]
                assert s["rc"] == 0 and s["err"] == "", (case["name"], tool, s["err"])
                assert s["wall"] > 0 and s["maxrss_kib"] > 0
    # the work dir is removed at the end
    assert not list(tmp_path.glob("pycrane-bench-*"))
