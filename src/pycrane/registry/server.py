"""Running the registry: a bounded threading HTTP server, an in-process handle, and ``serve``.

``RegistryServer`` is what tests and embedding code use::

    with RegistryServer() as reg:          # memory storage, free port on 127.0.0.1
        push(image, f"{reg.host}/demo:1")

``serve`` is the blocking entry point behind ``pycrane registry serve``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from pycrane.errors import PycraneError
from pycrane.registry.auth import Htpasswd
from pycrane.registry.connections import Connections, client_key
from pycrane.registry.exchange import HandlerServer
from pycrane.registry.handler import RegistryHandler
from pycrane.registry.storage import DEFAULT_MAX_MEMORY, MemoryStorage, Storage

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_PER_CLIENT",
    "DEFAULT_READ_TIMEOUT",
    "RegistryHTTPServer",
    "RegistryServer",
    "parse_address",
    "serve",
]

#: Seconds from a request's first byte until its last header must have arrived.
DEFAULT_HEADER_TIMEOUT = 20.0
#: Seconds a keep-alive connection may wait for its next request.
DEFAULT_IDLE_TIMEOUT = 60.0
#: Seconds one read of a request body (or one write of a response) may take.
DEFAULT_READ_TIMEOUT = 60.0
#: Connections one client address (an IPv6 /64) may hold at once.
DEFAULT_MAX_PER_CLIENT = 32

_TOO_MANY_BODY = (
    b'{"errors": [{"code": "TOOMANYREQUESTS", "message": "too many connections from this'
    b' address", "detail": {}}]}'
)
_TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_TOO_MANY_BODY), _TOO_MANY_BODY)
)


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``[V6]:PORT`` to ``(host, port)``; an empty host is 0.0.0.0."""
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = address, "0"
    host = host.strip("[]") or "0.0.0.0"
    try:
        p = int(port or "0")
    except ValueError:
        raise PycraneError(f"address {address!r}: expected HOST:PORT") from None
    if not 0 <= p <= 65535:
        raise PycraneError(f"address {address!r}: port must be 0-65535")
    return host, p


class RegistryHTTPServer(HandlerServer):
    """A thread per connection, at most ``max_threads``; TLS handshakes run off the accept loop.

    Slow or idle clients are bounded as :mod:`pycrane.registry.connections` describes.
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    # On Windows SO_REUSEADDR lets a second server bind the same port: never set it there.
    allow_reuse_address = os.name != "nt"

    def __init__(
        self,
        address: tuple[str, int],
        storage: Storage,
        *,
        htpasswd: Htpasswd | None = None,
        ssl_context: ssl.SSLContext | None = None,
        read_only: bool = False,
        max_threads: int = 128,
        max_per_client: int | None = DEFAULT_MAX_PER_CLIENT,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        verbose: bool = False,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.storage = storage
        self.htpasswd = htpasswd
        self.ssl_context = ssl_context
        self.read_only = read_only
        self.verbose = verbose
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.read_timeout = read_timeout
        self.connections = Connections(max_per_client)
        self._slots = threading.BoundedSemaphore(max_threads)
        self._stopping = False
        super().__init__(address, RegistryHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        key = client_key(client_address)
        if not self.connections.admit(key):
            self._turn_away(request)
            return
        try:
            if not self._slots.acquire(blocking=False):
                # Every thread is taken: free the one idle longest between requests.
                self.connections.reclaim_idle()
                while not self._slots.acquire(timeout=0.5):
                    if self._stopping:
                        self.connections.leave(key)
                        self.shutdown_request(request)
                        return
                    self.connections.reclaim_idle()
        except BaseException:
            self.connections.leave(key)
            raise
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            self.connections.leave(key)
            raise

    def _turn_away(self, request: socket.socket) -> None:
        """Too many connections from one client: a quick 503 (plain HTTP), then close."""
        if self.ssl_context is None:
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(_TOO_MANY)
        self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # socketserver.ThreadingMixIn's, but the slot and the client's count are given
        # back before the socket closes: a client that saw the close and connects again
        # must not find its old connection still counted against its cap.
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._slots.release()
            self.connections.leave(client_key(client_address))
            self.shutdown_request(request)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None:
            try:
                request.settimeout(self.header_timeout)
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.verbose:
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Wake every handler blocked on a keep-alive read so its thread ends."""
        self._stopping = True
        self.connections.close_all()


def _make_storage(disk: str | os.PathLike[str] | None, max_memory: int | None) -> Storage:
    if disk is None:
        return MemoryStorage(max_memory)
    from pycrane.registry.disk import DiskStorage

    storage: Storage = DiskStorage(Path(disk))
    return storage


