"""The distribution fixtures themselves: each mode answers /v2/ the way it should."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message

import pytest

from tests.fixtures_distribution import DistributionRegistry

pytestmark = pytest.mark.distribution


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_anonymous_registry_answers(distribution: DistributionRegistry) -> None:
    status, headers, _ = _get(f"{distribution.url}/v2/")
    assert status == 200
    assert headers.get("Docker-Distribution-Api-Version") == "registry/2.0"


def test_htpasswd_registry_demands_basic(distribution_htpasswd: DistributionRegistry) -> None:
    reg = distribution_htpasswd
    status, headers, _ = _get(f"{reg.url}/v2/")
    assert status == 401
    assert headers["WWW-Authenticate"].lower().startswith("basic")
    cred = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    assert _get(f"{reg.url}/v2/", {"Authorization": f"Basic {cred}"})[0] == 200
    bad = base64.b64encode(f"{reg.username}:wrong".encode()).decode()
    assert _get(f"{reg.url}/v2/", {"Authorization": f"Basic {bad}"})[0] == 401


def test_token_registry_accepts_issued_tokens(distribution_token: DistributionRegistry) -> None:
    reg = distribution_token
    assert reg.token_server is not None
    status, headers, _ = _get(f"{reg.url}/v2/")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer ")
    q = urllib.parse.urlencode({"service": reg.token_server.service, "scope": "repository:a:pull"})
    cred = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    status, _, body = _get(f"{reg.token_server.realm}?{q}", {"Authorization": f"Basic {cred}"})
    assert status == 200
    token = json.loads(body)["token"]
    assert _get(f"{reg.url}/v2/", {"Authorization": f"Bearer {token}"})[0] == 200
    # A token for repository a does not open repository b.
    status, _, _ = _get(f"{reg.url}/v2/b/tags/list", {"Authorization": f"Bearer {token}"})
    assert status == 401
    # A forged token (signed by another key) is refused.
    forged = token[: token.rindex(".") + 1] + "AAAA"
    assert _get(f"{reg.url}/v2/", {"Authorization": f"Bearer {forged}"})[0] == 401
