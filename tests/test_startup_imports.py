"""Start-up stays lean: the pull/push/copy/digest/manifest paths import only what they use.

Each check runs in a fresh interpreter (``sys.executable``) and looks at
``sys.modules``, so it is deterministic and untimed. The heavy modules listed here
were made lazy on purpose (see the measurements in the commit history); a new
module-level import of one of them on these paths fails a test here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pycrane.remote._transport import _environment_proxies

#: Never needed just to start a registry command (rare paths import them in place).
LAZY = (
    "filelock",  # not used at all any more: OS locks through pycrane._ownership
    "gzip",  # reproducible gzip of small payloads (empty layers)
    "pycrane.empty",
    "pycrane.mutate",
    "pycrane.random",
    "pycrane.registry",
    "pycrane.tarball",
    "pycrane.validate",
    "rich",  # progress bars, only on a terminal
    "subprocess",  # docker credential helpers
    "tarfile",
    "urllib.request",  # only when a *_proxy variable is set
    "zstandard",  # only when a zstd layer is met
)
#: Also absent while a command only parses its arguments (``pycrane pull --help``).
NETWORK = ("pycrane.crane", "pycrane.layout", "pycrane.remote", "urllib3")

COMMANDS = ("pull", "push", "copy", "digest", "manifest")
#: What a ``digest`` (a HEAD) never needs: the client builds these parts on first use.
WRITE_PARTS = (
    "concurrent.futures",
    "pycrane.remote._copy",
    "pycrane.remote._list",
    "pycrane.remote._pusher",
    "pycrane.remote._referrers",
    "pycrane.remote._write",
)


def _clean_env() -> dict[str, str]:
    """The environment without proxy variables (they legitimately load urllib.request)."""
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


def _modules_after(tmp_path: Path, code: str) -> dict[str, set[str]]:
    """Run ``code`` in a fresh interpreter; it calls ``dump(key)`` to record sys.modules."""
    out = tmp_path / "modules.json"
    prelude = (
        "import json, sys\n"
        "_seen = {}\n"
        "def dump(key):\n"
        "    _seen[key] = sorted(sys.modules)\n"
        f"    open({str(out)!r}, 'w').write(json.dumps(_seen))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    seen: dict[str, list[str]] = json.loads(out.read_text())
    return {key: set(mods) for key, mods in seen.items()}


@pytest.fixture(scope="module")
def lazy(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """LAZY minus what click and urllib3 import by themselves on this Python.

    Those are not ours to defer: on 3.10, click -> uuid -> platform imports subprocess.
    """
    seen = _modules_after(
        tmp_path_factory.mktemp("baseline"), "import click, urllib3\ndump('deps')"
    )
    return set(LAZY) - seen["deps"]


def test_the_watched_modules_exist() -> None:
    # A misspelt name would make the absence checks below pass for nothing.
    for name in LAZY + NETWORK + WRITE_PARTS:
        assert importlib.util.find_spec(name) is not None, name


def test_command_resolution_and_client_modules_stay_lean(tmp_path: Path, lazy: set[str]) -> None:
    code = (
        "from pycrane.cli import main\n"
        f"for cmd in {COMMANDS!r}:\n"
        "    assert main([cmd, '--help']) == 0, cmd\n"
        "dump('help')\n"
        "import pycrane.crane, pycrane.layout, pycrane.remote\n"
        "from pycrane.remote import Client\n"
        "Client().close()\n"
        "dump('library')\n"
    )
    seen = _modules_after(tmp_path, code)
    # The commands really were resolved, and the library modules really imported.
    assert {f"pycrane.cli.commands.{m}" for m in ("pull", "push", "copy", "inspect")} <= seen[
        "help"
    ]
    assert set(NETWORK) <= seen["library"]
    assert sorted(seen["help"] & (lazy | set(NETWORK))) == []
    assert sorted(seen["library"] & lazy) == []


def test_import_pycrane_leaves_builders_and_codecs_alone(tmp_path: Path) -> None:
    code = (
        "import pycrane\n"
        "dump('import')\n"
        # The submodules once imported eagerly are still attributes of the package.
        "assert pycrane.empty.empty_image is pycrane.empty_image\n"
        "assert pycrane.random.random_image is pycrane.random_image\n"
        "assert pycrane.empty_layer().size() > 0\n"
        "dump('used')\n"
    )
    seen = _modules_after(tmp_path, code)
    assert sorted(seen["import"] & {*LAZY, *NETWORK, "platform"}) == []
    assert {"pycrane.empty", "pycrane.random", "tarfile"} <= seen["used"]


@pytest.mark.distribution
def test_real_commands_import_only_what_they_use(
    tmp_path: Path, distribution: Any, lazy: set[str]
) -> None:
    from pycrane.layout import Layout
    from pycrane.random import random_image
    from pycrane.remote import Client

    ref = f"{distribution.host}/startup/img:v"
    pushed = f"{distribution.host}/startup/pushed:v"
    img = random_image(3, 256, seed=7101)
    with Client() as client:
        client.write_image(ref, img)
    src = tmp_path / "src"
    Layout.open_or_create(src).append_image(img)
    dest = tmp_path / "layout"
    code = (
        "from pycrane.cli import main\n"
        f"assert main(['digest', {ref!r}]) == 0\n"
        "dump('digest')\n"
        f"assert main(['push', {str(src)!r}, {pushed!r}]) == 0\n"
        "dump('push')\n"
        f"assert main(['pull', '--format', 'oci', {ref!r}, {str(dest)!r}]) == 0\n"
        "dump('pull')\n"
    )
    seen = _modules_after(tmp_path, code)
    # The push and the pull happened; the pull took the layout's lock through
    # pycrane._ownership (os-level flock), so neither loaded filelock (~50 ms).
    with Client() as client:
        assert client.get(pushed).raw == img.raw_manifest()
    assert [d.digest for d in Layout.open(dest).index().manifests] == [img.digest()]
    assert "pycrane.layout" in seen["push"]
    assert sorted(seen["digest"] & {*lazy, *WRITE_PARTS, "pycrane.layout"}) == []
    assert {"pycrane.remote._pusher", "pycrane.remote._write"} <= seen["push"]
    assert sorted(seen["push"] & lazy) == []
    assert sorted(seen["pull"] & lazy) == []


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"HTTP_PROXY": "http://up:1"},
        {"https_proxy": "http://low:2", "HTTPS_PROXY": "http://up:2"},
        {"http_proxy": "", "HTTP_PROXY": "http://up:3"},
        {"HTTP_PROXY": "http://up:4", "REQUEST_METHOD": "GET"},
        {"Ftp_Proxy": "http://mixed:5", "NO_PROXY": "localhost,.internal"},
        {"no_proxy": "*", "ALL_PROXY": "socks5://s:6"},
        {"PROXY": "http://not-a-scheme:7", "xproxy": "http://nope:8"},
    ],
)
def test_environment_proxies_read_like_urllib(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _environment_proxies() == urllib.request.getproxies_environment()


def test_version_needs_no_package_metadata(tmp_path: Path) -> None:
    """``pycrane version`` prints the constant (the installed version) and loads no model."""
    from importlib.metadata import version

    import pycrane

    assert pycrane.__version__ == version("pycrane")
    code = (
        "import contextlib, io\n"
        "from pycrane.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    assert main(['version']) == 0\n"
        "assert buf.getvalue().strip() == " + repr(pycrane.__version__) + "\n"
        "dump('version')\n"
    )
    seen = _modules_after(tmp_path, code)
    assert "importlib.metadata" not in seen["version"]
    # Nor the model: ``import pycrane`` is lazy and no global flag was given.
    assert sorted(m for m in seen["version"] if m.startswith(("pycrane.v1", "pycrane.name"))) == []


def test_version_answers_before_click_loads(tmp_path: Path) -> None:
    """``pycrane version`` (the console script's ``run``) imports neither click nor the
    command table, logging or typing: ~13 ms against ~50 ms through click."""
    import pycrane

    base = _modules_after(tmp_path, "dump('bare')")["bare"]
    code = (
        "import contextlib, io\n"
        "sys.argv = ['pycrane', 'version']\n"
        "from pycrane.cli import run\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try:\n"
        "        run()\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "assert buf.getvalue() == " + repr(pycrane.__version__ + "\n") + ", buf.getvalue()\n"
        "dump('version')\n"
    )
    seen = _modules_after(tmp_path, code)["version"] - base
    heavy = {"click", "logging", "typing", "traceback", "signal", "pycrane.cli._app"}
    assert sorted(seen & heavy) == []
    assert sorted(m for m in seen if m.startswith("pycrane")) == [
        "pycrane",
        "pycrane.cli",
        "pycrane.cli._status",
    ]


def test_version_with_a_pycrane_variable_goes_through_click(tmp_path: Path) -> None:
    """A PYCRANE_* variable may change what click does (a bad timeout is a usage error),
    so the fast path steps aside and click answers."""
    proc = subprocess.run(
        [sys.executable, "-m", "pycrane", "version"],
        capture_output=True,
        text=True,
        env={**_clean_env(), "PYCRANE_TIMEOUT": "not-a-number"},
        timeout=120,
    )
    assert proc.returncode == 2, proc
    assert proc.stderr.startswith("pycrane: error: "), proc.stderr


def test_parsing_a_reference_builds_no_image_model(tmp_path: Path) -> None:
    """``pycrane.v1`` re-exports lazily: names need only the digest type."""
    code = (
        "from pycrane.name import parse_reference\n"
        "parse_reference('example.com/a/b:c')\n"
        "dump('name')\n"
        "from pycrane.v1 import ConfigFile, Image, mediatypes\n"
        "import pycrane.v1 as v1\n"
        "assert v1.Platform.parse('linux/arm64').architecture == 'arm64'\n"
        "assert 'ConfigFile' in dir(v1) and v1.is_index is not None\n"
        "dump('model')\n"
    )
    seen = _modules_after(tmp_path, code)
    model = {"pycrane.v1.config", "pycrane.v1.image", "pycrane.v1.manifest", "pycrane.compression"}
    assert "pycrane.v1.digest" in seen["name"]
    assert sorted(seen["name"] & model) == []
    assert model <= seen["model"]
