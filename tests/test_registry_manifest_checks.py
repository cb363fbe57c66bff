"""Manifest PUTs a hostile client sends (issue 16, items 1, 2 and 6), against pycrane's server.

Each case ran as the issue found it and was accepted (201) or crashed (500) before
the fix. Where CNCF distribution gives the same answer, the test runs against it too
(``anyreg``), so the expectation is the reference's and not only ours.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from pycrane.registry import RegistryServer
from pycrane.registry.manifests import MAX_DEPTH
from tests.test_registry import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Client,
    codes,
    manifest_doc,
    sha256,
)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module", params=["memory", "disk"])
def reg(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    disk = tmp_path_factory.mktemp("regdisk") if request.param == "disk" else None
    with RegistryServer(disk=disk) as server:
        yield server


@pytest.fixture
def c(reg: RegistryServer) -> Client:
    return Client(reg)


@pytest.fixture(params=["pycrane", "distribution"])
def anyreg(request: pytest.FixtureRequest) -> Client:
    """pycrane's memory server, or CNCF distribution (skipped when not installed)."""
    if request.param == "distribution":
        return Client(request.getfixturevalue("distribution").url)
    return Client(request.getfixturevalue("pycrane_registry"))


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    return "h/" + request.node.name.split("[")[0].replace("_", "-").lower()


def _image(c: Client, repo: str) -> dict[str, Any]:
    cfg = b'{"architecture": "amd64", "os": "linux"}'
    return manifest_doc(c.push_blob(repo, cfg), len(cfg), c.push_blob(repo, b"layer"), 5)


def _message(r: Any) -> str:
    return str(json.loads(r.data)["errors"][0]["message"])


def _raw(host: str, request: bytes) -> bytes:
    """One request on a fresh connection; the whole reply until the server closes."""
    h, port = host.rsplit(":", 1)
    with socket.create_connection((h, int(port)), timeout=30) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


# -- 1. header injection -----------------------------------------------------------------


def test_obs_folded_content_type_is_refused_and_never_echoed(
    reg: RegistryServer, repo: str
) -> None:
    c = Client(reg)
    doc = _image(c, repo)
    del doc["mediaType"]  # else the header and the field disagree, which was refused before
    raw = json.dumps(doc).encode()
    reply = _raw(
        reg.host,
        (
            f"PUT /v2/{repo}/manifests/x HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: text/plain\r\n X-Folded: 1\r\nConnection: close\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n"
        ).encode()
        + raw,
    )
    assert reply.startswith(b"HTTP/1.1 400"), reply
    r = c.req("GET", f"/v2/{repo}/manifests/{sha256(raw)}")
    assert r.status == 404 and "X-Folded" not in r.headers


@pytest.mark.parametrize(
    "ctype",
    ["text/plain X-Folded: 1", "application/json,text/html", "a/b;x", "/json", "a/b c"],
)
def test_content_type_must_be_a_media_type(c: Client, repo: str, ctype: str) -> None:
    doc = _image(c, repo)
    del doc["mediaType"]
    r = c.push_manifest(repo, "x", doc, media_type=ctype)
    assert r.status == 400 and codes(r) == ["MANIFEST_INVALID"], r.data
    assert "Content-Type" in _message(r)


def test_parameters_are_accepted_and_dropped(c: Client, repo: str) -> None:
    r = c.push_manifest(repo, "x", _image(c, repo), media_type=f'{OCI_MANIFEST}; charset="utf-8"')
    assert r.status == 201, r.data
    assert c.req("GET", f"/v2/{repo}/manifests/x").headers["Content-Type"] == OCI_MANIFEST


def test_a_stored_media_type_is_checked_before_it_becomes_a_header() -> None:
    """Data written by an older, laxer version must not inject headers either."""
    from pycrane.registry.manifests import PushedManifest
    from pycrane.registry.storage import MemoryStorage
    from pycrane.v1.digest import Digest

    storage = MemoryStorage()
    raw = b'{"schemaVersion": 2}'
    digest = Digest.from_bytes(raw)
    storage.manifest_put("old", PushedManifest("text/plain\r\nX-Injected: 1", digest, 20), raw, "t")
    with RegistryServer(storage=storage) as server:
        r = Client(server).req("GET", "/v2/old/manifests/t")
        assert r.status == 200 and r.data == raw
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert "X-Injected" not in r.headers


# -- 2. what a manifest must contain -----------------------------------------------------


