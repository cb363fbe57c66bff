"""One conformance suite for the registry's storage roles, run over every implementation.

The HTTP tests reach storage through the handler; this suite calls each role of
:class:`pycrane.registry.storage.Storage` directly (``BlobReader``, ``BlobManager``,
``Ingester``, ``ManifestStore``, ``Catalog``), so a new backend is checked against
the same contract as the memory and disk ones.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycrane.registry.apierrors import ApiError
from pycrane.registry.manifests import PushedManifest, inspect_manifest
from pycrane.registry.storage import MemoryStorage, Storage
from pycrane.v1.digest import Digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(params=["memory", "disk"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "memory":
        yield MemoryStorage()
        return
    from pycrane.registry.disk import DiskStorage

    disk = DiskStorage(tmp_path / "root", fsync=False)
    try:
        yield disk
    finally:
        disk.close()


def body(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def d(data: bytes) -> Digest:
    return Digest.from_bytes(data)


def read(storage: Storage, repo: str, digest: Digest) -> bytes:
    f, size = storage.blob_open(repo, digest)
    with f:
        data = f.read()
    assert len(data) == size
    return data


def code(exc: pytest.ExceptionInfo[ApiError]) -> str:
    return exc.value.code


def manifest(
    storage: Storage, repo: str, extra: dict[str, object] | None = None
) -> tuple[PushedManifest, bytes]:
    """A small image manifest (its config blob stored in ``repo``) and its raw bytes."""
    cfg = b"{}"
    storage.blob_put(repo, d(cfg), body(cfg))
    config = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": str(d(cfg)), "size": 2}
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []}
    raw = json.dumps({**doc, **(extra or {})}).encode()
    return inspect_manifest(raw, OCI_MANIFEST, d(raw)), raw


# -- BlobReader and BlobManager ----------------------------------------------------------


def test_put_then_read_through_the_repository_only(storage: Storage) -> None:
    data = b"hello blob"
    assert storage.blob_put("a", d(data), body(data)) == len(data)
    assert storage.blob_size("a", d(data)) == len(data)
    assert read(storage, "a", d(data)) == data
    assert storage.blob_size("b", d(data)) is None
    with pytest.raises(ApiError) as e:
        storage.blob_open("b", d(data))
    assert code(e) == "BLOB_UNKNOWN"


def test_put_with_the_wrong_digest_stores_nothing(storage: Storage) -> None:
    with pytest.raises(ApiError) as e:
        storage.blob_put("a", d(b"other"), body(b"data"))
    assert code(e) == "DIGEST_INVALID"
    assert storage.blob_size("a", d(b"other")) is None
    assert storage.blob_size("a", d(b"data")) is None


def test_put_of_an_existing_digest_is_idempotent(storage: Storage) -> None:
    data = b"same"
    storage.blob_put("a", d(data), body(data))
    storage.blob_put("a", d(data), body(data))
    storage.blob_put("b", d(data), body(data))
    assert read(storage, "a", d(data)) == read(storage, "b", d(data)) == data


def test_mount_and_delete(storage: Storage) -> None:
    data = b"shared"
    storage.blob_put("src", d(data), body(data))
    assert not storage.blob_mount("dst", d(data), "nowhere")
    assert storage.blob_mount("dst", d(data), "src")
    assert read(storage, "dst", d(data)) == data
    assert storage.blob_delete("src", d(data))
    assert not storage.blob_delete("src", d(data))
    assert storage.blob_size("src", d(data)) is None
    assert read(storage, "dst", d(data)) == data  # content stays while another links it


def test_sha512_blobs(storage: Storage) -> None:
    data = b"long digest"
    digest = Digest.from_bytes(data, "sha512")
    storage.blob_put("a", digest, body(data))
    assert read(storage, "a", digest) == data


# -- Ingester ----------------------------------------------------------------------------


def test_upload_in_chunks_then_finish(storage: Storage) -> None:
    s = storage.upload_start("a")
    assert storage.upload_offset("a", s) == 0
    assert storage.upload_write("a", s, body(b"hello "), 0) == 6
    assert storage.upload_write("a", s, body(b"world"), None) == 11
    assert storage.upload_offset("a", s) == 11
    assert storage.upload_finish("a", s, d(b"hello world")) == 11
    assert read(storage, "a", d(b"hello world")) == b"hello world"
    with pytest.raises(ApiError) as e:
        storage.upload_offset("a", s)
    assert code(e) == "BLOB_UPLOAD_UNKNOWN"


def test_a_chunk_at_the_wrong_offset_is_416_and_changes_nothing(storage: Storage) -> None:
    s = storage.upload_start("a")
    storage.upload_write("a", s, body(b"abc"), 0)
    with pytest.raises(ApiError) as e:
        storage.upload_write("a", s, body(b"xyz"), 1)
    assert code(e) == "RANGE_INVALID" and e.value.status == 416
    assert e.value.headers["Range"] == "0-2"
    assert storage.upload_offset("a", s) == 3
    storage.upload_write("a", s, body(b"def"), 3)
    storage.upload_finish("a", s, d(b"abcdef"))


def test_finish_with_the_wrong_digest_ends_the_session(storage: Storage) -> None:
    s = storage.upload_start("a")
    storage.upload_write("a", s, body(b"data"), None)
    with pytest.raises(ApiError) as e:
        storage.upload_finish("a", s, d(b"other"))
    assert code(e) == "DIGEST_INVALID"
    assert storage.blob_size("a", d(b"data")) is None
    with pytest.raises(ApiError):
        storage.upload_offset("a", s)


def test_finish_of_an_existing_digest(storage: Storage) -> None:
    storage.blob_put("a", d(b"dup"), body(b"dup"))
    s = storage.upload_start("b")
    storage.upload_write("b", s, body(b"dup"), None)
    assert storage.upload_finish("b", s, d(b"dup")) == 3
    assert read(storage, "b", d(b"dup")) == b"dup"


def test_cancel_and_unknown_sessions(storage: Storage) -> None:
    s = storage.upload_start("a")
    storage.upload_write("a", s, body(b"gone"), None)
    storage.upload_cancel("a", s)
    for call in (
        lambda: storage.upload_offset("a", s),
        lambda: storage.upload_cancel("a", s),
        lambda: storage.upload_write("a", s, body(b"x"), None),
        lambda: storage.upload_finish("a", s, d(b"gone")),
        lambda: storage.upload_offset("a", "0" * 32),
    ):
        with pytest.raises(ApiError) as e:
            call()
        assert code(e) == "BLOB_UPLOAD_UNKNOWN"


def test_a_session_belongs_to_its_repository(storage: Storage) -> None:
    s = storage.upload_start("a")
    with pytest.raises(ApiError) as e:
        storage.upload_write("b", s, body(b"x"), None)
    assert code(e) == "BLOB_UPLOAD_UNKNOWN"
    assert storage.upload_offset("a", s) == 0


def test_concurrent_uploads_of_one_blob(storage: Storage) -> None:
    data = b"x" * 300_000
    errors: list[BaseException] = []

    def upload(repo: str) -> None:
        try:
            s = storage.upload_start(repo)
            storage.upload_write(repo, s, body(data), None)
            storage.upload_finish(repo, s, d(data))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=upload, args=(f"r{i % 3}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(3):
        assert read(storage, f"r{i}", d(data)) == data


# -- ManifestStore and Catalog -----------------------------------------------------------


def test_manifests_tags_and_catalog(storage: Storage) -> None:
    assert storage.tags("app") is None
    m, raw = manifest(storage, "app")
    storage.manifest_put("app", m, raw, "v1")
    storage.manifest_put("app", m, raw, "latest")
    for ref in ("v1", "latest", m.digest):
        got = storage.manifest_get("app", ref)
        assert got is not None and got.raw == raw and got.media_type == OCI_MANIFEST
    assert storage.manifest_get("other", m.digest) is None
    assert storage.tags("app") == ["latest", "v1"]
    assert "app" in storage.repositories()
    assert storage.tag_delete("app", "latest")
    assert not storage.tag_delete("app", "latest")
    assert storage.tags("app") == ["v1"]
    assert storage.manifest_delete("app", m.digest)
    assert not storage.manifest_delete("app", m.digest)
    assert storage.manifest_get("app", "v1") is None
    assert storage.tags("app") == []


def test_retag_moves_the_tag(storage: Storage) -> None:
    one, raw1 = manifest(storage, "app", {"annotations": {"n": "1"}})
    two, raw2 = manifest(storage, "app", {"annotations": {"n": "2"}})
    storage.manifest_put("app", one, raw1, "t")
    storage.manifest_put("app", two, raw2, "t")
    got = storage.manifest_get("app", "t")
    assert got is not None and got.digest == two.digest
    assert storage.manifest_get("app", one.digest) is not None  # untagged, still there


def test_referrers(storage: Storage) -> None:
    subject, sraw = manifest(storage, "app")
    storage.manifest_put("app", subject, sraw, "v1")
    sdesc = {"mediaType": OCI_MANIFEST, "digest": str(subject.digest), "size": subject.size}
    extra: dict[str, object] = {"subject": sdesc, "artifactType": "application/vnd.example"}
    ref, rraw = manifest(storage, "app", extra)
    storage.manifest_put("app", ref, rraw, None)
    listed = storage.referrers("app", subject.digest)
    assert [e["digest"] for e in listed] == [str(ref.digest)]
    assert listed[0]["artifactType"] == "application/vnd.example"
    assert storage.referrers("other", subject.digest) == []
    assert storage.manifest_delete("app", ref.digest)
    assert storage.referrers("app", subject.digest) == []


def test_repositories_are_sorted_and_nested_names_work(storage: Storage) -> None:
    for repo in ("b/c/d", "a", "b"):
        storage.blob_put(repo, d(b"x"), body(b"x"))
    assert [r for r in storage.repositories() if r in ("a", "b", "b/c/d")] == ["a", "b", "b/c/d"]
