"""HTTP transport: pooled urllib3 connections, retries with backoff, safe redirects.

One :class:`Transport` per client keeps keep-alive connections per host. It
knows nothing about registries: it retries what is safe to retry (408, 429,
5xx gateway errors and connection failures, honouring ``Retry-After``), follows
redirects itself so credentials never cross to another host, and turns every
urllib3 failure into a one-line :class:`~pycrane.errors.TransportError`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import urllib.parse
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Union

import urllib3
from urllib3.exceptions import HTTPError as _Urllib3Error

from pycrane.errors import TransportError
from pycrane.remote._limits import HostLimits
from pycrane.remote._retry import Retrier, RetryPolicy

__all__ = ["Body", "Response", "Transport", "redact_url"]

log = logging.getLogger("pycrane.remote")

CHUNK = 1 << 20
#: Seconds to wait for a connection (TCP and TLS) to a registry.
DEFAULT_CONNECT_TIMEOUT = 15.0
#: Seconds a registry may stay silent: before its answer starts, or between two reads.
DEFAULT_READ_TIMEOUT = 30.0
#: Bodies of API responses read eagerly are capped at this size.
SMALL_BODY_LIMIT = 4 << 20

#: A request body: bytes, or a factory of chunk iterables (replayable, so retryable),
#: or a one-shot iterable of chunks (never retried).
Body = Union[bytes, Callable[[], Iterable[bytes]], Iterable[bytes], None]  # noqa: UP007

_SECRET_PARAMS = frozenset(
    {"token", "access_token", "refresh_token", "password", "_state", "x-amz-signature", "sig"}
)


def redact_url(url: str) -> str:
    """The URL with credentials and secret-looking query values replaced by ``REDACTED``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "REDACTED@" + netloc.rpartition("@")[2]
    if parts.query:
        q = []
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            if k.lower() in _SECRET_PARAMS or "signature" in k.lower():
                v = "REDACTED"
            q.append((k, v))
        query = urllib.parse.urlencode(q, safe=":/,")
    else:
        query = ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class Response:
    """A response whose body may still be streaming; close it (or read it) when done."""

    def __init__(self, raw: urllib3.BaseHTTPResponse, url: str, method: str) -> None:
        self.raw = raw
        self.url = url
        self.method = method
        #: The body, once read by ``request(stream=False)`` or :meth:`content`.
        self.body: bytes | None = None

    def content(self, limit: int = 1 << 16) -> bytes:
        """The body (at most ``limit`` bytes when it is still unread)."""
        if self.body is None:
            self.body, _ = self.read_capped(limit)
        return self.body

    @property
    def status(self) -> int:
        return self.raw.status

    @property
    def reason(self) -> str:
        """The status line's reason phrase ("" when the server sent none)."""
        return self.raw.reason or ""

    @property
    def headers(self) -> Any:
        """Case-insensitive headers (``HTTPHeaderDict``)."""
        return self.raw.headers

    def header(self, name: str) -> str | None:
        v = self.raw.headers.get(name)
        return v if v is None else str(v)

    def header_values(self, name: str) -> list[str]:
        return list(self.raw.headers.getlist(name))

    def read_capped(self, limit: int) -> tuple[bytes, bool]:
        """Read the body up to ``limit`` bytes; the flag says whether it was longer."""
        try:
            chunks = []
            total = 0
            while total <= limit:
                data = self.raw.read(min(CHUNK, limit + 1 - total), decode_content=True)
                if not data:
                    break
                chunks.append(data)
                total += len(data)
            body = b"".join(chunks)
        except (_Urllib3Error, OSError) as e:
            raise self._broken(e) from None
        finally:
            self.close()
        if len(body) > limit:
            return body[:limit], True
        return body, False

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of the body, as sent (no content decoding)."""
        try:
            return self.raw.read(n, decode_content=False)
        except (_Urllib3Error, OSError) as e:
            raise self._broken(e) from None

    def _broken(self, e: BaseException) -> TransportError:
        """The body broke off: a ``"read"`` failure, worth resuming or asking again."""
        return TransportError(
            f"{self.method} {redact_url(self.url)}: connection failed while reading "
            f"the response ({_reason(e)})",
            kind="read",
            host=urllib.parse.urlsplit(self.url).netloc,
        )

    def drain(self) -> None:
        """Discard a small body so the connection can be reused."""
        with contextlib.suppress(Exception):
            self.raw.drain_conn()
        self.close()

    def close(self) -> None:
        """Give the connection back when the body was read to its end; otherwise drop it.

        A connection with half a blob still in flight must never serve another request.
        """
        with contextlib.suppress(Exception):
            finished = self.raw.length_remaining == 0 or self.raw.closed
            if not finished:
                self.raw.close()
            self.raw.release_conn()


def _reason(e: BaseException) -> str:
    """One line describing a urllib3 failure, without the URL noise it repeats."""
    inner: BaseException = e
    for attr in ("reason", "original_error"):
        nested = getattr(inner, attr, None)
        if isinstance(nested, BaseException):
            inner = nested
    if isinstance(e, _Urllib3Error) and e.args and isinstance(e.args[0], str):
        text = e.args[0]
        # urllib3 puts the underlying error after the first ": " or in args[1].
        if len(e.args) > 1 and isinstance(e.args[1], BaseException):
            text = f"{text} ({e.args[1]})"
    else:
        text = str(inner)
    text = " ".join(str(text).split())
    name = type(e).__name__
    return f"{name}: {text}" if text else name


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _environment_proxies() -> dict[str, str]:
    """``*_proxy`` variables as urllib reads them (scheme -> URL, ``no`` -> bypass list).

    urllib.request adds ~2 ms of start-up on top of what urllib3 imports; with no
    ``*_proxy`` variable set (the usual case) its answer is known to be empty, so
    it is imported only when one is.
    """
    if not any(name[-6:].lower() == "_proxy" for name in os.environ):
        return {}
    import urllib.request

    return urllib.request.getproxies_environment()


class Transport:
    """Pooled HTTP(S) with retries, safe redirects, proxies from the environment.

    ``insecure`` turns TLS verification off (plain http is decided by the caller's
    URL); ``ca_file`` adds a CA bundle to verify against.
    """

    def __init__(
        self,
        *,
        insecure: bool = False,
        ca_file: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        retry: RetryPolicy | None = None,
        user_agent: str | None = None,
        pool_maxsize: int = 16,
        proxies: Mapping[str, str] | None = None,
        limits: HostLimits | None = None,
    ) -> None:
        from pycrane import __version__

        #: Per-host concurrency and rate-limit pacing (None: neither).
        self.limits = limits
        self.retry = retry or RetryPolicy()
        self.user_agent = user_agent or f"pycrane/{__version__}"
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._pool_kw: dict[str, Any] = {
            "maxsize": pool_maxsize,
            "block": False,
            "blocksize": CHUNK,
            "cert_reqs": "CERT_NONE" if insecure else "CERT_REQUIRED",
        }
        if ca_file:
            self._pool_kw["ca_certs"] = ca_file
        if insecure:
            # Asked for explicitly: do not warn on every request.
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        self._direct = urllib3.PoolManager(num_pools=32, **self._pool_kw)
        self._proxies = dict(proxies) if proxies is not None else _environment_proxies()
        self._proxy_managers: dict[str, urllib3.ProxyManager] = {}

    def close(self) -> None:
        self._direct.clear()
        for pm in self._proxy_managers.values():
            pm.clear()

    def _manager(self, url: str) -> urllib3.PoolManager:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if _is_loopback(host):
            return self._direct
        proxy = self._proxies.get(parts.scheme)
        if not proxy or self._bypass(parts.netloc):
            return self._direct
        pm = self._proxy_managers.get(proxy)
        if pm is None:
            pm = _proxy_manager(proxy, self._pool_kw)
            self._proxy_managers[proxy] = pm
        return pm

    def _bypass(self, netloc: str) -> bool:
        no_proxy = self._proxies.get("no", "")
        if not no_proxy:
            return False
        if no_proxy.strip() == "*":
            return True
        host = netloc.rpartition("@")[2]
        hostonly = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        for entry in (e.strip().lower() for e in no_proxy.split(",")):
            if not entry:
                continue
            entry = entry.lstrip(".").removeprefix("*.")
            if hostonly.lower() == entry or host.lower() == entry:
                return True
            if hostonly.lower().endswith("." + entry):
                return True
        return False

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        retry: bool = True,
        max_redirects: int = 10,
    ) -> Response:
        """Send a request; retry transient failures; follow redirects without leaking credentials.

        A non-2xx final status is returned, not raised: the caller knows what it means.
        ``stream`` leaves the body unread (call ``read``/``close``).
        """
        hdrs = {"User-Agent": self.user_agent}
        hdrs.update(headers or {})
        replayable = body is None or isinstance(body, bytes) or callable(body)
        origin = urllib.parse.urlsplit(url).netloc
        retries = Retrier(self.retry, f"{method} {redact_url(url)}")
        redirects = 0
        while True:
            payload: Any
            if callable(body):
                payload = _chunked_iter(body())
            elif body is None or isinstance(body, bytes):
                payload = body
            else:
                payload = _chunked_iter(body)
            host = urllib.parse.urlsplit(url).netloc
            try:
                with self._slot(host):
                    raw = self._manager(url).urlopen(
                        method,
                        url,
                        body=payload,
                        headers=hdrs,
                        redirect=False,
                        retries=False,
                        preload_content=False,
                        decode_content=False,
                        timeout=self.timeout,
                        assert_same_host=False,
                        chunked=False,
                    )
            except _Urllib3Error as e:
                err = self._translate(e, method, url)
                if retry and replayable and err.temporary and retries.again(_reason(e)):
                    continue
                if retries.tries > 1:
                    err = TransportError(
                        str(err) + retries.summary(),
                        temporary=err.temporary,
                        kind=err.kind,
                        host=err.host,
                    )
                raise err from None
            resp = Response(raw, url, method)
            log.debug("%s %s -> %d", method, redact_url(url), raw.status)
            if self.limits is not None:
                self.limits.observe(host, raw.headers)
            retry_after = resp.header("Retry-After")
            if (
                retry
                and replayable
                and raw.status in self.retry.statuses
                and retries.allows(retry_after)
            ):
                resp.drain()
                retries.again(raw.status, retry_after)
                continue
            if raw.status in (301, 302, 303, 307, 308) and resp.header("Location"):
                if redirects >= max_redirects:
                    resp.drain()
                    raise TransportError(
                        f"{method} {redact_url(url)}: more than {max_redirects} redirects",
                        temporary=False,
                    )
                target = urllib.parse.urljoin(url, resp.header("Location") or "")
                resp.drain()
                why = redirect_refused(origin, target)
                if why:
                    raise TransportError(f"{method} {redact_url(url)}: {why}", temporary=False)
                redirects += 1
                if urllib.parse.urlsplit(target).netloc != origin:
                    # Blob storage on another host: never hand it the registry's credentials.
                    hdrs = {k: v for k, v in hdrs.items() if k.lower() != "authorization"}
                if raw.status == 303 or (
                    raw.status in (301, 302) and method not in ("GET", "HEAD")
                ):
                    method = "GET" if method != "HEAD" else "HEAD"
                    body = None
                    replayable = True
                    hdrs = {k: v for k, v in hdrs.items() if k.lower() != "content-length"}
                elif not replayable:
                    raise TransportError(
                        f"{method} {redact_url(url)}: redirected, and the body cannot be re-sent",
                        temporary=False,
                    )
                url = target
                continue
            if not stream:
                # Load a bounded body now, so errors surface here and the connection is freed.
                resp.body, _ = resp.read_capped(SMALL_BODY_LIMIT)
            return resp

    def _slot(self, host: str) -> contextlib.AbstractContextManager[None]:
        return self.limits.slot(host) if self.limits is not None else contextlib.nullcontext()

    def _translate(self, e: _Urllib3Error, method: str, url: str) -> TransportError:
        """The one place a urllib3 failure becomes pycrane's: kind, retryability and host."""
        from urllib3 import exceptions as x

        kind: str | None
        temporary = True
        if isinstance(e, x.SSLError):
            kind, temporary = "tls", False  # a certificate problem does not go away by retrying
        elif isinstance(e, x.NameResolutionError):
            # "Name or service not known" is an answer, not an outage: only a resolver
            # that could not answer (EAI_AGAIN) is worth asking again.
            cause = getattr(e, "_reason", None) or e.__context__
            kind = "dns"
            temporary = isinstance(cause, socket.gaierror) and cause.errno == socket.EAI_AGAIN
        elif isinstance(e, (x.ConnectTimeoutError, x.NewConnectionError)):
            kind = "connect"
        elif isinstance(e, x.ReadTimeoutError):
            kind = "timeout"
        elif isinstance(e, (x.ProtocolError, x.ProxyError)):
            kind = "protocol"
        else:
            kind, temporary = None, False
        host = urllib.parse.urlsplit(url).netloc
        if kind == "timeout":
            text = (
                f"{host} stopped answering: {method} {redact_url(url)} got no response "
                f"within {self.read_timeout:g} s"
            )
        elif kind == "connect" and isinstance(e, x.ConnectTimeoutError):
            text = (
                f"{host} did not accept a connection within {self.connect_timeout:g} s "
                f"({method} {redact_url(url)})"
            )
        else:
            text = f"{method} {redact_url(url)}: {_reason(e)}"
        return TransportError(text, temporary=temporary, kind=kind, host=host)


