"""A small bearer-token server for CNCF distribution's ``auth: token`` mode.

It signs RS256 JWTs with a key whose self-signed certificate goes in the
registry's ``rootcertbundle`` and in each token's ``x5c`` header, which is how
distribution 2.8 verifies tokens. It speaks both flows a client may use:
``GET realm?service=&scope=`` with Basic credentials (or none, for anonymous
pulls when allowed) and ``POST`` of an OAuth2 form (``grant_type=password`` or
``grant_type=refresh_token``). Every request is recorded so tests can assert on
how many exchanges happened and with which scopes.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

__all__ = ["TokenRequest", "TokenServer"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenRequest:
    """One request the token server answered (or refused)."""

    method: str
    grant: str  # "basic", "anonymous", "password", "refresh_token"
    user: str | None
    scopes: list[str]
    status: int


#: Decides which actions ``user`` (None: anonymous) gets on ``type:name``, given those asked.
Policy = Callable[[str | None, str, str, list[str]], list[str]]


def default_policy(user: str | None, type_: str, name: str, actions: list[str]) -> list[str]:
    """Authenticated users get what they ask for; anonymous users may only pull."""
    if user is not None:
        return actions
    return [a for a in actions if a == "pull"]


@dataclass
class TokenServer:
    """Serve tokens on ``127.0.0.1:<port>/token`` from a background thread.

    ```python
    ts = TokenServer(tmp_path, users={"alice": "s3cret"})
    ts.start()
    ts.realm        # "http://127.0.0.1:PORT/token"
    ts.cert_path    # root cert bundle for the registry config
    ts.stop()
    ```
    """

    workdir: Path
    users: dict[str, str] = field(default_factory=dict)
    service: str = "pycrane-test-registry"
    issuer: str = "pycrane-test-tokenserver"
    policy: Policy = default_policy
    allow_anonymous: bool = True
    token_ttl: int = 300
    #: Send the token as ``access_token`` only (some servers do), not ``token``.
    access_token_only: bool = False
    #: Answer 404 to POST requests (servers without the OAuth2 endpoint).
    post_not_found: bool = False
    #: Pad token responses with this many bytes (to test the client's size cap).
    padding: int = 0
    requests: list[TokenRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.issuer)])
        now = _dt.datetime.now(_dt.timezone.utc)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1))
            .not_valid_after(now + _dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = self.workdir / "token-root.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()
        self._refresh_tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def add_user(self, user: str, password: str) -> None:
        self.users[user] = password

    def issue_refresh_token(self, user: str) -> str:
        """An identity (refresh) token for ``user``, as ``docker login`` would store it."""
        tok = secrets.token_urlsafe(24)
        with self._lock:
            self._refresh_tokens[tok] = user
        return tok

    # -- tokens ----------------------------------------------------------------

    def make_token(self, user: str | None, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            type_, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
            granted = self.policy(user, type_, name, actions)
            if granted:
                access.append({"type": type_, "name": name, "actions": granted})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.token_ttl,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        sig = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(sig)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(h.path)
        if url.path != "/token":
            self._reply(h, 404, {"error": "not found"})
            return
        query = urllib.parse.parse_qs(url.query)
        user: str | None = None
        grant = "anonymous"
        refresh: str | None = None
        if method == "POST":
            if self.post_not_found:
                self._drain(h)
                self._reply(h, 404, {"error": "not found"})
                self._record(method, "post", None, [], 404)
                return
            form = urllib.parse.parse_qs(self._drain(h).decode())
            grant = form.get("grant_type", [""])[0]
            scopes = " ".join(form.get("scope", [])).split()
            if form.get("service", [""])[0] != self.service:
                return self._refuse(h, method, grant, None, scopes, 400)
            if grant == "refresh_token":
                with self._lock:
                    user = self._refresh_tokens.get(form.get("refresh_token", [""])[0])
                if user is None:
                    return self._refuse(h, method, grant, None, scopes, 401)
            elif grant == "password":
                user = form.get("username", [""])[0]
                if self.users.get(user) != form.get("password", [None])[0]:
                    return self._refuse(h, method, grant, user, scopes, 401)
                refresh = self.issue_refresh_token(user)
            else:
                return self._refuse(h, method, grant, None, scopes, 400)
        else:
            scopes = query.get("scope", [])
            if query.get("service", [""])[0] != self.service:
                return self._refuse(h, method, "basic", None, scopes, 400)
            auth = h.headers.get("Authorization", "")
            if auth.lower().startswith("basic "):
                grant = "basic"
                try:
                    u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
                except ValueError:
                    return self._refuse(h, method, grant, None, scopes, 401)
                if self.users.get(u) != p:
                    return self._refuse(h, method, grant, u, scopes, 401)
                user = u
                if query.get("offline_token", [""])[0] == "true":
                    refresh = self.issue_refresh_token(u)
            elif not self.allow_anonymous:
                return self._refuse(h, method, grant, None, scopes, 401)
        token = self.make_token(user, scopes)
        body: dict[str, object] = {"access_token": token, "expires_in": self.token_ttl}
        if not self.access_token_only:
            body["token"] = token
        body["issued_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
        if self.padding:
            body["padding"] = "x" * self.padding
        if refresh:
            body["refresh_token"] = refresh
        self._record(method, grant, user, scopes, 200)
        self._reply(h, 200, body)

    def _refuse(
        self,
        h: BaseHTTPRequestHandler,
        method: str,
        grant: str,
        user: str | None,
        scopes: list[str],
        status: int,
    ) -> None:
        self._record(method, grant, user, scopes, status)
        self._reply(h, status, {"errors": [{"code": "UNAUTHORIZED", "message": "access denied"}]})

    def _record(
        self, method: str, grant: str, user: str | None, scopes: list[str], status: int
    ) -> None:
        with self._lock:
            self.requests.append(TokenRequest(method, grant, user, list(scopes), status))

    @staticmethod
    def _drain(h: BaseHTTPRequestHandler) -> bytes:
        n = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(n) if n else b""

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
