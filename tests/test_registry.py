"""Conformance of pycrane's registry server, endpoint by endpoint, over raw HTTP (urllib3).

Every test runs against both storage backends (memory and disk), each served by a
real server on a loopback port.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from pycrane.registry import RegistryServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


class Client:
    """A tiny raw client: one pool, helpers for the common pushes."""

    def __init__(self, reg: RegistryServer | str, **pool: Any) -> None:
        self.url = reg if isinstance(reg, str) else reg.url
        self.http = urllib3.PoolManager(retries=False, **pool)
        self.headers: dict[str, str] = {}

    def req(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        url = path if path.startswith("http") else self.url + path
        h = {**self.headers, **{k.replace("_", "-"): v for k, v in headers.items()}}
        return self.http.request(method, url, body=body, headers=h, redirect=False)

    def push_blob(self, repo: str, data: bytes) -> str:
        d = sha256(data)
        r = self.req("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", body=data)
        assert r.status == 201, r.data
        return d

    def push_manifest(
        self, repo: str, ref: str, doc: dict[str, Any] | bytes, media_type: str = OCI_MANIFEST
    ) -> Any:
        raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return self.req("PUT", f"/v2/{repo}/manifests/{ref}", body=raw, Content_Type=media_type)

    def push_image(self, repo: str, ref: str, layer: bytes = b"layer", **extra: Any) -> bytes:
        """Push config + one layer + manifest; return the manifest's raw bytes."""
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "n": repo}).encode()
        doc = manifest_doc(
            self.push_blob(repo, cfg), len(cfg), self.push_blob(repo, layer), len(layer)
        )
        doc.update(extra)
        raw = json.dumps(doc, indent=3).encode()  # unusual formatting: must come back as is
        r = self.push_manifest(repo, ref, raw)
        assert r.status == 201, r.data
        return raw


def manifest_doc(
    cfg_digest: str, cfg_size: int, layer_digest: str, layer_size: int
) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": cfg_size},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer_size}],
    }


