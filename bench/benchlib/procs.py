"""Run one command in a fresh process and measure wall time, CPU and peak RSS.

rusage covers the child *and* the descendants it reaped, so a ``bash -c "curl | openssl"``
pipeline reports the CPU of every process in it and the peak RSS of the largest one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# GNU time: the peak RSS that wait4 reports for a child of this (large) Python process
# includes the parent's RSS (Linux carries hiwater RSS across exec), so every tool runs
# under time(1), whose child starts from a ~2 MiB image.
TIME = "/usr/bin/time"


@dataclass
class Sample:
    """One measured run."""

    wall: float  # seconds
    user: float  # CPU seconds, child and reaped descendants
    sys: float
    maxrss_kib: int  # peak RSS of the largest process in the tree
    rc: int
    err: str = ""  # tail of stderr when rc != 0 or a check failed
    server_cpu: float | None = None  # CPU seconds the registry server spent on this run
    minflt: int = 0  # minor page faults (expensive on this VM: see shared/research/http.md)
    load: float = 0.0  # 1-minute load average just before the run (others' work shows here)

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.err


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the harness dies, even by SIGKILL (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def drop_noise(settle: float = 0.3) -> None:
    """Flush dirty pages so a run does not pay for the previous run's writeback."""
    os.sync()
    time.sleep(settle)


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = 1800.0,
) -> Sample:
    """Run ``argv``, wait with ``wait4`` and return its measurements.

    Output goes to a temporary file (a pipe could fill up and stall the child);
    only the tail of stderr is kept, for the report when something failed.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as tf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [TIME, "-f", "%U %S %M %R", "-o", tf.name, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        timed_out = threading.Event()

        def _kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, _kill)
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        except BaseException:
            # interrupted (Ctrl-C, SIGTERM): take the tool down with us, never leave it running
            _kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        rc = proc.returncode
        user, sys_, maxrss = ru.ru_utime, ru.ru_stime, int(ru.ru_maxrss)
        fields = (tf.read().strip().splitlines() or [""])[-1].split()
        minflt = 0
        if len(fields) == 4:
            # time(1) forked the tool from its own small image, so its %M is the tool's
            # own peak, not the harness's RSS inherited across fork+exec.
            user, sys_, maxrss = float(fields[0]), float(fields[1]), int(fields[2])
            minflt = int(fields[3])
        err = ""
        if rc != 0 or timed_out.is_set():
            out.seek(0)
            text = out.read().decode("utf-8", "replace").strip().splitlines()
            err = " | ".join(text[-3:])[-400:] or f"exit {rc}"
            if timed_out.is_set():
                err = f"timed out after {timeout:.0f}s; " + err
    return Sample(
        wall=wall,
        user=user,
        sys=sys_,
        maxrss_kib=maxrss,
        rc=rc,
        minflt=minflt,
        load=load,
        err=err,
    )


def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of a running process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # after the comm field: state is fields[0]; utime, stime are fields 11 and 12
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_peak_rss_kib(pid: int) -> int:
    """VmHWM (peak RSS) of a running process, in KiB."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1])
    return 0


def bytecode_cache(prefix: str | os.PathLike[str]) -> dict[str, str]:
    """Environment giving pycrane compiled bytecode, as an installed wheel has.

    This machine sets PYTHONDONTWRITEBYTECODE and pycrane is an editable install, so
    every run would otherwise recompile every module (~80 ms per run here). The cache
    lives in the benchmark's temp dir (PYTHONPYCACHEPREFIX), not in the source tree.
    """
    env = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(prefix)}
    try:
        import pycrane
    except ImportError:
        return env
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", os.path.dirname(pycrane.__file__)],
        env={**os.environ, **env},
        capture_output=True,
        check=False,
    )
    return env
