"""HTTP Basic authentication against an Apache htpasswd file.

Supported hash formats: bcrypt (``$2y$``, ``$2a$``, ``$2b$``; needs the optional
``bcrypt`` package), Apache MD5 (``$apr1$``, the default of ``htpasswd -b``,
implemented here), and SHA-1 (``{SHA}``). An unsupported or unusable entry is
reported when the file is loaded, not at the first login. Successful checks are
cached by a hash of the credentials, because a client sends them on every
request and bcrypt is slow on purpose. A user name that is not in the file is
checked against a dummy hash of the file's most common kind and cost, so a wrong
name takes as long as a wrong password and timing does not reveal which users exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from pathlib import Path

from pycrane.errors import PycraneError

__all__ = ["Htpasswd", "apr1_hash"]

_ITOA64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _to64(value: int, n: int) -> bytes:
    out = bytearray()
    for _ in range(n):
        out.append(_ITOA64[value & 0x3F])
        value >>= 6
    return bytes(out)


def apr1_hash(password: bytes, salt: bytes, magic: bytes = b"$apr1$") -> bytes:
    """Apache's MD5-crypt: ``$apr1$<salt>$<22 chars>`` (salt up to 8 bytes)."""
    salt = salt[:8]
    ctx = password + magic + salt
    alt = hashlib.md5(password + salt + password).digest()
    n = len(password)
    while n > 0:
        ctx += alt[: min(16, n)]
        n -= 16
    i = len(password)
    while i:
        ctx += b"\0" if i & 1 else password[:1]
        i >>= 1
    final = hashlib.md5(ctx).digest()
    for i in range(1000):
        c = password if i & 1 else final
        if i % 3:
            c += salt
        if i % 7:
            c += password
        c += final if i & 1 else password
        final = hashlib.md5(c).digest()
    out = b""
    for a, b, c3 in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)):
        out += _to64((final[a] << 16) | (final[b] << 8) | final[c3], 4)
    out += _to64(final[11], 2)
    return magic + salt + b"$" + out


def _bcrypt_check(password: bytes, hashed: bytes) -> bool:
    import bcrypt  # type: ignore[import-not-found,unused-ignore]

    # bcrypt libraries disagree on "$2y$"; it is the same algorithm as "$2b$".
    if hashed.startswith(b"$2y$"):
        hashed = b"$2b$" + hashed[4:]
    return bool(bcrypt.checkpw(password, hashed))


def _bcrypt_available() -> bool:
    try:
        import bcrypt  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


class Htpasswd:
    """The users of one htpasswd file; :meth:`check` verifies a Basic ``Authorization`` value."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._users: dict[str, bytes] = {}
        self._ok: set[bytes] = set()
        self._lock = threading.Lock()
        try:
            text = self.path.read_text("utf-8")
        except OSError as e:
            raise PycraneError(f"htpasswd file {self.path}: cannot read: {e.strerror}") from None
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user:
                raise PycraneError(f"htpasswd file {self.path}:{lineno}: expected 'user:hash'")
            h = hashed.encode()
            if h.startswith((b"$2y$", b"$2a$", b"$2b$")):
                if not _bcrypt_available():
                    raise PycraneError(
                        f"htpasswd file {self.path}:{lineno}: bcrypt hash for {user!r} needs "
                        "the 'bcrypt' package (pip install bcrypt)"
                    )
            elif not h.startswith((b"$apr1$", b"{SHA}")):
                raise PycraneError(
                    f"htpasswd file {self.path}:{lineno}: unsupported hash for {user!r} "
                    "(expected bcrypt $2y$, $apr1$ or {SHA})"
                )
            self._users[user] = h
        self._dummy = self._make_dummy()

    def _make_dummy(self) -> bytes:
        """A hash like the file's own, checked for unknown users so both take as long."""
        if not self._users:
            return b""
        kinds = [h[:4] if h.startswith(b"$2") else h[:5] for h in self._users.values()]
        common = max(set(kinds), key=kinds.count)
        sample = next(h for h, k in zip(self._users.values(), kinds, strict=True) if k == common)
        secret = os.urandom(16).hex().encode()
        if sample.startswith(b"$2"):
            import bcrypt  # type: ignore[import-not-found,unused-ignore]

            rounds = int(sample[4:6]) if sample[4:6].isdigit() else 12
            return bytes(bcrypt.hashpw(secret, bcrypt.gensalt(rounds=rounds)))
        if sample.startswith(b"$apr1$"):
            return apr1_hash(secret, os.urandom(6).hex().encode())
        return b"{SHA}" + base64.b64encode(hashlib.sha1(secret).digest())

    def verify(self, user: str, password: str) -> bool:
        """True when ``password`` matches the entry of ``user``."""
        hashed = self._users.get(user)
        known = hashed is not None
        if hashed is None:
            # Same work for an unknown user as for a wrong password: timing tells nothing.
            hashed = self._dummy
            if not hashed:
                return False
        pw = password.encode()
        if not known:
            self._check_hash(pw, hashed)
            return False
        return self._check_hash(pw, hashed)

    @staticmethod
    def _check_hash(pw: bytes, hashed: bytes) -> bool:
        if hashed.startswith(b"{SHA}"):
            want = b"{SHA}" + base64.b64encode(hashlib.sha1(pw).digest())
            return hmac.compare_digest(want, hashed)
        if hashed.startswith(b"$apr1$"):
            salt = hashed[6:].split(b"$", 1)[0]
            return hmac.compare_digest(apr1_hash(pw, salt), hashed)
        return _bcrypt_check(pw, hashed)

    def check(self, authorization: str | None) -> str | None:
        """The user name when the header holds valid Basic credentials, else None."""
        if not authorization:
            return None
        # As Go's net/http (and so distribution): "Basic " then the base64 token, nothing
        # else; HTTP strips the field's outer whitespace, but not spaces around the token.
        authorization = authorization.strip(" \t")
        scheme, value = authorization[:6], authorization[6:]
        if scheme.lower() != "basic " or not value:
            return None
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None
        key = hashlib.sha256(decoded.encode()).digest()
        with self._lock:
            if key in self._ok:
                return user
        if not self.verify(user, password):
            return None
        with self._lock:
            self._ok.add(key)
        return user