def test_text_html_is_not_a_manifest_type(c: Client, repo: str) -> None:
    doc = _image(c, repo)
    del doc["mediaType"]
    r = c.push_manifest(repo, "x", doc, media_type="text/html")
    assert r.status == 400 and codes(r) == ["MANIFEST_INVALID"]
    assert "text/html" in _message(r)


def test_image_type_with_an_index_body(c: Client, repo: str) -> None:
    child = c.req("PUT", f"/v2/{repo}/manifests/child", body=json.dumps(_image(c, repo)))
    assert child.status == 201
    index = {"schemaVersion": 2, "manifests": []}
    r = c.push_manifest(repo, "x", index, media_type=OCI_MANIFEST)
    assert r.status == 400 and codes(r) == ["MANIFEST_INVALID"]
    assert "config" in _message(r)
    r = c.push_manifest(repo, "x", {"schemaVersion": 2, "mediaType": OCI_INDEX}, OCI_INDEX)
    assert r.status == 400 and "manifests" in _message(r)


@pytest.mark.parametrize("version", [99, "2", True, 2.0, None])
def test_schema_version_must_be_2(c: Client, repo: str, version: Any) -> None:
    doc = _image(c, repo)
    if version is None:
        del doc["schemaVersion"]
    else:
        doc["schemaVersion"] = version
    r = c.push_manifest(repo, "x", doc)
    assert r.status == 400 and codes(r) == ["MANIFEST_INVALID"]
    assert "schemaVersion" in _message(r)


def test_duplicate_keys_are_refused(c: Client, repo: str) -> None:
    raw = json.dumps(_image(c, repo)).encode()
    raw = raw[:-1] + b', "schemaVersion": 1}'
    r = c.push_manifest(repo, "x", raw)
    assert r.status == 400 and "duplicate key 'schemaVersion'" in _message(r)
    nested = json.dumps(_image(c, repo)).encode().replace(b'"size": 5}', b'"size": 5, "size": 5}')
    r = c.push_manifest(repo, "x", nested)
    assert r.status == 400 and "duplicate key 'size'" in _message(r)


@pytest.mark.parametrize(
    ("prefix", "encoding", "word"),
    [(b"\xef\xbb\xbf", "utf-8", "byte order mark"), (b"", "utf-16", "UTF-8")],
)
def test_bom_and_other_encodings_are_refused(
    c: Client, repo: str, prefix: bytes, encoding: str, word: str
) -> None:
    raw = prefix + json.dumps(_image(c, repo)).encode(encoding)
    r = c.push_manifest(repo, "x", raw)
    assert r.status == 400 and codes(r) == ["MANIFEST_INVALID"]
    assert word in _message(r)


def test_nan_is_not_json(c: Client, repo: str) -> None:
    raw = json.dumps(_image(c, repo)).encode()[:-1] + b', "x": NaN}'
    r = c.push_manifest(repo, "x", raw)
    assert r.status == 400 and codes(r) == ["MANIFEST_INVALID"]


@pytest.mark.parametrize("where", ["config", "layer"])
def test_declared_sizes_must_match_the_blobs(c: Client, repo: str, where: str) -> None:
    doc = _image(c, repo)
    (doc["config"] if where == "config" else doc["layers"][0])["size"] += 1
    r = c.push_manifest(repo, "x", doc)
    assert r.status == 400 and codes(r) == ["MANIFEST_INVALID"]
    assert ("config.size" if where == "config" else "layers[0].size") in _message(r)


def test_index_child_size_must_match(c: Client, repo: str) -> None:
    child = json.dumps(_image(c, repo)).encode()
    assert c.push_manifest(repo, "child", child).status == 201
    entry = {"mediaType": OCI_MANIFEST, "digest": sha256(child), "size": len(child) + 1}
    r = c.push_manifest(repo, "i", {"schemaVersion": 2, "manifests": [entry]}, OCI_INDEX)
    assert r.status == 400 and "manifests[0].size" in _message(r)
    entry["size"] = len(child)
    r = c.push_manifest(repo, "i", {"schemaVersion": 2, "manifests": [entry]}, OCI_INDEX)
    assert r.status == 201, r.data


def test_docker_media_type_field_must_match(c: Client, repo: str) -> None:
    doc = _image(c, repo)
    r = c.push_manifest(repo, "x", doc, media_type=DOCKER_MANIFEST)
    assert r.status == 400 and "mediaType" in _message(r)
    doc["mediaType"] = DOCKER_MANIFEST
    assert c.push_manifest(repo, "x", doc, media_type=DOCKER_MANIFEST).status == 201


