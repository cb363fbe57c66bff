"""The CLI's framework: lazy commands, the error funnel, exit codes, logging, progress.

Everything here runs without a registry; end-to-end tests live in test_cli_e2e.py.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pycrane.cli import _status as status
from pycrane.cli import main
from pycrane.cli._app import _HIDDEN, COMMANDS
from pycrane.cli._logging import REDACTED, redact
from pycrane.cli._progress import RichProgress, wants_progress
from pycrane.v1.digest import Digest


def run_cli(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    full_env = dict(os.environ)
    full_env.pop("PYCRANE_DEBUG", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pycrane", *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        timeout=120,
    )


def one_error_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert "Traceback" not in text, text
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("pycrane: error: "), text
    return lines[0]


def test_help_lists_every_command_without_importing_them() -> None:
    code = (
        "import sys\n"
        "from pycrane.cli import main\n"
        "rc = main(['--help'])\n"
        "heavy = [m for m in sys.modules if m.startswith(('pycrane.cli.commands.', 'rich',"
        " 'pycrane.remote', 'pycrane.layout', 'pycrane.tarball', 'pycrane.registry'))"
        " and m != 'pycrane.cli.commands']\n"
        "print('HEAVY', heavy, rc, file=sys.stderr)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "HEAVY [] 0" in p.stderr.decode()
    out = p.stdout.decode()
    for name in COMMANDS:
        if name not in _HIDDEN:
            assert f"  {name} " in out, name
    # Aliases stay out of the listing, and so do the commands crane hides (edit, optimize).
    assert {"cp", "opt", "edit", "optimize"} <= _HIDDEN
    for name in _HIDDEN:
        assert f"  {name} " not in out, name


def test_every_command_module_imports_and_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in sorted(COMMANDS):
        assert main([name, "--help"]) == status.SUCCESS, name
        out = capsys.readouterr().out
        assert f"Usage: pycrane {name}" in out, (name, out)


@pytest.mark.parametrize(
    ("group", "subs"),
    [
        ("auth", ["login", "logout", "get", "token"]),
        ("index", ["list", "append", "filter"]),
        ("registry", ["serve"]),
        ("layout", ["gc"]),
    ],
)
def test_groups_have_their_subcommands(
    group: str, subs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    for sub in subs:
        assert main([group, sub, "--help"]) == status.SUCCESS
        assert f"Usage: pycrane {group} {sub}" in capsys.readouterr().out


def test_version_in_process_and_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    assert main(["version"]) == 0
    assert capsys.readouterr().out == version("pycrane") + "\n"
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == version("pycrane") + "\n"


def test_a_group_alone_shows_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == status.SUCCESS
    assert capsys.readouterr().out.startswith("Usage: pycrane [OPTIONS] COMMAND")
    assert main(["auth"]) == status.SUCCESS
    cap = capsys.readouterr()
    assert cap.out.startswith("Usage: pycrane auth [OPTIONS] COMMAND") and cap.err == ""


def test_usage_errors_are_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == status.USAGE
    err = capsys.readouterr().err
    assert err.startswith("pycrane: error: No such command 'no-such-command'")
    assert len(err.splitlines()) == 1
    assert main(["digest", "--bogus", "x"]) == status.USAGE
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert main(["pull"]) == status.USAGE
    assert "Missing argument" in capsys.readouterr().err
    assert main(["pull", "--format", "zip", "a", "b"]) == status.USAGE
    assert "'zip' is not one of" in capsys.readouterr().err


def test_bad_reference_is_one_line_exit_1_in_a_subprocess() -> None:
    p = run_cli("digest", "Foo/bar")
    assert p.returncode == status.ERROR
    line = one_error_line(p.stderr)
    assert "Foo/bar" in line and "lowercase" in line
    assert p.stdout == b""


def test_bad_platform_is_a_usage_error() -> None:
    p = run_cli("manifest", "--platform", "linux/", "localhost:1/x")
    assert p.returncode == status.USAGE
    assert "--platform" in one_error_line(p.stderr)


def test_platform_lists_and_os_only() -> None:
    from pycrane.cli._options import parse_platforms
    from pycrane.v1.platform import Platform

    assert parse_platforms(["all"]) == []
    assert parse_platforms(["linux/amd64, linux/arm/v7", "windows/amd64:10.0.17763"]) == [
        Platform("linux", "amd64"),
        Platform("linux", "arm", "v7"),
        Platform("windows", "amd64", os_version="10.0.17763"),
    ]
    (linux,) = parse_platforms(["linux"])
    assert linux.satisfied_by(Platform("linux", "s390x"))
    assert not linux.satisfied_by(Platform("windows", "amd64"))


def test_global_flags_before_and_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    from pycrane.cli._options import Options, parse_platforms

    seen: list[Options] = []
    import click

    from pycrane.cli._app import COMMANDS as table
    from pycrane.cli._options import command

    @command("probe")
    @click.argument("x")
    def probe(opts: Options, x: str) -> None:
        seen.append(opts)

    import pycrane.cli.commands.version as vmod

    vmod.probe = probe  # type: ignore[attr-defined]
    table["probe"] = ("version", "probe", "test only")
    try:
        assert (
            main(
                [
                    "--platform",
                    "linux/amd64",
                    "probe",
                    "--platform",
                    "linux/arm64,linux/arm/v7",
                    "--insecure",
                    "y",
                ]
            )
            == 0
        )
    finally:
        del table["probe"]
        del vmod.probe  # type: ignore[attr-defined]
    (opts,) = seen
    assert opts.platforms == parse_platforms(["linux/amd64", "linux/arm64", "linux/arm/v7"])
    assert opts.insecure and not opts.verbose


def test_debug_shows_a_traceback_and_default_does_not() -> None:
    p = run_cli("digest", "UPPER/case")
    assert "Traceback" not in p.stderr.decode()
    p = run_cli("--debug", "digest", "UPPER/case")
    assert p.returncode == status.ERROR
    assert "Traceback" in p.stderr.decode()
    p = run_cli("digest", "UPPER/case", env={"PYCRANE_DEBUG": "1"})
    assert "Traceback" in p.stderr.decode()


def test_os_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tar"
    p = run_cli("digest", "--tarball", str(missing))
    assert p.returncode == status.ERROR
    line = one_error_line(p.stderr)
    assert str(missing) in line


_FLOOD = """
import sys
import pycrane.cli._output as o
from pycrane.cli import run

