"""The Windows-semantics emulator behaves like NTFS, and a naive writer fails under it."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from pycrane import _fs
from pycrane.layout import BlobStore
from pycrane.v1 import Digest
from tests.winfs import WindowsFS


def test_replace_onto_open_target_is_access_denied(tmp_path: Path, windows_fs) -> None:
    fs: WindowsFS = windows_fs(tmp_path)
    target = tmp_path / "target"
    target.write_bytes(b"old")
    new = tmp_path / "new"
    new.write_bytes(b"new")
    with open(target, "rb"):
        with pytest.raises(PermissionError) as e:
            os.replace(new, target)
        assert e.value.winerror == 5  # type: ignore[attr-defined]
    os.replace(new, target)  # closed: now it works
    assert target.read_bytes() == b"new"
    assert fs.errors[5] == 1


def test_rename_onto_existing_is_183_and_open_source_is_32(tmp_path: Path, windows_fs) -> None:
    windows_fs(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    with pytest.raises(FileExistsError) as e:
        os.rename(a, b)
    assert e.value.winerror == 183  # type: ignore[attr-defined]
    with open(a, "rb"), pytest.raises(PermissionError) as e2:
        os.rename(a, tmp_path / "c")
    assert e2.value.winerror == 32  # type: ignore[attr-defined]


def test_delete_open_file_is_sharing_violation(tmp_path: Path, windows_fs) -> None:
    windows_fs(tmp_path)
    p = tmp_path / "f"
    p.write_bytes(b"x")
    f = open(p, "rb")  # noqa: SIM115
    with pytest.raises(PermissionError) as e:
        os.unlink(p)
    assert e.value.winerror == 32  # type: ignore[attr-defined]
    f.close()
    os.unlink(p)
    assert not p.exists()


def test_raw_fd_handles_count_and_die_on_close(tmp_path: Path, windows_fs) -> None:
    windows_fs(tmp_path)
    p = tmp_path / "f"
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    f = os.fdopen(fd, "wb")
    with pytest.raises(PermissionError):
        os.unlink(p)
    f.close()  # FileIO.close bypasses os.close: liveness must still notice
    os.unlink(p)


def test_mover_window_blocks_readers_and_replacers(tmp_path: Path, windows_fs) -> None:
    inside = threading.Event()
    release = threading.Event()

    def hook(src: str, dst: str) -> None:
        inside.set()
        release.wait(5)

    windows_fs(tmp_path, rename_hook=hook)
    src, dst, other = tmp_path / "src", tmp_path / "dst", tmp_path / "other"
    src.write_bytes(b"1")
    other.write_bytes(b"1")
    t = threading.Thread(target=os.rename, args=(src, dst))
    t.start()
    assert inside.wait(5)
    with pytest.raises(PermissionError) as e:
        open(dst, "rb")  # noqa: SIM115
    assert e.value.winerror == 32  # type: ignore[attr-defined]
    with pytest.raises(PermissionError) as e:
        os.replace(other, dst)
    assert e.value.winerror == 5  # type: ignore[attr-defined]
    release.set()
    t.join()
    assert dst.read_bytes() == b"1"


def test_delete_pending_name_is_access_denied_until_last_handle(tmp_path: Path, windows_fs):
    inside = threading.Event()
    release = threading.Event()

    def hook(src: str, dst: str) -> None:
        inside.set()
        release.wait(5)

    windows_fs(tmp_path, rename_hook=hook, posix_delete=False)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(b"1")
    t = threading.Thread(target=os.rename, args=(src, dst))
    t.start()
    assert inside.wait(5)
    os.unlink(dst)  # only the mover (which shares delete) holds it: delete-pending
    with pytest.raises(PermissionError) as e:
        os.stat(dst)
    assert e.value.winerror == 5  # type: ignore[attr-defined]
    release.set()
    t.join()
    assert not dst.exists()


def test_emulator_switches_fs_to_windows_and_back(tmp_path: Path) -> None:
    from tests.winfs import emulate_windows

    before = _fs.IS_WINDOWS
    with emulate_windows(tmp_path):
        assert _fs.IS_WINDOWS is True
    assert _fs.IS_WINDOWS is before
    assert os.replace.__module__ in ("posix", "nt", "os")


def _naive_write(blobdir: Path, data: bytes) -> None:
    """ggcr's writer: unique temp in the blob dir, close, os.replace onto the digest path."""
    name = hashlib.sha256(data).hexdigest()
    fd, tmp = _tmp(blobdir)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, blobdir / name)


def _tmp(d: Path) -> tuple[int, Path]:
    p = d / f"{os.urandom(6).hex()}.tmp"
    return os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644), p


def _hammer(fn, threads: int, rounds: int) -> list[BaseException]:
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def run() -> None:
        for _ in range(rounds):
            try:
                barrier.wait()
                fn()
            except BaseException as e:
                with lock:
                    errors.append(e)

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors


