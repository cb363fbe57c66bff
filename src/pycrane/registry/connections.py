"""Connections of the registry server: deadlines, a cap per client, reclaiming idle slots.

The server runs a thread per connection, at most ``max_threads`` at once, so a
client that holds connections without finishing requests (slow-loris) could keep
everyone else out. Three bounds keep the server answering:

* **Deadlines.** A connection may wait ``idle_timeout`` seconds for its next
  request, and from that request's first byte it has ``header_timeout`` seconds to
  send the request line and every header: a total, not a per-read timeout, so one
  byte every few seconds does not keep it alive. Bodies and responses have a
  per-read/write timeout (``read_timeout``), since large blobs take long.
* **A cap per client.** At most ``max_per_client`` connections per client address
  (IPv6 clients by /64 prefix, which one host typically owns). At the cap the
  client's own longest-idle keep-alive connection is closed to make room; when it
  has none, the new one is answered ``503`` with ``Retry-After`` and closed,
  without taking a thread.
* **Reclaiming idle slots.** When every thread is taken, the connection that has
  waited longest between requests is closed, so idle keep-alive connections never
  keep a new client waiting.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import socket
import threading
import time
from typing import Any

__all__ = ["Connections", "DeadlineReader", "client_key"]

_IDLE, _HEADERS, _BUSY = "idle", "headers", "busy"


def client_key(address: Any) -> str:
    """The address connections are counted by: the IPv4 address, or an IPv6 /64."""
    host = str(address[0]) if isinstance(address, tuple) else str(address)
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


class DeadlineReader(io.RawIOBase):
    """A socket's read side whose reads also stop at ``deadline`` (monotonic), if set."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        super().__init__()
        self._sock = sock
        self.timeout = timeout
        self.deadline: float | None = None
        self._set: float | None = None  # the socket's timeout as last set here

    def readable(self) -> bool:
        return True

    def clear_deadline(self) -> None:
        """Back to the per-read timeout (for writes too: the socket has one timeout)."""
        self.deadline = None
        self._settimeout(self.timeout)

    def _settimeout(self, wait: float) -> None:
        if wait != self._set:  # a syscall each time: skip it while nothing changes
            self._sock.settimeout(wait)
            self._set = wait

    def readinto(self, buf: Any) -> int:
        wait = self.timeout
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deadline passed")
            wait = min(wait, left)
        self._settimeout(wait)
        return self._sock.recv_into(buf)


class _State:
    __slots__ = ("key", "phase", "since")

    def __init__(self, key: str) -> None:
        self.key = key
        self.phase = _BUSY
        self.since = time.monotonic()


class Connections:
    """Open connections by socket (for phases and shutdown) and by client (for the cap)."""

    def __init__(self, max_per_client: int | None) -> None:
        self.max_per_client = max_per_client
        self._lock = threading.Lock()
        self._clients: dict[str, int] = {}
        self._socks: dict[socket.socket, _State] = {}

    def admit(self, key: str) -> bool:
        """Count one more connection of ``key``; False (nothing counted) past the cap.

        At the cap, the client's own connection idle longest is closed to make room:
        only connections busy with a request count against it.
        """
        with self._lock:
            n = self._clients.get(key, 0)
            full = self.max_per_client is not None and n >= self.max_per_client
        if full and not self.reclaim_idle(key):
            return False
        with self._lock:
            self._clients[key] = self._clients.get(key, 0) + 1
            return True

    def leave(self, key: str) -> None:
        with self._lock:
            n = self._clients.get(key, 0) - 1
            if n > 0:
                self._clients[key] = n
            else:
                self._clients.pop(key, None)

    def track(self, sock: socket.socket, alive: bool) -> None:
        if alive:
            try:
                key = client_key(sock.getpeername())
            except OSError:
                key = ""
        with self._lock:
            if alive:
                self._socks[sock] = _State(key)
            else:
                self._socks.pop(sock, None)

    def phase(self, sock: socket.socket, phase: str) -> None:
        with self._lock:
            state = self._socks.get(sock)
            if state is not None:
                state.phase = phase
                state.since = time.monotonic()

    def idle(self, sock: socket.socket) -> None:
        """Waiting for the next request."""
        self.phase(sock, _IDLE)

    def reading_headers(self, sock: socket.socket) -> None:
        self.phase(sock, _HEADERS)

    def busy(self, sock: socket.socket) -> None:
        self.phase(sock, _BUSY)

    def idle_count(self) -> int:
        """How many connections wait for their next request now."""
        with self._lock:
            return sum(1 for st in self._socks.values() if st.phase == _IDLE)

    def reclaim_idle(self, key: str | None = None) -> bool:
        """Close the connection (of ``key``) idle longest between requests; False if none."""
        with self._lock:
            idle = [
                (st.since, id(s), s)
                for s, st in self._socks.items()
                if st.phase == _IDLE and (key is None or st.key == key)
            ]
            if not idle:
                return False
            victim = min(idle)[2]
            self._socks[victim].phase = _BUSY  # do not pick it twice
        with contextlib.suppress(OSError):
            victim.shutdown(socket.SHUT_RDWR)
        return True

    def close_all(self) -> None:
        """Wake every handler blocked on a read so its thread ends."""
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
