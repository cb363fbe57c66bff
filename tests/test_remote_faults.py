"""Faults between client and registry: every pull ends verified or with one clear error."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pycrane.errors import (
    DigestMismatch,
    ManifestError,
    NotFoundError,
    PycraneError,
    RegistryError,
    TransportError,
    VerificationError,
)
from pycrane.random import random_image
from pycrane.remote import Client, Credential, RetryPolicy
from pycrane.v1.digest import Digest
from pycrane.v1.image import Image
from tests.faultproxy import Fault, FaultProxy
from tests.fixtures_distribution import free_port

pytestmark = pytest.mark.distribution

FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05, max_retry_after=1.0)
_n = itertools.count()

LAYER = 300_000  # a few hundred KiB, so bodies span many socket writes


@pytest.fixture
def proxy(distribution: Any) -> Iterator[FaultProxy]:
    p = FaultProxy(distribution.host).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def seeded(distribution: Any) -> tuple[str, Image]:
    """One image pushed directly (no proxy) that the pull tests read through the proxy."""
    img = random_image(2, LAYER, seed=77)
    path = f"faults/img{next(_n)}:v"
    Client().write_image(f"{distribution.host}/{path}", img)
    return path, img


def pull_all(c: Client, ref: str) -> list[bytes]:
    img = c.image(ref)
    out = []
    for layer in img.layers():
        parts = []
        with layer.compressed() as r:
            while chunk := r.read(1 << 16):
                parts.append(chunk)
        out.append(b"".join(parts))
    return out


def expected_layers(img: Image) -> list[bytes]:
    out = []
    for layer in img.layers():
        with layer.compressed() as r:
            out.append(r.read())
    return out


@pytest.mark.parametrize("prefetch", [False, True])
def test_resume_after_drop_mid_blob(
    proxy: FaultProxy, seeded: tuple[str, Image], prefetch: bool
) -> None:
    path, img = seeded
    proxy.add(Fault("drop", match=r"/blobs/sha256:", method="GET", after=100_000, count=2))
    got = pull_all(Client(retry=FAST, prefetch=prefetch), f"{proxy.host}/{path}")
    assert got == expected_layers(img)
    ranges = [e.range for e in proxy.requests("GET", r"/blobs/") if e.range]
    # Two drops: either one per layer, or the resumed request dropped again further on.
    assert len(ranges) == 2
    assert set(ranges) <= {"bytes=100000-", "bytes=200000-"}


@pytest.mark.parametrize("prefetch", [False, True])
def test_resume_when_server_ignores_range(
    proxy: FaultProxy, seeded: tuple[str, Image], prefetch: bool
) -> None:
    path, img = seeded
    proxy.add(Fault("drop", match=r"/blobs/sha256:", method="GET", after=50_000, count=1))
    proxy.add(Fault("ignore_range", match=r"/blobs/", count=-1))
    got = pull_all(Client(retry=FAST, prefetch=prefetch), f"{proxy.host}/{path}")
    assert got == expected_layers(img)
    assert any(e.fault == "ignore_range" for e in proxy.log)


@pytest.mark.parametrize("prefetch", [False, True])
def test_persistent_drop_fails_with_one_line(
    proxy: FaultProxy, seeded: tuple[str, Image], prefetch: bool
) -> None:
    path, _ = seeded
    proxy.add(Fault("drop", match=r"/blobs/sha256:", method="GET", after=1000, count=-1))
    with pytest.raises(TransportError) as ei:
        pull_all(Client(retry=FAST, prefetch=prefetch), f"{proxy.host}/{path}")
    msg = str(ei.value)
    assert "\n" not in msg and "blob" in msg and "connection failed" in msg


@pytest.mark.parametrize("prefetch", [False, True])
def test_corrupt_blob_is_a_digest_error(
    proxy: FaultProxy, seeded: tuple[str, Image], prefetch: bool
) -> None:
    path, _ = seeded
    proxy.add(Fault("corrupt", match=r"/blobs/sha256:", method="GET", after=5, count=-1))
    with pytest.raises(VerificationError, match="digest mismatch"):
        pull_all(Client(retry=FAST, prefetch=prefetch), f"{proxy.host}/{path}")


@pytest.mark.parametrize("prefetch", [False, True])
def test_truncated_body_with_honest_length_is_a_size_error(
    proxy: FaultProxy, seeded: tuple[str, Image], prefetch: bool
) -> None:
    path, _ = seeded
    proxy.add(Fault("truncate", match=r"/blobs/sha256:", method="GET", after=10, count=-1))
    with pytest.raises(VerificationError, match="size mismatch"):
        pull_all(Client(retry=FAST, prefetch=prefetch), f"{proxy.host}/{path}")


def test_5xx_and_429_are_retried(proxy: FaultProxy, seeded: tuple[str, Image]) -> None:
    path, img = seeded
    proxy.add(Fault("status", status=503, match=r"/manifests/", count=2))
    proxy.add(Fault("status", status=429, retry_after="0", match=r"/blobs/", count=1))
    proxy.add(Fault("status", status=502, match=r"/blobs/", count=1))
    got = pull_all(Client(retry=FAST), f"{proxy.host}/{path}")
    assert got == expected_layers(img)
    statuses = [e.status for e in proxy.log]
    assert statuses.count(503) == 2 and statuses.count(429) == 1 and statuses.count(502) == 1


def test_a_busy_first_ping_is_retried(proxy: FaultProxy, seeded: tuple[str, Image]) -> None:
    # On loopback the client tries http before https and, to fall back fast, does not
    # retry the http ping's connection errors; an answer (429, 503) proves the scheme.
    path, img = seeded
    proxy.add(Fault("status", status=429, retry_after="0", match=r"^/v2/$", count=1))
    proxy.add(Fault("status", status=503, match=r"^/v2/$", count=1))
    assert pull_all(Client(retry=FAST), f"{proxy.host}/{path}") == expected_layers(img)
    assert [e.status for e in proxy.requests("GET", r"^/v2/$")] == [429, 503, 200]


def test_retry_after_date_form(proxy: FaultProxy, seeded: tuple[str, Image]) -> None:
    path, img = seeded
    proxy.add(
        Fault(
            "status",
            status=429,
            retry_after="Wed, 21 Oct 2015 07:28:00 GMT",  # in the past: retry at once
            match=r"/manifests/",
        )
    )
    assert Client(retry=FAST).get(f"{proxy.host}/{path}").raw == img.raw_manifest()


def test_persistent_500_is_one_line_registry_error(
    proxy: FaultProxy, seeded: tuple[str, Image]
) -> None:
    path, _ = seeded
    proxy.add(Fault("status", status=500, match=r"/manifests/", count=-1))
    with pytest.raises(RegistryError) as ei:
        Client(retry=FAST).get(f"{proxy.host}/{path}")
    assert ei.value.status == 500
    assert ei.value.codes == ("UNAVAILABLE",)
    assert "\n" not in str(ei.value)
    assert len(proxy.requests("GET", r"/manifests/")) == FAST.attempts


def test_connection_reset_is_retried(proxy: FaultProxy, seeded: tuple[str, Image]) -> None:
    path, img = seeded
    proxy.add(Fault("reset", match=r"/manifests/", count=1))
    assert Client(retry=FAST).get(f"{proxy.host}/{path}").raw == img.raw_manifest()


def test_truncated_manifest_is_refetched(proxy: FaultProxy, seeded: tuple[str, Image]) -> None:
    path, img = seeded
    proxy.add(Fault("drop", match=r"/manifests/", method="GET", after=20, count=1))
    assert Client(retry=FAST).get(f"{proxy.host}/{path}").raw == img.raw_manifest()


def test_a_malformed_manifest_names_the_reference(
    proxy: FaultProxy, seeded: tuple[str, Image]
) -> None:
    path, _ = seeded
    # A short body with an honest Content-Length: the registry really sent bad JSON.
    proxy.add(Fault("truncate", match=r"/manifests/", method="GET", after=20, count=-1))
    with pytest.raises(ManifestError, match=rf"^manifest {proxy.host}/{path}: not valid JSON"):
        Client(retry=FAST).get(f"{proxy.host}/{path}")


def test_push_survives_transient_failures(proxy: FaultProxy) -> None:
    img = random_image(2, 50_000, seed=78)
    ref = f"{proxy.host}/faults/push{next(_n)}:v"
    proxy.add(Fault("status", status=503, method="POST", match=r"/blobs/uploads/", count=1))
    proxy.add(Fault("status", status=500, method="PUT", match=r"/blobs/uploads/", count=1))
    proxy.add(Fault("status", status=503, method="PUT", match=r"/manifests/", count=2))
    Client(retry=FAST).write_image(ref, img)
    proxy.clear()
    assert pull_all(Client(retry=FAST), ref) == expected_layers(img)


def test_push_large_blob_survives_dropped_patch(proxy: FaultProxy) -> None:
    img = random_image(1, 400_000, seed=79)
    ref = f"{proxy.host}/faults/patch{next(_n)}:v"
    proxy.add(Fault("reset", method="PATCH", match=r"/blobs/uploads/", count=1))
    Client(retry=FAST, monolithic_limit=1000).write_image(ref, img)
    assert len(proxy.requests("PATCH")) >= 2
    proxy.clear()
    assert pull_all(Client(retry=FAST), ref) == expected_layers(img)


def test_413_switches_to_chunked_uploads(proxy: FaultProxy) -> None:
    img = random_image(1, 300_000, seed=80)
    ref = f"{proxy.host}/faults/413-{next(_n)}:v"
    proxy.add(Fault("status", status=413, method="PUT", match=r"/blobs/uploads/", count=1))
    Client(retry=FAST).write_image(ref, img)
    assert any(e.method == "PATCH" for e in proxy.log)
    proxy.clear()
    assert pull_all(Client(retry=FAST), ref) == expected_layers(img)


def test_connection_refused_is_transport_error() -> None:
    port = free_port()
    with pytest.raises(TransportError) as ei:
        Client(retry=RetryPolicy(attempts=2, backoff=0.01)).get(f"127.0.0.1:{port}/a/b:c")
    assert f"127.0.0.1:{port}" in str(ei.value)
    assert "\n" not in str(ei.value)
    assert isinstance(ei.value, PycraneError)


def test_redirect_to_other_host_carries_no_credentials(distribution_htpasswd: Any) -> None:
    reg = distribution_htpasswd
    img = random_image(2, 20_000, seed=81)
    auth = Credential(reg.username, reg.password)
    path = f"faults/redir{next(_n)}:v"
    Client(auth=auth, retry=FAST).write_image(f"{reg.host}/{path}", img)
    p = FaultProxy(reg.host).start()
    try:
        p.add(Fault("redirect", match=r"/blobs/sha256:", method="GET", count=-1))
        got = pull_all(Client(auth=auth, retry=FAST), f"{p.host}/{path}")
        assert got == expected_layers(img)
        assert len(p.storage_log) >= 2  # config blob and layers came from "storage"
        assert all("Authorization" not in h for h in p.storage_log)
        assert all(h.get("User-Agent", "").startswith("pycrane/") for h in p.storage_log)
    finally:
        p.stop()


def test_abandoned_blob_readers_do_not_block_others(
    proxy: FaultProxy, seeded: tuple[str, Image]
) -> None:
    path, img = seeded
    c = Client(retry=FAST, jobs=2)
    ref = f"{proxy.host}/{path}"
    abandoned = []
    for _ in range(40):  # far more than the pool size; never closed
        r = c.image(ref).layers()[0].compressed()
        r.read(10)
        abandoned.append(r)
    assert pull_all(c, ref) == expected_layers(img)
    for r in abandoned:
        r.close()


@pytest.mark.stress
@pytest.mark.parametrize("server", ["distribution", "pycrane"])
def test_concurrent_pulls_and_pushes_under_random_faults(
    request: pytest.FixtureRequest, server: str
) -> None:
    """Every operation ends verified or with one PycraneError line; nothing hangs."""
    upstream = request.getfixturevalue("pycrane_registry" if server == "pycrane" else server)
    p = FaultProxy(upstream.host, seed=1234).start()
    try:
        p.add(
            Fault(
                "drop",
                match=r"/blobs/sha256:",
                method="GET",
                after=30_000,
                count=-1,
                probability=0.3,
            )
        )
        p.add(Fault("status", status=503, count=-1, probability=0.1))
        p.add(Fault("status", status=429, retry_after="0", count=-1, probability=0.05))
        p.add(Fault("reset", count=-1, probability=0.03))
        p.add(
            Fault("cut_request", match=r"/blobs/uploads/", count=-1, probability=0.05, after=9_000)
        )
        p.add(Fault("corrupt", match=r"/blobs/sha256:", method="GET", count=-1, probability=0.02))
        images = [random_image(2, 60_000, seed=900 + i) for i in range(6)]
        want = {img.digest(): expected_layers(img) for img in images}
        c = Client(retry=FAST, jobs=3)
        outcomes: list[str] = []
        lock = threading.Lock()

        def work(i: int) -> None:
            img = images[i % len(images)]
            ref = f"{p.host}/stress/r{i % 3}:i{i}"
            try:
                c.write_image(ref, img)
                got = pull_all(c, ref)
                assert got == want[img.digest()]
                result = "ok"
            except PycraneError as e:
                assert "\n" not in str(e)
                result = type(e).__name__
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(18)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert len(outcomes) == 18
        assert outcomes.count("ok") >= 9, outcomes  # retries and resumes absorb most faults
        faults = [e.fault for e in p.log if e.fault]
        print(f"\n{sorted(outcomes)}; {len(faults)} faults: {sorted(set(faults))}")
        assert faults
    finally:
        p.stop()


def test_copy_all_tags_uploads_each_shared_blob_once(
    distribution: Any, distribution_htpasswd: Any
) -> None:
    from pycrane.random import image_from_layers, random_layer

    shared = [random_layer(20_000, seed=950 + i) for i in range(3)]
    src_repo = f"{distribution.host}/faults/alltags{next(_n)}"
    c = Client(retry=FAST)
    for i in range(6):
        img = image_from_layers([*shared, random_layer(1000, seed=960 + i)])
        c.write_image(f"{src_repo}:t{i}", img)
    dst = distribution_htpasswd
    p = FaultProxy(dst.host).start()
    try:
        c2 = Client(auth=Credential(dst.username, dst.password), retry=FAST, jobs=4)
        c2.copy(src_repo, f"{p.host}/faults/alltags-dst", all_tags=True)
        puts = [e.path for e in p.requests("PUT", r"/blobs/uploads/")]
        for layer in shared:
            assert sum(str(layer.digest()) in path for path in puts) == 1
    finally:
        p.stop()


def test_manifest_by_digest_is_verified(proxy: FaultProxy, seeded: tuple[str, Image]) -> None:
    path, img = seeded
    repo = path.split(":")[0]
    # Corrupt a byte inside a JSON string value, so the document still parses.
    at = img.raw_manifest().index(b"sha256:") + 10
    proxy.add(
        Fault("corrupt", match=r"/manifests/sha256:", method="GET", after=at, xor=1, count=-1)
    )
    with pytest.raises(DigestMismatch):
        Client(retry=FAST).get(f"{proxy.host}/{repo}@{img.digest()}")
    # By tag the digest is computed from the bytes received (the header is not trusted).
    proxy.add(Fault("corrupt", match=r"/manifests/v$", method="GET", after=at, xor=1))
    rd = Client(retry=FAST).get(f"{proxy.host}/{path}")
    assert rd.digest != img.digest()
    assert rd.digest == Digest.from_bytes(rd.raw)


def test_write_blob_and_read_by_bare_digest(distribution: Any) -> None:
    c = Client(retry=FAST)
    repo = f"{distribution.host}/faults/blob{next(_n)}"
    data = b"some bytes " * 1000
    desc = c.write_blob(repo, data)
    assert c.blob_exists(repo, desc.digest)
    with c.blob(repo, desc.digest) as r:
        parts = []
        while chunk := r.read(4096):
            parts.append(chunk)
    assert b"".join(parts) == data
    with pytest.raises(NotFoundError), c.blob(repo, Digest.from_bytes(b"absent")) as r:
        r.read()


def test_oci_chunk_min_length_switches_to_chunks(proxy: FaultProxy) -> None:
    img = random_image(1, 200_000, seed=82)
    ref = f"{proxy.host}/faults/minchunk{next(_n)}:v"
    proxy.add(
        Fault(
            "add_header",
            method="POST",
            match=r"/blobs/uploads/$",
            header=("OCI-Chunk-Min-Length", "65536"),
            count=-1,
        )
    )
    Client(retry=FAST).write_image(ref, img)
    ranges = [e.headers.get("Content-Range") for e in proxy.requests("PATCH")]
    size = img.layers()[0].size()
    # Chunked, in chunks of at least the minimum (here the whole layer fits in one).
    assert f"0-{size - 1}" in ranges
    proxy.clear()
    assert pull_all(Client(retry=FAST), ref) == expected_layers(img)


@pytest.mark.stress
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=LAYER - 1), min_size=1, max_size=4),
    ignore_range=st.booleans(),
)
def test_resume_from_any_cut(
    proxy: FaultProxy, seeded: tuple[str, Image], cuts: list[int], ignore_range: bool
) -> None:
    """Wherever the connection drops (several times), the blob arrives whole and verified."""
    path, img = seeded
    proxy.clear()
    for cut in cuts:
        proxy.add(Fault("drop", match=r"/blobs/sha256:", method="GET", after=cut))
    if ignore_range:
        proxy.add(Fault("ignore_range", match=r"/blobs/", count=-1))
    assert pull_all(Client(retry=FAST), f"{proxy.host}/{path}") == expected_layers(img)


def test_registry_that_starts_late_is_waited_for(
    distribution: Any, seeded: tuple[str, Image]
) -> None:
    path, img = seeded
    port = free_port()
    late = FaultProxy(distribution.host, listen_port=port)
    timer = threading.Timer(0.3, late.start)
    timer.start()
    try:
        patient = RetryPolicy(attempts=8, backoff=0.1, factor=2.0)
        assert Client(retry=patient).get(f"127.0.0.1:{port}/{path}").raw == img.raw_manifest()
    finally:
        timer.join()
        late.stop()


def test_failed_mount_falls_back_to_upload(proxy: FaultProxy) -> None:
    import io

    from pycrane.name import Repository

    c = Client(retry=FAST)
    data = b"mount me" * 1000
    desc = c.write_blob(f"{proxy.host}/faults/msrc", data)
    # The source repository lacks this blob: the registry answers 202 and we upload.
    other = b"not in the source" * 100
    odesc = c.write_blob(f"{proxy.host}/faults/mscratch", other)
    c.write_blob(
        f"{proxy.host}/faults/mdst1",
        odesc,
        lambda: io.BytesIO(other),
        source=Repository.parse(f"{proxy.host}/faults/msrc"),
    )
    assert c.blob_exists(f"{proxy.host}/faults/mdst1", odesc.digest)
    # The mount request itself fails: upload instead.
    proxy.add(Fault("status", status=500, method="POST", match=r"mount=", count=-1))
    c.write_blob(
        f"{proxy.host}/faults/mdst2",
        desc,
        lambda: io.BytesIO(data),
        source=Repository.parse(f"{proxy.host}/faults/msrc"),
    )
    assert c.blob_exists(f"{proxy.host}/faults/mdst2", desc.digest)
    assert any("mount=" in e.path and e.status == 500 for e in proxy.log)
    # A working mount sends no body at all.
    proxy.clear()
    c.write_blob(
        f"{proxy.host}/faults/mdst3",
        desc,
        lambda: io.BytesIO(data),
        source=Repository.parse(f"{proxy.host}/faults/msrc"),
    )
    assert [e.method for e in proxy.log if "/blobs/uploads/" in e.path] == ["POST"]


def _chunked_push(proxy: FaultProxy, kind: str, skip: int) -> tuple[str, bytes, Digest]:
    data = random.Random(83 + skip).randbytes(300_000)
    repo = f"{proxy.host}/faults/chunkresume{next(_n)}"
    proxy.add(Fault(kind, status=503, method="PATCH", skip=skip))
    desc = Client(retry=FAST, chunk_size=64 * 1024).write_blob(repo, data)
    return repo, data, desc.digest


@pytest.mark.parametrize("kind", ["reset", "status"])
def test_chunked_upload_resumes_where_the_registry_stopped(proxy: FaultProxy, kind: str) -> None:
    # Two chunks go through, the third PATCH fails once.
    repo, data, digest = _chunked_push(proxy, kind, skip=2)
    assert len(proxy.requests("POST", r"/blobs/uploads/")) == 1  # not started over
    assert proxy.requests("GET", r"/blobs/uploads/")  # the upload status was asked for
    proxy.clear()
    with Client(retry=FAST).blob(repo, digest) as r:
        assert r.read() == data


@pytest.mark.parametrize("kind", ["reset", "status"])
def test_chunked_upload_failing_its_first_chunk_starts_a_fresh_session(
    proxy: FaultProxy, kind: str
) -> None:
    # An empty session reports "Range: 0-0", which also means one byte: resuming at
    # byte 1 made distribution append the rest and refuse the digest.
    repo, data, digest = _chunked_push(proxy, kind, skip=0)
    assert len(proxy.requests("POST", r"/blobs/uploads/")) == 2
    # The abandoned session is cancelled, not left to expire at the registry.
    (cancel,) = proxy.requests("DELETE", r"/blobs/uploads/")
    assert cancel.status == 204
    proxy.clear()
    with Client(retry=FAST).blob(repo, digest) as r:
        assert r.read() == data


@pytest.mark.parametrize("status_range", [None, "0-132071"], ids=["no-range", "wrong-range"])
def test_chunked_upload_with_an_untrustworthy_status_starts_over(
    proxy: FaultProxy, status_range: str | None
) -> None:
    # The third chunk (from byte 131072) never reaches the registry. Without a Range
    # in the status answer the client starts a fresh session; with a Range that claims
    # 1000 bytes of that chunk, distribution 2.8 appends the rest wherever its
    # Content-Range says it starts, the PUT fails DIGEST_INVALID, and the client
    # uploads again from scratch.
    uploads = r"/blobs/uploads/"
    proxy.add(Fault("strip_header", method="GET", match=uploads, header=("Range", "")))
    if status_range:
        proxy.add(Fault("add_header", method="GET", match=uploads, header=("Range", status_range)))
    repo, data, digest = _chunked_push(proxy, "reset", skip=2)
    assert len(proxy.requests("POST", uploads)) == 2
    proxy.clear()
    with Client(retry=FAST).blob(repo, digest) as r:
        assert r.read() == data


@pytest.mark.parametrize("server", ["distribution", "pycrane"])
def test_chunked_upload_survives_a_chunk_cut_short(
    request: pytest.FixtureRequest, server: str
) -> None:
    # The third PATCH reaches the registry with 20,000 of its 65,536 bytes. Distribution
    # then invalidates the session (its status answers 404 BLOB_UPLOAD_INVALID), so
    # only a fresh session can go on; pycrane's server keeps what arrived and reports it,
    # so the upload resumes in place.
    if server == "pycrane":
        try:
            upstream = request.getfixturevalue("pycrane_registry").host
        except pytest.FixtureLookupError:
            pytest.skip("pycrane's registry plugin is not available")
    else:
        upstream = request.getfixturevalue("distribution").host
    proxy = FaultProxy(upstream).start()
    try:
        proxy.add(Fault("cut_request", method="PATCH", skip=2, after=20_000))
        data = random.Random(90).randbytes(300_000)
        repo = f"{proxy.host}/faults/chunkcut{next(_n)}"
        desc = Client(retry=FAST, chunk_size=64 * 1024).write_blob(repo, data)
        assert [e.fault for e in proxy.log if e.fault] == ["cut_request"]
        posts = len(proxy.requests("POST", r"/blobs/uploads/"))
        assert posts == (2 if server == "distribution" else 1)
        proxy.clear()
        with Client(retry=FAST).blob(repo, desc.digest) as r:
            assert r.read() == data
    finally:
        proxy.stop()


def test_referrers_api_pages_are_followed(request: pytest.FixtureRequest) -> None:
    try:
        pyc = request.getfixturevalue("pycrane_registry")
    except pytest.FixtureLookupError:
        pytest.skip("pycrane's registry plugin (with the referrers API) is not available")
    from tests.test_remote import _artifact

    p = FaultProxy(pyc.host).start()
    try:
        c = Client(retry=FAST)
        repo = f"{p.host}/faults/refpages{next(_n)}"
        img = random_image(1, 64, seed=84)
        c.write_image(f"{repo}:v", img)
        art = _artifact(img.descriptor(), "application/vnd.example.p", b"{}")
        c.write_image(f"{repo}@{art.digest()}", art)
        path = f"/v2/{repo.split('/', 1)[1]}/referrers/{img.digest()}"
        p.add(
            Fault("add_header", match=r"/referrers/", header=("Link", f'<{path}?p=2>; rel="next"'))
        )
        got = c.referrers(f"{repo}@{img.digest()}")
        assert [d.digest for d in got.manifests] == [art.digest()]
        assert len(p.requests("GET", r"/referrers/")) == 2
        p.add(
            Fault(
                "add_header",
                match=r"/referrers/",
                header=("Link", '<http://elsewhere.invalid/x>; rel="next"'),
            )
        )
        with pytest.raises(RegistryError, match="another host"):
            c.referrers(f"{repo}@{img.digest()}")
    finally:
        p.stop()


def test_concurrent_operations_share_one_upload(proxy: FaultProxy) -> None:
    from pycrane.random import image_from_layers, random_layer

    shared = random_layer(200_000, seed=85)
    imgs = [image_from_layers([shared, random_layer(100, seed=860 + i)]) for i in range(6)]
    repo = f"{proxy.host}/faults/shared{next(_n)}"
    c = Client(retry=FAST)
    errors: list[BaseException] = []

    def push(i: int) -> None:
        try:
            c.write_image(f"{repo}:i{i}", imgs[i])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(len(imgs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    puts = [e.path for e in proxy.requests("PUT", r"/blobs/uploads/")]
    assert sum(str(shared.digest()) in p for p in puts) == 1


def test_manifest_with_missing_blob_retries_then_fails_clearly(proxy: FaultProxy) -> None:
    img = random_image(1, 64, seed=87)
    ref = f"{proxy.host}/faults/missing{next(_n)}:v"
    with pytest.raises(RegistryError) as ei:
        Client(retry=FAST).put_manifest(ref, img.raw_manifest(), img.media_type())
    assert "MANIFEST_BLOB_UNKNOWN" in ei.value.codes
    assert "\n" not in str(ei.value)
    assert len(proxy.requests("PUT", r"/manifests/")) == 3


def test_head_without_digest_header_falls_back_to_get(
    proxy: FaultProxy, seeded: tuple[str, Image]
) -> None:
    path, img = seeded
    proxy.add(
        Fault(
            "strip_header",
            method="HEAD",
            match=r"/manifests/",
            header=("Docker-Content-Digest", ""),
            count=-1,
        )
    )
    c = Client(retry=FAST)
    d = c.head(f"{proxy.host}/{path}")
    assert d.digest == img.digest() and d.size == len(img.raw_manifest())
    assert c.exists(f"{proxy.host}/{path}") == d
    assert proxy.requests("GET", r"/manifests/")  # the fallback happened