def codes(r: Any) -> list[str]:
    return [e["code"] for e in json.loads(r.data)["errors"]]


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


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name of its own for each test (the server is shared by the module)."""
    return "t/" + request.node.name.split("[")[0].replace("_", "-").lower()


# -- base ---------------------------------------------------------------------------------


def test_base_endpoint(c: Client) -> None:
    r = c.req("GET", "/v2/")
    assert r.status == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert c.req("HEAD", "/v2/").status == 200


def test_unknown_paths_are_404(c: Client) -> None:
    assert c.req("GET", "/nope").status == 404
    assert c.req("GET", "/v2/a/unknownthing/x").status == 404


# -- blobs --------------------------------------------------------------------------------


def test_monolithic_post_then_get_and_head(c: Client, repo: str) -> None:
    data = os.urandom(3000)
    d = sha256(data)
    r = c.req("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", body=data)
    assert r.status == 201
    assert r.headers["Location"] == f"/v2/{repo}/blobs/{d}"
    assert r.headers["Docker-Content-Digest"] == d
    r = c.req("HEAD", f"/v2/{repo}/blobs/{d}")
    assert r.status == 200 and r.data == b""
    assert r.headers["Content-Length"] == "3000"
    assert r.headers["Docker-Content-Digest"] == d
    r = c.req("GET", f"/v2/{repo}/blobs/{d}")
    assert r.status == 200 and r.data == data
    assert r.headers["Content-Type"] == "application/octet-stream"


def test_post_then_put(c: Client, repo: str) -> None:
    data = b"post then put"
    r = c.req("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202
    loc = r.headers["Location"]
    assert loc.startswith(f"/v2/{repo}/blobs/uploads/")
    assert r.headers["Range"] == "0-0"
    r = c.req("PUT", f"{loc}?digest={sha256(data)}", body=data)
    assert r.status == 201, r.data
    assert c.req("GET", f"/v2/{repo}/blobs/{sha256(data)}").data == data
    # The session is over.
    assert c.req("GET", loc).status == 404


def test_chunked_patch_upload_with_content_range(c: Client, repo: str) -> None:
    data = os.urandom(10_000)
    loc = c.req("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    r = c.req("PATCH", loc, body=data[:4000], Content_Range="0-3999")
    assert r.status == 202
    assert r.headers["Range"] == "0-3999"
    loc = r.headers["Location"]
    # Status of the session.
    r = c.req("GET", loc)
    assert r.status == 204
    assert r.headers["Range"] == "0-3999"
    # Out of order chunk: 416 and the current range.
    r = c.req("PATCH", loc, body=data[5000:6000], Content_Range="5000-5999")
    assert r.status == 416
    assert r.headers["Range"] == "0-3999"
    assert r.headers["Location"] == loc
    # A chunk claiming a range that does not match its length.
    r = c.req("PATCH", loc, body=data[4000:5000], Content_Range="4000-4100")
    assert r.status == 416
    r = c.req("PATCH", loc, body=data[4000:9000], Content_Range="4000-8999")
    assert r.status == 202 and r.headers["Range"] == "0-8999"
    # The last chunk comes with the closing PUT.
    r = c.req("PUT", f"{loc}?digest={sha256(data)}", body=data[9000:], Content_Range="9000-9999")
    assert r.status == 201, r.data
    assert c.req("GET", f"/v2/{repo}/blobs/{sha256(data)}").data == data


def test_streamed_patch_without_content_range(c: Client, repo: str) -> None:
    """The docker/containerd style: one PATCH with a chunked body, then an empty PUT."""
    parts = [os.urandom(300_000) for _ in range(5)]
    data = b"".join(parts)
    loc = c.req("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    r = c.req("PATCH", loc, body=iter(parts))  # a generator: Transfer-Encoding: chunked
    assert r.status == 202, r.data
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    r = c.req("PUT", f"{r.headers['Location']}?digest={sha256(data)}")
    assert r.status == 201, r.data
    assert c.req("GET", f"/v2/{repo}/blobs/{sha256(data)}").data == data


def test_chunked_transfer_encoding_on_monolithic_post(c: Client, repo: str) -> None:
    parts = [b"a" * 70_000, b"b" * 5, b"c" * 1_100_000]
    data = b"".join(parts)
    r = c.req("POST", f"/v2/{repo}/blobs/uploads/?digest={sha256(data)}", body=iter(parts))
    assert r.status == 201, r.data
    assert c.req("GET", f"/v2/{repo}/blobs/{sha256(data)}").data == data


def test_wrong_digest_is_refused_and_ends_the_session(c: Client, repo: str) -> None:
    data = b"some content"
    wrong = sha256(b"other content")
    r = c.req("POST", f"/v2/{repo}/blobs/uploads/?digest={wrong}", body=data)
    assert r.status == 400 and codes(r) == ["DIGEST_INVALID"]
    assert c.req("HEAD", f"/v2/{repo}/blobs/{wrong}").status == 404
    assert c.req("HEAD", f"/v2/{repo}/blobs/{sha256(data)}").status == 404
    loc = c.req("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    r = c.req("PUT", f"{loc}?digest={wrong}", body=data)
    assert r.status == 400 and codes(r) == ["DIGEST_INVALID"]
    r = c.req("GET", loc)
    assert r.status == 404 and codes(r) == ["BLOB_UPLOAD_UNKNOWN"]


def test_put_without_digest_and_malformed_digests(c: Client, repo: str) -> None:
    loc = c.req("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    r = c.req("PUT", loc, body=b"x")
    assert r.status == 400 and codes(r) == ["DIGEST_INVALID"]
    r = c.req("GET", f"/v2/{repo}/blobs/sha256:1234")
    assert r.status == 400 and codes(r) == ["DIGEST_INVALID"]
    r = c.req("GET", f"/v2/{repo}/blobs/md5:" + "0" * 32)
    assert r.status == 400 and codes(r) == ["DIGEST_INVALID"]


def test_cancel_upload(c: Client, repo: str) -> None:
    loc = c.req("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    assert c.req("PATCH", loc, body=b"abc").status == 202
    assert c.req("DELETE", loc).status == 204
    r = c.req("GET", loc)
    assert r.status == 404 and codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    assert c.req("DELETE", loc).status == 404
    assert c.req("PATCH", loc, body=b"abc").status == 404


def test_upload_session_is_bound_to_its_repository(c: Client, repo: str) -> None:
    loc = c.req("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    other = loc.replace(f"/v2/{repo}/", "/v2/elsewhere/")
    r = c.req("GET", other)
    assert r.status == 404 and codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    r = c.req("GET", f"/v2/{repo}/blobs/uploads/../../etc")
    assert r.status in (400, 404)


def test_sha512_blobs(c: Client, repo: str) -> None:
    data = os.urandom(5000)
    d = sha512(data)
    assert c.req("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", body=data).status == 201
    r = c.req("GET", f"/v2/{repo}/blobs/{d}")
    assert r.status == 200 and r.data == data and r.headers["Docker-Content-Digest"] == d
    # Chunked, and the algorithm is only known at the closing PUT.
    data2 = os.urandom(7000)
    loc = c.req("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    loc = c.req("PATCH", loc, body=data2[:3000], Content_Range="0-2999").headers["Location"]
    r = c.req("PUT", f"{loc}?digest={sha512(data2)}", body=data2[3000:])
    assert r.status == 201, r.data
    assert c.req("GET", f"/v2/{repo}/blobs/{sha512(data2)}").data == data2


def test_range_requests(c: Client, repo: str) -> None:
    data = bytes(range(256)) * 40
    d = c.push_blob(repo, data)
    size = len(data)
    for header, start, end in [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=100-", 100, size - 1),
        ("bytes=-5", size - 5, size - 1),
        ("bytes=9000-99999", 9000, size - 1),
    ]:
        r = c.req("GET", f"/v2/{repo}/blobs/{d}", Range=header)
        assert r.status == 206, header
        assert r.data == data[start : end + 1], header
        assert r.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
        assert r.headers["Content-Length"] == str(end - start + 1)
    for bad in ["bytes=20000-", "bytes=50-10", "bytes=-0", "items=0-1", "bytes=x-y"]:
        r = c.req("GET", f"/v2/{repo}/blobs/{d}", Range=bad)
        assert r.status == 416, bad
        assert r.headers["Content-Range"] == f"bytes */{size}"


def test_blobs_are_per_repository_and_mountable(c: Client, repo: str) -> None:
    data = os.urandom(1000)
    d = c.push_blob(repo + "/src", data)
    r = c.req("GET", f"/v2/{repo}/dst/blobs/{d}")
    assert r.status == 404 and codes(r) == ["BLOB_UNKNOWN"]
    # Mount from a repository that lacks the blob: falls back to an upload session.
    r = c.req("POST", f"/v2/{repo}/dst/blobs/uploads/?mount={d}&from={repo}/none")
    assert r.status == 202 and "/blobs/uploads/" in r.headers["Location"]
    r = c.req("POST", f"/v2/{repo}/dst/blobs/uploads/?mount={d}&from={repo}/src")
    assert r.status == 201
    assert r.headers["Location"] == f"/v2/{repo}/dst/blobs/{d}"
    assert r.headers["Docker-Content-Digest"] == d
    assert c.req("GET", f"/v2/{repo}/dst/blobs/{d}").data == data


def test_blob_delete(c: Client, repo: str) -> None:
    d = c.push_blob(repo, b"to delete")
    c.push_blob(repo + "/keep", b"to delete")
    assert c.req("DELETE", f"/v2/{repo}/blobs/{d}").status == 202
    r = c.req("GET", f"/v2/{repo}/blobs/{d}")
    assert r.status == 404 and codes(r) == ["BLOB_UNKNOWN"]
    assert c.req("DELETE", f"/v2/{repo}/blobs/{d}").status == 404
    # Another repository's link is untouched.
    assert c.req("GET", f"/v2/{repo}/keep/blobs/{d}").data == b"to delete"


# -- manifests ----------------------------------------------------------------------------


def test_manifest_put_get_head_keep_bytes(c: Client, repo: str) -> None:
    raw = c.push_image(repo, "v1")
    d = sha256(raw)
    for ref in ("v1", d):
        r = c.req("GET", f"/v2/{repo}/manifests/{ref}", Accept=OCI_MANIFEST)
        assert r.status == 200
        assert r.data == raw
        assert r.headers["Content-Type"] == OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == d
        assert r.headers["Content-Length"] == str(len(raw))
        r = c.req("HEAD", f"/v2/{repo}/manifests/{ref}")
        assert r.status == 200 and r.data == b""
        assert r.headers["Content-Length"] == str(len(raw))
        assert r.headers["Docker-Content-Digest"] == d


def test_manifest_put_response(c: Client, repo: str) -> None:
    cfg = b"{}"
    doc = manifest_doc(c.push_blob(repo, cfg), 2, c.push_blob(repo, b"l"), 1)
    raw = json.dumps(doc).encode()
    r = c.push_manifest(repo, "latest", raw)
    assert r.status == 201
    assert r.headers["Docker-Content-Digest"] == sha256(raw)
    assert r.headers["Location"] == f"/v2/{repo}/manifests/{sha256(raw)}"
    assert "OCI-Subject" not in r.headers


def test_manifest_put_by_digest(c: Client, repo: str) -> None:
    cfg = b"{}"
    doc = manifest_doc(c.push_blob(repo, cfg), 2, c.push_blob(repo, b"l"), 1)
    raw = json.dumps(doc).encode()
    r = c.push_manifest(repo, sha256(b"not it"), raw)
    assert r.status == 400 and codes(r) == ["DIGEST_INVALID"]
    r = c.push_manifest(repo, sha256(raw), raw)
    assert r.status == 201
    assert c.req("GET", f"/v2/{repo}/manifests/{sha256(raw)}").data == raw
    # sha512 references work too, and the digest is kept in that algorithm.
    r = c.push_manifest(repo, sha512(raw), raw)
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == sha512(raw)
    assert c.req("GET", f"/v2/{repo}/manifests/{sha512(raw)}").data == raw
    # Not tagged.
    assert c.req("GET", f"/v2/{repo}/tags/list").json()["tags"] == []


def test_manifest_with_unknown_blobs(c: Client, repo: str) -> None:
    cfg = sha256(b"missing config")
    layer = sha256(b"missing layer")
    r = c.push_manifest(repo, "x", manifest_doc(cfg, 14, layer, 13))
    assert r.status == 400
    errors = json.loads(r.data)["errors"]
    assert [e["code"] for e in errors] == ["MANIFEST_BLOB_UNKNOWN"] * 2
    assert {e["detail"]["digest"] for e in errors} == {cfg, layer}
    assert c.req("GET", f"/v2/{repo}/manifests/x").status == 404


def test_foreign_layers_need_not_be_pushed(c: Client, repo: str) -> None:
    doc = manifest_doc(c.push_blob(repo, b"{}"), 2, sha256(b"foreign"), 7)
    doc["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    doc["layers"][0]["urls"] = ["https://example.invalid/layer"]
    assert c.push_manifest(repo, "x", doc).status == 201


def test_invalid_manifests(c: Client, repo: str) -> None:
    r = c.push_manifest(repo, "x", b"{not json")
    assert r.status == 400 and codes(r) == ["MANIFEST_INVALID"]
    r = c.push_manifest(repo, "x", b"[1, 2]")
    assert r.status == 400 and codes(r) == ["MANIFEST_INVALID"]
    doc = manifest_doc(sha256(b"c"), 1, sha256(b"l"), 1)
    doc["layers"][0]["size"] = "big"
    r = c.push_manifest(repo, "x", doc)
    assert r.status == 400 and codes(r) == ["MANIFEST_INVALID"]
    assert "size" in json.loads(r.data)["errors"][0]["message"]
    # Content-Type and mediaType must agree.
    doc = manifest_doc(c.push_blob(repo, b"{}"), 2, c.push_blob(repo, b"l"), 1)
    r = c.push_manifest(repo, "x", doc, media_type=OCI_INDEX)
    assert r.status == 400 and codes(r) == ["MANIFEST_INVALID"]
    r = c.push_manifest(repo, "bad!tag", doc)
    assert r.status == 400 and codes(r) == ["TAG_INVALID"]


def test_manifest_too_large(c: Client, repo: str) -> None:
    raw = json.dumps({"schemaVersion": 2, "pad": "x" * (9 * 1024 * 1024)}).encode()
    r = c.push_manifest(repo, "big", raw)
    assert r.status == 413


def test_index_needs_its_children(c: Client, repo: str) -> None:
    child = c.push_image(repo, "child")
    entry = {"mediaType": OCI_MANIFEST, "digest": sha256(child), "size": len(child)}
    missing = {"mediaType": OCI_MANIFEST, "digest": sha256(b"nope"), "size": 4}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry, missing]}
    r = c.push_manifest(repo, "multi", index, OCI_INDEX)
    assert r.status == 400 and codes(r) == ["MANIFEST_BLOB_UNKNOWN"]
    index["manifests"] = [entry]
    r = c.push_manifest(repo, "multi", index, OCI_INDEX)
    assert r.status == 201
    r = c.req("GET", f"/v2/{repo}/manifests/multi")
    assert r.headers["Content-Type"] == OCI_INDEX


def test_media_type_comes_from_body_when_content_type_is_generic(c: Client, repo: str) -> None:
    doc = manifest_doc(c.push_blob(repo, b"{}"), 2, c.push_blob(repo, b"l"), 1)
    doc["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    r = c.push_manifest(repo, "d", doc, media_type="application/json")
    assert r.status == 201
    r = c.req("GET", f"/v2/{repo}/manifests/d")
    assert r.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"


def test_manifest_unknown_and_name_unknown(c: Client, repo: str) -> None:
    r = c.req("GET", f"/v2/{repo}/never/manifests/latest")
    assert r.status == 404 and codes(r) == ["NAME_UNKNOWN"]
    c.push_image(repo, "v1")
    r = c.req("GET", f"/v2/{repo}/manifests/v2")
    assert r.status == 404 and codes(r) == ["MANIFEST_UNKNOWN"]
    assert c.req("HEAD", f"/v2/{repo}/manifests/v2").status == 404


def test_manifest_delete_by_tag_and_digest(c: Client, repo: str) -> None:
    raw = c.push_image(repo, "a")
    d = sha256(raw)
    assert c.push_manifest(repo, "b", raw).status == 201
    assert c.push_manifest(repo, "c", raw).status == 201
    # Deleting a tag removes only that tag.
    assert c.req("DELETE", f"/v2/{repo}/manifests/a").status == 202
    assert c.req("GET", f"/v2/{repo}/manifests/a").status == 404
    assert c.req("GET", f"/v2/{repo}/manifests/b").status == 200
    assert c.req("DELETE", f"/v2/{repo}/manifests/a").status == 404
    # Deleting the digest removes the manifest and every tag on it.
    assert c.req("DELETE", f"/v2/{repo}/manifests/{d}").status == 202
    for ref in ("b", "c", d):
        r = c.req("GET", f"/v2/{repo}/manifests/{ref}")
        assert r.status == 404 and codes(r) == ["MANIFEST_UNKNOWN"]
    assert c.req("DELETE", f"/v2/{repo}/manifests/{d}").status == 404
    assert c.req("GET", f"/v2/{repo}/tags/list").json()["tags"] == []


def test_retag_moves_the_tag(c: Client, repo: str) -> None:
    one = c.push_image(repo, "latest", layer=b"one")
    two = c.push_image(repo, "latest", layer=b"two")
    assert one != two
    assert c.req("GET", f"/v2/{repo}/manifests/latest").data == two
    assert c.req("GET", f"/v2/{repo}/manifests/{sha256(one)}").data == one


# -- listing ------------------------------------------------------------------------------


def test_tags_list_and_pagination(c: Client, repo: str) -> None:
    raw = c.push_image(repo, "v0")
    tags = ["v0", "A", "b", "latest", "V1", "v1.0", "v10", "v2"]
    for t in tags[1:]:
        assert c.push_manifest(repo, t, raw).status == 201
    r = c.req("GET", f"/v2/{repo}/tags/list")
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    assert r.json() == {"name": repo, "tags": sorted(tags)}
    assert "Link" not in r.headers
    # Walk the pages by following Link.
    seen: list[str] = []
    url = f"/v2/{repo}/tags/list?n=3"
    pages = 0
    while url:
        r = c.req("GET", url)
        assert r.status == 200
        page = r.json()["tags"]
        assert len(page) <= 3
        seen += page
        pages += 1
        link = r.headers.get("Link")
        url = link[1 : link.index(">")] if link else ""
        assert 'rel="next"' in (link or 'rel="next"')
    assert seen == sorted(tags) and pages == 3
    r = c.req("GET", f"/v2/{repo}/tags/list?n=2&last=b")
    assert r.json()["tags"] == ["latest", "v0"]
    r = c.req("GET", f"/v2/{repo}/tags/list?last=v1.0")
    assert r.json()["tags"] == ["v10", "v2"]
    r = c.req("GET", f"/v2/{repo}/tags/list?n=0")
    assert r.json()["tags"] == [] and "Link" not in r.headers
    r = c.req("GET", f"/v2/{repo}/tags/list?n=-1")
    assert r.status == 400 and codes(r) == ["PAGINATION_NUMBER_INVALID"]


def test_tags_of_unknown_repository(c: Client, repo: str) -> None:
    r = c.req("GET", f"/v2/{repo}/nothing/tags/list")
    assert r.status == 404 and codes(r) == ["NAME_UNKNOWN"]


def test_catalog(c: Client, repo: str) -> None:
    names = [f"{repo}/cat-{i}" for i in range(5)]
    for n in names:
        c.push_blob(n, b"x")
    r = c.req("GET", "/v2/_catalog")
    assert r.status == 200
    everything = r.json()["repositories"]
    assert everything == sorted(everything)
    assert set(names) <= set(everything)
    seen: list[str] = []
    url = "/v2/_catalog?n=2"
    while url:
        r = c.req("GET", url)
        seen += r.json()["repositories"]
        link = r.headers.get("Link")
        url = link[1 : link.index(">")] if link else ""
    assert seen == everything
    r = c.req("GET", f"/v2/_catalog?n=2&last={names[1]}")
    assert r.json()["repositories"][:2] == names[2:4]


# -- referrers ----------------------------------------------------------------------------


def test_referrers(c: Client, repo: str) -> None:
    subject_raw = c.push_image(repo, "app")
    subject = {"mediaType": OCI_MANIFEST, "digest": sha256(subject_raw), "size": len(subject_raw)}
    empty = c.push_blob(repo, b"{}")
    empty_desc = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}
    sbom = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": empty_desc,
        "layers": [empty_desc],
        "subject": subject,
        "annotations": {"org.example": "sbom"},
    }
    r = c.push_manifest(repo, sha256(json.dumps(sbom).encode()), sbom)
    assert r.status == 201
    assert r.headers["OCI-Subject"] == subject["digest"]
    sig_cfg = c.push_blob(repo, b'{"sig": 1}')
    sig = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.example.sig.config",
            "digest": sig_cfg,
            "size": 10,
        },
        "layers": [],
        "subject": subject,
    }
    sig_raw = json.dumps(sig).encode()
    assert c.push_manifest(repo, "sig", sig_raw).status == 201
    # The subject need not exist.
    orphan = dict(sig, subject={**subject, "digest": sha256(b"gone")})
    assert c.push_manifest(repo, "orphan", orphan).status == 201

    r = c.req("GET", f"/v2/{repo}/referrers/{subject['digest']}")
    assert r.status == 200 and r.headers["Content-Type"] == OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    by_type = {m["artifactType"]: m for m in index["manifests"]}
    assert set(by_type) == {"application/vnd.example.sbom", "application/vnd.example.sig.config"}
    assert by_type["application/vnd.example.sbom"]["annotations"] == {"org.example": "sbom"}
    assert by_type["application/vnd.example.sig.config"] == {
        "mediaType": OCI_MANIFEST,
        "digest": sha256(sig_raw),
        "size": len(sig_raw),
        "artifactType": "application/vnd.example.sig.config",
    }
    r = c.req(
        "GET", f"/v2/{repo}/referrers/{subject['digest']}?artifactType=application/vnd.example.sbom"
    )
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["artifactType"] for m in r.json()["manifests"]] == ["application/vnd.example.sbom"]
    # Deleting a referrer removes it from the list.
    assert c.req("DELETE", f"/v2/{repo}/manifests/{sha256(sig_raw)}").status == 202
    r = c.req("GET", f"/v2/{repo}/referrers/{subject['digest']}")
    assert [m["artifactType"] for m in r.json()["manifests"]] == ["application/vnd.example.sbom"]
    # No referrers: an empty index, not 404.
    r = c.req("GET", f"/v2/{repo}/referrers/{sha256(b'nothing')}")
    assert r.status == 200 and r.json()["manifests"] == []
    r = c.req("GET", f"/v2/{repo}/referrers/sha256:zz")
    assert r.status == 400


# -- names, methods, HTTP plumbing ------------------------------------------------------


def test_invalid_names(c: Client) -> None:
    for name in ["UPPER", "a//b", "-a", "a/", "a..b"]:
        r = c.req("GET", f"/v2/{name}/tags/list")
        assert r.status in (400, 404), name
        if r.status == 400:
            assert codes(r) == ["NAME_INVALID"], name
    r = c.req("GET", "/v2/UPPER/tags/list")
    assert r.status == 400 and codes(r) == ["NAME_INVALID"]


def test_wrong_method(c: Client, repo: str) -> None:
    r = c.req("POST", f"/v2/{repo}/tags/list")
    assert r.status == 405 and codes(r) == ["UNSUPPORTED"]


def test_keep_alive_survives_errors(reg: RegistryServer, repo: str) -> None:
    """Error answers to requests with bodies must not desynchronise the connection."""
    host, port = reg.host.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for _ in range(3):
            body = b"x" * 5000
            conn.request("PUT", f"/v2/{repo}/manifests/{sha256(b'nope')}", body=body)
            r = conn.getresponse()
            r.read()
            assert r.status == 400
            conn.request("POST", f"/v2/{repo}/blobs/uploads/?digest={sha256(b'a')}", body=b"b")
            r = conn.getresponse()
            r.read()
            assert r.status == 400
            conn.request("GET", "/v2/")
            r = conn.getresponse()
            assert r.read() == b"{}" and r.status == 200
    finally:
        conn.close()


def test_expect_100_continue(reg: RegistryServer, repo: str) -> None:
    host, port = reg.host.rsplit(":", 1)
    data = os.urandom(2000)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        head = (
            f"POST /v2/{repo}/blobs/uploads/?digest={sha256(data)} HTTP/1.1\r\n"
            f"Host: {reg.host}\r\nContent-Length: {len(data)}\r\nExpect: 100-continue\r\n\r\n"
        )
        s.sendall(head.encode())
        first = s.recv(100)
        assert first.startswith(b"HTTP/1.1 100"), first
        s.sendall(data)
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 201"), reply


def test_content_length_on_every_response(c: Client, repo: str) -> None:
    d = c.push_blob(repo, b"abc")
    for method, path in [
        ("GET", "/v2/"),
        ("GET", f"/v2/{repo}/blobs/{d}"),
        ("DELETE", f"/v2/{repo}/blobs/{sha256(b'zz')}"),
        ("POST", f"/v2/{repo}/blobs/uploads/"),
        ("GET", f"/v2/{repo}/tags/list"),
    ]:
        r = c.req(method, path)
        assert "Content-Length" in r.headers, (method, path)
        assert int(r.headers["Content-Length"]) == len(r.data)


# -- auth, TLS, read-only -------------------------------------------------------------------


def _htpasswd_tool(path: Path, user: str, password: str, flag: str) -> None:
    import shutil
    import subprocess

    if shutil.which("htpasswd") is None:
        pytest.skip("htpasswd not installed")
    args = ["htpasswd", "-b", flag]
    if path.exists():
        args.remove("-b")
        args.insert(1, "-b")
    else:
        args.append("-c")
    subprocess.run([*args, str(path), user, password], check=True, capture_output=True)


@pytest.mark.parametrize("flag", ["-m", "-s", "-B"])
def test_basic_auth_with_htpasswd_formats(tmp_path: Path, flag: str) -> None:
    if flag == "-B":
        pytest.importorskip("bcrypt")
    path = tmp_path / "htpasswd"
    _htpasswd_tool(path, "alice", "s3cret", flag)
    with RegistryServer(htpasswd=path) as reg:
        c = Client(reg)
        r = c.req("GET", "/v2/")
        assert r.status == 401 and codes(r) == ["UNAUTHORIZED"]
        assert r.headers["WWW-Authenticate"].startswith("Basic ")
        bad = urllib3.make_headers(basic_auth="alice:wrong")["authorization"]
        assert c.req("GET", "/v2/", Authorization=bad).status == 401
        good = urllib3.make_headers(basic_auth="alice:s3cret")["authorization"]
        c.headers["Authorization"] = good
        assert c.req("GET", "/v2/").status == 200
        c.push_image("auth/app", "v1")
        del c.headers["Authorization"]
        assert c.req("GET", "/v2/auth/app/manifests/v1").status == 401
        assert c.req("POST", "/v2/auth/app/blobs/uploads/", body=b"x" * 100).status == 401


def test_auth_fixture_and_tls(pycrane_registry_factory: Any) -> None:
    reg = pycrane_registry_factory(username="bob", password="pw", tls=True)
    assert reg.username == "bob" and reg.password == "pw"
    assert reg.url.startswith("https://")
    c = Client(reg, ca_certs=str(reg.ca_cert))
    assert c.req("GET", "/v2/").status == 401
    c.headers.update(urllib3.make_headers(basic_auth="bob:pw"))
    raw = c.push_image("tls/app", "v1", layer=os.urandom(3 * 1024 * 1024))
    assert c.req("GET", "/v2/tls/app/manifests/v1").data == raw
    layer = json.loads(raw)["layers"][0]
    r = c.req("GET", f"/v2/tls/app/blobs/{layer['digest']}")
    assert r.status == 200 and sha256(r.data) == layer["digest"]


def test_expect_100_is_refused_without_credentials(pycrane_registry_factory: Any) -> None:
    reg = pycrane_registry_factory(username="u", password="p")
    host, port = reg.host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(
            b"POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"
        )
        reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 401"), reply


def test_read_only(tmp_path: Path) -> None:
    with RegistryServer(disk=tmp_path) as reg:
        raw = Client(reg).push_image("ro/app", "v1")
    with RegistryServer(disk=tmp_path, read_only=True) as reg:
        c = Client(reg)
        assert c.req("GET", "/v2/ro/app/manifests/v1").data == raw
        for method, path in [
            ("POST", "/v2/ro/app/blobs/uploads/"),
            ("PUT", "/v2/ro/app/manifests/v2"),
            ("DELETE", "/v2/ro/app/manifests/v1"),
        ]:
            r = c.req(method, path, body=b"{}")
            assert r.status == 405 and codes(r) == ["UNSUPPORTED"], (method, path)
        assert c.req("GET", "/v2/ro/app/manifests/v1").status == 200
        host, port = reg.host.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(
                b"PUT /v2/ro/app/manifests/v3 HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n"
            )
            assert s.recv(4096).startswith(b"HTTP/1.1 405")


def test_session_fixture(pycrane_registry: RegistryServer) -> None:
    assert pycrane_registry.host.startswith("127.0.0.1:")
    assert pycrane_registry.username is None and pycrane_registry.password is None
    assert Client(pycrane_registry).req("GET", "/v2/").status == 200


def test_conditional_get(c: Client, repo: str) -> None:
    raw = c.push_image(repo, "v1")
    d = sha256(raw)
    r = c.req("GET", f"/v2/{repo}/manifests/v1")
    assert r.headers["ETag"] == f'"{d}"'
    r = c.req("GET", f"/v2/{repo}/manifests/v1", If_None_Match=f'"{d}"')
    assert r.status == 304 and r.data == b"" and r.headers["Docker-Content-Digest"] == d
    r = c.req("GET", f"/v2/{repo}/manifests/v1", If_None_Match=f'"{sha256(b"old")}"')
    assert r.status == 200 and r.data == raw
    layer = json.loads(raw)["layers"][0]["digest"]
    r = c.req("GET", f"/v2/{repo}/blobs/{layer}", If_None_Match=f'"{layer}"')
    assert r.status == 304 and r.data == b""


def test_serve_in_a_thread_with_ready_callback(capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    from pycrane.registry import serve

    started: list[RegistryServer] = []
    ready = threading.Event()

    def on_ready(server: RegistryServer) -> None:
        started.append(server)
        ready.set()

    t = threading.Thread(target=serve, kwargs={"ready": on_ready}, daemon=True)
    t.start()
    assert ready.wait(30)
    reg = started[0]
    url = reg.url
    assert Client(reg).req("GET", "/v2/").status == 200
    reg.stop()
    t.join(30)
    assert not t.is_alive()
    assert capsys.readouterr().err == f"serving on {url}\n"


def test_addresses() -> None:
    from pycrane.errors import PycraneError
    from pycrane.registry.server import parse_address

    assert parse_address("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert parse_address(":0") == ("0.0.0.0", 0)
    assert parse_address("[::1]:80") == ("::1", 80)
    with pytest.raises(PycraneError, match="expected HOST:PORT"):
        parse_address("127.0.0.1:http")
    with (
        RegistryServer("127.0.0.1:0") as a,
        pytest.raises(PycraneError, match="cannot listen"),
        RegistryServer(f"127.0.0.1:{a.port}"),
    ):
        pass


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_ipv6_loopback() -> None:
    try:
        server = RegistryServer("[::1]:0").start()
    except Exception as e:  # IPv6 loopback disabled on this machine
        pytest.skip(f"::1 unavailable: {e}")
    with server:
        assert server.host.startswith("[::1]:")
        assert Client(server).req("GET", "/v2/").status == 200


def _raw_exchange(reg: RegistryServer, payload: bytes, responses: int) -> list[bytes]:
    """Send raw bytes, read ``responses`` HTTP responses (each with Content-Length)."""
    host, port = reg.host.rsplit(":", 1)
    out: list[bytes] = []
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(payload)
        buf = b""
        while len(out) < responses:
            while b"\r\n\r\n" not in buf:
                more = s.recv(65536)
                if not more:
                    return out
                buf += more
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            while len(buf) < length:
                buf += s.recv(65536)
            out.append(head + b"\r\n\r\n" + buf[:length])
            buf = buf[length:]
    return out


def test_chunked_extensions_trailers_and_pipelining(reg: RegistryServer, repo: str) -> None:
    data = b"hello chunked world"
    d = sha256(data)
    body = b"5;ext=1\r\nhello\r\n8\r\n chunked\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
    payload = (
        f"POST /v2/{repo}/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode() + body
    # A second request pipelined right behind the first.
    payload += f"GET /v2/{repo}/blobs/{d} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    first, second = _raw_exchange(reg, payload, 2)
    assert first.startswith(b"HTTP/1.1 201"), first
    assert second.startswith(b"HTTP/1.1 200") and second.endswith(data), second


def test_malformed_chunked_body_is_refused(reg: RegistryServer, repo: str) -> None:
    payload = (
        f"POST /v2/{repo}/blobs/uploads/?digest={sha256(b'x')} HTTP/1.1\r\nHost: x\r\n"
        "Transfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n"
    ).encode()
    (reply,) = _raw_exchange(reg, payload, 1)
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert b"BLOB_UPLOAD_INVALID" in reply and b"Connection: close" in reply


def test_a_storage_bug_is_a_500_and_the_server_keeps_serving() -> None:
    from pycrane.registry.storage import MemoryStorage

    class Broken(MemoryStorage):
        def tags(self, repo: str) -> list[str] | None:
            raise RuntimeError("boom")

    with RegistryServer(storage=Broken()) as reg:
        c = Client(reg)
        r = c.req("GET", "/v2/any/tags/list")
        assert r.status == 500 and codes(r) == ["UNKNOWN"]
        assert "RuntimeError" in json.loads(r.data)["errors"][0]["message"]
        assert c.req("GET", "/v2/").status == 200


def test_idle_uploads_of_the_memory_storage_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    from pycrane.registry import storage

    with RegistryServer() as reg:
        c = Client(reg)
        first = c.req("POST", "/v2/idle/blobs/uploads/").headers["Location"]
        assert c.req("PATCH", first, body=b"x" * 1000).status == 202
        assert c.req("GET", first).status == 204
        c.req("POST", "/v2/idle/blobs/uploads/")  # nothing idle yet: the first one stays
        assert c.req("GET", first).status == 204
        monkeypatch.setattr(storage, "UPLOAD_IDLE_LIMIT", 0.0)
        c.req("POST", "/v2/idle/blobs/uploads/")
        gone = c.req("GET", first)
        assert gone.status == 404 and b"BLOB_UPLOAD_UNKNOWN" in gone.data
