"""Per-registry authentication: ping ``/v2/``, then Basic or Bearer tokens.

A :class:`RegistrySession` pings once, remembers the scheme that worked and the
challenge, and hands out an ``Authorization`` header for a set of scopes. Bearer
tokens are cached per scope set and reused until shortly before they expire; a
401 carrying a wider ``scope`` makes the caller ask again with it in front.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from pycrane.errors import AuthenticationError, RegistryError, TransportError
from pycrane.name import Registry
from pycrane.remote._challenge import Challenge, parse_challenges, pick_challenge
from pycrane.remote._transport import Response, Transport, _is_loopback, _private_host, redact_url
from pycrane.remote.keychain import Credential

__all__ = ["RegistrySession", "TOKEN_BODY_LIMIT"]

#: Token responses larger than this are refused (a token server is not a blob store).
TOKEN_BODY_LIMIT = 64 * 1024
CLIENT_ID = "pycrane"

log = logging.getLogger("pycrane.remote")


@dataclass
class _Token:
    value: str
    expires: float


def _nobody_listens(e: TransportError) -> bool:
    """Nothing answered at all: the other scheme on the same port would fare no better.

    A connection that was accepted and then left silent counts too: a TLS server
    given plain HTTP closes the connection or answers 400, it does not go quiet.
    """
    return e.kind in ("connect", "dns", "timeout")


class RegistrySession:
    """Scheme, challenge and tokens for one registry, shared by a client's threads."""

    def __init__(
        self,
        transport: Transport,
        registry: Registry,
        credential: Credential,
        *,
        insecure: bool = False,
    ) -> None:
        self.transport = transport
        self.registry = registry
        self.credential = credential
        self.insecure = insecure
        self._lock = threading.Lock()
        self._pinged = False
        self.base_url = ""
        self.challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._token_locks: dict[tuple[str, ...], threading.Lock] = {}
        self.token_requests = 0  # for tests and diagnostics

    # -- ping ----------------------------------------------------------------------

    def ping(self) -> None:
        """GET ``/v2/`` once: find the scheme and the auth challenge."""
        if self._pinged:
            return
        with self._lock:
            if self._pinged:
                return
            if self.registry.is_loopback():
                # Plain http first, as crane does; a TLS server on loopback is found
                # when the http attempt fails the way TLS servers answer plain HTTP.
                schemes = ["http", "https"]
            elif self.insecure:
                schemes = ["https", "http"]  # crane's --insecure: https first, then http
            else:
                schemes = ["https"]
            first: TransportError | None = None
            for i, scheme in enumerate(schemes):
                last_try = i == len(schemes) - 1
                base = f"{scheme}://{self.registry.api_host}"
                try:
                    resp = self.transport.request("GET", f"{base}/v2/", retry=last_try)
                except TransportError as e:
                    same_port = self.registry.port is not None  # else 443 vs 80
                    if last_try or not (same_port and _nobody_listens(e)):
                        first = first or e
                        continue
                    # The other scheme would reach the same closed port: keep this one,
                    # with the usual retries (a registry may still be starting).
                    resp = self.transport.request("GET", f"{base}/v2/")
                if resp.status == 400 and not last_try:
                    continue  # "Client sent an HTTP request to an HTTPS server"
                if resp.status in self.transport.retry.statuses and not last_try:
                    # This scheme answers; a 429 or 503 is worth the usual retries.
                    resp.drain()
                    resp = self.transport.request("GET", f"{base}/v2/")
                self._record_ping(base, resp)
                self._pinged = True
                return
            assert first is not None
            raise first

    def _record_ping(self, base: str, resp: Response) -> None:
        self.base_url = base
        if resp.status == 401:
            self.challenge = pick_challenge(
                parse_challenges(resp.header_values("WWW-Authenticate"))
            )
        elif resp.status in (200, 404):
            self.challenge = None  # 404: a registry that has no /v2/ ping; try anonymously
        else:
            raise RegistryError(
                f"registry {self.registry}: GET /v2/ answered {resp.status}, expected 200 or 401",
                status=resp.status,
                url=redact_url(resp.url),
            )

    # -- authorization --------------------------------------------------------------

    def authorization(self, scopes: Sequence[str]) -> str | None:
        """The ``Authorization`` value for a request needing ``scopes`` (None: anonymous)."""
        self.ping()
        cred = self.credential
        if cred.registry_token:
            return f"Bearer {cred.registry_token}"
        ch = self.challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            if cred.username is None and cred.password is None:
                return None
            return "Basic " + base64.b64encode(
                f"{cred.username or ''}:{cred.password or ''}".encode()
            ).decode("ascii")
        return f"Bearer {self._token(tuple(scopes))}"

    def refresh(self, resp: Response, scopes: list[str]) -> bool:
        """After a 401: learn the new challenge, widen ``scopes`` in place, drop the token.

        Returns whether retrying may help.
        """
        ch = pick_challenge(parse_challenges(resp.header_values("WWW-Authenticate")))
        if ch is None:
            return False
        changed = False
        used = _key(scopes)  # the scope set of the request that was refused
        with self._lock:
            old = self.challenge
            if old is None or old.scheme != ch.scheme or old.realm != ch.realm:
                self.challenge = ch
                changed = True
        if ch.scheme != "bearer":
            return changed
        for s in reversed(ch.scopes):
            if s not in scopes:
                scopes.insert(0, s)  # "some registries only look at the first scope"
                changed = True
        with self._lock:
            # Forget the token: it may have expired or been revoked early, or it was
            # asked for more than the server granted (a covering token).
            for have in [k for k in self._tokens if k == used or _covers(k, used)]:
                del self._tokens[have]
                changed = True
        return changed

    def token(self, scopes: Sequence[str]) -> tuple[str, int]:
        """A bearer token for ``scopes`` and its remaining lifetime in seconds."""
        value = self._token(tuple(scopes))
        tok = self._tokens.get(_key(scopes)) or self._covering(_key(scopes))
        left = int(tok.expires - time.monotonic()) if tok is not None else 0
        return value, max(left, 0)

    def _token(self, scopes: tuple[str, ...]) -> str:
        key = _key(scopes)
        tok = self._tokens.get(key) or self._covering(key)
        if tok is not None and tok.expires > time.monotonic():
            return tok.value
        with self._lock:
            lock = self._token_locks.setdefault(key, threading.Lock())
        with lock:  # one exchange per scope set, however many threads ask
            tok = self._tokens.get(key)
            if tok is not None and tok.expires > time.monotonic():
                return tok.value
            tok = self._fetch_token(list(scopes))
            self._tokens[key] = tok
            return tok.value

    def _covering(self, want: tuple[str, ...]) -> _Token | None:
        """A live token granted for a superset of ``want`` (a push token serves pulls)."""
        now = time.monotonic()
        for have, tok in list(self._tokens.items()):
            if tok.expires > now and _covers(have, want):
                return tok
        return None

    def _check_realm(self, realm: str) -> urllib.parse.SplitResult:
        parts = urllib.parse.urlsplit(realm)
        what = f"registry {self.registry}: token realm {redact_url(realm)}"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AuthenticationError(f"{what}: expected an http(s) URL")
        local_registry = self.registry.is_loopback() or _private_host(self.registry.host)
        if parts.scheme == "http" and not (self.insecure or local_registry):
            raise AuthenticationError(f"{what}: expected https for a secure registry")
        if (
            _private_host(parts.hostname)
            and not local_registry
            and parts.netloc != self.registry.api_host
        ):
            raise AuthenticationError(f"{what}: refusing a private address for a public registry")
        return parts

    def _fetch_token(self, scopes: list[str]) -> _Token:
        ch = self.challenge
        assert ch is not None
        realm = ch.realm
        what = f"registry {self.registry}: token for {' '.join(scopes) or 'no scope'}"
        if not realm:
            raise AuthenticationError(f"{what}: the Bearer challenge has no realm")
        parts = self._check_realm(realm)
        service = ch.service or ""
        cred = self.credential
        secret = bool(cred.identity_token) or cred.username is not None or cred.password is not None
        log.debug(
            "registry %s: token from realm host %s (%s)",
            self.registry,
            parts.netloc,
            "with this registry's credentials" if secret else "anonymously",
        )
        if secret and parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
            # Even with --insecure: a password on the wire in clear is never what was meant.
            raise AuthenticationError(
                f"{what}: refusing to send credentials to token realm {redact_url(realm)} "
                "over plain HTTP (only loopback realms may use http)"
            )
        self.token_requests += 1
        resp: Response | None = None
        if cred.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": cred.identity_token,
                "client_id": CLIENT_ID,
                "service": service,
                "scope": " ".join(scopes),
            }
            resp = self.transport.request(
                "POST",
                realm,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                body=urllib.parse.urlencode(form).encode(),
                stream=True,
            )
            if resp.status == 404:
                resp.drain()
                resp = None  # no OAuth2 endpoint: fall back to GET
        if resp is None:
            q: list[tuple[str, str]] = []
            if service:
                q.append(("service", service))
            q.extend(("scope", s) for s in scopes)
            sep = "&" if urllib.parse.urlsplit(realm).query else "?"
            url = realm + (sep + urllib.parse.urlencode(q) if q else "")
            headers = {}
            if cred.username is not None or cred.password is not None:
                headers["Authorization"] = "Basic " + base64.b64encode(
                    f"{cred.username or ''}:{cred.password or ''}".encode()
                ).decode("ascii")
            resp = self.transport.request("GET", url, headers=headers, stream=True)
        body, too_long = resp.read_capped(TOKEN_BODY_LIMIT)
        if resp.status in (401, 403):
            raise AuthenticationError(
                f"{what}: the token server refused the credentials ({resp.status})",
                status=resp.status,
                url=redact_url(resp.url),
            )
        if resp.status != 200:
            raise AuthenticationError(
                f"{what}: the token server answered {resp.status}",
                status=resp.status,
                url=redact_url(resp.url),
            )
        if too_long:
            raise AuthenticationError(
                f"{what}: token response larger than {TOKEN_BODY_LIMIT} bytes"
            )
        try:
            obj = json.loads(body)
        except ValueError:
            raise AuthenticationError(f"{what}: token response is not JSON") from None
        if not isinstance(obj, dict):
            raise AuthenticationError(f"{what}: token response is not a JSON object")
        token = obj.get("token") or obj.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"{what}: token response has no 'token' or 'access_token'")
        refresh = obj.get("refresh_token")
        if isinstance(refresh, str) and refresh:
            self.credential = Credential(cred.username, cred.password, refresh, cred.registry_token)
        expires_in = obj.get("expires_in")
        ttl = float(expires_in) if isinstance(expires_in, (int, float)) and expires_in > 0 else 60.0
        # Refresh a little early so a token does not expire between check and use.
        return _Token(token, time.monotonic() + max(ttl - min(10.0, ttl / 4), 1.0))


def _key(scopes: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted(set(scopes)))


def _split_scope(scope: str) -> tuple[str, set[str]]:
    """``repository:a/b:pull,push`` -> (``repository:a/b``, {pull, push})."""
    resource, _, actions = scope.rpartition(":")
    return resource, set(actions.split(","))


def _covers(have: Sequence[str], want: Sequence[str]) -> bool:
    """Whether a token asked for ``have`` was also asked for everything in ``want``.

    This compares what was requested, not what the server granted; a registry that
    granted less answers 401 and the caller refreshes with the exact scope set.
    """
    granted: dict[str, set[str]] = {}
    for s in have:
        resource, actions = _split_scope(s)
        granted.setdefault(resource, set()).update(actions)
    for s in want:
        resource, actions = _split_scope(s)
        held = granted.get(resource, set())
        if "*" not in held and not actions <= held:
            return False
    return True
