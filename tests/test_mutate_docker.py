"""Images built and changed with the pycrane CLI, run by Docker.

The other Docker tests check bytes and digests; this one checks meaning: that the
entrypoint, cmd, env, workdir and user pycrane writes, and the layers append and
flatten produce, do in a container what a user asked for. The root filesystem is
Debian's static busybox (``busybox-static``).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_docker import Docker

BUSYBOX = Path("/bin/busybox")


def _static_elf(path: Path) -> bool:
    """An ELF executable with no program interpreter: it runs in an empty root filesystem."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only, which is all we meet here
        return False
    order = "little" if data[5] == 1 else "big"
    phoff = int.from_bytes(data[32:40], order)
    size, count = int.from_bytes(data[54:56], order), int.from_bytes(data[56:58], order)
    starts = [phoff + i * size for i in range(count)]
    types = [int.from_bytes(data[o : o + 4], order) for o in starts]
    return 3 not in types  # PT_INTERP


pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("dockerd") is None, reason="dockerd is not installed"),
    pytest.mark.skipif(not _static_elf(BUSYBOX), reason="no static /bin/busybox (busybox-static)"),
]


def _tar(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w") as t:
        # Parent directories explicitly, world-readable: ones Docker has to invent are
        # not searchable by a non-root user.
        for d in sorted({n.rsplit("/", 1)[0] for n in [*files, *(links or {})] if "/" in n}):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            t.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            t.addfile(info)
    return path


def _pycrane(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYCRANE_DEBUG")}
    p = subprocess.run(
        [sys.executable, "-m", "pycrane", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 0, (args, p.stderr)
    return p.stdout.strip()


def test_what_pycrane_builds_runs_as_configured(
    docker: Docker, pycrane_registry: Any, tmp_path: Path
) -> None:
    repo = f"{pycrane_registry.host}/run/app"
    applets = {f"bin/{a}": "busybox" for a in ("sh", "id", "cat", "pwd")}
    rootfs = _tar(tmp_path / "rootfs.tar", {"bin/busybox": BUSYBOX.read_bytes()}, applets)
    motd = _tar(tmp_path / "motd.tar", {"etc/motd": b"built by pycrane\n"})

    _pycrane("append", "-f", str(rootfs), "-t", f"{repo}:base")
    script = 'echo "$GREETING from $(pwd) as $(id -u)"'
    _pycrane(
        "mutate", f"{repo}:base", "--entrypoint", "/bin/sh,-c", "--cmd", script,
        "-e", "GREETING=hello", "-w", "/work", "-u", "1234", "-t", f"{repo}:v1",
    )  # fmt: skip
    _pycrane("append", "-b", f"{repo}:v1", "-f", str(motd), "-t", f"{repo}:v2")
    _pycrane("flatten", f"{repo}:v2", "-t", f"{repo}:flat")

    try:
        for tag in ("v1", "v2", "flat"):
            out = docker.run("run", "--rm", "--network", "none", f"{repo}:{tag}").stdout
            assert out == "hello from /work as 1234\n", (tag, out)
        for tag in ("v2", "flat"):
            run = ["run", "--rm", "--network", "none", "--entrypoint", "/bin/cat"]
            assert docker.run(*run, f"{repo}:{tag}", "/etc/motd").stdout == "built by pycrane\n"
        layers = [len(docker.inspect(f"{repo}:{t}")["RootFS"]["Layers"]) for t in ("v2", "flat")]
        assert layers == [2, 1]
    finally:
        for tag in ("v1", "v2", "flat"):
            docker.run("rmi", f"{repo}:{tag}", check=False)
