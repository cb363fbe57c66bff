"""Real CNCF distribution registries for tests (``docker-registry serve``).

Three session-scoped fixtures start one registry each on ``127.0.0.1`` with a free
port and filesystem storage under a temporary directory, and stop it by pid at
the end of the session:

- ``distribution``: anonymous;
- ``distribution_htpasswd``: Basic auth from a bcrypt htpasswd file;
- ``distribution_token``: bearer tokens from :class:`tests.tokenserver.TokenServer`.

``distribution_factory`` starts more, stopped at the end of the test:
``distribution_factory("token", token_server=TokenServer(...))`` for a custom token
server. :func:`start_distribution` also takes ``tls=True`` (a self-signed
certificate for 127.0.0.1, its path in ``handle.extra["ca_cert"]``). Each handle
has ``.host`` ("127.0.0.1:PORT"), ``.url``, ``.username``, ``.password``,
``.token_server`` (token mode) and ``.log()`` (the registry's output).

``registry_server`` is parametrized over every available server implementation
(distribution, and pycrane's own registry when its pytest plugin provides
``pycrane_registry``), so client tests run against each.
Every fixture skips cleanly when ``docker-registry`` is not installed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pycrane.registry.pytest_plugin import make_self_signed_cert
from tests.tokenserver import TokenServer

__all__ = [
    "DistributionRegistry",
    "free_port",
    "start_distribution",
]

DOCKER_REGISTRY = shutil.which("docker-registry")
USERNAME = "pycrane"
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DistributionRegistry:
    """A running distribution registry and how to reach it."""

    host: str  # "127.0.0.1:PORT"
    root: Path  # storage root directory
    mode: str  # "anonymous", "htpasswd" or "token"
    process: subprocess.Popen[bytes] | None = None
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None
    log_path: Path | None = None
    kind: str = "distribution"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{'https' if 'ca_cert' in self.extra else 'http'}://{self.host}"

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    def ref(self, path: str) -> str:
        """``host/path``, e.g. ``reg.ref("a/b:tag")``."""
        return f"{self.host}/{path}"

    def log(self) -> str:
        """The registry's log so far (for assertion messages)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if self.token_server is not None:
            self.token_server.stop()


