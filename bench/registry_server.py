#!/usr/bin/env python3
"""Micro-benchmark of pycrane's registry server on its own (no other client tool in the loop).

Starts ``pycrane.registry.serve`` in a child process with disk storage and measures, per
round: a streamed (chunked) PATCH upload, a monolithic POST upload and a download of one
blob, and the request rate of small keep-alive requests. The server's CPU seconds come
from /proc (Linux), so they stay meaningful on a noisy machine where wall time does not::

    python bench/registry_server.py                # 1 GiB blob, 3 rounds
    python bench/registry_server.py --mib 256 --rounds 1
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import urllib3

BLOCK = 1024 * 1024


class Server:
    def __init__(self, disk: Path) -> None:
        code = (
            "import sys; from pycrane.registry import serve; serve('127.0.0.1:0', disk=sys.argv[1])"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(disk)], stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if not line.startswith("serving on "):
            raise SystemExit(f"server did not start: {line!r}")
        self.url = line.split()[-1]
        self.host, port = self.url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def timed(server: Server, fn: Callable[[], object]) -> tuple[float, float]:
    c0, t0 = server.cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, server.cpu() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024, help="blob size in MiB (1024)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=2000, help="small requests per kind")
    args = ap.parse_args()
    if not Path("/proc/self/stat").exists():
        raise SystemExit("needs Linux /proc for the server's CPU time")

    block = os.urandom(BLOCK)
    size = args.mib * BLOCK
    h = hashlib.sha256()
    for _ in range(args.mib):
        h.update(block)
    digest = "sha256:" + h.hexdigest()

    def body() -> Iterator[bytes]:
        for _ in range(args.mib):
            yield block

    work = Path(tempfile.mkdtemp(prefix="pycrane-regbench-"))
    server = Server(work / "disk")
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=10, read=600))
    results: dict[str, list[tuple[float, float]]] = {}
    try:
        for r in range(args.rounds):

            def patch(repo: str = f"bench/patch{r}") -> None:
                loc = pool.request("POST", f"{server.url}/v2/{repo}/blobs/uploads/").headers[
                    "Location"
                ]
                resp = pool.request("PATCH", server.url + loc, body=body(), chunked=True)
                resp = pool.request(
                    "PUT", f"{server.url}{resp.headers['Location']}?digest={digest}"
                )
                assert resp.status == 201, resp.data

            def post(repo: str = f"bench/post{r}") -> None:
                resp = pool.request(
                    "POST",
                    f"{server.url}/v2/{repo}/blobs/uploads/?digest={digest}",
                    body=body(),
                    headers={"Content-Length": str(size)},
                )
                assert resp.status == 201, resp.data

            def get(repo: str = f"bench/patch{r}") -> None:
                resp = pool.request(
                    "GET", f"{server.url}/v2/{repo}/blobs/{digest}", preload_content=False
                )
                got = hashlib.sha256()
                for chunk in resp.stream(BLOCK):
                    got.update(chunk)
                resp.release_conn()
                assert "sha256:" + got.hexdigest() == digest

            for name, fn in (
                ("upload, chunked PATCH", patch),
                ("upload, POST", post),
                ("download", get),
            ):
                results.setdefault(name, []).append(timed(server, fn))
                print(f"round {r + 1}: {name}: {results[name][-1][0]:.2f}s", file=sys.stderr)

        # Small requests over one keep-alive connection.
        conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
        cfg = b"{}"
        cfg_digest = "sha256:" + hashlib.sha256(cfg).hexdigest()
        conn.request("POST", f"/v2/bench/small/blobs/uploads/?digest={cfg_digest}", body=cfg)
        conn.getresponse().read()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": cfg_digest,
                    "size": 2,
                },
                "layers": [],
            }
        ).encode()
        conn.request(
            "PUT",
            "/v2/bench/small/manifests/v1",
            body=manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        conn.getresponse().read()
        rates = {}
        for name, method, path in (
            ("HEAD blob", "HEAD", f"/v2/bench/small/blobs/{cfg_digest}"),
            ("GET manifest by tag", "GET", "/v2/bench/small/manifests/v1"),
        ):
            t0, c0 = time.perf_counter(), server.cpu()
            for _ in range(args.requests):
                conn.request(method, path)
                conn.getresponse().read()
            dt, dc = time.perf_counter() - t0, server.cpu() - c0
            rates[name] = (args.requests / dt, dc / args.requests * 1e6)
        conn.close()
        rss = server.peak_rss_mib()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    gb = size / 1e9
    print(f"\n### pycrane registry server, {args.mib} MiB blob, {args.rounds} round(s)\n")
    print("| transfer | wall s median (min-max) | MB/s | server CPU s/GB (median) |")
    print("|---|---|---|---|")
    for name, samples in results.items():
        walls = [w for w, _ in samples]
        cpus = [c for _, c in samples]
        wm = statistics.median(walls)
        print(
            f"| {name} | {wm:.2f} ({min(walls):.2f}-{max(walls):.2f}) | {size / wm / 1e6:.0f} "
            f"| {statistics.median(cpus) / gb:.2f} |"
        )
    print("\n| small requests (one keep-alive connection) | req/s | server CPU µs/req |")
    print("|---|---|---|")
    for name, (rate, us) in rates.items():
        print(f"| {name} | {rate:.0f} | {us:.0f} |")
    print(f"\nserver peak RSS: {rss:.1f} MiB")


if __name__ == "__main__":
    main()
