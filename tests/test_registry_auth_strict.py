"""Basic auth as strict as distribution's, and user names not told by timing (issue 16, item 7).

Before the fix ``Basic  <b64>  `` (extra spaces) was accepted, and an unknown user
was answered without hashing anything (~1 ms against ~66 ms for a wrong bcrypt
password). The timing is not measured here (no timed assertions): the test shows
that an unknown user costs one real check against a dummy hash of the same kind
and cost as the file's entries.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from pycrane.registry import RegistryServer, auth
from pycrane.registry.auth import Htpasswd
from tests.fixtures_distribution import DistributionRegistry
from tests.test_registry import Client


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


SPACING = {
    "plain": ("Basic {}", 200),
    "lower-scheme": ("basic {}", 200),
    "trailing-ows": ("Basic {}  ", 200),  # outer whitespace is not part of a field value
    "two-spaces": ("Basic  {}", 401),
    "two-spaces-and-trailing": ("Basic  {}  ", 401),
    "tab": ("Basic\t{}", 401),
    "space-inside": ("Basic {} x", 401),
}


@pytest.fixture(scope="module")
def sha_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import hashlib

    path = tmp_path_factory.mktemp("auth") / "htpasswd"
    sha = base64.b64encode(hashlib.sha1(b"pw").digest()).decode()
    path.write_text(f"alice:{{SHA}}{sha}\n")
    with RegistryServer(htpasswd=path) as reg:
        yield reg


@pytest.mark.parametrize("case", sorted(SPACING))
def test_authorization_spacing(sha_server: RegistryServer, case: str) -> None:
    form, status = SPACING[case]
    c = Client(sha_server)
    assert c.req("GET", "/v2/", Authorization=form.format(_basic("alice", "pw"))).status == status


@pytest.mark.parametrize("case", ["plain", "lower-scheme", "two-spaces-and-trailing", "tab"])
def test_distribution_agrees_on_spacing(
    distribution_htpasswd: DistributionRegistry, case: str
) -> None:
    form, status = SPACING[case]
    reg = distribution_htpasswd
    header = form.format(_basic(reg.username or "", reg.password or ""))
    assert Client(reg.url).req("GET", "/v2/", Authorization=header).status == status


@pytest.mark.parametrize("kind", ["bcrypt", "apr1", "sha"])
def test_unknown_users_cost_a_real_hash_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    import hashlib

    if kind == "bcrypt":
        bcrypt = pytest.importorskip("bcrypt")
        hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=5)).decode()
    elif kind == "apr1":
        hashed = auth.apr1_hash(b"pw", b"saltsalt").decode()
    else:
        hashed = "{SHA}" + base64.b64encode(hashlib.sha1(b"pw").digest()).decode()
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{hashed}\n")
    users = Htpasswd(path)
    checked: list[bytes] = []
    real = Htpasswd._check_hash

    def spy(pw: bytes, h: bytes) -> bool:
        checked.append(h)
        return real(pw, h)

    monkeypatch.setattr(Htpasswd, "_check_hash", staticmethod(spy))
    assert not users.verify("mallory", "pw")
    assert not users.verify("alice", "wrong")
    assert users.verify("alice", "pw")
    dummy, known, _ = checked
    assert known == hashed.encode() and dummy != known
    # Same kind and, for bcrypt, the same cost: the same work.
    prefix = 7 if kind == "bcrypt" else 5
    assert dummy[:prefix] == known[:prefix]