def _config(root: Path, port: int, auth: str, tls: str = "") -> str:
    return f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root / "data"}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: {secrets.token_hex(16)}
  draintimeout: 1s
{tls}validation:
  manifests:
    urls:
      allow:
        - ^https?://
{auth}"""


def _ctx(reg: DistributionRegistry) -> ssl.SSLContext | None:
    if "ca_cert" not in reg.extra:
        return None
    return ssl.create_default_context(cafile=str(reg.extra["ca_cert"]))


def _wait_ready(reg: DistributionRegistry, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert reg.process is not None
        if reg.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited early:\n{reg.log()}")
        try:
            with urllib.request.urlopen(f"{reg.url}/v2/", timeout=2, context=_ctx(reg)):
                return
        except urllib.error.HTTPError as e:
            if e.code == 401:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"docker-registry not ready after {timeout}s:\n{reg.log()}")
        time.sleep(0.05)


def start_distribution(
    workdir: Path,
    mode: str = "anonymous",
    *,
    token_server: TokenServer | None = None,
    tls: bool = False,
) -> DistributionRegistry:
    """Start ``docker-registry serve`` in ``mode`` and wait until it answers ``/v2/``.

    With ``tls`` it serves https with a self-signed certificate for 127.0.0.1
    (``extra["ca_cert"]`` is its path).
    """
    if DOCKER_REGISTRY is None:
        pytest.skip("docker-registry (CNCF distribution) is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    username = password = None
    auth = ""
    if mode == "htpasswd":
        username, password = USERNAME, PASSWORD
        htpasswd = workdir / "htpasswd"
        try:
            import bcrypt  # type: ignore[import-not-found, unused-ignore]

            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
            htpasswd.write_text(f"{username}:{hashed}\n")
        except ImportError:
            out = subprocess.run(
                ["htpasswd", "-Bbn", username, password],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            htpasswd.write_text(out.strip() + "\n")
        auth = f"auth:\n  htpasswd:\n    realm: pycrane-basic-realm\n    path: {htpasswd}\n"
    elif mode == "token":
        username, password = USERNAME, PASSWORD
        if token_server is None:
            token_server = TokenServer(workdir / "tokens", users={username: password})
            token_server.start()
        auth = (
            "auth:\n  token:\n"
            f"    realm: {token_server.realm}\n"
            f"    service: {token_server.service}\n"
            f"    issuer: {token_server.issuer}\n"
            f"    rootcertbundle: {token_server.cert_path}\n"
        )
    elif mode != "anonymous":
        raise ValueError(f"unknown distribution mode {mode!r}")
    tls_block = ""
    extra: dict[str, Any] = {}
    if tls:
        (workdir / "tls").mkdir(exist_ok=True)
        cert, key = make_self_signed_cert(workdir / "tls")
        tls_block = f"  tls:\n    certificate: {cert}\n    key: {key}\n"
        extra["ca_cert"] = cert
    last_error: Exception | None = None
    for _attempt in range(5):
        port = free_port()
        cfg = workdir / f"config-{port}.yml"
        cfg.write_text(_config(workdir, port, auth, tls_block))
        log_path = workdir / f"registry-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [DOCKER_REGISTRY, "serve", str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
            )
        reg = DistributionRegistry(
            host=f"127.0.0.1:{port}",
            root=workdir,
            mode=mode,
            process=proc,
            username=username,
            password=password,
            token_server=token_server,
            log_path=log_path,
            extra=extra,
        )
        try:
            _wait_ready(reg)
            return reg
        except RuntimeError as e:  # most likely the port was taken meanwhile
            last_error = e
            reg.process = proc
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
    if token_server is not None:
        token_server.stop()
    raise RuntimeError(f"could not start docker-registry: {last_error}")


@pytest.fixture(scope="session")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    """An anonymous distribution registry shared by the session."""
    reg = start_distribution(tmp_path_factory.mktemp("distribution"), "anonymous")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def distribution_htpasswd(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DistributionRegistry]:
    """A distribution registry with htpasswd (Basic) auth; credentials on the handle."""
    reg = start_distribution(tmp_path_factory.mktemp("distribution-htpasswd"), "htpasswd")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def distribution_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    """A distribution registry with bearer-token auth (``.token_server`` is the issuer)."""
    reg = start_distribution(tmp_path_factory.mktemp("distribution-token"), "token")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def distribution_factory(
    tmp_path: Path,
) -> Iterator[Callable[..., DistributionRegistry]]:
    """Start fresh registries on demand: ``distribution_factory("token", token_server=ts)``."""
    started: list[DistributionRegistry] = []

    def make(mode: str = "anonymous", **kw: Any) -> DistributionRegistry:
        reg = start_distribution(tmp_path / f"reg{len(started)}", mode, **kw)
        started.append(reg)
        return reg

    try:
        yield make
    finally:
        for reg in started:
            with contextlib.suppress(Exception):
                reg.stop()


def _server_kinds() -> list[str]:
    kinds = ["distribution"]
    try:
        from pycrane.registry import pytest_plugin

        if hasattr(pytest_plugin, "pycrane_registry"):
            kinds.append("pycrane")
    except ImportError:
        pass
    return kinds


@pytest.fixture(params=_server_kinds())
def registry_server(request: pytest.FixtureRequest) -> Any:
    """Each registry implementation in turn: distribution, then pycrane's own server.

    The handle has at least ``.host`` and ``.url``.
    """
    if request.param == "distribution":
        return request.getfixturevalue("distribution")
    return request.getfixturevalue("pycrane_registry")
