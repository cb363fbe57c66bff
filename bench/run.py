#!/usr/bin/env python3
"""pycrane benchmark: pycrane vs skopeo vs curl floors, and pycrane's server vs distribution.

One command runs everything on loopback registries it starts and stops itself::

    python bench/run.py                 # full sizes, 3 interleaved rounds, RSS sweep to 4 GiB
    python bench/run.py --quick         # small sizes, 1 round (smoke use, ~1-2 min)
    python bench/run.py --cases 'pull-oci/*,copy-*' --rounds 5
    python bench/run.py --list          # case names

Each round runs every selected case, and inside a case every tool back to back, in an
order that rotates per round, so drift on this noisy machine lands on all tools alike.
The table reports medians with min-max, CPU s/GB (more stable than wall time) and
peak RSS, plus per-round paired ratios. Results go to stdout and ``bench/results/``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import itertools
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import urllib3  # noqa: E402
from benchlib import images as im  # noqa: E402
from benchlib.procs import Sample, bytecode_cache, drop_noise, run_measured  # noqa: E402
from benchlib.registries import (  # noqa: E402
    Distribution,
    PycraneServer,
    _Server,
    distribution_version,
    pycrane_server_available,
)
from benchlib.report import (  # noqa: E402
    CaseResult,
    VariantResult,
    evaluate,
    load_summary,
    machine_info,
    markdown,
)

MiB = 1 << 20
GiB = 1 << 30
SKOPEO_CACHE = Path("/var/lib/containers/cache")
ACCEPT = ", ".join(
    [
        im.OCI_MANIFEST,
        im.OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


@dataclass
class Sizes:
    big: list[int]
    small: list[int]
    index: list[int]
    tags: int
    tag_base: int
    tag_own: int
    sweep: list[int]
    one: int  # the one-layer image (issue 13: "one 1 GiB layer")


FULL = Sizes(
    big=[256 * MiB] * 4,
    small=[512 * 1024] * 30,
    index=[16 * MiB] * 2,
    tags=50,
    tag_base=4 * MiB,
    tag_own=256 * 1024,
    sweep=[256 * MiB, 1 * GiB, 4 * GiB],
    one=1 * GiB,
)
QUICK = Sizes(
    big=[16 * MiB] * 4,
    small=[32 * 1024] * 30,
    index=[1 * MiB] * 2,
    tags=10,
    tag_base=1 * MiB,
    tag_own=64 * 1024,
    sweep=[16 * MiB, 64 * MiB],
    one=64 * MiB,
)


@dataclass
class Cmd:
    """One run of one tool: the command, what to check afterwards, and what to clean."""

    argv: list[str]
    check: Callable[[], str] = lambda: ""
    cleanup: Callable[[], None] = lambda: None
    pre: Callable[[], None] = lambda: None
    servers: list[_Server] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Variant:
    tool: str
    make: Callable[[Path], Cmd]  # given a fresh scratch dir
    skipped: str = ""


@dataclass
class Case:
    name: str
    group: str
    nbytes: int
    variants: list[Variant]
    subject: str = "pycrane"
    baseline: str | None = "skopeo"
    floor_of: str | None = None
    note: str = ""


# ---------------------------------------------------------------- tools


def pycrane_cli_available() -> str:
    """ "" when ``python -m pycrane`` answers, else why not."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pycrane", "version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    if out.returncode != 0:
        return (out.stderr.strip().splitlines() or ["CLI not ready"])[-1][:120]
    return ""


def pycrane(*args: str) -> list[str]:
    return [sys.executable, "-m", "pycrane", *args]


def skopeo(*args: str) -> list[str]:
    return ["skopeo", *args]


def crane(*args: str) -> list[str]:
    """google/go-containerregistry's crane, the reference client (when on PATH)."""
    return ["crane", "--insecure", *args]


CRANE_MISSING = "" if shutil.which("crane") else "crane not on PATH"


def clear_skopeo_cache() -> None:
    """Cold blob-info cache for every skopeo run, so it cannot mount from blobs it saw earlier."""
    for name in ("blob-info-cache-v1.boltdb", "blob-info-cache-v1.sqlite"):
        p = SKOPEO_CACHE / name
        if p.exists():
            p.unlink()


