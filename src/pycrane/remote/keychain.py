"""Credentials from Docker's ``config.json`` and containers' ``auth.json``.

Lookup order follows go-containerregistry's default keychain: ``$DOCKER_CONFIG``
(or ``~/.docker``) ``config.json``, ``$REGISTRY_AUTH_FILE``,
``$XDG_RUNTIME_DIR/containers/auth.json``, then ``$XDG_CONFIG_HOME`` (or
``~/.config``) ``containers/auth.json``. In each file ``credHelpers`` for the
registry win, then ``auths`` (``auth`` base64 or ``username``/``password``, and
``identitytoken``), then the ``credsStore``. The repository
(``host/path``) is looked up before the bare registry, as podman allows. Docker Hub is
stored under ``https://index.docker.io/v1/``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycrane.errors import AuthenticationError, StoreError

__all__ = ["ANONYMOUS", "DOCKER_HUB_KEY", "Credential", "Keychain", "StaticKeychain"]

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = frozenset({"index.docker.io", "docker.io", "registry-1.docker.io"})


@dataclass(frozen=True)
class Credential:
    """What to authenticate with; every field empty means anonymous.

    ``identity_token`` is an OAuth2 refresh token (``docker login`` against a
    token server stores it); ``registry_token`` is sent as a Bearer token as is.
    """

    username: str | None = None
    password: str | None = None
    identity_token: str | None = None
    registry_token: str | None = None

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def __repr__(self) -> str:  # never show secrets in logs or tracebacks
        secret = "***" if not self.anonymous else None
        return f"Credential(username={self.username!r}, secret={secret})"


ANONYMOUS = Credential()


def _hostname(key: str) -> str:
    """Docker's ConvertToHostname: ``https://host/v1/`` -> ``host``; ``host/path`` stays."""
    k = key.strip()
    if "://" in k:
        return k.split("://", 1)[1].split("/", 1)[0].lower()
    return k.rstrip("/").lower()


def _registry_key(registry: str) -> str:
    return DOCKER_HUB_KEY if registry.lower() in _HUB_NAMES else registry.lower()


