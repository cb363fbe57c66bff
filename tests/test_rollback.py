"""pycrane._rollback: outputs appear whole or not at all, and what was made for them goes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pycrane._rollback import OutputFile, output_dir, output_file

__all__: list[str] = []


def test_output_file_publishes_only_when_whole(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.tar"
    with output_file(target) as f:
        f.write(b"part")
        assert not target.exists()  # written beside it, under a temp name
        (tmp_name,) = [p.name for p in target.parent.iterdir()]
        assert tmp_name.startswith(".out.tar.")
    assert target.read_bytes() == b"part"
    assert [p.name for p in target.parent.iterdir()] == ["out.tar"]


@pytest.mark.parametrize("exc", [ValueError, KeyboardInterrupt])
def test_output_file_failure_leaves_nothing_it_made(
    tmp_path: Path, exc: type[BaseException]
) -> None:
    target = tmp_path / "a" / "b" / "out.tar"
    with pytest.raises(exc), output_file(target) as f:
        f.write(b"half")
        raise exc
    assert list(tmp_path.iterdir()) == []  # the temp file and both parents went


def test_output_file_failure_keeps_an_old_target_and_foreign_files(tmp_path: Path) -> None:
    target = tmp_path / "new" / "out.tar"
    out = OutputFile(target)
    (tmp_path / "new" / "theirs").write_bytes(b"x")  # someone else's file, made meanwhile
    out.abort()
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["theirs"]
    old = tmp_path / "old.tar"
    old.write_bytes(b"old")
    with pytest.raises(ValueError), output_file(old) as f:
        f.write(b"new")
        raise ValueError
    assert old.read_bytes() == b"old"
    out.abort()  # twice is harmless


def test_output_dir_rolls_back_what_it_made(tmp_path: Path) -> None:
    new = tmp_path / "p" / "layout"
    with pytest.raises(KeyboardInterrupt), output_dir(new) as is_new:
        assert is_new
        new.mkdir(parents=True)
        (new / "blob").write_bytes(b"x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError), output_dir(empty) as is_new:
        assert is_new
        (empty / "sub").mkdir()
        (empty / "sub" / "f").write_bytes(b"x")
        raise ValueError
    assert empty.is_dir() and list(empty.iterdir()) == []
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep").write_bytes(b"x")
    with pytest.raises(ValueError), output_dir(full) as is_new:
        assert not is_new
        raise ValueError
    assert [p.name for p in full.iterdir()] == ["keep"]


def test_output_file_under_windows_rules(tmp_path: Path, windows_fs: Callable[..., Any]) -> None:
    """A reader holding the old target makes the replace fail with winerror 5 until it
    lets go; the publish retries within the budget instead of failing."""
    fs = windows_fs(tmp_path, rename_window=0.001)
    target = tmp_path / "out.tar"
    target.write_bytes(b"old")
    reader = open(target, "rb")  # noqa: SIM115
    timer = threading.Timer(0.05, reader.close)
    timer.start()
    try:
        start = time.monotonic()
        with output_file(target, durable=False) as f:
            f.write(b"new")
        assert time.monotonic() - start >= 0.04
    finally:
        timer.join()
    assert target.read_bytes() == b"new"
    assert fs.errors[5] >= 1  # the emulator did refuse while the reader held it
    assert [p.name for p in tmp_path.iterdir()] == ["out.tar"]
