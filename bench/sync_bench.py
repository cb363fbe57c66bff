#!/usr/bin/env python3
"""``pycrane sync`` against ``skopeo sync`` on the same 200 repositories x 5 tags.

One source distribution registry is seeded with ``tests/sync_data.seed`` (200
repositories, tags 1.0.0 1.1.0 1.2.0 2.0.0 latest, two shared base layers); each
tool then mirrors every repository into a fresh distribution registry of its own,
both as a command in a subprocess (start-up included). A second pycrane run on the
unchanged source is timed too (only HEADs). Prints the times and the ratio
(target: pycrane <= 0.5x skopeo)::

    python bench/sync_bench.py              # 200 x 5
    python bench/sync_bench.py --repos 40   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from benchlib.registries import Distribution  # noqa: E402
from tests.sync_data import seed  # noqa: E402

from pycrane.remote import Client  # noqa: E402


def _timed(argv: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYCRANE_DEBUG"}
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, env=env)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({p.returncode}): {p.stderr[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=8)
    args = ap.parse_args()
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise SystemExit("skopeo is not installed")
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        root = Path(tmp)
        with (
            Distribution(root / "src") as src,
            Distribution(root / "skopeo") as d_skopeo,
            Distribution(root / "pycrane") as d_pycrane,
        ):
            with Client() as c:
                t0 = time.perf_counter()
                digests = seed(c, src.host, repos=args.repos)
                print(f"seeded {len(digests)} images in {time.perf_counter() - t0:.1f} s")
            repos = sorted({k.split(":")[0] for k in digests})
            cfg = root / "skopeo.yaml"
            cfg.write_text(
                json.dumps({src.host: {"tls-verify": False, "images": {r: [] for r in repos}}})
            )
            t_skopeo = _timed(
                [
                    skopeo,
                    "sync",
                    "--src",
                    "yaml",
                    "--dest",
                    "docker",
                    "--dest-tls-verify=false",
                    str(cfg),
                    f"{d_skopeo.host}/m",
                ]
            )
            pyc = [sys.executable, "-m", "pycrane", "sync", "-q", "-r", "-j", str(args.jobs)]
            t_pycrane = _timed([*pyc, f"{src.host}/src", f"{d_pycrane.host}/m"])
            t_again = _timed([*pyc, f"{src.host}/src", f"{d_pycrane.host}/m"])
            with Client() as c:
                got = c.head(f"{d_pycrane.host}/m/r000:latest").digest
                assert str(got) == digests["src/r000:latest"], "pycrane copy differs"
                mirrored = len(c.catalog(d_pycrane.host))
                assert mirrored == len(repos), mirrored
    n = len(digests)
    print(f"skopeo sync   {n} images: {t_skopeo:6.1f} s")
    print(f"pycrane sync  {n} images: {t_pycrane:6.1f} s  (-j {args.jobs})")
    print(f"pycrane again (no change): {t_again:6.1f} s")
    print(f"ratio pycrane/skopeo: {t_pycrane / t_skopeo:.2f}x (target <= 0.5x)")


if __name__ == "__main__":
    main()
