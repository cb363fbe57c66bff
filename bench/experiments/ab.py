#!/usr/bin/env python3
"""A/B of a pycrane pull (or push) of the big image: stock vs patched (pycrane_patched.py).

    python bench/experiments/ab.py --rounds 6 --variants stock,no-direct
    python bench/experiments/ab.py --layers 1 --size-mib 1024 --format tarball
    python bench/experiments/ab.py --push --variants stock,monolithic

Rounds rotate the order of the variants; prints median and all values of wall and CPU.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchlib import images as im  # noqa: E402
from benchlib.procs import Sample, bytecode_cache, drop_noise, run_measured  # noqa: E402
from benchlib.registries import Distribution  # noqa: E402

MiB = 1 << 20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--variants", default="stock,no-direct")
    ap.add_argument("--size-mib", type=int, default=256, help="each layer")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--format", default="oci", choices=["oci", "tarball"])
    ap.add_argument("--push", action="store_true", help="push the layout to a new repo")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    work = Path(tempfile.mkdtemp(prefix="pycrane-ab-"))
    res: dict[str, list[Sample]] = {v: [] for v in variants}
    try:
        env = bytecode_cache(work / "pycache")
        with Distribution(work / "r") as reg:
            big = im.write_image_layout(work / "layout", [args.size_mib * MiB] * args.layers, 1)
            im.Pusher(reg.host).push(work / "layout", "bench/big", big)
            ref = reg.ref("bench/big:latest")
            for r in range(args.rounds):
                k = r % len(variants)
                for v in variants[k:] + variants[:k]:
                    pre = (
                        [sys.executable, "-m", "pycrane"]
                        if v == "stock"
                        else [sys.executable, str(HERE / "pycrane_patched.py"), v]
                    )
                    out = work / "out"
                    drop_noise()
                    if args.push:
                        dst = reg.ref(f"bench/pushed{r}-{v}:latest")
                        s = run_measured([*pre, "push", str(work / "layout"), dst], env=env)
                    else:
                        s = run_measured(
                            [*pre, "pull", "--format", args.format, ref, str(out)], env=env
                        )
                    if s.ok and args.format == "oci" and not args.push:
                        layer = out / "blobs" / "sha256" / big.layers[0].digest.split(":")[1]
                        if layer.stat().st_size != big.layers[0].size:
                            s.err = "layer has the wrong size"
                    if not s.ok:
                        print(f"{v}: FAILED {s.err}", file=sys.stderr)
                    res[v].append(s)
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for v, ss in res.items():
        ok = [s for s in ss if s.ok]
        if not ok:
            print(f"{v:<20} no successful run")
            continue
        print(
            f"{v:<20} wall {statistics.median(s.wall for s in ok):.2f} s "
            f"{[round(s.wall, 2) for s in ok]}  CPU {statistics.median(s.cpu for s in ok):.2f} s "
            f"{[round(s.cpu, 2) for s in ok]}  sys {statistics.median(s.sys for s in ok):.2f} s"
        )
    print(f"load before runs: {[round(s.load, 2) for ss in res.values() for s in ss]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
