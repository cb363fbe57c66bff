"""``edit config`` / ``edit manifest`` (non-interactive: new content on stdin) and ``ls -r``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pycrane.random import random_image
from tests.test_cli_e2e import Cli, _layout_with, _repo, cli, registry  # noqa: F401

__all__: list[str] = []


def _pushed(cli: Cli, registry: Any, tmp_path: Path, name: str) -> str:  # noqa: F811
    repo = _repo(registry, name)
    layout = _layout_with(tmp_path / "layout", random_image(1, 1024, seed=9))
    cli.out("push", str(layout), f"{repo}:v1")
    return repo


def test_edit_config_from_stdin(cli: Cli, registry: Any, tmp_path: Path) -> None:  # noqa: F811
    repo = _pushed(cli, registry, tmp_path, "editcfg")
    cfg = json.loads(cli("config", f"{repo}:v1").stdout)
    cfg.setdefault("config", {})["User"] = "nobody"
    new = json.dumps(cfg).encode()
    assert cli.out("edit", "config", f"{repo}:v1", "-t", f"{repo}:v2", stdin=new) == f"{repo}:v2"
    assert cli("config", f"{repo}:v2").stdout == new  # the bytes given, not a re-serialisation
    m = json.loads(cli("manifest", f"{repo}:v2").stdout)
    assert m["config"]["digest"] == "sha256:" + hashlib.sha256(new).hexdigest()
    assert m["config"]["size"] == len(new)
    # Not JSON: refused before anything is pushed, v1 untouched.
    before = cli("manifest", f"{repo}:v1").stdout
    line = cli.fails("edit", "config", f"{repo}:v1", stdin=b"not json")
    assert "not JSON" in line
    assert cli("manifest", f"{repo}:v1").stdout == before


def test_edit_manifest_from_stdin(cli: Cli, registry: Any, tmp_path: Path) -> None:  # noqa: F811
    repo = _pushed(cli, registry, tmp_path, "editman")
    m = json.loads(cli("manifest", f"{repo}:v1").stdout)
    m["annotations"] = {"edited": "yes"}
    new = json.dumps(m, indent=1).encode()
    assert cli.out("edit", "manifest", f"{repo}:v1", stdin=new) == f"{repo}:v1"
    assert cli("manifest", f"{repo}:v1").stdout == new
    line = cli.fails("edit", "manifest", f"{repo}:v1", stdin=b"[1, 2]")
    assert "JSON object" in line
    assert cli("manifest", f"{repo}:v1").stdout == new


def test_ls_recursive(cli: Cli, registry: Any, tmp_path: Path) -> None:  # noqa: F811
    top = _repo(registry, "tree")
    layout = _layout_with(tmp_path / "layout", random_image(1, 512, seed=3))
    for sub in ("", "/a", "/a/b"):
        cli.out("push", str(layout), f"{top}{sub}:t")
    cli.out("push", str(layout), f"{top}x:t")  # a sibling sharing the prefix is not below
    got = cli.out("ls", "-r", top).splitlines()
    assert got == [f"{top}:t", f"{top}/a:t", f"{top}/a/b:t"]
    assert cli.out("ls", top) == "t"


def _fs_of(cli: Cli, ref: str) -> dict[str, tuple[int, bytes]]:  # noqa: F811
    import io
    import tarfile

    out: dict[str, tuple[int, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(cli("export", ref, "-").stdout)) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None
            out[m.name.lstrip("./")] = (m.mode, f.read() if f else b"")
    return out


def _with_motd(cli: Cli, registry: Any, tmp_path: Path, name: str) -> str:  # noqa: F811
    import io
    import tarfile

    repo = _repo(registry, name)
    layer = tmp_path / "motd.tar"
    with tarfile.open(layer, "w") as tf:
        info = tarfile.TarInfo("etc/motd")
        info.size, info.mode = 4, 0o644
        tf.addfile(info, io.BytesIO(b"one\n"))
    cli.out("append", "-f", str(layer), "-t", f"{repo}:v1")
    return repo


def test_edit_fs_from_stdin(cli: Cli, registry: Any, tmp_path: Path) -> None:  # noqa: F811
    repo = _with_motd(cli, registry, tmp_path, "editfs")
    got = cli.out("edit", "fs", f"{repo}:v1", "-f", "/etc/motd", "-t", f"{repo}:v2", stdin=b"two\n")
    assert got == f"{repo}:v2"
    fs = _fs_of(cli, f"{repo}:v2")
    assert fs["etc/motd"] == (0o555, b"two\n")  # stdin gives a fresh header, as crane
    assert _fs_of(cli, f"{repo}:v1")["etc/motd"] == (0o644, b"one\n")
    m1 = json.loads(cli("manifest", f"{repo}:v1").stdout)
    m2 = json.loads(cli("manifest", f"{repo}:v2").stdout)
    assert m2["layers"][:-1] == m1["layers"] and len(m2["layers"]) == len(m1["layers"]) + 1
    cfg = json.loads(cli("config", f"{repo}:v2").stdout)
    assert cfg["history"][-1]["created_by"] == "pycrane edit fs -f /etc/motd"
    # A new file, pushed back to the same tag when -t is not given.
    assert cli.out("edit", "fs", f"{repo}:v2", "-f", "opt/new.txt", stdin=b"x") == f"{repo}:v2"
    assert _fs_of(cli, f"{repo}:v2")["opt/new.txt"] == (0o555, b"x")
    line = cli.fails("edit", "fs", f"{repo}:v1", "-f", "/", stdin=b"x", code=2)
    assert "names no file" in line


def test_edit_fs_in_the_editor_keeps_the_header(
    cli: Cli,  # noqa: F811
    registry: Any,  # noqa: F811
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    from click.testing import CliRunner

    from pycrane.cli._app import cli as app
    from pycrane.cli.commands import edit

    repo = _with_motd(cli, registry, tmp_path, "editfs-tty")
    script = tmp_path / "editor.sh"
    script.write_text("#!/bin/sh\nsed -i 's/one/ONE/' \"$1\"\n")
    script.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(script))
    monkeypatch.setattr(edit, "_interactive", lambda: True)
    result = CliRunner().invoke(
        app, ["edit", "fs", f"{repo}:v1", "-f", "etc/motd", "-t", f"{repo}:e"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{repo}:e"
    assert _fs_of(cli, f"{repo}:e")["etc/motd"] == (0o644, b"ONE\n")  # the file's own mode
