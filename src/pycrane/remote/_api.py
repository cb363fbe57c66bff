"""Authenticated requests to the distribution API, with error answers mapped to the tree.

:class:`RegistryAPI` is what the fetcher, pusher, lister and referrers code share:
one :class:`~pycrane.remote._auth.RegistrySession` per registry (ping, challenge,
tokens), one re-authentication on a 401 that asks for more, and one mapping from
an error status and its spec-shaped body to :class:`~pycrane.errors.RegistryError`
and its subclasses.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterable, Sequence

from pycrane.errors import AuthenticationError, PermissionDenied, RegistryError, RegistryNotFound
from pycrane.name import Registry
from pycrane.remote._auth import RegistrySession
from pycrane.remote._retry import RetryPolicy
from pycrane.remote._transport import Body, Response, Transport, redact_url
from pycrane.remote.keychain import Credential, Keychain

__all__ = ["RegistryAPI", "error_pairs"]


def error_pairs(body: bytes) -> tuple[tuple[str, str], ...]:
    """The ``(code, message)`` pairs of a distribution-spec error body (empty if none)."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ()
    errs = obj.get("errors") if isinstance(obj, dict) else None
    if not isinstance(errs, list):
        return ()
    out = []
    for e in errs:
        if isinstance(e, dict):
            out.append((str(e.get("code") or "UNKNOWN"), str(e.get("message") or "")))
    return tuple(out)


class RegistryAPI:
    """Requests to registries with auth; thread-safe, one session per registry."""

    def __init__(
        self,
        transport: Transport,
        keychain: Keychain,
        *,
        auth: Credential | None = None,
        insecure: bool = False,
    ) -> None:
        self.transport = transport
        self.keychain = keychain
        self.auth = auth
        self.insecure = insecure
        self._sessions: dict[str, RegistrySession] = {}
        self._lock = threading.Lock()

    @property
    def retry(self) -> RetryPolicy:
        return self.transport.retry

    def session(self, registry: Registry) -> RegistrySession:
        with self._lock:
            s = self._sessions.get(registry.name)
            if s is None:
                cred = self.auth if self.auth is not None else self.keychain.resolve(registry.name)
                s = RegistrySession(self.transport, registry, cred, insecure=self.insecure)
                self._sessions[registry.name] = s
            return s

    def request(
        self,
        method: str,
        registry: Registry,
        path_or_url: str,
        *,
        scopes: Sequence[str],
        what: str,
        expected: Iterable[int] = (200,),
        headers: dict[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        retry: bool = True,
        not_found: bool = False,
    ) -> Response:
        """A request to ``registry`` with auth, one re-auth on 401, and errors mapped.

        ``not_found`` returns 404 responses instead of raising (existence checks).
        """
        sess = self.session(registry)
        sess.ping()
        url = path_or_url if "://" in path_or_url else sess.base_url + path_or_url
        same_host = urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(sess.base_url).netloc
        scope_list = list(scopes)
        expected = set(expected)
        for attempt in range(2):
            hdrs = dict(headers or {})
            if same_host:
                authz = sess.authorization(scope_list)
                if authz:
                    hdrs["Authorization"] = authz
            resp = self.transport.request(
                method, url, headers=hdrs, body=body, stream=stream, retry=retry
            )
            if (
                resp.status == 401
                and attempt == 0
                and same_host
                and (body is None or isinstance(body, bytes) or callable(body))
                and sess.refresh(resp, scope_list)
            ):
                resp.drain()
                continue
            break
        if resp.status in expected:
            return resp
        if resp.status == 404 and not_found:
            resp.drain()
            return resp
        raise self.error(resp, what, scope_list)

    def error(self, resp: Response, what: str, scopes: Sequence[str]) -> RegistryError:
        """The exception for an unexpected answer, naming ``what`` and the spec's codes."""
        body = resp.content() if resp.method != "HEAD" else b""
        errors = error_pairs(body)
        detail = "; ".join(f"{c}: {m}" if m else c for c, m in errors)
        status = resp.status
        url = redact_url(resp.url)
        scope_text = " ".join(scopes) or "no scope"
        if status == 401:
            return AuthenticationError(
                f"{what}: unauthorized (401) for {scope_text}" + (f": {detail}" if detail else ""),
                status=status,
                errors=errors,
                url=url,
            )
        if status == 403:
            return PermissionDenied(
                f"{what}: denied (403) for {scope_text}" + (f": {detail}" if detail else ""),
                status=status,
                errors=errors,
                url=url,
            )
        reason = resp.reason
        text = f"{what}: {resp.method} answered {status}" + (f" {reason}" if reason else "")
        if detail:
            text += f": {detail}"
        cls = RegistryNotFound if status == 404 else RegistryError
        return cls(text, status=status, errors=errors, url=url)
