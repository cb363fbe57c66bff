"""pycrane._fs: no-replace publish, Windows-only retries, atomic writes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pycrane import _fs
from tests.winfs import win_error


def _tmp(d: Path, data: bytes) -> Path:
    f, p = _fs.mkstemp(d, prefix="t.")
    with f:
        f.write(data)
    return p


def test_publish_creates_then_keeps_first_writer(tmp_path: Path) -> None:
    final = tmp_path / "blob"
    assert _fs.publish(_tmp(tmp_path, b"first"), final) is True
    assert _fs.publish(_tmp(tmp_path, b"second"), final) is False
    assert final.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob"]


def test_publish_falls_back_to_replace_without_hard_links(tmp_path: Path, monkeypatch) -> None:
    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    final = tmp_path / "blob"
    assert _fs.publish(_tmp(tmp_path, b"a"), final) is True
    assert _fs.publish(_tmp(tmp_path, b"b"), final) is False
    assert final.read_bytes() == b"a"
    assert [p.name for p in tmp_path.iterdir()] == ["blob"]


def test_publish_on_windows_uses_rename_and_never_replaces(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(_fs, "IS_WINDOWS", True)
    calls: list[str] = []
    real_rename = os.rename

    def rename(src, dst):
        calls.append("rename")
        if os.path.exists(dst):
            raise win_error(183, src, dst)
        real_rename(src, dst)

    def forbidden(*a, **k):
        raise AssertionError("must not replace or link on Windows")

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", forbidden)
    monkeypatch.setattr(os, "link", forbidden)
    final = tmp_path / "blob"
    assert _fs.publish(_tmp(tmp_path, b"a"), final) is True
    assert _fs.publish(_tmp(tmp_path, b"b"), final) is False
    assert final.read_bytes() == b"a"
    assert calls == ["rename", "rename"]


def test_windows_transient_errors_are_retried(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(_fs, "IS_WINDOWS", True)
    real = os.replace
    failures = [5, 32, 33]

    def flaky(src, dst):
        if failures:
            raise win_error(5 if failures[0] == 33 else failures[0], src, dst)
        real(src, dst)

    def pop_then(src, dst):
        try:
            flaky(src, dst)
        finally:
            if failures:
                failures.pop(0)

    monkeypatch.setattr(os, "replace", pop_then)
    tmp = _tmp(tmp_path, b"x")
    _fs.replace_atomic(tmp, tmp_path / "index.json")
    assert (tmp_path / "index.json").read_bytes() == b"x"
    assert failures == []


def test_windows_retry_budget_is_bounded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(_fs, "IS_WINDOWS", True)
    monkeypatch.setattr(_fs, "RETRY_BUDGET", 0.05)
    attempts = 0

    def always(src, dst):
        nonlocal attempts
        attempts += 1
        raise win_error(5, src, dst)

    monkeypatch.setattr(os, "replace", always)
    with pytest.raises(PermissionError):
        _fs.replace(tmp_path / "a", tmp_path / "b")
    assert attempts > 1


def test_posix_eacces_is_never_retried(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(_fs, "IS_WINDOWS", False)
    attempts = 0

    def denied(src, dst):
        nonlocal attempts
        attempts += 1
        e = PermissionError(errno.EACCES, "Permission denied")
        e.winerror = 5  # type: ignore[attr-defined]
        raise e

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(PermissionError):
        _fs.replace(tmp_path / "a", tmp_path / "b")
    assert attempts == 1


def test_atomic_write_bytes_replaces_and_exclusive_keeps(tmp_path: Path) -> None:
    p = tmp_path / "f.json"
    assert _fs.atomic_write_bytes(p, b"1")
    assert _fs.atomic_write_bytes(p, b"2")
    assert p.read_bytes() == b"2"
    assert _fs.atomic_write_bytes(p, b"3", exclusive=True) is False
    assert p.read_bytes() == b"2"
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]


def test_ensure_dir_syncs_parents_of_new_dirs(tmp_path: Path, monkeypatch) -> None:
    synced: list[str] = []
    monkeypatch.setattr(_fs, "fsync_dir", lambda p: synced.append(os.fspath(p)))
    _fs.ensure_dir(tmp_path / "a" / "b")
    assert synced == [str(tmp_path), str(tmp_path / "a")]
    synced.clear()
    _fs.ensure_dir(tmp_path / "a" / "b")
    assert synced == []


def test_mkstemp_is_unique_and_readable_by_others(tmp_path: Path) -> None:
    names = set()
    for _ in range(50):
        f, p = _fs.mkstemp(tmp_path, prefix="x.")
        f.close()
        names.add(p.name)
    assert len(names) == 50
    mode = os.stat(p).st_mode & 0o777
    if os.name != "nt":
        assert mode == 0o666 & ~_umask()


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_rmtree_and_unlink_missing_ok(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f").write_bytes(b"")
    (tmp_path / "d" / "g").write_bytes(b"")
    _fs.rmtree(tmp_path / "d")
    assert not (tmp_path / "d").exists()
    assert _fs.unlink(tmp_path / "nope") is False
    with pytest.raises(FileNotFoundError):
        _fs.unlink(tmp_path / "nope", missing_ok=False)


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="posix_fadvise is POSIX-only")
def test_writeback_kicks_each_written_range_once(tmp_path: Path, monkeypatch) -> None:
    """Writeback asks the kernel to start writing every range exactly once, in order,
    never beyond what was written, and a store write through it stays intact."""
    calls: list[tuple[int, int]] = []
    real = os.posix_fadvise

    def record(fd: int, offset: int, length: int, advice: int) -> None:
        calls.append((offset, length))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", record)
    monkeypatch.setattr(_fs, "_FADV_DONTNEED", os.POSIX_FADV_DONTNEED)
    step = _fs.WRITEBACK_STEP
    piece = os.urandom(1 << 20)
    start = 4096
    with open(tmp_path / "f", "wb") as f:
        f.write(b"\0" * start)
        wb = _fs.Writeback(f, start)
        written = start
        for _ in range(3 * step // len(piece) + 3):
            f.write(piece)
            written += len(piece)
            wb.wrote(len(piece))
    assert len(calls) == 3
    pos = start
    for offset, length in calls:
        assert offset == pos and length >= step
        pos += length
    assert pos <= written
    assert (tmp_path / "f").stat().st_size == written


def test_write_all_slices_big_writes_and_keeps_every_byte(tmp_path: Path) -> None:
    sizes: list[int] = []

    class Recording:
        def __init__(self, f) -> None:  # type: ignore[no-untyped-def]
            self.f = f

        def write(self, b) -> int:  # type: ignore[no-untyped-def]
            sizes.append(len(b))
            return int(self.f.write(b))

    data = os.urandom(3 * _fs.WRITE_SLICE + 12345)
    with open(tmp_path / "f", "wb") as f:
        _fs.write_all(Recording(f), data)  # type: ignore[arg-type]
        _fs.write_all(Recording(f), bytearray(b"tail"))  # type: ignore[arg-type]
    assert (tmp_path / "f").read_bytes() == data + b"tail"
    assert max(sizes) <= _fs.WRITE_SLICE and sizes[-1] == 4
    assert len(sizes) == 5


def test_atomic_write_bytes_mode_is_set_before_the_data(tmp_path: Path) -> None:
    """Credentials: the file is the owner's alone from its first byte (issue 15.5)."""
    if not hasattr(os, "fchmod"):
        pytest.skip("no fchmod on this OS")
    from pycrane import _fs

    p = tmp_path / "config.json"
    _fs.atomic_write_bytes(p, b"{}", mode=0o600)
    assert os.stat(p).st_mode & 0o777 == 0o600
    assert p.read_bytes() == b"{}"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["config.json"]


def test_a_name_set_on_fs_is_set_where_it_is_defined(monkeypatch) -> None:
    """``_fs`` is a package: a patch of ``_fs.<name>`` must reach the module that
    defines the name, or calls inside the package would not see it."""
    from pycrane._fs import _durable, _retry

    for name in _fs.__all__:
        assert getattr(_fs._OWNERS[name], name) is getattr(_fs, name), name
    monkeypatch.setattr(_fs, "IS_WINDOWS", not _fs.IS_WINDOWS)
    assert _retry.IS_WINDOWS is _fs.IS_WINDOWS
    synced: list[str] = []
    monkeypatch.setattr(_fs, "fsync_dir", synced.append)
    assert _durable.fsync_dir is _fs.fsync_dir
    monkeypatch.undo()
    assert _retry.IS_WINDOWS is _fs.IS_WINDOWS and _durable.fsync_dir is _fs.fsync_dir