@pytest.mark.parametrize("window", [0.0, 0.002])
def test_naive_replace_writer_fails_and_store_does_not(tmp_path: Path, windows_fs, window):
    data = b"\x1f\x8b" + b"\0" * 30  # a small "empty layer"
    naive_dir = tmp_path / "naive"
    naive_dir.mkdir()
    windows_fs(tmp_path, rename_window=window, seed=1)
    naive_errors = _hammer(lambda: _naive_write(naive_dir, data), threads=16, rounds=8)
    denied = [e for e in naive_errors if getattr(e, "winerror", None) == 5]
    leftovers_naive = [p for p in naive_dir.iterdir() if p.suffix == ".tmp"]
    print(f"naive writer (window={window}): {len(naive_errors)} errors, {len(denied)} winerror 5")

    store = BlobStore(tmp_path / "store")
    digest = Digest.from_bytes(data)

    def put() -> None:
        # No in-process single flight, so that is not what saves us: every caller goes
        # to the filesystem, as separate processes would.
        s = BlobStore(tmp_path / "store")
        s._single_flight = False
        s.put(data, digest=digest)

    store_errors = _hammer(put, threads=16, rounds=8)
    print(f"pycrane store (window={window}): {len(store_errors)} errors")
    assert denied, "the emulator should reproduce ggcr's Access-is-denied race"
    assert len(leftovers_naive) == len(naive_errors)
    assert store_errors == []
    assert store.read_bytes(digest) == data
    assert list(store.ingest_dir.iterdir()) == []


def test_store_survives_antivirus_and_mover_window(tmp_path: Path, windows_fs) -> None:
    fs: WindowsFS = windows_fs(tmp_path, rename_window=0.001, antivirus=0.5, seed=7)
    blobs = [os.urandom(n) for n in (0, 1, 4096, 70000)]

    def put_all() -> None:
        s = BlobStore(tmp_path / "store", fsync=False)
        s._single_flight = False
        for b in blobs:
            assert s.put(b, digest=Digest.from_bytes(b)) == (Digest.from_bytes(b), len(b))

    errors = _hammer(put_all, threads=8, rounds=4)
    fs.wait_idle()
    print(
        f"antivirus holds: {fs.av_holds}, emulated errors: {dict(fs.errors)}, "
        f"retries: {_fs.stats.retries}"
    )
    assert errors == []
    assert fs.av_holds > 0
    store = BlobStore(tmp_path / "store")
    for b in blobs:
        assert store.read_bytes(Digest.from_bytes(b)) == b
    assert list(store.ingest_dir.iterdir()) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_a_peer_process_holding_a_file_blocks_replace(tmp_path: Path, windows_fs) -> None:
    import subprocess
    import sys

    target = tmp_path / "index.json"
    target.write_bytes(b"{}")
    peers = tmp_path / "peers"
    windows_fs(tmp_path, peers_dir=str(peers))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; f=open(sys.argv[1],'rb'); print('ok', flush=True); sys.stdin.read()",
            str(target),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        (peers / str(holder.pid)).write_bytes(b"")
        new = tmp_path / "new"
        new.write_bytes(b"[]")
        with pytest.raises(PermissionError) as e:
            os.replace(new, target)
        assert e.value.winerror == 5  # type: ignore[attr-defined]
    finally:
        holder.communicate("")
    os.replace(new, target)
    assert target.read_bytes() == b"[]"


def test_writers_succeed_while_a_reader_holds_the_blob(tmp_path: Path, windows_fs) -> None:
    data = os.urandom(10000)
    digest = Digest.from_bytes(data)
    store = BlobStore(tmp_path / "s")
    store.put(data)
    windows_fs(tmp_path)
    before = os.stat(store.path(digest)).st_ino
    with store.open(digest) as held:

        def put() -> None:
            s = BlobStore(tmp_path / "s")
            s._single_flight = False
            s.verify_existing = True  # reading it while another reader holds it is fine
            s.put(data, digest=digest)

        assert _hammer(put, threads=8, rounds=3) == []
        assert held.read() == data
    assert os.stat(store.path(digest)).st_ino == before  # never replaced


def test_second_writer_and_reader_inside_the_mover_window(tmp_path: Path, windows_fs) -> None:
    """Deterministic interleaving: writer A's publish is mid-MoveFileEx when writer B
    publishes the same digest and a reader opens it."""
    data = os.urandom(5000)
    digest = Digest.from_bytes(data)
    in_window = threading.Event()
    release = threading.Event()

    def hook(src: str, dst: str) -> None:
        if dst.endswith(digest.hex) and not in_window.is_set():
            in_window.set()
            release.wait(5)

    fs: WindowsFS = windows_fs(tmp_path, rename_hook=hook)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            s = BlobStore(tmp_path / "s", fsync=False)
            s._single_flight = False
            s.put(data, digest=digest)
        except BaseException as e:
            errors.append(e)

    a = threading.Thread(target=writer)
    a.start()
    assert in_window.wait(5)
    b = threading.Thread(target=writer)
    b.start()
    got: list[bytes] = []

    def reader() -> None:
        with BlobStore(tmp_path / "s").open(digest) as f:
            got.append(f.read())

    r = threading.Thread(target=reader)
    r.start()
    deadline = time.monotonic() + 1.5  # within the reader's retry budget
    while fs.errors[32] == 0 and time.monotonic() < deadline:
        time.sleep(0.005)  # wait until the reader has run into the window, then end it
    release.set()
    for t in (a, b, r):
        t.join()
    assert errors == []
    assert got == [data]
    assert fs.errors[32] > 0  # the reader (and B's verification) met the mover
    assert list((tmp_path / "s" / "ingest").iterdir()) == []