class Keychain:
    """Resolves a :class:`Credential` per registry from the usual config files.

    ``paths`` overrides the search list (first existing file with an entry wins).
    """

    def __init__(
        self,
        paths: list[Path] | None = None,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self._paths = paths

    # -- locations -------------------------------------------------------------

    def docker_config_path(self) -> Path:
        """Where ``login`` writes: ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
        d = self._env.get("DOCKER_CONFIG")
        if d:
            return Path(d) / "config.json"
        return Path(self._env.get("HOME") or Path.home()) / ".docker" / "config.json"

    def search_paths(self) -> list[Path]:
        if self._paths is not None:
            return list(self._paths)
        out = [self.docker_config_path()]
        if f := self._env.get("REGISTRY_AUTH_FILE"):
            out.append(Path(f))
        if d := self._env.get("XDG_RUNTIME_DIR"):
            out.append(Path(d) / "containers" / "auth.json")
        cfg = self._env.get("XDG_CONFIG_HOME") or str(
            Path(self._env.get("HOME") or Path.home()) / ".config"
        )
        out.append(Path(cfg) / "containers" / "auth.json")
        return out

    # -- lookup ----------------------------------------------------------------

    def resolve(self, registry: str, repository: str | None = None) -> Credential:
        """The credential for ``registry`` (``host[:port]``), or :data:`ANONYMOUS`.

        ``repository`` (a path such as ``org/app``) is tried first as ``host/path``.
        """
        keys = []
        if repository:
            keys.append(f"{registry.lower()}/{repository}")
        keys.append(_registry_key(registry))
        for path in self.search_paths():
            cfg = self._load(path)
            if cfg is None:
                continue
            cred = self._from_config(cfg, keys, path)
            if cred is not None:
                return cred
        return ANONYMOUS

    def _load(self, path: Path) -> dict[str, Any] | None:
        from pycrane import _fs

        try:
            with _fs.open_read(path) as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return None
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise AuthenticationError(f"credentials file {path}: not valid JSON") from None
        return obj if isinstance(obj, dict) else None

    def _from_config(self, cfg: dict[str, Any], keys: list[str], path: Path) -> Credential | None:
        helpers = cfg.get("credHelpers") or {}
        auths = cfg.get("auths") or {}
        if not isinstance(helpers, dict) or not isinstance(auths, dict):
            raise AuthenticationError(f"credentials file {path}: 'auths' must be an object")
        norm_auths: dict[str, Any] = {}
        for k, v in auths.items():
            norm_auths.setdefault(k, v)
            host = _hostname(k)
            if host in _HUB_NAMES:
                norm_auths.setdefault(DOCKER_HUB_KEY, v)
            norm_auths.setdefault(host, v)
        for key in keys:
            helper = helpers.get(key) or (
                helpers.get(_hostname(key)) if key == DOCKER_HUB_KEY else None
            )
            if helper:
                cred = _run_helper(str(helper), key)
                if cred is not None:
                    return cred
            entry = norm_auths.get(key)
            if isinstance(entry, dict):
                cred = _from_entry(entry, key, path)
                if cred is not None and not cred.anonymous:
                    return cred
        store = cfg.get("credsStore")
        if store:
            for key in keys:
                cred = _run_helper(str(store), key)
                if cred is not None:
                    return cred
        return None

    # -- login / logout ----------------------------------------------------------

    def login(self, registry: str, username: str, password: str) -> Path:
        """Store credentials for ``registry`` (in the ``credsStore`` when one is configured)."""
        path = self.docker_config_path()
        cfg = self._load(path) or {}
        key = _registry_key(registry)
        store = cfg.get("credsStore")
        helper = (cfg.get("credHelpers") or {}).get(key) or store
        auths = cfg.setdefault("auths", {})
        if helper:
            payload = json.dumps({"ServerURL": key, "Username": username, "Secret": password})
            _helper_call(str(helper), "store", payload)
            auths[key] = {}
        else:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            auths[key] = {"auth": token}
        self._write(path, cfg)
        return path

    def logout(self, registry: str) -> bool:
        """Forget ``registry``; returns whether anything was removed."""
        path = self.docker_config_path()
        cfg = self._load(path)
        if cfg is None:
            return False
        key = _registry_key(registry)
        auths = cfg.get("auths") or {}
        removed = False
        for k in list(auths):
            if k == key or _hostname(k) == _hostname(key):
                del auths[k]
                removed = True
        helper = (cfg.get("credHelpers") or {}).get(key) or cfg.get("credsStore")
        if helper:
            try:
                _helper_call(str(helper), "erase", key)
                removed = True
            except AuthenticationError:
                pass
        if removed:
            self._write(path, cfg)
        return removed

    @staticmethod
    def _write(path: Path, cfg: dict[str, Any]) -> None:
        """Replace the file atomically; it holds secrets, so only its owner may read it."""
        from pycrane import _fs

        data = (json.dumps(cfg, indent="\t") + "\n").encode()
        try:
            _fs.makedirs(path.parent)
            _fs.atomic_write_bytes(path, data, mode=0o600)
        except OSError as e:
            raise StoreError(f"credentials file {path}: cannot write ({e.strerror or e})") from None


class StaticKeychain(Keychain):
    """Fixed credentials per registry (tests, CLI ``--username/--password``)."""

    def __init__(self, creds: Mapping[str, Credential], default: Credential = ANONYMOUS) -> None:
        super().__init__(paths=[])
        self._creds = {k.lower(): v for k, v in creds.items()}
        self._default = default

    def resolve(self, registry: str, repository: str | None = None) -> Credential:
        return self._creds.get(registry.lower(), self._default)

    def login(self, registry: str, username: str, password: str) -> Path:
        """Remember in memory only (a static keychain never writes files)."""
        self._creds[registry.lower()] = Credential(username, password)
        return Path(os.devnull)

    def logout(self, registry: str) -> bool:
        return self._creds.pop(registry.lower(), None) is not None


def _from_entry(entry: dict[str, Any], key: str, path: Path) -> Credential | None:
    username = entry.get("username") or None
    password = entry.get("password") or None
    auth = entry.get("auth")
    if auth:
        try:
            decoded = base64.b64decode(str(auth), validate=False).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationError(
                f"credentials file {path}: auths[{key!r}].auth is not base64 'user:password'"
            ) from None
        user, sep, pw = decoded.partition(":")
        if not sep:
            raise AuthenticationError(
                f"credentials file {path}: auths[{key!r}].auth is not base64 'user:password'"
            )
        username, password = user or username, pw or password
    identity = entry.get("identitytoken") or None
    registry_token = entry.get("registrytoken") or None
    return Credential(username, password, identity, registry_token)


def _helper_call(helper: str, action: str, stdin: str) -> str:
    # Imported here: credential helpers are rare and subprocess+shutil cost ms of start-up.
    import shutil
    import subprocess

    exe = shutil.which(f"docker-credential-{helper}")
    if exe is None:
        raise AuthenticationError(
            f"credential helper docker-credential-{helper}: not found on PATH"
        )
    try:
        proc = subprocess.run(
            [exe, action], input=stdin, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AuthenticationError(f"credential helper docker-credential-{helper}: {e}") from None
    if proc.returncode != 0:
        msg = (proc.stdout or proc.stderr).strip().splitlines()
        raise AuthenticationError(
            f"credential helper docker-credential-{helper} {action}: "
            f"{msg[0] if msg else f'exit status {proc.returncode}'}"
        )
    return proc.stdout


def _run_helper(helper: str, server: str) -> Credential | None:
    import shutil

    exe = shutil.which(f"docker-credential-{helper}")
    if exe is None:
        return None
    try:
        out = _helper_call(helper, "get", server)
    except AuthenticationError as e:
        if "credentials not found" in str(e).lower():
            return None
        raise
    try:
        obj = json.loads(out)
    except ValueError:
        raise AuthenticationError(
            f"credential helper docker-credential-{helper}: output is not JSON"
        ) from None
    user = obj.get("Username") or None
    secret = obj.get("Secret") or None
    if user == "<token>":
        return Credential(identity_token=secret)
    if not user and not secret:
        return None
    return Credential(user, secret)