def test_json_artifact_types_are_stored_as_opaque_documents(c: Client, repo: str) -> None:
    kind = "application/vnd.example.thing.v1+json"
    blob = c.push_blob(repo, b"payload")
    doc = {"schemaVersion": 2, "mediaType": kind, "blobs": [1, 2], "config": None}
    r = c.push_manifest(repo, "a", doc, media_type=kind)
    assert r.status == 201, r.data
    assert c.req("GET", f"/v2/{repo}/manifests/a").headers["Content-Type"] == kind
    # Descriptors it holds are checked like an image's.
    doc["layers"] = [{"mediaType": OCI_LAYER, "digest": blob, "size": 8}]
    r = c.push_manifest(repo, "a", doc, media_type=kind)
    assert r.status == 400 and "layers[0].size" in _message(r)
    del doc["schemaVersion"]
    r = c.push_manifest(repo, "a", doc, media_type=kind)
    assert r.status == 400 and "schemaVersion" in _message(r)


def test_artifacts_with_an_oci_manifest_still_work(c: Client, repo: str) -> None:
    empty = c.push_blob(repo, b"{}")
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [],
    }
    assert c.push_manifest(repo, "sbom", doc).status == 201


# -- 6. parser limits --------------------------------------------------------------------


def test_deep_nesting_is_a_400_not_a_500(anyreg: Client, repo: str) -> None:
    raw = b'{"schemaVersion": 2, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = anyreg.push_manifest(repo, "deep", raw)
    assert r.status == 400 and codes(r) == ["MANIFEST_INVALID"], r.data[:300]


def test_nesting_limit_boundary(c: Client, repo: str) -> None:
    doc = _image(c, repo)

    def nest(depth: int) -> bytes:
        # The manifest object is level 1, "x" adds depth - 1 more.
        raw = json.dumps(doc).encode()
        return raw[:-1] + b', "x": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    assert c.push_manifest(repo, "ok", nest(MAX_DEPTH)).status == 201
    r = c.push_manifest(repo, "deep", nest(MAX_DEPTH + 1))
    assert r.status == 400 and "nested" in _message(r)
    # Brackets inside strings do not count.
    raw = json.dumps({**doc, "annotations": {"a": "[" * 1000}}).encode()
    assert c.push_manifest(repo, "s", raw).status == 201


def test_many_missing_blobs_get_a_bounded_error_body(c: Client, repo: str) -> None:
    cfg = c.push_blob(repo, b"{}")
    layers = [
        {"mediaType": OCI_LAYER, "digest": sha256(str(i).encode()), "size": 1}
        for i in range(40_000)
    ]
    doc = {"schemaVersion": 2, "config": {"mediaType": OCI_CONFIG, "digest": cfg, "size": 2}}
    doc["layers"] = layers
    r = c.push_manifest(repo, "x", doc)
    assert r.status == 400 and len(r.data) < 8192, len(r.data)
    errors = json.loads(r.data)["errors"]
    assert len(errors) == 11 and {e["code"] for e in errors} == {"MANIFEST_BLOB_UNKNOWN"}
    assert "the list stops at 10" in errors[-1]["message"]


def test_long_client_input_is_cut_in_error_messages(c: Client, repo: str) -> None:
    r = c.req("GET", f"/v2/{repo}/blobs/sha256:{'a' * 20000}")
    assert r.status == 400 and len(r.data) < 4096


def test_docker_schema1_rules(c: Client, repo: str) -> None:
    s1 = "application/vnd.docker.distribution.manifest.v1+json"
    doc: dict[str, Any] = {"schemaVersion": 1, "name": repo, "tag": "v", "history": []}
    r = c.push_manifest(repo, "v", doc, media_type=s1)
    assert r.status == 400 and "fsLayers" in _message(r)
    doc["fsLayers"] = [{"blobSum": c.push_blob(repo, b"s1 layer")}]
    assert c.push_manifest(repo, "v", doc, media_type=s1).status == 201
    doc["schemaVersion"] = 2
    r = c.push_manifest(repo, "v", doc, media_type=s1)
    assert r.status == 400 and "schemaVersion" in _message(r)


def test_without_content_type_the_body_decides(c: Client, repo: str) -> None:
    doc = _image(c, repo)
    r = c.req("PUT", f"/v2/{repo}/manifests/x", body=json.dumps(doc).encode())
    assert r.status == 201, r.data
    assert c.req("GET", f"/v2/{repo}/manifests/x").headers["Content-Type"] == OCI_MANIFEST