class RegistryServer:
    """An in-process registry on its own thread.

    ``host`` is ``"127.0.0.1:PORT"``, ``url`` is ``"http://127.0.0.1:PORT"`` (https
    with TLS, and then ``ca_cert`` is the certificate a client should trust).
    ``username``/``password`` are informational (the pytest fixture sets them when it
    creates an htpasswd file); authentication itself comes from ``htpasswd``.
    ``max_memory`` bounds the bytes the memory storage holds (stored content and
    uploads in flight; None: unbounded); it does not apply with ``disk`` or ``storage``.
    ``max_per_client``, ``header_timeout``, ``idle_timeout`` and ``read_timeout`` bound
    slow clients (:mod:`pycrane.registry.connections`).
    """

    def __init__(
        self,
        address: str = "127.0.0.1:0",
        *,
        disk: str | os.PathLike[str] | None = None,
        storage: Storage | None = None,
        htpasswd: str | os.PathLike[str] | Htpasswd | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        read_only: bool = False,
        max_threads: int = 128,
        max_memory: int | None = DEFAULT_MAX_MEMORY,
        max_per_client: int | None = DEFAULT_MAX_PER_CLIENT,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        verbose: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.address = address
        self._own_storage = storage is None
        self.storage = storage if storage is not None else _make_storage(disk, max_memory)
        self.disk = Path(disk) if disk is not None else None
        if htpasswd is not None and not isinstance(htpasswd, Htpasswd):
            htpasswd = Htpasswd(os.fspath(htpasswd))
        self.htpasswd = htpasswd
        self.ssl_context: ssl.SSLContext | None = None
        #: The certificate a client should trust for this server (TLS only).
        self.ca_cert: Path | None = Path(tls_cert) if tls_cert is not None else None
        if tls_cert is not None or tls_key is not None:
            if tls_cert is None:
                raise PycraneError("TLS: --tls-key given without --tls-cert")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                ctx.load_cert_chain(os.fspath(tls_cert), os.fspath(tls_key) if tls_key else None)
            except (OSError, ssl.SSLError) as e:
                raise PycraneError(f"TLS certificate {tls_cert}: cannot load: {e}") from None
            self.ssl_context = ctx
        self.read_only = read_only
        self.max_threads = max_threads
        self.max_per_client = max_per_client
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.read_timeout = read_timeout
        self.verbose = verbose
        self.username = username
        self.password = password
        self._httpd: RegistryHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def httpd(self) -> RegistryHTTPServer:
        if self._httpd is None:
            raise PycraneError("registry server is not started")
        return self._httpd

    @property
    def running(self) -> bool:
        """Started and not stopped yet."""
        return self._httpd is not None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def host(self) -> str:
        """``HOST:PORT`` as a client puts it in an image reference."""
        host = str(self.httpd.server_address[0])
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}"

    def bind(self) -> RegistryServer:
        """Open the listening socket (so the port is known) without serving yet."""
        if self._httpd is None:
            host, port = parse_address(self.address)
            try:
                self._httpd = RegistryHTTPServer(
                    (host, port),
                    self.storage,
                    htpasswd=self.htpasswd,
                    ssl_context=self.ssl_context,
                    read_only=self.read_only,
                    max_threads=self.max_threads,
                    max_per_client=self.max_per_client,
                    header_timeout=self.header_timeout,
                    idle_timeout=self.idle_timeout,
                    read_timeout=self.read_timeout,
                    verbose=self.verbose,
                )
            except OSError as e:
                raise PycraneError(
                    f"registry address {self.address}: cannot listen: {e.strerror}"
                ) from None
        return self

    def start(self) -> RegistryServer:
        """Serve on a daemon thread; return self."""
        self.bind()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.httpd.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=f"pycrane-registry-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, drop open connections, release the port."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        # Wake idle keep-alive handlers first: an accept waiting for a free thread slot
        # would otherwise keep serve_forever (and so shutdown) from returning.
        httpd.close_connections()
        if self._thread is not None:
            httpd.shutdown()
            self._thread.join()
            self._thread = None
        httpd.close_connections()
        httpd.server_close()
        close = getattr(self.storage, "close", None)
        if self._own_storage and close is not None:
            close()

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url if self._httpd is not None else "stopped"
        return f"<RegistryServer {state}>"


def serve(
    address: str = "127.0.0.1:0",
    *,
    disk: str | os.PathLike[str] | None = None,
    htpasswd: str | os.PathLike[str] | None = None,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    read_only: bool = False,
    max_memory: int | None = DEFAULT_MAX_MEMORY,
    max_per_client: int | None = DEFAULT_MAX_PER_CLIENT,
    ready: Callable[[RegistryServer], None] | None = None,
    verbose: bool = False,
) -> None:
    """Run a registry until SIGINT or SIGTERM; print ``serving on URL`` to stderr once listening.

    ``ready`` is called with the running :class:`RegistryServer` (its ``stop()`` also
    ends ``serve``, which is how a caller on another thread shuts it down).
    """
    server = RegistryServer(
        address,
        disk=disk,
        htpasswd=htpasswd,
        tls_cert=tls_cert,
        tls_key=tls_key,
        read_only=read_only,
        max_memory=max_memory,
        max_per_client=max_per_client,
        verbose=verbose,
    )
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        server.start()
        print(f"serving on {server.url}", file=sys.stderr, flush=True)
        if ready is not None:
            ready(server)
        while server.running and not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
