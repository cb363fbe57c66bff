"""Registries the benchmark starts and stops itself: CNCF distribution and pycrane's own server.

Both listen on 127.0.0.1 only, store on disk under a directory the caller owns,
and are stopped by pid (never by name) when the ``with`` block ends.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from benchlib.procs import die_with_parent, proc_cpu_seconds, proc_peak_rss_kib


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-600:]
            raise RuntimeError(f"registry exited with {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(url + "/v2/", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"registry at {url} not ready after {timeout:.0f}s")


class _Server:
    """A registry subprocess: ``host``, ``url``, CPU and peak-RSS readers, clean stop."""

    kind = "server"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "server.log"

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> _Server:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        _wait_ready(self.url, self.proc, self.log)
        return self

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return proc_cpu_seconds(self.proc.pid)

    def peak_rss_kib(self) -> int:
        assert self.proc is not None
        return proc_peak_rss_kib(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> _Server:
        return self.start()

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def ref(self, path: str) -> str:
        return f"{self.host}/{path}"


class Distribution(_Server):
    """``docker-registry serve`` (CNCF distribution) with filesystem storage under ``root``."""

    kind = "distribution"

    def _argv(self) -> list[str]:
        storage = self.root / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        cfg = self.root / "config.yml"
        cfg.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {storage}\n"
            "  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"http:\n  addr: {self.host}\n"
        )
        exe = shutil.which("docker-registry") or "docker-registry"
        return [exe, "serve", str(cfg)]


class PycraneServer(_Server):
    """pycrane's own registry (``pycrane.registry.serve``) with disk storage under ``root``."""

    kind = "pycrane-server"

    def _argv(self) -> list[str]:
        disk = self.root / "storage"
        code = (
            "import sys; from pycrane.registry import serve; serve(sys.argv[1], disk=sys.argv[2])"
        )
        return [sys.executable, "-c", code, self.host, str(disk)]


def pycrane_server_available() -> bool:
    try:
        import pycrane.registry as reg
    except ImportError:
        return False
    return hasattr(reg, "serve")


def distribution_version() -> str:
    exe = shutil.which("docker-registry")
    if not exe:
        return "missing"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip().split()[-1] if out.stdout.strip() else "?"
