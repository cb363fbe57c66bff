"""Statistics, targets and the Markdown report."""

from __future__ import annotations

import fnmatch
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from benchlib.procs import Sample

MiB = 1 << 20


@dataclass
class VariantResult:
    tool: str
    samples: list[Sample] = field(default_factory=list)  # one per round, in round order; None-free
    rounds: list[int] = field(default_factory=list)
    skipped: str = ""  # why this variant did not run at all

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.ok]

    def wall_by_round(self) -> dict[int, float]:
        return {r: s.wall for r, s in zip(self.rounds, self.samples, strict=True) if s.ok}

    def median(self, attr: str = "wall") -> float | None:
        vals = [getattr(s, attr) for s in self.ok]
        return statistics.median(vals) if vals else None

    def peak_rss_mib(self) -> float | None:
        vals = [s.maxrss_kib for s in self.ok]
        return max(vals) / 1024 if vals else None


@dataclass
class CaseResult:
    name: str
    group: str
    nbytes: int
    variants: dict[str, VariantResult]
    subject: str = "pycrane"  # the variant measured against the others
    baseline: str | None = None  # e.g. "skopeo" or "distribution"
    floor_of: str | None = None  # case whose "curl+openssl" variant is this case's floor
    note: str = ""


def ratio(a: VariantResult, b: VariantResult) -> tuple[float, float, float] | None:
    """Median and min-max of per-round wall-time ratios a/b (paired, interleaved rounds)."""
    wa, wb = a.wall_by_round(), b.wall_by_round()
    rs = [wa[r] / wb[r] for r in wa if r in wb and wb[r] > 0]
    if not rs:
        ma, mb = a.median(), b.median()
        if ma is None or mb is None or mb == 0:
            return None
        return ma / mb, ma / mb, ma / mb
    return statistics.median(rs), min(rs), max(rs)


def cpu_ratio(a: VariantResult, b: VariantResult) -> float | None:
    """Ratio of median CPU seconds (user+sys): steadier than wall time on a shared machine."""
    ma, mb = a.median("cpu"), b.median("cpu")
    return None if ma is None or mb is None or mb == 0 else ma / mb


def _fmt_ratio(r: tuple[float, float, float] | None) -> str:
    if r is None:
        return "-"
    med, lo, hi = r
    return f"{med:.2f}x" if lo == hi else f"{med:.2f}x ({lo:.2f}-{hi:.2f})"


