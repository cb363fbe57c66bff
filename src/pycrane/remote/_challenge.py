"""Parsing ``WWW-Authenticate`` headers (RFC 7235), free of I/O.

A header may carry several challenges (``Basic realm="x", Bearer realm="y",
service="z"``), quoted values may contain commas and escaped quotes, and a
server may send several headers. We parse them all and let the caller choose.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Challenge", "parse_challenges", "pick_challenge"]

_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


@dataclass(frozen=True)
class Challenge:
    """One auth challenge: a scheme (lowercased) and its parameters (keys lowercased)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> list[str]:
        """The space-separated ``scope`` parameter as a list."""
        return self.params.get("scope", "").split()

    @property
    def error(self) -> str | None:
        return self.params.get("error")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def skip_ws_commas(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t,":
            self.i += 1

    def token(self) -> str:
        start = self.i
        while self.i < len(self.s) and self.s[self.i] in _TOKEN_CHARS:
            self.i += 1
        return self.s[start : self.i]

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def quoted(self) -> str:
        # At an opening quote.
        self.i += 1
        out = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "\\" and self.i + 1 < len(self.s):
                out.append(self.s[self.i + 1])
                self.i += 2
                continue
            if c == '"':
                self.i += 1
                return "".join(out)
            out.append(c)
            self.i += 1
        return "".join(out)  # unterminated: take what there is

    def token68_or_value(self) -> str:
        start = self.i
        while self.i < len(self.s) and self.s[self.i] not in " \t,":
            self.i += 1
        return self.s[start : self.i]


def _parse_one_header(text: str) -> list[Challenge]:
    sc = _Scanner(text)
    out: list[Challenge] = []
    sc.skip_ws_commas()
    while sc.i < len(sc.s):
        scheme = sc.token()
        if not scheme:
            # Garbage: skip to the next comma and carry on.
            while sc.peek() not in ("", ","):
                sc.i += 1
            sc.skip_ws_commas()
            continue
        params: dict[str, str] = {}
        sc.skip_ws()
        # Parameters: key=value pairs separated by commas, until the next scheme.
        while sc.i < len(sc.s):
            save = sc.i
            sc.skip_ws_commas()
            key = sc.token()
            sc.skip_ws()
            if not key or sc.peek() != "=":
                # Not a parameter: the next challenge's scheme (or a token68) starts here.
                sc.i = save
                break
            sc.i += 1  # "="
            sc.skip_ws()
            value = sc.quoted() if sc.peek() == '"' else sc.token68_or_value()
            params[key.lower()] = value
            sc.skip_ws()
        out.append(Challenge(scheme.lower(), params))
        sc.skip_ws_commas()
    return out


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Every challenge in every ``WWW-Authenticate`` header value, in order.

    ```python
    parse_challenges(['Bearer realm="https://auth.example/token",service="reg",'
                      'scope="repository:a:pull,push"'])
    # [Challenge("bearer", {"realm": ..., "service": "reg", "scope": "repository:a:pull,push"})]
    ```
    """
    out: list[Challenge] = []
    for h in headers:
        out.extend(_parse_one_header(h))
    return out


def pick_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """Bearer over Basic; anything else (Negotiate, NTLM...) is ignored."""
    found = {c.scheme: c for c in reversed(list(challenges))}
    return found.get("bearer") or found.get("basic")
