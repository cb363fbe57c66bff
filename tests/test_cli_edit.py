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
