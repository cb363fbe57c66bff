"""BlobStore: verified, single-flight, never-replacing blob writes and resumable ingests."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pycrane import _fs
from pycrane.errors import DigestMismatch, NotFoundError, SizeMismatch
from pycrane.layout import BlobStore
from pycrane.v1 import Digest


def _d(b: bytes) -> Digest:
    return Digest.from_bytes(b)


def test_put_bytes_stream_and_iterable(tmp_path: Path) -> None:
    s = BlobStore(tmp_path)
    data = os.urandom(3 << 20)
    assert s.put(data) == (_d(data), len(data))
    assert s.put(io.BytesIO(data), digest=_d(data), size=len(data)) == (_d(data), len(data))
    chunks = [b"a" * 10, b"b" * 20]
    assert s.put(iter(chunks)) == (_d(b"".join(chunks)), 30)
    assert s.path(_d(data)) == tmp_path / "blobs" / "sha256" / _d(data).hex
    assert s.read_bytes(_d(data)) == data
    assert s.size(_d(data)) == len(data)
    assert s.exists(_d(data), len(data)) and not s.exists(_d(data), 1)
    assert set(s.digests()) == {_d(data), _d(b"".join(chunks))}


def test_mismatch_leaves_nothing_visible(tmp_path: Path) -> None:
    s = BlobStore(tmp_path)
    with pytest.raises(DigestMismatch) as e:
        s.put(b"hello", digest=_d(b"other"))
    assert "\n" not in str(e.value)
    with pytest.raises(SizeMismatch):
        s.put(io.BytesIO(b"hello"), digest=_d(b"hello"), size=4)
    with pytest.raises(SizeMismatch):
        s.put(io.BytesIO(b"hello"), digest=_d(b"hello"), size=6)
    assert list(s.digests()) == []
    assert list(s.ingest_dir.iterdir()) == []


def test_existing_blob_is_not_reread(tmp_path: Path) -> None:
    s = BlobStore(tmp_path)
    s.put(b"abc")

    class Exploding(io.RawIOBase):
        def read(self, n=-1):  # type: ignore[override]
            raise AssertionError("source must not be read")

    assert s.put(Exploding(), digest=_d(b"abc"), size=3) == (_d(b"abc"), 3)  # type: ignore[arg-type]
    opened = []
    s.put_from(lambda: opened.append(1) or b"abc", digest=_d(b"abc"), size=3)  # type: ignore[func-returns-value]
    assert opened == []


def test_truncated_existing_blob_is_replaced(tmp_path: Path) -> None:
    s = BlobStore(tmp_path)
    data = os.urandom(1000)
    p = s.path(_d(data))
    p.parent.mkdir(parents=True)
    p.write_bytes(data[:500])  # what a crashed in-place writer (ggcr) leaves
    assert s.put(data, digest=_d(data)) == (_d(data), 1000)
    assert s.read_bytes(_d(data)) == data


def test_corrupt_same_size_blob_is_quarantined_with_verify_existing(tmp_path: Path) -> None:
    data = os.urandom(1000)
    s = BlobStore(tmp_path, verify_existing=True)
    p = s.path(_d(data))
    p.parent.mkdir(parents=True)
    p.write_bytes(bytes(1000))
    s.put(data, digest=_d(data))
    assert p.read_bytes() == data
    # Without verify_existing, a same-size file is trusted (size is the cheap check)...
    # ...but read_bytes always verifies, so a corrupt blob is never served.
    p2 = BlobStore(tmp_path)
    os.unlink(p)
    p.write_bytes(bytes(1000))
    with pytest.raises(DigestMismatch):
        p2.read_bytes(_d(data))


def test_wrong_caller_size_does_not_destroy_good_blob(tmp_path: Path) -> None:
    s = BlobStore(tmp_path)
    s.put(b"hello")
    with pytest.raises(SizeMismatch):
        s.put(io.BytesIO(b"hello"), digest=_d(b"hello"), size=99)
    assert s.read_bytes(_d(b"hello")) == b"hello"


def test_single_flight_threads_do_no_io(tmp_path: Path) -> None:
    s = BlobStore(tmp_path)
    data = os.urandom(1 << 20)
    opens = 0
    lock = threading.Lock()
    gate = threading.Event()

    def opener() -> io.BytesIO:
        nonlocal opens
        with lock:
            opens += 1
        gate.wait(5)
        return io.BytesIO(data)

    results: list[tuple[Digest, int]] = []
    ts = [
        threading.Thread(target=lambda: results.append(s.put_from(opener, digest=_d(data))))
        for _ in range(16)
    ]
    for t in ts:
        t.start()
    time.sleep(0.1)
    gate.set()
    for t in ts:
        t.join()
    assert opens == 1
    assert results == [(_d(data), len(data))] * 16


def test_failed_first_writer_lets_waiters_try_their_own_source(tmp_path: Path) -> None:
    s = BlobStore(tmp_path)
    data = b"good"
    started = threading.Event()
    gate = threading.Event()
    errors: list[BaseException] = []

    def bad() -> io.BytesIO:
        started.set()
        gate.wait(5)
        return io.BytesIO(b"evil")

    def first() -> None:
        try:
            s.put_from(bad, digest=_d(data))
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=first)
    t.start()
    assert started.wait(5)
    result: list[tuple[Digest, int]] = []
    t2 = threading.Thread(target=lambda: result.append(s.put(data, digest=_d(data))))
    t2.start()
    gate.set()
    t.join()
    t2.join()
    assert isinstance(errors[0], DigestMismatch)
    assert result == [(_d(data), 4)]


def test_open_missing_raises_not_found(tmp_path: Path) -> None:
    s = BlobStore(tmp_path)
    with pytest.raises(NotFoundError) as e:
        s.open(_d(b"x"))
    assert str(_d(b"x")) in str(e.value)
    assert s.size(_d(b"x")) is None
    assert s.delete(_d(b"x")) is False


def test_read_bytes_limit(tmp_path: Path) -> None:
    s = BlobStore(tmp_path)
    s.put(b"x" * 100)
    from pycrane.errors import StoreError

    with pytest.raises(StoreError):
        s.read_bytes(_d(b"x" * 100), max_size=10)


def test_ingest_resumes_across_store_objects(tmp_path: Path) -> None:
    data = os.urandom(5000)
    w = BlobStore(tmp_path).ingest("uploads/abc")
    w.write(data[:1234])
    w.close()
    w2 = BlobStore(tmp_path).ingest("uploads/abc")
    assert w2.offset == 1234
    w2.write(data[1234:])
    assert w2.digest() == _d(data)
    assert w2.commit(_d(data), len(data)) == _d(data)
    s = BlobStore(tmp_path)
    assert s.read_bytes(_d(data)) == data
    assert [p for p in s.ingest_dir.iterdir() if p.is_dir()] == []


def test_ingest_commit_mismatch_and_abort(tmp_path: Path) -> None:
    s = BlobStore(tmp_path)
    with s.ingest("r") as w:
        w.write(b"abc")
        with pytest.raises(DigestMismatch):
            w.commit(_d(b"abd"))
        with pytest.raises(SizeMismatch):
            w.commit(_d(b"abc"), 4)
    assert list(s.digests()) == []
    assert [p for p in s.ingest_dir.iterdir() if p.is_dir()] == []
    with s.ingest() as w:
        w.write(b"anon")
        assert w.commit() == _d(b"anon")
    assert list(s.ingest_dir.glob("*.tmp")) == []


def test_ingest_commit_of_existing_blob_is_success(tmp_path: Path) -> None:
    s = BlobStore(tmp_path)
    s.put(b"same")
    with s.ingest("r2") as w:
        w.write(b"same")
        assert w.commit(_d(b"same"), 4) == _d(b"same")
    assert s.read_bytes(_d(b"same")) == b"same"


def test_ingest_ref_is_locked_against_a_second_writer(tmp_path: Path) -> None:
    from pycrane.errors import LockTimeout

    s = BlobStore(tmp_path, lock_timeout=0.1)
    w = s.ingest("busy")
    with pytest.raises(LockTimeout):
        BlobStore(tmp_path, lock_timeout=0.1).ingest("busy")
    w.abort()
    BlobStore(tmp_path, lock_timeout=0.1).ingest("busy").abort()


def test_sweep_removes_only_stale_and_unlocked(tmp_path: Path) -> None:
    s = BlobStore(tmp_path)
    s.ingest_dir.mkdir(parents=True)
    old = s.ingest_dir / "dead.tmp"
    old.write_bytes(b"x")
    fresh = s.ingest_dir / "live.tmp"
    fresh.write_bytes(b"x")
    past = time.time() - 7200
    os.utime(old, (past, past))
    stale = s.ingest("stale")
    stale.write(b"x")
    stale.close()
    held = s.ingest("held")
    held.write(b"y")
    for p in s.ingest_dir.iterdir():
        if p.is_dir():
            os.utime(p / "data", (past, past))
            os.utime(p, (past, past))
    removed = s.sweep(older_than=3600)
    names = {p.name for p in s.ingest_dir.iterdir()}
    assert "dead.tmp" not in names and "live.tmp" in names
    assert removed >= 2
    assert held.offset == 1 and (s.ingest_dir / held._dir.name).exists()  # type: ignore[union-attr]
    held.abort()


def test_fsync_happens_before_publish(tmp_path: Path, monkeypatch) -> None:
    events: list[str] = []
    real_fsync, real_publish = _fs.fsync_file, _fs.publish
    monkeypatch.setattr(_fs, "fsync_file", lambda f: (events.append("fsync"), real_fsync(f)))
    monkeypatch.setattr(
        _fs, "publish", lambda *a, **k: (events.append("publish"), real_publish(*a, **k))[1]
    )
    BlobStore(tmp_path).put(b"durable")
    assert events == ["fsync", "publish"]
    events.clear()
    BlobStore(tmp_path / "nofsync", fsync=False).put(b"fast")
    assert events == ["publish"]


def test_progress_events(tmp_path: Path) -> None:
    seen: list[tuple[str, object]] = []

    class Sink:
        def start(self, digest, total, description=""):
            seen.append(("start", total))

        def advance(self, digest, nbytes):
            seen.append(("advance", nbytes))

        def finish(self, digest, *, skipped=False):
            seen.append(("finish", skipped))

    s = BlobStore(tmp_path)
    s.put(b"12345", digest=_d(b"12345"), progress=Sink())
    s.put(b"12345", digest=_d(b"12345"), progress=Sink())
    assert seen == [("start", 5), ("advance", 5), ("finish", False), ("start", 5), ("finish", True)]


def test_store_recovers_when_its_directories_are_removed(tmp_path: Path) -> None:
    import shutil

    s = BlobStore(tmp_path)
    s.put(b"one")
    shutil.rmtree(tmp_path / "blobs")
    shutil.rmtree(tmp_path / "ingest")
    assert s.put(b"two") == (_d(b"two"), 3)
    assert s.read_bytes(_d(b"two")) == b"two"
    with s.ingest() as w:
        w.write(b"three")
        w.commit()
    assert s.exists(_d(b"three"), 5)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(
    pieces=st.lists(st.binary(max_size=3000), max_size=8),
    reopen=st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_ingest_any_split_and_reopen_pattern_commits_the_whole(
    tmp_path_factory: pytest.TempPathFactory, pieces: list[bytes], reopen: list[bool]
) -> None:
    root = tmp_path_factory.mktemp("ingest")
    whole = b"".join(pieces)
    w = BlobStore(root, fsync=False).ingest("session")
    for piece, again in zip(pieces, reopen, strict=False):
        w.write(piece)
        if again:
            w.close()
            w = BlobStore(root, fsync=False).ingest("session")
    assert w.offset == len(whole)
    assert w.commit(_d(whole), len(whole)) == _d(whole)
    assert BlobStore(root).read_bytes(_d(whole)) == whole


def test_ingest_can_be_committed_from_another_thread(tmp_path: Path) -> None:
    """Servers write a session in one request thread and finish it in another (both live on)."""
    from concurrent.futures import ThreadPoolExecutor

    s = BlobStore(tmp_path, lock_timeout=0.2)
    with ThreadPoolExecutor(1) as a, ThreadPoolExecutor(1) as b:
        w = a.submit(s.ingest, "moving").result()
        w.write(b"data")
        assert b.submit(w.commit, _d(b"data")).result() == _d(b"data")
        # The lock was really released, though the thread that took it is still alive.
        a.submit(lambda: s.ingest("moving").abort()).result()
        s.ingest("moving").abort()


# -- the cross-process write lock of large blobs ------------------------------------

BIG = 2 << 20  # above SHARED_WRITE_MIN


def _other_process_lock(s: BlobStore, digest: Digest) -> Any:
    """The lock another process would hold (a second open file: flock excludes it)."""
    import filelock

    s.ingest_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(
        s.ingest_dir / f"{digest.algorithm}-{digest.hex}.lock", thread_local=False
    )
    lock.acquire()
    return lock


def test_a_large_blob_waits_for_the_writer_that_is_making_progress(tmp_path: Path) -> None:
    data = os.urandom(BIG)
    d = _d(data)
    s = BlobStore(tmp_path, fsync=False, lock_timeout=1.5)
    lock = _other_process_lock(s, d)

    def other_writer() -> None:
        # Grows its temp file for longer than lock_timeout, then publishes.
        tmp = s.ingest_dir / f"{d.hex[:12]}.other.tmp"
        with open(tmp, "wb") as f:
            for i in range(50):
                f.write(data[i * len(data) // 50 : (i + 1) * len(data) // 50])
                f.flush()
                time.sleep(0.05)
        os.unlink(tmp)
        theirs = BlobStore(tmp_path, fsync=False)
        theirs._single_flight = False  # a plain writer: no lock of its own
        theirs.put(data, digest=d)
        lock.release()

    t = threading.Thread(target=other_writer)
    t.start()
    opened: list[int] = []

    def opener() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(data)

    try:
        assert s.put_from(opener, digest=d, size=len(data)) == (d, len(data))
    finally:
        t.join()
    assert opened == []  # waited, then found the other writer's blob
    assert [p.name for p in s.ingest_dir.iterdir()] == []


def test_a_large_blob_is_written_anyway_when_its_lock_holder_is_stuck(tmp_path: Path) -> None:
    data = os.urandom(BIG)
    d = _d(data)
    s = BlobStore(tmp_path, fsync=False, lock_timeout=0.3)
    lock = _other_process_lock(s, d)
    try:
        assert s.put_from(lambda: io.BytesIO(data), digest=d) == (d, len(data))
        assert s.read_bytes(d) == data
    finally:
        lock.release()


def test_waiting_for_a_lock_holder_stops_with_the_job(tmp_path: Path) -> None:
    from pycrane._concurrency import Stopped

    data = os.urandom(BIG)
    d = _d(data)
    s = BlobStore(tmp_path, fsync=False, lock_timeout=60)
    lock = _other_process_lock(s, d)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    try:
        with pytest.raises(Stopped):
            s.put_from(lambda: io.BytesIO(data), digest=d, stop=stop)
    finally:
        lock.release()
    assert not s.path(d).exists()


# -- partial downloads that outlive their writer, and owner-tokened temps (issue 12) ---------


def _resumable(data: bytes, asked: list[int], start: int | None = None) -> Any:
    def resume(offset: int) -> tuple[io.BytesIO, int]:
        asked.append(offset)
        at = offset if start is None else start
        return io.BytesIO(data[at:]), at

    return resume


def _no_full_download() -> io.BytesIO:
    raise AssertionError("the partial should have been resumed")


@pytest.mark.parametrize("windows", [False, True], ids=["posix", "windows-rules"])
def test_a_dead_writers_partial_is_resumed_from_where_it_stopped(
    tmp_path: Path, windows: bool, windows_fs: Any
) -> None:
    if windows:
        windows_fs(tmp_path, rename_window=0.002, antivirus=0.3, seed=3)
    data = os.urandom(BIG + 12345)
    d = _d(data)
    s = BlobStore(tmp_path)
    s.ingest_dir.mkdir(parents=True)
    s.partial_path(d).write_bytes(data[:777_777])  # what a killed writer left
    asked: list[int] = []
    got = s.put_from(_no_full_download, digest=d, size=len(data), resume=_resumable(data, asked))
    assert got == (d, len(data)) and asked == [777_777]
    assert s.read_bytes(d) == data
    assert [p.name for p in s.ingest_dir.iterdir()] == []


def test_a_resume_that_starts_over_truncates_the_partial(tmp_path: Path) -> None:
    data = os.urandom(BIG)
    d = _d(data)
    s = BlobStore(tmp_path)
    s.ingest_dir.mkdir(parents=True)
    s.partial_path(d).write_bytes(data[:1000] + b"garbage beyond what is needed")
    asked: list[int] = []
    s.put_from(_no_full_download, digest=d, size=len(data), resume=_resumable(data, asked, 0))
    assert asked == [1029] and s.read_bytes(d) == data
    assert [p.name for p in s.ingest_dir.iterdir()] == []


def test_a_partial_that_does_not_verify_is_fetched_again_whole(tmp_path: Path) -> None:
    data = os.urandom(BIG)
    d = _d(data)
    s = BlobStore(tmp_path)
    s.ingest_dir.mkdir(parents=True)
    s.partial_path(d).write_bytes(b"\0" * 5000)  # torn by a power cut: not the blob's bytes
    asked: list[int] = []
    opened: list[int] = []

    def full() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(data)

    assert s.put_from(full, digest=d, size=len(data), resume=_resumable(data, asked)) == (
        d,
        len(data),
    )
    assert asked == [5000] and opened == [1]
    assert [p.name for p in s.ingest_dir.iterdir()] == []


def test_an_interrupted_write_keeps_its_partial_and_a_mismatch_drops_it(tmp_path: Path) -> None:
    data = os.urandom(BIG)
    d = _d(data)
    s = BlobStore(tmp_path)

    def interrupted() -> Any:
        yield data[: 1 << 20]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        s.put_from(interrupted, digest=d, size=len(data))
    assert s.partial_path(d).stat().st_size == 1 << 20
    assert s.partial_bytes() == (1, 1 << 20)
    assert s.sweep(older_than=0) == 0  # kept for the next writer to resume
    with pytest.raises(DigestMismatch):
        s.put_from(lambda: io.BytesIO(os.urandom(BIG)), digest=d, size=len(data))
    assert [p.name for p in s.ingest_dir.iterdir()] == []
    assert s.drop_partials() == 0


def test_a_dead_writers_temp_files_go_at_once_a_live_ones_never(tmp_path: Path) -> None:
    import subprocess
    import sys

    s = BlobStore(tmp_path)
    code = (
        "import sys; from pycrane.layout import BlobStore; "
        "f, p, t = BlobStore(sys.argv[1])._mkstemp('x'); f.write(b'1'); f.flush(); "
        "print(p.name, flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    name = proc.stdout.readline().strip()
    mine, path, token = s._mkstemp("mine")
    try:
        assert s.clean_ingests(older_than=0) == []
        assert (s.ingest_dir / name).exists()
    finally:
        proc.kill()
        proc.wait()
        mine.close()
    removed = {e.name for e in s.clean_ingests() if e.removed}
    assert name in removed and path.name not in removed  # ours is alive: we hold its owner
    path.unlink()
    s._disown(token)
    assert [p.name for p in s.ingest_dir.iterdir()] == []