def _human(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    if n >= MiB:
        return f"{n / MiB:.1f} MiB"
    return f"{n / 1024:.0f} KiB"


def _cmd(argv: Sequence[str]) -> str:
    exe = shutil.which(argv[0])
    if not exe:
        return "missing"
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def machine_info(distribution_version: str) -> list[tuple[str, str]]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            ram = f"{kib / (1 << 20):.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        import isal  # noqa: F401

        isal_s = "yes"
    except ImportError:
        isal_s = "no"
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = subprocess.run(
        ["git", "-C", here, "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return [
        ("CPU", cpu),
        ("cores", str(os.cpu_count())),
        ("RAM", ram),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("Python", sys.version.split()[0]),
        ("skopeo", _cmd(["skopeo", "--version"])),
        ("distribution", distribution_version),
        ("curl", _cmd(["curl", "--version"])),
        ("openssl", _cmd(["openssl", "version"])),
        ("isal", isal_s),
        ("pycrane commit", commit or "?"),
    ]


@dataclass
class Target:
    name: str
    case: str
    value: str
    limit: str
    passed: bool | None  # None: could not be evaluated (or context only)


@dataclass(frozen=True)
class Rule:
    """One issue-13 target: ``subject`` wall time / ``reference`` wall time <= ``limit``.

    ``reference`` is a variant of the case itself or, failing that, of the case named by
    its ``floor_of`` (a tarball pull shares the layout pull's ``curl -o`` floor).
    """

    case: str  # case name or fnmatch pattern
    reference: str
    limit: float
    what: str


#: The targets of issue 13, in one table (bench/README.md explains the floors).
RULES: tuple[Rule, ...] = (
    Rule("pull-oci/big", "curl", 1.10, "wall vs parallel `curl -o` floor"),
    Rule("pull-oci/one-layer", "curl", 1.10, "wall vs `curl -o` floor (one layer)"),
    Rule("pull-tar/big", "curl", 1.10, "wall vs parallel `curl -o` floor"),
    Rule("push/big", "curl -T", 1.10, "wall vs parallel `curl -T FILE` floor"),
    Rule("copy-2reg/big", "curl->curl", 1.10, "wall vs `curl | curl -T -` floor"),
    Rule("pull-oci/small", "skopeo", 0.50, "wall vs skopeo"),
    Rule("pull-oci/index", "skopeo", 0.50, "wall vs skopeo"),
    Rule("copy-tags/*", "skopeo", 0.50, "wall vs skopeo"),
    Rule("start/*", "python -c pass", 2.50, "wall vs `python -c pass`"),
    Rule("server-*", "distribution", 1.25, "server vs distribution"),
)

#: Variants shown as ratios for reference only (no limit): other clients and floors.
CONTEXT = ("crane", "skopeo", "http.client", "curl", "curl+openssl")


def _reference(c: CaseResult, name: str, by_name: dict[str, CaseResult]) -> VariantResult | None:
    v = c.variants.get(name)
    if v is None and c.floor_of:
        fc = by_name.get(c.floor_of)
        v = fc.variants.get(name) if fc else None
    return v if v is not None and v.ok else None


def evaluate(cases: Sequence[CaseResult], sweep: Sequence[CaseResult]) -> list[Target]:
    by_name = {c.name: c for c in cases}
    out: list[Target] = []
    for c in cases:
        subj = c.variants.get(c.subject)
        if subj is None:
            continue
        ruled: set[str] = set()
        for rule in RULES:
            if not fnmatch.fnmatchcase(c.name, rule.case):
                continue
            ref = _reference(c, rule.reference, by_name)
            r = ratio(subj, ref) if ref is not None else None
            ruled.add(rule.reference)
            out.append(
                Target(
                    f"{rule.what} ({rule.reference})",
                    c.name,
                    _fmt_ratio(r),
                    f"≤ {rule.limit:.2f}x",
                    None if r is None else r[0] <= rule.limit,
                )
            )
        for name in CONTEXT:
            if name in ruled or name == c.subject:
                continue
            # a copy's own floors only: a pull floor says little about a copy
            ref = (
                _reference(c, name, by_name)
                if c.group == "pull"
                else (c.variants[name] if name in c.variants and c.variants[name].ok else None)
            )
            if ref is None or ref is subj:
                continue
            r = ratio(subj, ref)
            out.append(Target(f"context: vs {name}", c.name, _fmt_ratio(r), "-", None))
        if c.group in ("pull", "push", "copy"):
            rss = subj.peak_rss_mib()
            out.append(
                Target(
                    "peak RSS",
                    c.name,
                    "-" if rss is None else f"{rss:.0f} MiB",
                    "≤ 64 MiB",
                    None if rss is None else rss <= 64,
                )
            )
    groups: dict[str, list[tuple[int, float]]] = {}
    for c in sweep:
        v = c.variants.get(c.subject)
        rss = v.peak_rss_mib() if v else None
        if rss is not None:
            groups.setdefault(c.name.split("/")[0], []).append((c.nbytes, rss))
    for g, pts in groups.items():
        pts.sort()
        vals = [r for _, r in pts]
        desc = ", ".join(f"{_human(n)}: {r:.0f}" for n, r in pts) + " MiB"
        out.append(Target("peak RSS ≤ 64 MiB at every size", g, desc, "≤ 64 MiB", max(vals) <= 64))
        grow = vals[-1] - vals[0]
        out.append(
            Target(
                "peak RSS flat as layers grow",
                g,
                f"{grow:+.1f} MiB from {_human(pts[0][0])} to {_human(pts[-1][0])}",
                "≤ +8 MiB",
                grow <= 8 if len(pts) > 1 else None,
            )
        )
    return out


def result(t: Target) -> str:
    """PASS, FAIL, "info" (a context line, no limit) or "n/a" (not measured)."""
    if t.passed is None:
        return "info" if t.limit == "-" else "n/a"
    return "PASS" if t.passed else "FAIL"


def load_summary(cases: Sequence[CaseResult]) -> str:
    """1-minute load average seen before the runs: above ~2 the 2 cores were shared."""
    loads = [s.load for c in cases for v in c.variants.values() for s in v.samples]
    if not loads:
        return "-"
    return f"median {statistics.median(loads):.2f} (min {min(loads):.2f}, max {max(loads):.2f})"


def _variant_rows(c: CaseResult) -> list[str]:
    rows = []
    base = c.variants.get(c.baseline or "")
    for v in c.variants.values():
        if v.skipped:
            rows.append(f"| {c.name} | {v.tool} | 0 | skipped: {v.skipped} | | | | | | |")
            continue
        ok = v.ok
        errs = [s.err for s in v.samples if not s.ok]
        if not ok:
            rows.append(
                f"| {c.name} | {v.tool} | 0/{len(v.samples)} | FAILED: "
                f"{(errs[0] if errs else '?').replace('|', '/')[:200]} | | | | | | |"
            )
            continue
        walls = [s.wall for s in ok]
        wm = statistics.median(walls)
        cpu = statistics.median([s.cpu for s in ok])
        gb = c.nbytes / 1e9
        mbs = c.nbytes / 1e6 / wm if wm > 0 else 0.0
        srv = [s.server_cpu for s in ok if s.server_cpu is not None]
        srv_s = f"{statistics.median(srv):.2f}" if srv else "-"
        vs = _fmt_ratio(ratio(v, base)) if base is not None and v is not base else ""
        n = f"{len(ok)}" if len(ok) == len(v.samples) else f"{len(ok)}/{len(v.samples)}"
        rows.append(
            f"| {c.name} | {v.tool} | {n} | {wm:.2f} ({min(walls):.2f}-{max(walls):.2f}) | "
            f"{mbs:.0f} | {cpu:.2f} | {cpu / gb if gb else 0:.2f} | "
            f"{v.peak_rss_mib() or 0:.0f} | {srv_s} | {vs} |"
        )
        if errs:
            rows[-1] += f" <!-- {len(errs)} failed: {errs[0][:120]} -->"
    return rows


def markdown(
    title: str,
    info: Sequence[tuple[str, str]],
    settings: Sequence[tuple[str, str]],
    cases: Sequence[CaseResult],
    sweep: Sequence[CaseResult],
    targets: Sequence[Target],
    notes: Sequence[str],
) -> str:
    lines = [f"# {title}", "", "| machine | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info]
    lines += ["", "| setting | |", "|---|---|"]
    lines += [f"| {k} | {v.replace('|', chr(92) + '|')} |" for k, v in settings]
    head = (
        "| case | tool | n | wall s median (min-max) | MB/s | CPU s | CPU s/GB | peak RSS MiB "
        "| server CPU s | vs baseline (per-round ratio) |"
    )
    sep = "|---|---|---|---|---|---|---|---|---|---|"
    for group in ("start", "pull", "push", "copy", "server"):
        cs = [c for c in cases if c.group == group]
        if not cs:
            continue
        lines += ["", f"## {group}", ""]
        for c in cs:
            if c.note:
                lines.append(f"- {c.name}: {c.note}")
        lines += ["", head, sep]
        for c in cs:
            lines += _variant_rows(c)
    if sweep:
        lines += ["", "## peak RSS as the layer grows (one layer)", "", head, sep]
        for c in sweep:
            lines += _variant_rows(c)
    lines += [
        "",
        "## targets",
        "",
        "| target | case | value | limit | result |",
        "|---|---|---|---|---|",
    ]
    for t in targets:
        res = result(t)
        lines.append(f"| {t.name} | {t.case} | {t.value} | {t.limit} | {res} |")
    if notes:
        lines += ["", "## notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
