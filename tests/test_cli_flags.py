"""Every crane v0.21 flag, its cobra kind, and what pycrane's parser makes of it.

The table is the audit of issue 11.1: a row per flag crane declares (cmd/crane/cmd/*.go),
with the pflag kind. Each kind has one behaviour a ported script relies on (does a
repeat accumulate or replace, does a comma split), and the test drives pycrane's real
click parser with it. A row whose flag pycrane lacks fails, so does one that parses
differently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest

from pycrane.cli._app import cli
from pycrane.cli._options import parse_platforms

STRING, SLICE, ARRAY, MAP, BOOL, INT, PLATFORMS = (
    "StringVar",
    "StringSliceVar",
    "StringArrayVar",
    "StringToStringVar",
    "BoolVar",
    "IntVar",
    "platformsValue",
)

#: (command path, crane's flag spelling, kind, positional args the command needs)
CRANE_FLAGS: list[tuple[str, str, str, list[str]]] = [
    ("append", "-b/--base", STRING, ["-f", "x.tar"]),
    ("append", "-t/--new_tag", STRING, ["-f", "x.tar"]),
    ("append", "-f/--new_layer", SLICE, []),
    ("append", "-o/--output", STRING, ["-f", "x.tar"]),
    ("append", "--set-base-image-annotations", BOOL, ["-f", "x.tar"]),
    ("append", "--oci-empty-base", BOOL, ["-f", "x.tar"]),
    ("auth login", "-u/--username", STRING, ["r.example"]),
    ("auth login", "-p/--password", STRING, ["r.example", "-u", "me"]),
    ("auth login", "--password-stdin", BOOL, ["r.example", "-u", "me"]),
    ("auth token", "--push", BOOL, ["r.example/repo"]),
    ("auth token", "-H/--header", BOOL, ["r.example/repo"]),
    ("auth token", "-m/--mount", SLICE, ["r.example/repo"]),
    ("catalog", "--full-ref", BOOL, ["r.example"]),
    ("copy", "-a/--all-tags", BOOL, ["a", "b"]),
    ("copy", "-n/--no-clobber", BOOL, ["a", "b"]),
    ("copy", "-j/--jobs", INT, ["a", "b"]),
    ("digest", "--full-ref", BOOL, ["a"]),
    ("digest", "--tarball", STRING, ["a"]),
    ("edit config", "-t/--tag", STRING, ["a"]),
    ("edit manifest", "-t/--tag", STRING, ["a"]),
    ("edit manifest", "-m/--media-type", STRING, ["a"]),
    ("edit fs", "-f/--filename", STRING, ["a"]),
    ("edit fs", "-t/--tag", STRING, ["a", "-f", "x"]),
    ("flatten", "-t/--tag", STRING, ["a"]),
    ("index filter", "-t/--tag", STRING, ["a"]),
    ("index filter", "--platform", PLATFORMS, ["a"]),
    ("index append", "-t/--tag", STRING, ["a"]),
    ("index append", "-m/--manifest", SLICE, ["a"]),
    ("index append", "--docker-empty-base", BOOL, ["a"]),
    ("ls", "--full-ref", BOOL, ["a"]),
    ("ls", "-O/--omit-digest-tags", BOOL, ["a"]),
    ("mutate", "-a/--annotation", MAP, ["a"]),
    ("mutate", "-l/--label", MAP, ["a"]),
    ("mutate", "-e/--env", MAP, ["a"]),
    ("mutate", "--entrypoint", SLICE, ["a"]),
    ("mutate", "--cmd", SLICE, ["a"]),
    ("mutate", "-r/--repo", STRING, ["a"]),
    ("mutate", "-t/--tag", STRING, ["a"]),
    ("mutate", "-o/--output", STRING, ["a"]),
    ("mutate", "--append", SLICE, ["a"]),
    ("mutate", "-u/--user", STRING, ["a"]),
    ("mutate", "-w/--workdir", STRING, ["a"]),
    ("mutate", "--set-platform", STRING, ["a"]),
    ("mutate", "--exposed-ports", SLICE, ["a"]),
    ("optimize", "--prioritize", SLICE, ["a", "b"]),
    ("pull", "-c/--cache_path", STRING, ["a", "out"]),
    ("pull", "--format", STRING, ["a", "out"]),
    ("pull", "--annotate-ref", BOOL, ["a", "out"]),
    ("push", "--index", BOOL, ["a", "b"]),
    ("push", "--image-refs", STRING, ["a", "b"]),
    ("rebase", "--old_base", STRING, ["a"]),
    ("rebase", "--new_base", STRING, ["a"]),
    ("rebase", "-t/--tag", STRING, ["a"]),
    ("rebase", "--original", STRING, ["a"]),
    ("rebase", "--rebased", STRING, ["a"]),
    ("registry serve", "--address", STRING, []),
    ("registry serve", "--disk", STRING, []),
    ("validate", "--fast", BOOL, []),
    ("validate", "--remote", STRING, []),
    ("validate", "--tarball", STRING, []),
    # crane's persistent flags, on every command.
    ("ls", "-v/--verbose", BOOL, ["a"]),
    ("ls", "--insecure", BOOL, ["a"]),
    ("copy", "--allow-nondistributable-artifacts", BOOL, ["a", "b"]),
    ("push", "--allow-nondistributable-artifacts", BOOL, ["a", "b"]),
    ("pull", "--allow-nondistributable-artifacts", BOOL, ["a", "out"]),
    ("mutate", "--allow-nondistributable-artifacts", BOOL, ["a"]),
]

#: Values that pass each command's own type checks (choices, paths that must exist).
_VALUES = {
    ("pull", "--format"): ("tarball", "oci"),
    ("registry serve", "--disk"): ("/tmp", "/"),
    ("pull", "-c/--cache_path"): ("/tmp", "/"),
}


@pytest.fixture(autouse=True)
def _paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run where the path arguments the table uses exist (some commands check)."""
    monkeypatch.chdir(tmp_path)
    for name in ("a", "x,y", "z", "x.tar"):
        (tmp_path / name).write_bytes(b"")


