"""kill -9 of a writer at random moments: a rerun finds a sound layout and trusts no torn file."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from pycrane.layout import Layout
from pycrane.random import random_image
from pycrane.v1 import Descriptor, Digest
from pycrane.v1.image import BytesLayer, LayerBase, SimpleImage

pytestmark = pytest.mark.stress

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("PYCRANE_CRASH_ROUNDS", "8"))
IMAGES = 6


def _images() -> list:
    return [
        random_image(3, 1_000_000, duplicate_empty_layers=2, seed=1000 + i) for i in range(IMAGES)
    ]


class _Slow(io.RawIOBase):
    """A stream that trickles like a network download, so kills land mid-blob."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        time.sleep(0.002)
        chunk = self._f.read(min(len(b), 64 << 10))
        b[: len(chunk)] = chunk
        return len(chunk)


class _SlowLayer(LayerBase):
    def __init__(self, inner: BytesLayer) -> None:
        super().__init__(inner.diff_id())
        self._inner = inner

    def descriptor(self) -> Descriptor:
        return self._inner.descriptor()

    def compressed(self) -> BinaryIO:
        return io.BufferedReader(_Slow(self._inner.data))  # type: ignore[return-value]


def writer_main(path: str) -> None:
    """The child: append every image (with fsync, layers trickling in), then print DONE."""
    images = [
        SimpleImage(img.manifest(), img.raw_config(), [_SlowLayer(x) for x in img.layers()])
        for img in _images()
    ]
    lay = Layout.open_or_create(path)
    print("start", flush=True)
    for i, img in enumerate(images):
        lay.append_image(img, ref_name=f"img{i}", jobs=3)
        print(f"appended {i}", flush=True)
    print("DONE", flush=True)


def _spawn(path: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]))
    code = "import sys; from tests.test_crash import writer_main; writer_main(sys.argv[1])"
    return subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _check_sound(lay: Layout) -> None:
    # Nothing under blobs/ may be torn: every name hashes to itself...
    for d in lay.store.digests():
        assert Digest.from_bytes(lay.store.path(d).read_bytes(), d.algorithm) == d, d
    # ...and index.json only names complete images.
    assert lay.validate(fast=True) == []


def _started(proc: subprocess.Popen[str]) -> float:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "start", proc.stderr.read() if proc.stderr else line
    return time.monotonic()


def test_kill_9_during_writes_then_rerun(tmp_path: Path) -> None:
    # Time one undisturbed run, so kills land anywhere inside the writing window.
    timing = _spawn(tmp_path / "timing")
    t0 = _started(timing)
    timing.communicate(timeout=120)
    window = time.monotonic() - t0
    path = tmp_path / "layout"
    rng = random.Random(1234)
    kills = 0
    leftovers_seen = 0
    for _ in range(ROUNDS):
        proc = _spawn(path)
        _started(proc)
        time.sleep(rng.uniform(0, window * 0.8))
        if proc.poll() is None:
            proc.kill()  # SIGKILL on POSIX, TerminateProcess on Windows
            kills += 1
        proc.communicate(timeout=60)
        if not (path / "oci-layout").exists() or not (path / "index.json").exists():
            continue  # killed before the layout existed
        lay = Layout.open(path)
        _check_sound(lay)
        ingest = path / "ingest"
        if ingest.exists():
            leftovers_seen += sum(1 for p in ingest.iterdir() if p.name.endswith(".tmp"))
    # A foreign writer's torn file at a blob path (what ggcr leaves) must not be trusted.
    victim = _images()[-1].layers()[0]
    torn = path / "blobs" / "sha256" / victim.digest().hex
    torn.parent.mkdir(parents=True, exist_ok=True)
    if torn.exists():
        os.unlink(torn)
    with victim.compressed() as f:
        torn.write_bytes(f.read()[: victim.size() // 2])
    proc = _spawn(path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "DONE" in out
    lay = Layout.open(path)
    print(
        f"\nwrite window {window:.2f}s, kills: {kills}/{ROUNDS}, "
        f"temp files left by killed writers: {leftovers_seen}"
    )
    assert kills >= 2
    _check_sound(lay)
    assert lay.validate() == []
    assert {d.ref_name for d in lay.descriptors()} == {f"img{i}" for i in range(IMAGES)}
    assert lay.store.read_bytes(victim.digest(), max_size=1 << 30)
    removed = lay.store.sweep(older_than=0)
    assert not any(p.name.endswith(".tmp") for p in (path / "ingest").iterdir())
    print(f"swept after rerun: {removed}")
