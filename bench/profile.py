#!/usr/bin/env python3
"""Profile pycrane's CLI on the benchmark's slow cases with py-spy, and summarise by function.

    python bench/profile.py                      # pull-oci, pull-tar, push, copy of the big image
    python bench/profile.py --cases pull-tar --size-mib 256

It starts a distribution registry (and a second one for copy), writes the benchmark's
"big" image (4 layers), runs each pycrane command under ``py-spy record`` (sampling,
no instrumentation overhead in the profiled process), and prints per-thread sample
shares and the top functions by self and inclusive samples. Raw collapsed stacks are
kept next to the report (``bench/results/profile-*.txt``) for flame graphs.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import images as im  # noqa: E402
from benchlib.procs import bytecode_cache, drop_noise  # noqa: E402
from benchlib.registries import Distribution  # noqa: E402

MiB = 1 << 20


def summarise(raw: Path, top: int) -> str:
    """Per-thread shares, then top functions by self and inclusive samples."""
    total = 0
    threads: collections.Counter[str] = collections.Counter()
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        total += count
        # with --threads the first frame names the thread
        threads[frames[0]] += count
        body = frames[1:] if frames[0].startswith(("thread", "process")) else frames
        while body and body[0].startswith(("process", "thread")):
            body = body[1:]
        if not body:
            continue
        self_c[_short(body[-1])] += count
        for f in {_short(f) for f in body}:
            incl[f] += count
    if not total:
        return "(no samples)\n"
    out = [f"samples: {total}", "", "| thread | share |", "|---|---|"]
    out += [f"| {t[:90]} | {c / total:.0%} |" for t, c in threads.most_common(8)]
    out += ["", "| function (self) | share |", "|---|---|"]
    out += [f"| {f} | {c / total:.1%} |" for f, c in self_c.most_common(top)]
    out += ["", "| function (inclusive) | share |", "|---|---|"]
    skip = ("<module>", "_run_code", "_run_module_as_main", "run (threading", "_bootstrap")
    shown = [(f, c) for f, c in incl.most_common(top * 3) if not f.startswith(skip)]
    out += [f"| {f} | {c / total:.1%} |" for f, c in shown[:top]]
    return "\n".join(out) + "\n"


def _short(frame: str) -> str:
    """``func (path/to/pkg/mod.py:123)`` -> ``func (pkg/mod.py)``: group lines of one function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    for anchor in ("pycrane", "urllib3", "http", "concurrent", "isal", "click"):
        if anchor in parts[:-1]:
            path = "/".join(parts[parts.index(anchor) :])
            break
    else:
        path = "/".join(parts[-2:])
    return f"{name} ({path})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--cases", default="pull-oci,pull-tar,push,copy-2reg,pull-oci-small,pull-oci-index"
    )
    ap.add_argument("--size-mib", type=int, default=256, help="size of each of the 4 layers")
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--idle", action="store_true", help="include idle (waiting) threads")
    ap.add_argument("--out", default=str(HERE / "results" / "profile.md"))
    args = ap.parse_args()
    pyspy = shutil.which("py-spy")
    if not pyspy:
        print("profile: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="pycrane-profile-"))
    report = [
        f"# pycrane profile ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC)",
        "",
        f"big image: 4 x {args.size_mib} MiB layers; small: 30 x 512 KiB; py-spy "
        f"{args.rate} Hz{' with idle threads' if args.idle else ', active threads only'}.",
    ]
    try:
        with Distribution(work / "r1") as r1, Distribution(work / "r2") as r2:
            layout = work / "layout"
            big = im.write_image_layout(layout, [args.size_mib * MiB] * 4, 1)
            im.Pusher(r1.host).push(layout, "bench/big", big)
            small_layout = work / "layout-small"
            small = im.write_image_layout(small_layout, [512 * 1024] * 30, 2)
            im.Pusher(r1.host).push(small_layout, "bench/small", small)
            index_layout = work / "layout-index"
            index = im.write_index_layout(index_layout, [16 * MiB] * 2, 3)
            im.Pusher(r1.host).push(index_layout, "bench/index", index)
            env = bytecode_cache(work / "pycache")
            py = [sys.executable, "-m", "pycrane"]
            big_ref, small_ref = r1.ref("bench/big:latest"), r1.ref("bench/small:latest")
            cmds = {
                "pull-oci": [*py, "pull", "--format", "oci", big_ref, str(work / "out-oci")],
                "pull-tar": [*py, "pull", "--format", "tarball", big_ref, str(work / "out.tar")],
                "push": [*py, "push", str(layout), r1.ref("profile/push:latest")],
                "copy-2reg": [*py, "copy", big_ref, r2.ref("profile/copy:latest")],
                "pull-oci-small": [*py, "pull", "--format", "oci", small_ref, str(work / "out-sm")],
                "pull-oci-index": [
                    *py,
                    "pull",
                    "--format",
                    "oci",
                    r1.ref("bench/index:latest"),
                    str(work / "out-ix"),
                ],
            }
            for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
                raw = Path(args.out).with_name(f"profile-{name}.txt")
                argv = [
                    pyspy,
                    "record",
                    "--format",
                    "raw",
                    "--threads",
                    "--rate",
                    str(args.rate),
                    "--nonblocking",
                    "-o",
                    str(raw),
                ]
                if args.idle:
                    argv.append("--idle")
                drop_noise()
                t0 = time.perf_counter()
                p = subprocess.run(
                    [*argv, "--", *cmds[name]],
                    capture_output=True,
                    text=True,
                    check=False,
                    env={**os.environ, **env},
                )
                wall = time.perf_counter() - t0
                for leftover in ("out-oci", "out.tar", "out-sm", "out-ix"):
                    target = work / leftover
                    if target.is_dir():
                        shutil.rmtree(target)
                    elif target.exists():
                        target.unlink()
                report += [
                    "",
                    f"## {name}",
                    "",
                    f"`{' '.join(cmds[name][1:])}`: exit "
                    f"{p.returncode}, {wall:.2f} s wall under py-spy",
                    "",
                ]
                if p.returncode != 0:
                    report.append("```\n" + p.stderr[-1500:] + "\n```")
                if raw.exists():
                    report.append(summarise(raw, args.top))
                print(f"profile: {name} done in {wall:.1f}s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(report) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
