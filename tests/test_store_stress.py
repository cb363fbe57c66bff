"""Stress: many threads and processes writing one layout, with and without Windows rules.

Totals are printed (run with ``-s``) and asserted on. Bounded for CI: a few seconds
each on two cores.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pycrane import _fs
from pycrane.layout import Layout
from pycrane.random import random_image
from pycrane.v1 import Digest

pytestmark = pytest.mark.stress

ROUNDS = int(os.environ.get("PYCRANE_STRESS_ROUNDS", "10"))


def _leftovers(path: Path) -> list[str]:
    out = [p.name for p in path.iterdir() if p.name.endswith(".tmp")]
    ingest = path / "ingest"
    if ingest.exists():
        out += [p.name for p in ingest.iterdir() if not p.name.endswith(".lock")]
    return out


def _same_image_many_threads(root: Path, threads: int, rounds: int) -> dict[str, int]:
    img = random_image(2, 2048, duplicate_empty_layers=3, seed=42)
    totals = {"writes": 0, "errors": 0}
    for r in range(rounds):
        path = root / f"round{r}"
        Layout.create(path, fsync=False)
        barrier = threading.Barrier(threads)
        errors: list[BaseException] = []

        def work(
            i: int,
            path: Path = path,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                lay = Layout.open(path, fsync=False)
                # Odd threads bypass in-process single flight: they behave like other
                # processes racing on the filesystem.
                lay.store._single_flight = i % 2 == 0
                barrier.wait()
                lay.append_image(img, ref_name="same", jobs=4)
            except BaseException as e:
                errors.append(e)

        ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        totals["writes"] += threads
        totals["errors"] += len(errors)
        assert errors == [], errors[:3]
        lay = Layout.open(path)
        assert [(d.digest, d.ref_name) for d in lay.descriptors()] == [(img.digest(), "same")]
        assert lay.validate() == []
        assert _leftovers(path) == []
    return totals


def test_same_image_16_threads(tmp_path: Path) -> None:
    _fs.stats.reset()
    totals = _same_image_many_threads(tmp_path, 16, ROUNDS)
    print(f"\nposix: {totals} published={_fs.stats.published} already={_fs.stats.already_existed}")
    # First writer wins: each of the 7 files of a round (2 random layers, the empty
    # layer, config, manifest, oci-layout, index.json) was published exactly once.
    assert totals["errors"] == 0 and _fs.stats.published == 7 * ROUNDS


def test_same_image_16_threads_windows_rules(tmp_path: Path, windows_fs) -> None:
    fs = windows_fs(tmp_path, rename_window=0.001, antivirus=0.2, seed=5)
    _fs.stats.reset()
    totals = _same_image_many_threads(tmp_path, 16, ROUNDS)
    fs.wait_idle()
    print(
        f"\nwindows emulator: {totals} emulated errors={dict(fs.errors)} "
        f"retries={_fs.stats.retries} av_holds={fs.av_holds}"
    )
    assert totals["errors"] == 0
    assert sum(fs.errors.values()) > 0, "the emulator should have pushed back at least once"


# ----------------------------------------------------------------- processes


def _emulator(path: str, windows: bool, **kw: Any) -> Any:
    import contextlib

    if not windows:
        return contextlib.nullcontext()
    from tests.winfs import emulate_windows

    # Peers see each other's open files through /proc, so a reader process holding
    # index.json blocks a writer process's replace, as on Windows.
    peers = os.path.join(os.path.dirname(path), "peers") if sys.platform == "linux" else None
    return emulate_windows(path, peers_dir=peers, **kw)


def _appender(path: str, worker: int, count: int, windows: bool) -> tuple[list[str], int]:
    """Child process: append ``count`` distinct images (sharing an empty layer).

    Returns the digests written and how many Windows errors were retried.
    """
    out = []
    with _emulator(path, windows, rename_window=0.0005, antivirus=0.1, seed=worker) as fs:
        lay = Layout.open(path, fsync=False)
        for i in range(count):
            img = random_image(1, 512, duplicate_empty_layers=2, seed=worker * 1000 + i)
            lay.append_image(img, ref_name=f"w{worker}-{i}", jobs=2)
            out.append(str(img.digest()))
        pushed_back = sum(fs.errors.values()) if fs is not None else 0
    return out, pushed_back


def _reader(path: str, stop: Any, windows: bool) -> tuple[int, int]:
    """Child process: read and parse index.json in a loop; return (reads, failures)."""
    reads = failures = 0
    with _emulator(path, windows):
        lay = Layout.open(path)
        while not stop.is_set():
            try:
                json.loads(lay.raw_index())
                lay.index()
                reads += 1
            except Exception:
                failures += 1
    return reads, failures


@pytest.mark.parametrize("windows", [False, True], ids=["posix", "windows-rules"])
def test_processes_append_while_others_read(tmp_path: Path, windows: bool) -> None:
    path = tmp_path / "shared"
    Layout.create(path)
    ctx = multiprocessing.get_context("spawn")
    writers, per_writer = 4, 6
    with ctx.Manager() as mgr:
        stop = mgr.Event()
        with ctx.Pool(writers + 2) as pool:
            readers = [pool.apply_async(_reader, (str(path), stop, windows)) for _ in range(2)]
            jobs = [
                pool.apply_async(_appender, (str(path), w, per_writer, windows))
                for w in range(writers)
            ]
            results = [j.get(timeout=120) for j in jobs]
            written = [d for digests, _ in results for d in digests]
            pushed_back = sum(n for _, n in results)
            stop.set()
            read_totals = [r.get(timeout=60) for r in readers]
    reads = sum(r for r, _ in read_totals)
    failures = sum(f for _, f in read_totals)
    lay = Layout.open(path)
    entries = lay.descriptors()
    print(
        f"\n{'windows rules' if windows else 'posix'}: {len(written)} appends by {writers} "
        f"processes, {reads} index.json reads, {failures} failed reads, "
        f"{len(entries)} entries, {pushed_back} emulated Windows errors met by writers"
    )
    assert failures == 0 and reads > 0
    assert sorted(str(d.digest) for d in entries) == sorted(written)
    assert {d.ref_name for d in entries} == {
        f"w{w}-{i}" for w in range(writers) for i in range(per_writer)
    }
    assert lay.validate() == []
    for d in lay.store.digests():
        assert Digest.from_bytes(lay.store.path(d).read_bytes()) == d
    assert _leftovers(path) == []


def test_gc_racing_appenders_never_loses_a_referenced_blob(tmp_path: Path) -> None:
    path = tmp_path / "l"
    Layout.create(path, fsync=False)
    stop = threading.Event()
    gcs = 0

    def collector() -> None:
        nonlocal gcs
        lay = Layout.open(path, fsync=False)
        while not stop.is_set():
            lay.gc()
            gcs += 1
            time.sleep(0.001)

    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            lay = Layout.open(path, fsync=False)
            for i in range(8):
                lay.append_image(
                    random_image(1, 256, duplicate_empty_layers=2, seed=w * 100 + i),
                    ref_name=f"{w}-{i}",
                )
        except BaseException as e:
            errors.append(e)

    g = threading.Thread(target=collector)
    g.start()
    ws = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in ws:
        t.start()
    for t in ws:
        t.join()
    stop.set()
    g.join()
    lay = Layout.open(path)
    print(f"\ngc runs during appends: {gcs}")
    assert errors == []
    assert len(lay.descriptors()) == 32
    assert lay.validate() == []


def _put_same(root: str, seed: int, rounds: int, windows: bool) -> int:
    """Child process: put the same few blobs again and again (fresh store objects)."""
    import random as _random

    from pycrane.layout import BlobStore

    blobs = [_random.Random(i).randbytes(n) for i, n in enumerate((0, 1000, 3 << 20))]
    with _emulator(root, windows, rename_window=0.0005, antivirus=0.1, seed=seed):
        for _ in range(rounds):
            store = BlobStore(root, fsync=False)
            for b in blobs:
                assert store.put(b, digest=Digest.from_bytes(b)) == (Digest.from_bytes(b), len(b))
    return len(blobs) * rounds


@pytest.mark.parametrize("windows", [False, True], ids=["posix", "windows-rules"])
def test_processes_put_the_same_blobs(tmp_path: Path, windows: bool) -> None:
    root = tmp_path / "store"
    root.mkdir()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        jobs = [pool.apply_async(_put_same, (str(root), s, 5, windows)) for s in range(4)]
        done = sum(j.get(timeout=120) for j in jobs)
    from pycrane.layout import BlobStore

    store = BlobStore(root)
    digests = list(store.digests())
    print(f"\n{'windows rules' if windows else 'posix'}: {done} puts of 3 blobs by 4 processes")
    assert done == 60 and len(digests) == 3
    for d in digests:
        assert store.hash_file(d) is not None and store.hash_file(d)[0] == d  # type: ignore[index]
    assert _leftovers(root) == []


def _put_large_slowly(root: str, marks: str, barrier: Any) -> None:
    """Child process: put one 2 MiB blob from a slow source, noting when it opens it."""
    import random as _random

    from pycrane.layout import BlobStore

    data = _random.Random(7).randbytes(2 << 20)

    def opener() -> Any:
        Path(marks, f"opened-{os.getpid()}").touch()

        def slow() -> Any:
            for i in range(0, len(data), 64 << 10):
                time.sleep(0.01)
                yield data[i : i + (64 << 10)]

        return slow()

    store = BlobStore(root, fsync=False)
    barrier.wait(timeout=60)
    assert store.put_from(opener, digest=Digest.from_bytes(data), size=len(data))[1] == len(data)


def test_processes_writing_one_large_blob_fetch_it_once(tmp_path: Path) -> None:
    root, marks = tmp_path / "store", tmp_path / "marks"
    root.mkdir()
    marks.mkdir()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [
        ctx.Process(target=_put_large_slowly, args=(str(root), str(marks), barrier))
        for _ in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    # One process downloaded (about 0.3 s, all three started together); the others
    # waited on its lock and found the blob.
    assert len(list(marks.iterdir())) == 1
    from pycrane.layout import BlobStore

    store = BlobStore(root)
    assert [d for d in store.digests()] and _leftovers(root) == []
    assert list((root / "ingest").iterdir()) == []