real_line = o.line

def flood(text):
    for _ in range(256):
        real_line("x" * 65536)

o.line = flood
sys.argv = ["pycrane", "auth", "get", "x.example"]
run()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGPIPE is POSIX")
def test_broken_pipe_is_quiet(tmp_path: Path) -> None:
    # `pycrane ... | head -c10`: the reader leaves before we finish writing.
    r, w = os.pipe()
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    env.pop("REGISTRY_AUTH_FILE", None)
    env.pop("XDG_RUNTIME_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", _FLOOD], stdout=w, stderr=subprocess.PIPE, env=env
    )
    os.close(w)
    assert os.read(r, 10)
    os.close(r)
    _, err = proc.communicate(timeout=60)
    assert err == b"", err
    assert proc.returncode == status.BROKEN_PIPE


def test_interrupt_is_one_line_exit_130() -> None:
    code = (
        "import sys, pycrane.cli.commands.version as v\n"
        "def boom(*a, **k): raise KeyboardInterrupt\n"
        "v.version_string = boom\n"
        "from pycrane.cli import run\n"
        # `-v`: the bare `version` is answered before click loads, without version_string
        "sys.argv = ['pycrane', 'version', '-v']\n"
        "run()\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert p.returncode == status.INTERRUPTED
    assert one_error_line(p.stderr) == "pycrane: error: interrupted"


def test_unexpected_exception_says_bug_without_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pycrane.cli.commands.version as v

    def boom() -> str:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(v, "version_string", boom)
    monkeypatch.delenv("PYCRANE_DEBUG", raising=False)
    assert main(["version"]) == status.UNKNOWN_ERROR
    err = capsys.readouterr().err
    assert err.startswith("pycrane: error: internal error: ZeroDivisionError: oops")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abc.def.ghijklmnopqrstuv",
        "GET https://r.example/token?service=x&token=s3cr3tvalue&scope=y",
        "POST body grant_type=refresh_token&refresh_token=s3cr3tvalue",
        "https://user:s3cr3tvalue@r.example/v2/",
        '{"password": "s3cr3tvalue"}',
        "Basic dXNlcjpzM2NyM3R2YWx1ZQ==",
    ],
)
def test_redaction(text: str) -> None:
    out = redact(text)
    assert REDACTED in out
    assert "s3cr3tvalue" not in out and "abc.def.ghijklmnopqrstuv" not in out
    assert "dXNlcjpzM2NyM3R2YWx1ZQ==" not in out


def test_verbose_logs_to_stderr_redacted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    import pycrane.cli.commands.version as v

    def logging_version() -> str:
        logging.getLogger("pycrane.remote").debug("GET https://r.example/v2/?token=s3cr3tvalue 200")
        logging.getLogger("pycrane.remote").warning("registry said: slow down")
        return "1.2.3"

    monkeypatch.setattr(v, "version_string", logging_version)
    assert main(["version"]) == 0
    cap = capsys.readouterr()
    assert cap.out == "1.2.3\n"
    assert cap.err == "pycrane: warning: registry said: slow down\n"
    assert main(["-v", "version"]) == 0
    err = capsys.readouterr().err
    assert "DEBUG pycrane.remote: GET https://r.example/v2/?token=" + REDACTED + " 200" in err
    assert "s3cr3tvalue" not in err
    # The handler is removed after each run: nothing piles up in-process.
    assert not logging.getLogger("pycrane").handlers


def test_wants_progress_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert wants_progress(False, Tty())
    assert not wants_progress(True, Tty())
    assert not wants_progress(False, io.StringIO())
    monkeypatch.setenv("CI", "true")
    assert not wants_progress(False, Tty())


