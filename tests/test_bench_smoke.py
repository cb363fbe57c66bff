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


def test_report_rules_give_pass_and_fail_per_target() -> None:
    """The issue-13 rules table on made-up samples (no timing): each ruled case gets one
    PASS/FAIL line against its reference (in the case or in its floor case), crane and
    the other tools give context lines, and a missing reference is n/a, not a pass."""
    sys.path.insert(0, str(BENCH))
    try:
        from benchlib import report
        from benchlib.procs import Sample
    finally:
        sys.path.remove(str(BENCH))

    def v(tool: str, *walls: float, rss_mib: int = 30) -> report.VariantResult:
        samples = [Sample(w, w / 2, w / 4, rss_mib * 1024, 0) for w in walls]
        return report.VariantResult(tool, samples, list(range(len(walls))))

    def case(name: str, group: str, *vs: report.VariantResult, **kw: str) -> report.CaseResult:
        return report.CaseResult(name, group, 1 << 30, {x.tool: x for x in vs}, **kw)

    cases = [
        case(
            "pull-oci/big",
            "pull",
            v("pycrane", 1.0, 1.05),
            v("curl", 1.0, 1.0),
            v("crane", 2.0, 2.0),
        ),
        case("pull-tar/big", "pull", v("pycrane", 1.5, 1.5), floor_of="pull-oci/big"),
        case("pull-oci/small", "pull", v("pycrane", 0.1), v("skopeo", 0.3), v("crane", 0.05)),
        case("start/version", "start", v("pycrane", 0.03), v("python -c pass", 0.01)),
        case("push/big", "push", v("pycrane", 1.0, rss_mib=80)),
    ]
    targets = report.evaluate(cases, [])
    got = {(t.case, t.name.split(" (")[0]): report.result(t) for t in targets}
    assert got[("pull-oci/big", "wall vs parallel `curl -o` floor")] == "PASS"  # 1.025x
    assert got[("pull-tar/big", "wall vs parallel `curl -o` floor")] == "FAIL"  # 1.5x
    assert got[("pull-oci/small", "wall vs skopeo")] == "PASS"
    assert got[("pull-oci/small", "context: vs crane")] == "info"
    assert got[("pull-oci/big", "context: vs crane")] == "info"
    assert got[("start/version", "wall vs `python -c pass`")] == "FAIL"
    assert got[("push/big", "wall vs parallel `curl -T FILE` floor")] == "n/a"
    assert got[("push/big", "peak RSS")] == "FAIL"
    md = report.markdown("t", [], [], cases, [], targets, [])
    assert "| start/version | pycrane |" in md and "| FAIL |" in md and "| PASS |" in md