def _proxy_manager(proxy: str, pool_kw: dict[str, Any]) -> urllib3.ProxyManager:
    """A proxy manager; ``user:password@`` in the proxy URL becomes Proxy-Authorization."""
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    headers = None
    if parts.username is not None:
        userinfo = urllib.parse.unquote(parts.username)
        if parts.password is not None:
            userinfo += ":" + urllib.parse.unquote(parts.password)
        headers = urllib3.make_headers(proxy_basic_auth=userinfo)
        netloc = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=netloc)
    return urllib3.ProxyManager(
        urllib.parse.urlunsplit(parts), num_pools=32, proxy_headers=headers, **pool_kw
    )


def _private_host(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified


def redirect_refused(origin_netloc: str, target: str) -> str | None:
    """Why a redirect from ``origin_netloc`` to ``target`` is refused (None: allowed).

    Only http(s); and a public registry may not send us to a private, loopback or
    link-local address of another host (server-side request forgery).
    """
    parts = urllib.parse.urlsplit(target)
    if parts.scheme not in ("http", "https"):
        return "redirect to a non-HTTP URL"
    if parts.netloc == origin_netloc:
        return None
    origin_host = urllib.parse.urlsplit("//" + origin_netloc).hostname or ""
    if _private_host(parts.hostname or "") and not _private_host(origin_host):
        return f"redirect to a private address ({parts.hostname}) refused"
    return None


def _chunked_iter(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Pass chunks through unchanged (urllib3 sends each with one write)."""
    for c in chunks:
        if c:
            yield c
