#!/usr/bin/env python3
"""Start-up floor of a Python ``digest``: how close could any CPython client get to 2.5x
``python -c pass`` (issue 13's start/digest target)?

    python bench/experiments/startup_floor.py --rounds 20

Starts pycrane's registry with a small image on 127.0.0.1 and times, interleaved, fresh
processes of: ``python -c pass``; a stdlib-only HEAD of the manifest (http.client, no
auth, no TLS: the least a Python digest can import and do); the same with ``import
urllib3``; the same with ``import urllib3, click``; ``pycrane version``; ``pycrane
digest``. Prints the median and spread of each in ms and as a ratio to ``python -c pass``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HEAD = """
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], timeout=10)
c.request("HEAD", "/v2/" + sys.argv[2] + "/manifests/" + sys.argv[3],
          headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
r = c.getresponse()
print(r.getheader("Docker-Content-Digest"))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()

    from pycrane.random import random_image
    from pycrane.registry.server import RegistryServer
    from pycrane.remote import Client

    py = sys.executable
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed wheel has its bytecode
    with RegistryServer("127.0.0.1:0") as reg:
        ref = f"{reg.host}/floor/small:v1"
        with Client() as c:
            c.write_image(ref, random_image(5, 2048, seed=13))
        head = [py, "-c", HEAD, reg.host, "floor/small", "v1"]
        variants = {
            "python -c pass": [py, "-c", "pass"],
            "http.client HEAD": head,
            "+ import urllib3": [py, "-c", "import urllib3\n" + HEAD, *head[3:]],
            "+ urllib3, click": [py, "-c", "import urllib3, click\n" + HEAD, *head[3:]],
            "pycrane version": [py, "-m", "pycrane", "version"],
            "pycrane digest": [py, "-m", "pycrane", "digest", ref],
        }
        for argv in variants.values():  # warm the bytecode caches and the page cache
            subprocess.run(argv, env=env, capture_output=True, check=True)
        times: dict[str, list[float]] = {k: [] for k in variants}
        names = list(variants)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                t0 = time.perf_counter()
                subprocess.run(variants[name], env=env, capture_output=True, check=True)
                times[name].append((time.perf_counter() - t0) * 1000)
    base = statistics.median(times["python -c pass"])
    print(f"load {os.getloadavg()[0]:.2f}, {args.rounds} interleaved rounds")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:18} {med:6.1f} ms ({min(ts):5.1f}-{max(ts):5.1f})  {med / base:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
