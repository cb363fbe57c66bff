"""Slow and idle clients cannot keep others out (issue 16, item 4), over raw sockets.

Before the fix 128 connections that each sent one header byte every 20 s kept every
other client out for as long as they liked (the 60 s timeout was per read). Each
test here uses a tiny server (a few threads, a 1 s header deadline) so it stays
small; there is no timed assertion, only a generous pytest timeout and socket
timeouts that turn a hang into a failure.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from pycrane.registry import RegistryServer

pytestmark = pytest.mark.timeout(120)


def connect(reg: RegistryServer, source: str | None = None) -> socket.socket:
    host, port = reg.host.rsplit(":", 1)
    try:
        return socket.create_connection(
            (host, int(port)), timeout=30, source_address=(source, 0) if source else None
        )
    except OSError as e:  # 127.0.0.2 is not loopback everywhere (macOS)
        if source:
            pytest.skip(f"cannot connect from {source}: {e}")
        raise


def get_v2(reg: RegistryServer, source: str | None = None) -> bytes:
    with connect(reg, source) as s:
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


class Dribbler:
    """Connections that send a request head one byte at a time, forever."""

    def __init__(self, socks: list[socket.socket], every: float = 0.2) -> None:
        self.socks = socks
        self.closed: set[int] = set()
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        head = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000
        i = 0
        while True:
            for n, s in enumerate(self.socks):
                if n in self.closed:
                    continue
                try:
                    s.send(head[i : i + 1])
                except OSError:
                    self.closed.add(n)
            i = min(i + 1, len(head) - 1)
            if self._stop.wait(self._every):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for s in self.socks:
            s.close()


@pytest.fixture
def tiny() -> Iterator[RegistryServer]:
    with RegistryServer(max_threads=4, header_timeout=1.0, max_per_client=None) as reg:
        yield reg


def test_slow_headers_are_cut_off_and_others_are_answered(tiny: RegistryServer) -> None:
    slow = Dribbler([connect(tiny) for _ in range(12)])  # three times the threads
    try:
        time.sleep(0.5)  # they hold every thread now
        assert get_v2(tiny).startswith(b"HTTP/1.1 200")
        # Every slow connection is closed by the server, none was answered.
        for s in slow.socks:
            s.settimeout(30)
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                data = b""
            assert not data.startswith(b"HTTP/1.1 200"), data
    finally:
        slow.stop()


def test_connections_per_client_are_capped() -> None:
    with RegistryServer(max_threads=16, max_per_client=3, header_timeout=60) as reg:
        slow = Dribbler([connect(reg) for _ in range(3)], every=1.0)
        try:
            time.sleep(0.3)
            reply = get_v2(reg)
            assert reply.startswith(b"HTTP/1.1 503") and b"TOOMANYREQUESTS" in reply, reply
            assert b"Retry-After: 1" in reply
            # Another address is served.
            assert get_v2(reg, "127.0.0.2").startswith(b"HTTP/1.1 200")
        finally:
            slow.stop()
        # Once they are gone the first address is served again.
        for _ in range(100):
            reply = get_v2(reg)
            if reply.startswith(b"HTTP/1.1 200"):
                break
            time.sleep(0.1)
        assert reply.startswith(b"HTTP/1.1 200"), reply


def test_idle_keep_alive_connections_give_way(tiny: RegistryServer) -> None:
    idle = []
    for _ in range(4):  # every thread: each waits for a next request that never comes
        s = connect(tiny)
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        idle.append(s)
    assert get_v2(tiny).startswith(b"HTTP/1.1 200")
    # The connection idle longest was closed to make room (the others may still be open).
    readable, _, _ = select.select(idle, [], [], 30)
    assert readable and readable[0].recv(10) == b""
    for s in idle:
        s.close()


def test_idle_timeout_closes_silent_connections() -> None:
    with RegistryServer(idle_timeout=0.5) as reg:
        with connect(reg) as s:
            assert s.recv(10) == b""  # closed by the server, well before the 30 s socket timeout
        with connect(reg) as s:
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
            assert s.recv(10) == b""


def test_client_keys() -> None:
    from pycrane.registry.connections import client_key

    assert client_key(("127.0.0.1", 5)) == "127.0.0.1"
    assert client_key(("2001:db8::1", 5, 0, 0)) == client_key(("2001:db8::ffff", 6, 0, 0))
    assert client_key(("2001:db8::1", 5, 0, 0)) != client_key(("2001:db8:0:1::1", 5, 0, 0))
    assert client_key(("::ffff:10.0.0.1", 5, 0, 0)) == "10.0.0.1"


def test_a_client_at_its_cap_reuses_its_idle_slots() -> None:
    """Idle keep-alive connections (a pool a test left behind) do not count against it."""
    with RegistryServer(max_per_client=2) as reg:
        idle = []
        for _ in range(2):
            s = connect(reg)
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
            idle.append(s)
        # The client has its answer a moment before the server marks the connection
        # idle; wait for that (bounded), or a loaded machine makes the next connect
        # find no idle slot to reclaim.
        deadline = time.monotonic() + 30
        while reg.httpd.connections.idle_count() < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        for _ in range(5):
            assert get_v2(reg).startswith(b"HTTP/1.1 200")
        for s in idle:
            s.close()