def _command(path: str) -> click.Command:
    ctx = click.Context(cli)
    cmd: click.Command | None = cli
    for part in path.split():
        assert isinstance(cmd, click.Group)
        cmd = cmd.get_command(ctx, part)
        assert cmd is not None, f"pycrane has no command {path!r}"
    return cmd


def _parse(path: str, args: list[str]) -> dict[str, Any]:
    cmd = _command(path)
    with cmd.make_context(path, list(args)) as ctx:
        return dict(ctx.params)


def _param(path: str, flag: str) -> click.Option:
    spellings = flag.split("/")
    for p in _command(path).params:
        if isinstance(p, click.Option) and set(spellings) <= set(p.opts):
            return p
    raise AssertionError(f"pycrane {path} has no option {flag} (crane declares it)")


@pytest.mark.parametrize(
    ("path", "flag", "kind", "args"),
    CRANE_FLAGS,
    ids=[f"{p}:{f}" for p, f, _k, _a in CRANE_FLAGS],
)
def test_flag_parses_as_crane_declares(path: str, flag: str, kind: str, args: list[str]) -> None:
    param = _param(path, flag)
    name = param.name
    assert name is not None
    short, long_ = flag.split("/")[0], flag.split("/")[-1]
    if kind == BOOL:
        assert _parse(path, [*args, short])[name] is True
        assert not _parse(path, args)[name]
    elif kind == INT:
        assert _parse(path, [*args, short, "3", long_, "5"])[name] == 5  # a repeat replaces
    elif kind == STRING:
        one, two = _VALUES.get((path, flag), ("x,y", "z"))
        got = _parse(path, [*args, short, one])[name]
        assert str(got) == one  # a comma is kept
        assert str(_parse(path, [*args, short, one, long_, two])[name]) == two  # a repeat replaces
    elif kind == SLICE:
        got = _parse(path, [*args, short, "a,b", long_, "c", short, '"d,e"'])[name]
        assert list(got) == ["a", "b", "c", "d,e"]
    elif kind == ARRAY:
        got = _parse(path, [*args, short, "a,b", long_, "c"])[name]
        assert list(got) == ["a,b", "c"]
    elif kind == MAP:
        got = _parse(path, [*args, short, "k=v,k2=v2", long_, "k3=x=y", short, "k=w"])[name]
        assert got == {"k": "w", "k2": "v2", "k3": "x=y"}
        with pytest.raises(click.BadParameter):
            _parse(path, [*args, short, "novalue"])
    elif kind == PLATFORMS:
        got = _parse(path, [*args, long_, "linux/amd64,linux/arm64", long_, "linux/s390x"])
        assert len(parse_platforms(got[name])) == 3  # comma lists and repeats both add
    else:  # pragma: no cover - the table only uses the kinds above
        raise AssertionError(kind)


def test_mutate_entrypoint_accumulates_end_to_end() -> None:
    """The issue's example: two --entrypoint give a two-element entrypoint."""
    got = _parse("mutate", ["img", "--entrypoint", "/bin/app", "--entrypoint", "run"])
    assert got["entrypoint"] == ["/bin/app", "run"]
    assert _parse("mutate", ["img"])["entrypoint"] is None
    assert _parse("mutate", ["img", "--entrypoint", ""])["entrypoint"] == []


def test_every_crane_command_exists() -> None:
    """crane v0.21's commands (plus gcrane's ls -r), as pycrane spells them."""
    for path in (
        "append", "auth get", "auth login", "auth logout", "auth token", "blob", "catalog",
        "completion", "config", "copy", "cp", "delete", "digest", "edit config", "edit manifest",
        "edit fs",
        "export", "flatten", "index append", "index filter", "ls", "manifest", "mutate", "optimize",
        "opt", "pull",
        "push", "rebase", "registry serve", "tag", "validate", "version",
    ):  # fmt: skip
        _command(path)
    assert "-r/--recursive" and _param("ls", "-r/--recursive")