def test_rich_progress_sink_is_thread_safe() -> None:
    buf = io.StringIO()
    digests = [Digest.from_bytes(str(i).encode()) for i in range(40)]
    with RichProgress(buf) as sink:

        def worker(ds: list[Digest]) -> None:
            for d in ds:
                sink.start(d, 1000, f"layer {d.hex[:8]}")
                for _ in range(10):
                    sink.advance(d, 100)
                sink.finish(d, skipped=False)

        threads = [threading.Thread(target=worker, args=(digests[i::4],)) for i in range(4)]
        # A skipped blob is taken out of the total.
        skipped = Digest.from_bytes(b"skipped")
        sink.start(skipped, 10**9)
        sink.finish(skipped, skipped=True)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # The same blob twice at once (copy -a): one bar, and both counted.
        twice = Digest.from_bytes(b"twice")
        sink.start(twice, 10)
        sink.start(twice, 10)
        sink.advance(twice, 10)
        sink.finish(twice)
        assert len(sink._progress.tasks) == 2
        sink.advance(twice, 10)
        sink.finish(twice)
        total = sink._progress.tasks[0]
        assert total.completed == 40 * 1000 + 20
        assert total.total == 40 * 1000 + 20
        assert len(sink._progress.tasks) == 1  # finished blobs are removed
        assert "43/43 blobs" in total.description


def test_a_broken_pipe_elsewhere_is_an_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # EPIPE from a registry connection is a failure, not a reader leaving our stdout.
    import pycrane.cli.commands.version as v

    def upload_died() -> str:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(v, "version_string", upload_died)
    assert main(["version"]) == status.ERROR
    assert capsys.readouterr().err == "pycrane: error: [Errno 32] Broken pipe\n"


CRANE_FLAGS = {
    "pull": ["--format", "--cache_path", "-c", "--annotate-ref", "-j", "--jobs"],
    "push": ["--index", "--image-refs"],
    "copy": ["-a", "--all-tags", "-n", "--no-clobber", "-j", "--jobs", "--referrers"],
    "digest": ["--full-ref", "--tarball"],
    "ls": ["--full-ref", "-O", "--omit-digest-tags"],
    "catalog": ["--full-ref"],
    "validate": ["--remote", "--tarball", "--layout", "--fast"],
    "append": [
        "-b",
        "--base",
        "-f",
        "--new_layer",
        "-t",
        "--new_tag",
        "-o",
        "--output",
        "--set-base-image-annotations",
        "--oci-empty-base",
    ],
    "mutate": [
        "-a",
        "--annotation",
        "-l",
        "--label",
        "-e",
        "--env",
        "--entrypoint",
        "--cmd",
        "-u",
        "--user",
        "-w",
        "--workdir",
        "--exposed-ports",
        "--append",
        "--set-platform",
        "-t",
        "--tag",
        "--repo",
        "-o",
        "--output",
    ],
    "rebase": ["--old_base", "--new_base", "-t", "--tag"],
    "flatten": ["-t", "--tag"],
    "auth login": ["-u", "-p", "--password-stdin"],
    "auth token": ["--push", "-H", "--header", "-m", "--mount"],
    "index filter": ["-t", "--tag"],
    "index append": ["-m", "--manifest", "-t", "--tag", "--docker-empty-base", "--flatten"],
    "registry serve": ["--address", "--disk"],
}


@pytest.mark.parametrize("cmd", sorted(CRANE_FLAGS))
def test_crane_flags_are_accepted(cmd: str) -> None:
    """Every flag crane users type exists under the same name (and the global ones too)."""
    from pycrane.cli._app import cli

    ctx = cli.make_context("pycrane", ["version"])
    node: Any = cli
    for part in cmd.split():
        node = node.get_command(ctx, part)
    names = {opt for p in node.params for opt in (*p.opts, *p.secondary_opts)}
    missing = [
        f
        for f in [*CRANE_FLAGS[cmd], "--platform", "--insecure", "-v", "--verbose"]
        if f not in names
    ]
    assert not missing, missing


def test_completion_script_and_protocol() -> None:
    """crane's ``completion`` command: the script, and the completions it asks for."""
    import os

    p = subprocess.run(
        [sys.executable, "-m", "pycrane", "completion", "bash"], capture_output=True, timeout=60
    )
    assert p.returncode == 0 and b"_PYCRANE_COMPLETE" in p.stdout, p.stderr

    def complete(words: str) -> list[str]:
        env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": "1"}
        env["_PYCRANE_COMPLETE"] = "bash_complete"
        p = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.argv[0] = 'pycrane'; from pycrane.cli import run; run()",
            ],
            capture_output=True,
            env=env,
            timeout=60,
        )
        return p.stdout.decode().split()

    assert complete("pycrane exp") == ["plain,export"]
    # What crane hides (edit, optimize) cobra does not complete either.
    assert complete("pycrane edi") == []
    assert complete("pycrane opt") == []
