"""A private Docker daemon for interop tests (vfs storage, no networking).

Started once per session, on first use; tests that use it skip when ``dockerd`` is
not installed or cannot run here. Docker treats registries on 127.0.0.0/8 as
insecure by default, so it talks plain HTTP to the test registries.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


class Docker:
    """The CLI bound to the private daemon, with its own client config (logins stay here)."""

    def __init__(self, cli: str, sock: Path, config: Path) -> None:
        self.cli, self.sock = cli, sock
        self.argv = [cli, "--config", str(config), "-H", f"unix://{sock}"]

    def with_config(self, config: Path) -> Docker:
        """The same daemon with another client config directory (another user's logins)."""
        return Docker(self.cli, self.sock, config)

    def run(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [*self.argv, *args], input=stdin, capture_output=True, text=True, timeout=300
        )
        if check:
            assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr.strip()}"
        return r

    def run_bytes(self, *args: str) -> bytes:
        r = subprocess.run([*self.argv, *args], capture_output=True, timeout=300)
        assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr.decode(errors='replace')}"
        return r.stdout

    def inspect(self, ref: str) -> dict:
        return json.loads(self.run("image", "inspect", ref).stdout)[0]


@pytest.fixture(scope="session")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        pytest.skip("dockerd is not installed")
    # The CLI packaged next to the daemon speaks its API version.
    sibling = Path(dockerd).resolve().parent.parent / "bin" / "docker"
    cli = str(sibling) if sibling.exists() else shutil.which("docker")
    if cli is None:
        pytest.skip("no docker CLI")
    root = tmp_path_factory.mktemp("dockerd")
    sock = root / "docker.sock"
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 - closed at teardown
    argv = [dockerd, "--storage-driver", "vfs", "--iptables=false", "--ip-masq=false"]
    argv += ["--bridge=none", "-H", f"unix://{sock}", "--pidfile", str(root / "dockerd.pid")]
    argv += ["--data-root", str(root / "data"), "--exec-root", str(root / "exec")]
    # If a system containerd is running, dockerd uses it: keep out of the system
    # Docker's namespaces.
    argv += ["--containerd-namespace", "pycrane-tests"]
    argv += ["--containerd-plugins-namespace", "pycrane-tests-plugins"]
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    d = Docker(cli, sock, root / "client")
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "dockerd.log").read_text(errors="replace")[-600:]
                pytest.skip(f"dockerd does not run here: {tail}")
            if sock.exists() and d.run("version", check=False).returncode == 0:
                break
            time.sleep(0.2)
        yield d
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
