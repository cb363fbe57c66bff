"""A registry that accepts connections and never answers must not hang pycrane.

Every request has a connect and a read timeout (``--timeout``, ``PYCRANE_TIMEOUT``,
``Client(timeout=...)``), retries share one deadline, and the error names the host
that stopped answering. Token realms: credentials never travel over plain HTTP to
a realm that is not on loopback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pycrane.errors import AuthenticationError, TransportError
from pycrane.remote import Client, Credential, RetryPolicy, StaticKeychain


@pytest.fixture
def silent() -> Iterator[str]:
    """A listener that accepts every connection, reads what it is sent, and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            held.append(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()


def _cli(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    e = dict(os.environ)
    e.update(env or {})
    start = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "pycrane", *args], capture_output=True, text=True, env=e, timeout=90
    )
    return p, time.monotonic() - start


def test_cli_timeout_flag_bounds_a_silent_registry(silent: str) -> None:
    p, took = _cli("manifest", "--timeout", "0.5", f"{silent}/a/b:c")
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("pycrane: error: ") and f"{silent} stopped answering" in lines[0]
    assert "within 0.5 s" in lines[0] and "tries in" in lines[0]
    # 4 tries of 0.5 s and the backoff between them (0.5 + 1.5 + 4.5 s), nothing more.
    assert took < 20, took


def test_environment_variable_sets_the_timeout(silent: str) -> None:
    p, took = _cli("digest", f"{silent}/a/b:c", env={"PYCRANE_TIMEOUT": "0.3"})
    assert p.returncode != 0 and f"{silent} stopped answering" in p.stderr
    assert "within 0.3 s" in p.stderr
    assert took < 20, took


def test_retries_share_one_deadline(silent: str) -> None:
    c = Client(timeout=0.2, retry=RetryPolicy(attempts=1000, backoff=0.05, factor=1.0, deadline=2))
    start = time.monotonic()
    with pytest.raises(TransportError, match="stopped answering") as e:
        c.get(f"{silent}/a/b:c")
    took = time.monotonic() - start
    assert e.value.kind == "timeout" and e.value.host == silent
    assert 1.5 < took < 5, took  # many tries, but no new one after the 2 s deadline


def test_library_default_timeouts_are_bounded() -> None:
    c = Client()
    assert 0 < c.transport.connect_timeout <= 30
    assert 0 < c.transport.read_timeout <= 60
    assert c.transport.retry.deadline is not None


class _Challenger(BaseHTTPRequestHandler):
    realm = ""

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", f'Bearer realm="{self.realm}",service="x"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def challenger() -> Iterator[type[_Challenger]]:
    handler = type("Handler", (_Challenger,), {})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.host = f"127.0.0.1:{srv.server_address[1]}"  # type: ignore[attr-defined]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield handler
    finally:
        srv.shutdown()
        srv.server_close()


def test_credentials_never_go_to_a_plain_http_realm_off_loopback(
    challenger: type[_Challenger],
) -> None:
    # Even with --insecure, which permits plain HTTP to the registry itself.
    challenger.realm = "http://auth.example.com/token"
    host = challenger.host  # type: ignore[attr-defined]
    cred = StaticKeychain({host: Credential("user", "secret")})
    c = Client(keychain=cred, insecure=True, retry=RetryPolicy(attempts=1))
    with pytest.raises(AuthenticationError, match="over plain HTTP") as e:
        c.get(f"{host}/a/b:c")
    assert "secret" not in str(e.value)


def test_the_realm_host_is_logged(
    challenger: type[_Challenger], caplog: pytest.LogCaptureFixture
) -> None:
    challenger.realm = "http://127.0.0.1:9/token"  # loopback: allowed, and nothing listens
    host = challenger.host  # type: ignore[attr-defined]
    c = Client(
        keychain=StaticKeychain({host: Credential("user", "secret")}),
        retry=RetryPolicy(attempts=1),
    )
    with caplog.at_level("DEBUG", logger="pycrane.remote"), pytest.raises(TransportError):
        c.get(f"{host}/a/b:c")
    assert any(
        "realm host 127.0.0.1:9" in r.getMessage() and "credentials" in r.getMessage()
        for r in caplog.records
    )
