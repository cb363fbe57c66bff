"""The in-memory registry is bounded (issue 16, item 3).

Before the fix, upload sessions that were never finished kept their bytes for an
hour and nothing bounded the total (three 200 MiB uploads took the server from 26
to 628 MiB). Now stored content plus uploads in flight stay under ``max_memory``
(``registry serve --max-memory``, 1 GiB by default): a write past it is a 413
DENIED, the session it was for is dropped, and idle sessions are expired first.
The tests use a 1 MiB bound, so they stay small.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import click
import pytest

from pycrane.registry import RegistryServer
from pycrane.registry.storage import DEFAULT_MAX_MEMORY, MemoryStorage
from tests.test_registry import OCI_CONFIG, OCI_LAYER, Client, codes, sha256

LIMIT = 1024 * 1024
PIECE = b"x" * (400 * 1024)


@pytest.fixture
def reg() -> Iterator[RegistryServer]:
    with RegistryServer(max_memory=LIMIT) as server:
        yield server


def used(reg: RegistryServer) -> int:
    assert isinstance(reg.storage, MemoryStorage)
    return reg.storage.used


def test_default_bound() -> None:
    assert MemoryStorage().max_bytes == DEFAULT_MAX_MEMORY == 1024**3


def test_unfinished_uploads_are_bounded(reg: RegistryServer) -> None:
    c = Client(reg)
    sessions = []
    for _ in range(2):
        loc = c.req("POST", "/v2/m/a/blobs/uploads/").headers["Location"]
        assert c.req("PATCH", loc, body=PIECE).status == 202
        sessions.append(loc)
    loc = c.req("POST", "/v2/m/a/blobs/uploads/").headers["Location"]
    r = c.req("PATCH", loc, body=PIECE)
    assert r.status == 413 and codes(r) == ["DENIED"], r.data
    assert "--disk" in json.loads(r.data)["errors"][0]["message"]
    assert used(reg) == 2 * len(PIECE)
    # The refused session is gone with its bytes; the others are intact.
    assert c.req("GET", loc).status == 404
    assert all(c.req("GET", s).status == 204 for s in sessions)
    # Cancelling one frees room for another upload.
    assert c.req("DELETE", sessions[0]).status == 204
    assert used(reg) == len(PIECE)
    d = sha256(PIECE)
    assert c.req("POST", f"/v2/m/a/blobs/uploads/?digest={d}", body=PIECE).status == 201
    assert c.req("GET", "/v2/").status == 200


def test_monolithic_and_manifest_writes_are_bounded(reg: RegistryServer) -> None:
    c = Client(reg)
    big = b"y" * (LIMIT + 1)
    r = c.req("POST", f"/v2/m/b/blobs/uploads/?digest={sha256(big)}", body=big)
    assert r.status == 413 and codes(r) == ["DENIED"]
    assert used(reg) == 0
    cfg = b"{}"
    layer = b"z" * (LIMIT - 100)
    doc = {
        "schemaVersion": 2,
        "config": {"mediaType": OCI_CONFIG, "digest": c.push_blob("m/b", cfg), "size": 2},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": c.push_blob("m/b", layer), "size": len(layer)}
        ],
        "annotations": {"pad": "p" * 200},
    }
    r = c.push_manifest("m/b", "t", doc)
    assert r.status == 413 and codes(r) == ["DENIED"]
    # Deleting content gives the memory back.
    assert c.req("DELETE", f"/v2/m/b/blobs/{sha256(layer)}").status == 202
    assert used(reg) == 2
    # A blob pushed twice is held once.
    c.push_blob("m/b", cfg)
    c.push_blob("m/c", cfg)
    assert used(reg) == 2


def test_idle_sessions_are_expired_when_memory_runs_short(
    reg: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pycrane.registry import storage

    c = Client(reg)
    for _ in range(2):
        loc = c.req("POST", "/v2/m/d/blobs/uploads/").headers["Location"]
        assert c.req("PATCH", loc, body=PIECE).status == 202
    monkeypatch.setattr(storage, "UPLOAD_IDLE_LIMIT", 0.0)
    d = sha256(PIECE * 2)
    assert c.req("POST", f"/v2/m/d/blobs/uploads/?digest={d}", body=PIECE * 2).status == 201
    assert used(reg) == 2 * len(PIECE)
    assert storage.UPLOAD_IDLE_LIMIT == 0.0


def test_a_refused_digest_frees_its_bytes(reg: RegistryServer) -> None:
    c = Client(reg)
    r = c.req("POST", f"/v2/m/e/blobs/uploads/?digest={sha256(b'other')}", body=PIECE)
    assert r.status == 400 and codes(r) == ["DIGEST_INVALID"]
    assert used(reg) == 0


def test_max_memory_flag() -> None:
    from click.testing import CliRunner

    from pycrane.cli.commands.registry import parse_size, serve

    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size("2GiB") == 2 * 1024**3
    assert parse_size("1.5k") == 1500
    assert parse_size("0") == 0
    for bad in ("lots", "1 zb", "-1"):
        with pytest.raises(click.BadParameter):
            parse_size(bad)
    bad = subprocess.run(
        [sys.executable, "-m", "pycrane", "registry", "serve", "--max-memory", "lots"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "--max-memory" in CliRunner().invoke(serve, ["--help"]).output