def rmtree(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists():
        p.unlink()


# ---------------------------------------------------------------- checks

_http = urllib3.PoolManager(retries=False, timeout=60)


def check_layout(out: Path, built: im.Built) -> str:
    if not (out / "index.json").is_file():
        return f"{out.name}: no index.json"
    for b in built.blobs:
        p = out / "blobs" / "sha256" / b.digest.split(":", 1)[1]
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            return f"blob {b.digest[:19]} missing from the layout"
        if size != b.size:
            return f"blob {b.digest[:19]} has {size} bytes, expected {b.size}"
    return ""


def check_tarball(out: Path, layers: list[im.Blob]) -> str:
    if not out.is_file():
        return "no tarball written"
    want = sum(b.size for b in layers)
    if out.stat().st_size < 0.9 * want:
        return f"tarball has {out.stat().st_size} bytes, expected at least {int(0.9 * want)}"
    return ""


def check_manifest(host: str, repo: str, tag: str, digest: str) -> str:
    r = _http.request("GET", f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
    if r.status != 200:
        return f"{repo}:{tag} not found after the run (HTTP {r.status})"
    got = r.headers.get("Docker-Content-Digest", "")
    if got != digest:
        return f"{repo}:{tag} has digest {got[:19]}, expected {digest[:19]} (bytes changed)"
    return ""


def check_tags(host: str, repo: str, want: int) -> str:
    r = _http.request("GET", f"http://{host}/v2/{repo}/tags/list?n=1000")
    if r.status != 200:
        return f"{repo}: tags list HTTP {r.status}"
    n = len(json.loads(r.data).get("tags") or [])
    return "" if n == want else f"{repo}: {n} tags, expected {want}"


def check_floor(out: Path, blobs: list[im.Blob]) -> str:
    for b in {b.digest: b for b in blobs}.values():
        hexd = b.digest.split(":", 1)[1]
        sha = out / f"{hexd}.sha"
        if sha.exists():
            got = sha.read_text().split()[0] if sha.read_text().strip() else ""
            if got != hexd:
                return f"curl floor: blob {hexd[:12]} hashed to {got[:12]}"
        elif not (out / hexd).exists() or (out / hexd).stat().st_size != b.size:
            return f"curl floor: blob {hexd[:12]} missing or short"
    return ""


FLOOR_SCRIPT = r"""#!/bin/bash
# Parallel blob downloads: the floor any client pays for the same bytes.
set -euo pipefail
base="$1"; out="$2"; jobs="$3"; mode="$4"; shift 4
export base out
if [ "$mode" = hash ]; then
  fetch='set -o pipefail; curl -sSf "$base$0" | tee "$out/$0" |
    openssl dgst -sha256 -r > "$out/$0.sha" && sync "$out/$0"'
else
  fetch='curl -sSf -o "$out/$0" "$base$0" && sync "$out/$0"'
fi
printf '%s\n' "$@" | xargs -P "$jobs" -n 1 bash -c "$fetch"
"""


HTTP_CLIENT_FLOOR = r"""
# Parallel blob GETs with the standard library only (http.client, readinto, fsync):
# what a Python client pays before any hashing or layout work.
import http.client, os, sys, threading
host, prefix, out, jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
todo = list(sys.argv[5:])
lock = threading.Lock()
errors = []

def worker():
    conn = http.client.HTTPConnection(host, timeout=60)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:
        with lock:
            if not todo:
                return
            hexd = todo.pop()
        conn.request("GET", prefix + hexd)
        r = conn.getresponse()
        if r.status != 200:
            errors.append(f"{hexd[:12]}: HTTP {r.status}")
            r.read()
            continue
        fd = os.open(os.path.join(out, hexd), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            while n := r.readinto(buf):
                os.write(fd, view[:n])
            os.fsync(fd)
        finally:
            os.close(fd)

threads = [threading.Thread(target=worker) for _ in range(min(jobs, len(todo)))]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    sys.exit("http.client floor: " + "; ".join(errors))
"""


PUSH_ONE_SCRIPT = r"""#!/bin/bash
# Upload one blob file with curl: start an upload, then one monolithic PUT of the file.
set -euo pipefail
dst="$1"; file="$2"; hex=$(basename "$file")
loc=$(curl -sSf -X POST -D - -o /dev/null "$dst/blobs/uploads/" | tr -d '\r' |
  awk 'tolower($1) == "location:" {print $2}')
case "$loc" in http*) ;; *) loc="${dst%%/v2/*}$loc" ;; esac
case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
curl -sSf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' -T "$file" \
  "$loc${sep}digest=sha256:$hex"
"""


COPY_ONE_SCRIPT = r"""#!/bin/bash
# Copy one blob between registries with curl: start an upload, then GET piped into PUT.
set -euo pipefail
src="$1"; dst="$2"; hex="$3"
loc=$(curl -sSf -X POST -D - -o /dev/null "$dst/blobs/uploads/" | tr -d '\r' |
  awk 'tolower($1) == "location:" {print $2}')
case "$loc" in http*) ;; *) loc="${dst%%/v2/*}$loc" ;; esac
case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
curl -sSf "$src/blobs/sha256:$hex" |
  curl -sSf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' -T - \
    "$loc${sep}digest=sha256:$hex"
"""


def check_blobs(host: str, repo: str, blobs: list[im.Blob]) -> str:
    for b in {b.digest: b for b in blobs}.values():
        r = _http.request("HEAD", f"http://{host}/v2/{repo}/blobs/{b.digest}")
        if r.status != 200 or r.headers.get("Content-Length") != str(b.size):
            return f"curl copy: blob {b.digest[:19]} not in {repo} (HTTP {r.status})"
    return ""


def copy_floor_cmd(
    work: Path, src: _Server, dst: _Server, repo: str, blobs: list[im.Blob], jobs: int, stem: str
) -> Callable[[Path], Cmd]:
    """The floor of a copy: per blob, ``curl GET | curl PUT`` (no client-side hashing)."""
    script = work / "copy_one.sh"
    if not script.exists():
        script.write_text(COPY_ONE_SCRIPT)
    uniq = sorted({b.digest.split(":", 1)[1] for b in blobs})

    def make(d: Path) -> Cmd:
        dst_repo = f"{stem}-{d.name}"
        shell = 'printf "%s\\n" "${@:3}" | xargs -P "$1" -n 1 bash "$2" "$SRC" "$DST"'
        return Cmd(
            ["bash", "-c", shell, "copy-floor", str(jobs), str(script), *uniq],
            env={"SRC": f"{src.url}/v2/{repo}", "DST": f"{dst.url}/v2/{dst_repo}"},
            check=lambda: check_blobs(dst.host, dst_repo, blobs),
            servers=list({id(s): s for s in (src, dst)}.values()),
        )

    return make


def push_floor_cmd(
    work: Path, dst: _Server, layout: Path, blobs: list[im.Blob], jobs: int, stem: str
) -> Callable[[Path], Cmd]:
    """The floor of a push: per blob, ``curl -T FILE`` (POST + one PUT, no hashing)."""
    script = work / "push_one.sh"
    if not script.exists():
        script.write_text(PUSH_ONE_SCRIPT)
    files = sorted({str(layout / "blobs" / "sha256" / b.digest.split(":", 1)[1]) for b in blobs})
    counter = itertools.count()

    def make(d: Path) -> Cmd:
        repo = f"{stem}-{next(counter)}"
        shell = 'printf "%s\\n" "${@:3}" | xargs -P "$1" -n 1 bash "$2" "$DST"'
        return Cmd(
            ["bash", "-c", shell, "push-floor", str(jobs), str(script), *files],
            env={"DST": f"{dst.url}/v2/{repo}"},
            check=lambda: check_blobs(dst.host, repo, blobs),
            servers=[dst],
        )

    return make


def http_client_floor_cmd(
    work: Path, host: str, repo: str, blobs: list[im.Blob], jobs: int, servers: list[_Server]
) -> Callable[[Path], Cmd]:
    script = work / "http_client_floor.py"
    if not script.exists():
        script.write_text(HTTP_CLIENT_FLOOR)
    uniq = sorted({b.digest.split(":", 1)[1] for b in blobs})

    def make(d: Path) -> Cmd:
        d.mkdir(parents=True)
        prefix = f"/v2/{repo}/blobs/sha256:"
        return Cmd(
            [sys.executable, str(script), host, prefix, str(d), str(jobs), *uniq],
            check=lambda: check_floor(d, blobs),
            cleanup=lambda: rmtree(d),
            servers=servers,
        )

    return make


def floor_cmd(
    work: Path,
    host: str,
    repo: str,
    blobs: list[im.Blob],
    jobs: int,
    hashed: bool,
    servers: list[_Server],
) -> Callable[[Path], Cmd]:
    script = work / "floor.sh"
    if not script.exists():
        script.write_text(FLOOR_SCRIPT)
    uniq = sorted({b.digest.split(":", 1)[1] for b in blobs})

    def make(d: Path) -> Cmd:
        d.mkdir(parents=True)
        return Cmd(
            [
                "bash",
                str(script),
                f"http://{host}/v2/{repo}/blobs/sha256:",
                str(d),
                str(jobs),
                "hash" if hashed else "plain",
                *uniq,
            ],
            check=lambda: check_floor(d, blobs),
            cleanup=lambda: rmtree(d),
            servers=servers,
        )

    return make


# ---------------------------------------------------------------- cases


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.work = Path(tempfile.mkdtemp(prefix="pycrane-bench-", dir=args.workdir))
        self.counter = itertools.count()
        self.pycrane_missing = pycrane_cli_available()
        self.server_missing = (
            "" if pycrane_server_available() else "pycrane.registry.serve not built yet"
        )
        self.notes: list[str] = []
        self.env = bytecode_cache(self.work / "pycache")

    def uniq(self, stem: str) -> str:
        return f"{stem}-{next(self.counter)}"

    # -- pycrane / skopeo variants

    def v_pycrane(self, make: Callable[[Path], Cmd]) -> Variant:
        return Variant("pycrane", make, skipped=self.pycrane_missing)

    def v_crane(self, make: Callable[[Path], Cmd]) -> Variant:
        return Variant("crane", make, skipped=CRANE_MISSING)

    def v_skopeo(self, make: Callable[[Path], Cmd]) -> Variant:
        def wrapped(d: Path) -> Cmd:
            c = make(d)
            c.pre = clear_skopeo_cache
            return c

        return Variant("skopeo", wrapped)

    def pull_cases(self, reg: Distribution, name: str, built: im.Built) -> list[Case]:
        ref = reg.ref(f"bench/{name}:latest")
        nbytes = im.total_bytes(built)
        is_index = isinstance(built, im.BuiltIndex)
        jobs = self.args.jobs
        all_flag = ["--all"] if is_index else []

        def oci(tool: str) -> Callable[[Path], Cmd]:
            def make(d: Path) -> Cmd:
                out = d / "layout"
                d.mkdir(parents=True)
                if tool == "pycrane":
                    argv = pycrane("pull", "--format", "oci", ref, str(out))
                elif tool == "crane":
                    plat = ["--platform", "all"] if is_index else []
                    argv = crane("pull", "--format", "oci", *plat, ref, str(out))
                else:
                    argv = skopeo(
                        "copy",
                        "-q",
                        *all_flag,
                        "--src-tls-verify=false",
                        f"docker://{ref}",
                        f"oci:{out}:latest",
                    )
                return Cmd(
                    argv,
                    check=lambda: check_layout(out, built),
                    cleanup=lambda: rmtree(d),
                    servers=[reg],
                )

            return make

        amd64 = built.images[0] if isinstance(built, im.BuiltIndex) else built

        def tar(tool: str) -> Callable[[Path], Cmd]:
            def make(d: Path) -> Cmd:
                out = d / "image.tar"
                d.mkdir(parents=True)
                if tool == "pycrane":
                    argv = pycrane("pull", "--format", "tarball", ref, str(out))
                elif tool == "crane":
                    argv = crane("pull", ref, str(out))
                else:
                    argv = skopeo(
                        "copy",
                        "-q",
                        "--src-tls-verify=false",
                        f"docker://{ref}",
                        f"docker-archive:{out}:bench/{name}:latest",
                    )
                return Cmd(
                    argv,
                    check=lambda: check_tarball(out, amd64.layers),
                    cleanup=lambda: rmtree(d),
                    servers=[reg],
                )

            return make

        blobs = built.blobs
        floors = [
            Variant(
                "curl+openssl",
                floor_cmd(self.work, reg.host, f"bench/{name}", blobs, jobs, True, [reg]),
            ),
            Variant(
                "curl", floor_cmd(self.work, reg.host, f"bench/{name}", blobs, jobs, False, [reg])
            ),
            Variant(
                "http.client",
                http_client_floor_cmd(self.work, reg.host, f"bench/{name}", blobs, jobs, [reg]),
            ),
        ]
        tar_bytes = im.total_bytes(amd64)
        oci_case = Case(
            f"pull-oci/{name}",
            "pull",
            nbytes,
            [
                self.v_pycrane(oci("pycrane")),
                self.v_skopeo(oci("skopeo")),
                self.v_crane(oci("crane")),
                *floors,
            ],
            floor_of=f"pull-oci/{name}",
        )
        if name == "one-layer":
            return [oci_case]
        return [
            oci_case,
            Case(
                f"pull-tar/{name}",
                "pull",
                tar_bytes,
                [
                    self.v_pycrane(tar("pycrane")),
                    self.v_skopeo(tar("skopeo")),
                    self.v_crane(tar("crane")),
                ],
                floor_of=None if is_index else f"pull-oci/{name}",
                note="skopeo's docker-archive stores layers uncompressed" if name == "big" else "",
            ),
        ]

    def push_case(
        self,
        reg: _Server,
        name: str,
        layout: Path,
        built: im.Built,
        group: str = "push",
        tools: tuple[str, ...] = ("pycrane", "skopeo", "crane"),
    ) -> Case:
        is_index = isinstance(built, im.BuiltIndex)

        def make_for(tool: str) -> Callable[[Path], Cmd]:
            def make(d: Path) -> Cmd:
                safe = re.sub(r"[^a-z0-9._-]+", "", name.lower())
                repo = self.uniq(f"push/{safe}-{tool}")
                ref = reg.ref(f"{repo}:latest")
                if tool == "pycrane":
                    # no --index: the layout's one entry is the index itself (crane's --index
                    # would wrap index.json around it and push a different digest)
                    argv = pycrane("push", str(layout), ref)
                elif tool == "crane":
                    argv = crane("push", *(["--index"] if is_index else []), str(layout), ref)
                else:
                    argv = skopeo(
                        "copy",
                        "-q",
                        *(["--all"] if is_index else []),
                        "--dest-tls-verify=false",
                        f"oci:{layout}:latest",
                        f"docker://{ref}",
                    )
                return Cmd(
                    argv,
                    check=lambda: check_manifest(reg.host, repo, "latest", built.digest),
                    servers=[reg],
                )

            return make

        vs = [
            self.v_pycrane(make_for("pycrane"))
            if t == "pycrane"
            else self.v_crane(make_for("crane"))
            if t == "crane"
            else self.v_skopeo(make_for("skopeo"))
            for t in tools
        ]
        if name == "big" and group == "push":
            floor = push_floor_cmd(
                self.work, reg, layout, built.blobs, self.args.jobs, "push/floor"
            )
            vs.append(Variant("curl -T", floor))
        return Case(f"push/{name}", group, im.total_bytes(built), vs)

    def copy_cases(
        self,
        r1: Distribution,
        r2: Distribution | None,
        built: im.BuiltImage,
        tags: list[im.BuiltImage],
    ) -> list[Case]:
        src = r1.ref("bench/big:latest")
        out: list[Case] = []

        def copy_to(dst_reg: _Server, stem: str, tool: str) -> Callable[[Path], Cmd]:
            def make(d: Path) -> Cmd:
                repo = self.uniq(f"{stem}-{tool}")
                dst = dst_reg.ref(f"{repo}:latest")
                if tool == "pycrane":
                    argv = pycrane("copy", src, dst)
                elif tool == "crane":
                    argv = crane("copy", src, dst)
                else:
                    argv = skopeo(
                        "copy",
                        "-q",
                        "--src-tls-verify=false",
                        "--dest-tls-verify=false",
                        f"docker://{src}",
                        f"docker://{dst}",
                    )
                return Cmd(
                    argv,
                    check=lambda: check_manifest(dst_reg.host, repo, "latest", built.digest),
                    servers=list({id(s): s for s in (r1, dst_reg)}.values()),
                )

            return make

        nb = im.total_bytes(built)
        out.append(
            Case(
                "copy-mount/big",
                "copy",
                nb,
                [
                    self.v_pycrane(copy_to(r1, "copy/mount", "pycrane")),
                    self.v_skopeo(copy_to(r1, "copy/mount", "skopeo")),
                    self.v_crane(copy_to(r1, "copy/mount", "crane")),
                ],
                floor_of="pull-oci/big",
                note="same registry, new repository: a client that mounts moves no blob bytes",
            )
        )
        if r2 is not None:
            out.append(
                Case(
                    "copy-2reg/big",
                    "copy",
                    nb,
                    [
                        self.v_pycrane(copy_to(r2, "copy/xreg", "pycrane")),
                        self.v_skopeo(copy_to(r2, "copy/xreg", "skopeo")),
                        self.v_crane(copy_to(r2, "copy/xreg", "crane")),
                        Variant(
                            "curl->curl",
                            copy_floor_cmd(
                                self.work,
                                r1,
                                r2,
                                "bench/big",
                                built.blobs,
                                self.args.jobs,
                                "copy/floor",
                            ),
                        ),
                    ],
                    floor_of="pull-oci/big",
                )
            )
            n = len(tags)

            def tags_make(tool: str) -> Callable[[Path], Cmd]:
                def make(d: Path) -> Cmd:
                    stem = self.uniq(f"tags-{tool}")
                    if tool == "pycrane":
                        argv = pycrane("copy", "--all-tags", r1.ref("bench/tags"), r2.ref(stem))
                        repo = stem
                    elif tool == "crane":
                        argv = crane("copy", "--all-tags", r1.ref("bench/tags"), r2.ref(stem))
                        repo = stem
                    else:
                        argv = skopeo(
                            "sync",
                            "--src",
                            "docker",
                            "--dest",
                            "docker",
                            "--src-tls-verify=false",
                            "--dest-tls-verify=false",
                            r1.ref("bench/tags"),
                            r2.ref(stem),
                        )
                        repo = f"{stem}/tags"
                    return Cmd(argv, check=lambda: check_tags(r2.host, repo, n), servers=[r1, r2])

                return make

            blobs = [b for t in tags for b in t.blobs]
            nbt = sum({b.digest: b.size for b in blobs}.values())
            out.append(
                Case(
                    f"copy-tags/{n}",
                    "copy",
                    nbt,
                    [
                        self.v_pycrane(tags_make("pycrane")),
                        self.v_skopeo(tags_make("skopeo")),
                        self.v_crane(tags_make("crane")),
                        Variant(
                            "curl+openssl",
                            floor_cmd(
                                self.work, r1.host, "bench/tags", blobs, self.args.jobs, True, [r1]
                            ),
                        ),
                    ],
                    floor_of=f"copy-tags/{n}",
                    note="skopeo runs `skopeo sync` (its all-tags copy)",
                )
            )
        return out

    def start_cases(self, reg: Distribution, built: im.BuiltImage) -> list[Case]:
        """Start-up bound commands: ``version``, and ``digest``/``manifest`` of an image on
        the loopback registry, against ``python -c pass`` (the interpreter's own start)."""
        ref = reg.ref("bench/small:latest")
        digest = built.digest

        def cmd(argv: list[str]) -> Callable[[Path], Cmd]:
            def make(d: Path) -> Cmd:
                return Cmd(argv, servers=[reg])

            return make

        def python_pass(d: Path) -> Cmd:
            return Cmd([sys.executable, "-c", "pass"])

        cases = []
        for verb, args in (("version", []), ("digest", [ref]), ("manifest", [ref])):
            cases.append(
                Case(
                    f"start/{verb}",
                    "start",
                    0,
                    [
                        self.v_pycrane(cmd(pycrane(verb, *args))),
                        self.v_crane(cmd(crane(verb, *args))),
                        Variant("python -c pass", python_pass),
                    ],
                    baseline="python -c pass",
                    note=f"image {digest[:19]} on the loopback registry" if args else "",
                )
            )
        return cases

    def server_cases(
        self, dist: Distribution, srv: _Server | None, name: str, layout: Path, built: im.BuiltImage
    ) -> list[Case]:
        """The same client against distribution and against pycrane's server."""
        miss = self.server_missing if srv is None else ""
        servers: list[tuple[str, _Server | None]] = [
            ("distribution", dist),
            ("pycrane-server", srv),
        ]
        nb = im.total_bytes(built)
        cases: list[Case] = []

        def variants(
            mk: Callable[[_Server], Callable[[Path], Cmd]], client_missing: str = ""
        ) -> list[Variant]:
            vs = []
            for label, s in servers:
                if s is None:
                    vs.append(Variant(label, lambda d: Cmd([]), skipped=miss))
                else:
                    vs.append(Variant(label, mk(s), skipped=client_missing))
            return vs

        def pull_with(client: str) -> Callable[[_Server], Callable[[Path], Cmd]]:
            def mk(s: _Server) -> Callable[[Path], Cmd]:
                ref = s.ref(f"bench/{name}:latest")

                def make(d: Path) -> Cmd:
                    out = d / "layout"
                    d.mkdir(parents=True)
                    if client == "pycrane":
                        argv = pycrane("pull", "--format", "oci", ref, str(out))
                    else:
                        argv = skopeo(
                            "copy",
                            "-q",
                            "--src-tls-verify=false",
                            f"docker://{ref}",
                            f"oci:{out}:latest",
                        )
                    return Cmd(
                        argv,
                        check=lambda: check_layout(out, built),
                        cleanup=lambda: rmtree(d),
                        servers=[s],
                        pre=clear_skopeo_cache,
                    )

                return make

            return mk

        def push_with(client: str) -> Callable[[_Server], Callable[[Path], Cmd]]:
            def mk(s: _Server) -> Callable[[Path], Cmd]:
                def make(d: Path) -> Cmd:
                    repo = self.uniq(f"srvpush/{name}-{client}")
                    ref = s.ref(f"{repo}:latest")
                    if client == "pycrane":
                        argv = pycrane("push", str(layout), ref)
                    else:
                        argv = skopeo(
                            "copy",
                            "-q",
                            "--dest-tls-verify=false",
                            f"oci:{layout}:latest",
                            f"docker://{ref}",
                        )
                    return Cmd(
                        argv,
                        check=lambda: check_manifest(s.host, repo, "latest", built.digest),
                        servers=[s],
                        pre=clear_skopeo_cache,
                    )

                return make

            return mk

        def curl_mk(s: _Server) -> Callable[[Path], Cmd]:
            return floor_cmd(
                self.work, s.host, f"bench/{name}", built.blobs, self.args.jobs, False, [s]
            )

        def case(title: str, vs: list[Variant]) -> Case:
            return Case(title, "server", nb, vs, subject="pycrane-server", baseline="distribution")

        cases.append(case(f"server-pull/{name} [skopeo]", variants(pull_with("skopeo"))))
        cases.append(case(f"server-push/{name} [skopeo]", variants(push_with("skopeo"))))
        cases.append(case(f"server-pull/{name} [curl]", variants(curl_mk)))
        cases.append(
            case(
                f"server-pull/{name} [pycrane]",
                variants(pull_with("pycrane"), self.pycrane_missing),
            )
        )
        cases.append(
            case(
                f"server-push/{name} [pycrane]",
                variants(push_with("pycrane"), self.pycrane_missing),
            )
        )
        return cases

    # -- running

    def run_one(self, v: Variant, scratch: Path) -> Sample:
        cmd = v.make(scratch)
        cmd.pre()
        drop_noise(self.args.settle)
        before = [s.cpu_seconds() for s in cmd.servers]
        sample = run_measured(cmd.argv, env={**self.env, **cmd.env}, timeout=self.args.timeout)
        after = [s.cpu_seconds() for s in cmd.servers]
        if cmd.servers:
            sample.server_cpu = sum(a - b for a, b in zip(after, before, strict=True))
        if sample.rc == 0:
            try:
                sample.err = cmd.check()
            except Exception as e:  # a check must never stop the whole benchmark
                sample.err = f"check failed: {e!r}"[:300]
        cmd.cleanup()
        rmtree(scratch)
        return sample

    def run_cases(self, cases: list[Case], rounds: int) -> list[CaseResult]:
        results = [
            CaseResult(
                c.name,
                c.group,
                c.nbytes,
                {v.tool: VariantResult(v.tool, skipped=v.skipped) for v in c.variants},
                subject=c.subject,
                baseline=c.baseline,
                floor_of=c.floor_of,
                note=c.note,
            )
            for c in cases
        ]
        for r in range(rounds):
            for c, res in zip(cases, results, strict=True):
                live = [v for v in c.variants if not v.skipped]
                k = r % len(live) if live else 0
                for v in live[k:] + live[:k]:
                    s = self.run_one(v, self.work / "scratch" / self.uniq("run"))
                    vr = res.variants[v.tool]
                    vr.samples.append(s)
                    vr.rounds.append(r)
                    status = "ok" if s.ok else f"FAIL {s.err[:160]}"
                    log(
                        f"[round {r + 1}/{rounds}] {c.name:<28} {v.tool:<15} {s.wall:7.2f}s "
                        f"cpu {s.cpu:6.2f}s rss {s.maxrss_kib / 1024:6.0f} MiB  {status}"
                    )
        return results


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def selected(name: str, patterns: list[str]) -> bool:
    if not patterns:
        return True
    return any(fnmatch.fnmatch(name, p) or name.startswith(p) for p in patterns)


def all_case_names(n_tags: int) -> list[str]:
    names = ["start/version", "start/digest", "start/manifest"]
    for img in ("big", "small", "index"):
        names += [f"pull-oci/{img}", f"pull-tar/{img}"]
    names.append("pull-oci/one-layer")
    names += [
        "push/big",
        "push/small",
        "push/index",
        "copy-mount/big",
        "copy-2reg/big",
        f"copy-tags/{n_tags}",
    ]
    for c in ("skopeo", "curl", "pycrane"):
        names.append(f"server-pull/big [{c}]")
    for c in ("skopeo", "pycrane"):
        names.append(f"server-push/big [{c}]")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 round")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3; quick: 1)")
    ap.add_argument("--cases", default="", help="comma list of case names or globs (see --list)")
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    ap.add_argument("--out", default=None, help="Markdown output (default bench/results/<date>.md)")
    ap.add_argument(
        "--rss-sweep",
        dest="sweep",
        action="store_true",
        default=None,
        help="peak RSS of pycrane as one layer grows (default on unless --quick)",
    )
    ap.add_argument("--no-rss-sweep", dest="sweep", action="store_false")
    ap.add_argument("--sweep-sizes", default="", help="comma list of MiB, e.g. 256,1024,4096")
    ap.add_argument("--jobs", type=int, default=4, help="parallel curl downloads in the floors")
    ap.add_argument("--workdir", default=None, help="parent of the temp dir (default $TMPDIR)")
    ap.add_argument("--settle", type=float, default=0.3, help="seconds to wait after sync")
    ap.add_argument(
        "--timeout", type=float, default=None, help="seconds per run (1800; quick: 120)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (debugging)")
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.list:
        print("\n".join(all_case_names(sizes.tags)))
        return 0
    rounds = args.rounds or (1 if args.quick else 3)
    if args.timeout is None:
        args.timeout = 120.0 if args.quick else 1800.0
    do_sweep = args.sweep if args.sweep is not None else not args.quick
    if args.sweep_sizes:
        sizes.sweep = [int(x) * MiB for x in args.sweep_sizes.split(",")]
    patterns = [p.strip() for p in args.cases.split(",") if p.strip()]
    if patterns and args.sweep is None:
        do_sweep = any(p.startswith("sweep") for p in patterns)
    for tool in ("docker-registry", "skopeo", "curl", "openssl"):
        if not shutil.which(tool):
            log(f"bench: error: {tool} is not installed")
            return 2

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGTERM unwinds like Ctrl-C, so registries stop and the temp dir goes away
    signal.signal(signal.SIGTERM, _terminate)
    b = Bench(args)
    t_start = time.monotonic()
    log(f"bench: work dir {b.work}")
    if args.quick:
        b.notes.append(
            "quick mode: layers are small, so process start-up dominates every wall time; "
            "judge the targets on a full run"
        )
    if b.pycrane_missing:
        b.notes.append(f"pycrane CLI not usable, its rows are skipped: {b.pycrane_missing}")
    want = [n for n in all_case_names(sizes.tags) if selected(n, patterns)]
    need_img = {
        img
        for img in ("big", "small", "index", "one-layer")
        if any(n.endswith("/" + img) or f"/{img} [" in n for n in want)
    }
    if any(n.startswith("start/") for n in want):
        need_img.add("small")
    if any(n.startswith(("copy-", "server-")) for n in want):
        need_img.add("big")
    need_tags = any(n.startswith("copy-tags") for n in want)
    need_r2 = any(n.startswith(("copy-2reg", "copy-tags")) for n in want)
    need_srv = any(n.startswith("server-") for n in want)

    results: list[CaseResult] = []
    sweep_results: list[CaseResult] = []
    try:
        with ExitStack() as stack:
            results = run_main(
                b, stack, sizes, want, need_img, need_tags, need_r2, need_srv, rounds
            )
        # free the main phase's registries and layouts (~6 GiB) before the sweep's 4 GiB layer
        for child in b.work.iterdir():
            if child.name != "pycache":
                rmtree(child)
        if do_sweep:
            sweep_results = run_sweep(b, sizes.sweep, patterns)
    finally:
        if not args.keep:
            rmtree(b.work)
    elapsed = time.monotonic() - t_start

    targets = evaluate(results, sweep_results)
    info = machine_info(distribution_version())
    now = _dt.datetime.now(_dt.timezone.utc)
    settings = [
        ("date (UTC)", now.strftime("%Y-%m-%d %H:%M")),
        ("mode", "quick" if args.quick else "full"),
        ("rounds", str(rounds)),
        (
            "images",
            f"big {len(sizes.big)}x{sizes.big[0] // MiB} MiB; small {len(sizes.small)}x"
            f"{sizes.small[0] // 1024} KiB; index 3 platforms x {len(sizes.index)}x"
            f"{sizes.index[0] // MiB} MiB; tags {sizes.tags} images (shared "
            f"{sizes.tag_base // MiB} MiB base + {sizes.tag_own // 1024} KiB each); "
            f"one-layer 1x{sizes.one // MiB} MiB",
        ),
        ("layers", "gzip (stored blocks) of a tar of pseudo-random bytes"),
        (
            "floors",
            f"curl x{args.jobs} in parallel: `curl | tee FILE | openssl dgst -sha256` and "
            "`curl -o FILE`, each followed by `sync FILE` (pycrane fsyncs too)",
        ),
        ("pycrane", "`python -m pycrane` per run, fsync on, bytecode precompiled"),
        ("skopeo", "cold blob-info cache every run; `--all` for the index"),
        ("crane", CRANE_MISSING or "run as a third client on every case"),
        ("http.client", "floor line: stdlib GETs in threads, readinto, fsync (reference)"),
        ("load average before runs", load_summary(results + sweep_results)),
        ("elapsed", f"{elapsed:.0f} s"),
    ]
    md = markdown("pycrane benchmark", info, settings, results, sweep_results, targets, b.notes)
    print(md)
    out = (
        Path(args.out)
        if args.out
        else HERE
        / "results"
        / (now.strftime("%Y-%m-%d") + ("-quick" if args.quick else "") + ".md")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    raw = {
        "info": info,
        "settings": settings,
        "cases": [_case_json(c) for c in results + sweep_results],
    }
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    log(f"bench: wrote {out} in {elapsed:.0f} s")
    return 0


def _case_json(c: CaseResult) -> dict[str, object]:
    return {
        "name": c.name,
        "group": c.group,
        "nbytes": c.nbytes,
        "variants": {
            k: {"skipped": v.skipped, "rounds": v.rounds, "samples": [asdict(s) for s in v.samples]}
            for k, v in c.variants.items()
        },
    }


def run_main(
    b: Bench,
    stack: ExitStack,
    sizes: Sizes,
    want: list[str],
    need_img: set[str],
    need_tags: bool,
    need_r2: bool,
    need_srv: bool,
    rounds: int,
) -> list[CaseResult]:
    if not want:
        return []
    r1 = stack.enter_context(Distribution(b.work / "reg1"))
    r2 = stack.enter_context(Distribution(b.work / "reg2")) if need_r2 else None
    srv: _Server | None = None
    if need_srv and not b.server_missing:
        try:
            srv = stack.enter_context(PycraneServer(b.work / "pycrane-server"))
        except RuntimeError as e:
            b.server_missing = str(e).splitlines()[0][:160]
            b.notes.append(f"pycrane server did not start: {b.server_missing}")
    layouts: dict[str, Path] = {}
    built: dict[str, im.Built] = {}
    gen = {
        "big": lambda p: im.write_image_layout(p, sizes.big, 1),
        "small": lambda p: im.write_image_layout(p, sizes.small, 2),
        "index": lambda p: im.write_index_layout(p, sizes.index, 3),
        "one-layer": lambda p: im.write_image_layout(p, [sizes.one], 5),
    }
    for name in ("big", "small", "index", "one-layer"):
        if name in need_img:
            t = time.monotonic()
            layouts[name] = b.work / f"layout-{name}"
            built[name] = gen[name](layouts[name])
            im.Pusher(r1.host).push(layouts[name], f"bench/{name}", built[name])
            if name == "big" and srv is not None:
                im.Pusher(srv.host).push(layouts[name], f"bench/{name}", built[name])
            log(
                f"bench: image {name} ({im.total_bytes(built[name]) / MiB:.0f} MiB) "
                f"ready in {time.monotonic() - t:.1f}s"
            )
    tags: list[im.BuiltImage] = []
    if need_tags:
        tl = b.work / "layout-tags"
        tags = im.write_tags_layout(tl, sizes.tags, sizes.tag_base, sizes.tag_own, 4)
        p = im.Pusher(r1.host)
        for i, t in enumerate(tags):
            p.push(tl, "bench/tags", t, tag=f"t{i:02d}")
        rmtree(tl)
    cases: list[Case] = []
    small = built.get("small")
    if isinstance(small, im.BuiltImage):
        cases += b.start_cases(r1, small)
    for name in ("big", "small", "index", "one-layer"):
        if name in built:
            cases += b.pull_cases(r1, name, built[name])
    for name in ("big", "small", "index"):
        if name in built:
            cases.append(b.push_case(r1, name, layouts[name], built[name]))
    if "big" in built:
        big = built["big"]
        assert isinstance(big, im.BuiltImage)
        cases += b.copy_cases(r1, r2, big, tags)
        cases += b.server_cases(r1, srv, "big", layouts["big"], big)
    cases = [c for c in cases if c.name in want]
    results = b.run_cases(cases, rounds)
    if any(c.group == "server" for c in cases):
        for label, s in (("distribution", r1), ("pycrane server", srv)):
            if s is not None:
                b.notes.append(
                    f"{label}: peak RSS {s.peak_rss_kib() / 1024:.0f} MiB over all its runs "
                    f"(seeding included)"
                )
    return results


def run_sweep(b: Bench, sweep_sizes: list[int], patterns: list[str]) -> list[CaseResult]:
    """pycrane's peak RSS for one layer of growing size (pull to a layout, push from one)."""
    out: list[CaseResult] = []
    for n in sweep_sizes:
        label = f"{n // MiB} MiB" if n < GiB else f"{n // GiB} GiB"
        root = b.work / f"sweep-{n}"
        layout = root / "layout"
        with Distribution(root / "reg") as reg:
            t = time.monotonic()
            img = im.write_image_layout(layout, [n], 100 + n // MiB)
            im.Pusher(reg.host).push(layout, "sweep/img", img)
            log(f"bench: sweep image {label} ready in {time.monotonic() - t:.1f}s")
            ref = reg.ref("sweep/img:latest")

            def pull(
                tool: str, ref: str = ref, img: im.BuiltImage = img, reg: Distribution = reg
            ) -> Callable[[Path], Cmd]:
                def make(d: Path) -> Cmd:
                    o = d / "layout"
                    d.mkdir(parents=True)
                    argv = (
                        pycrane("pull", "--format", "oci", ref, str(o))
                        if tool == "pycrane"
                        else skopeo(
                            "copy",
                            "-q",
                            "--src-tls-verify=false",
                            f"docker://{ref}",
                            f"oci:{o}:latest",
                        )
                    )
                    return Cmd(
                        argv,
                        check=lambda: check_layout(o, img),
                        cleanup=lambda: rmtree(d),
                        servers=[reg],
                    )

                return make

            cases = [
                b.push_case(reg, f"sweep-{label}", layout, img, group="sweep", tools=("pycrane",)),
                Case(
                    f"sweep-pull-oci/{label}",
                    "sweep",
                    im.total_bytes(img),
                    [b.v_pycrane(pull("pycrane")), b.v_skopeo(pull("skopeo"))],
                ),
            ]
            cases[0].name = f"sweep-push/{label}"
            cases = [
                c for c in cases if selected(c.name, [p for p in patterns if p.startswith("sweep")])
            ]
            out += b.run_cases(cases, 1)
        rmtree(root)
    return out


if __name__ == "__main__":
    sys.exit(main())
