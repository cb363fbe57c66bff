"""pycrane.remote against real registries: push, pull, copy, list, delete, referrers."""

from __future__ import annotations

import itertools
import threading
from dataclasses import replace
from typing import Any

import pytest

from pycrane import remote
from pycrane.errors import (
    DigestMismatch,
    ManifestError,
    NoMatchingPlatform,
    NotFoundError,
    RegistryError,
    SizeMismatch,
)
from pycrane.name import Repository, parse_reference
from pycrane.random import random_image, random_index, random_layer
from pycrane.remote import Client, RemoteImage, RemoteLayer
from pycrane.v1 import mediatypes as mt
from pycrane.v1.config import ConfigFile
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest
from pycrane.v1.image import BytesLayer, SimpleImage
from pycrane.v1.manifest import Manifest
from pycrane.v1.platform import Platform

pytestmark = pytest.mark.distribution

_counter = itertools.count()
_lock = threading.Lock()


def unique(prefix: str) -> str:
    with _lock:
        return f"{prefix}{next(_counter)}"


@pytest.fixture
def client() -> Client:
    c = Client(retry=remote.RetryPolicy(backoff=0.01, max_backoff=0.05))
    yield c  # type: ignore[misc]
    c.close()


def layer_bytes(layer: Any) -> bytes:
    """Read a layer to EOF, so a verifying stream checks its digest."""
    parts = []
    with layer.compressed() as r:
        while chunk := r.read(1 << 16):
            parts.append(chunk)
    return b"".join(parts)


def test_push_then_pull_image_round_trips_every_byte(registry_server: Any, client: Client) -> None:
    img = random_image(3, 2048, duplicate_empty_layers=2, seed=1)
    ref = f"{registry_server.host}/{unique('rt/img')}:v1"
    desc = client.write_image(ref, img)
    assert desc.digest == img.digest()

    got = client.image(ref)
    assert isinstance(got, RemoteImage)
    assert got.raw_manifest() == img.raw_manifest()
    assert got.digest() == img.digest()
    assert got.raw_config() == img.raw_config()
    assert [layer.digest() for layer in got.layers()] == [layer.digest() for layer in img.layers()]
    for mine, theirs in zip(img.layers(), got.layers(), strict=True):
        assert layer_bytes(theirs) == layer_bytes(mine)
    # HEAD gives the same descriptor as the bytes.
    head = client.head(ref)
    assert head.digest == img.digest()
    assert head.size == len(img.raw_manifest())
    assert head.media_type == mt.OCI_MANIFEST
    assert remote.digest(ref, client=client) == img.digest()


def test_push_index_and_select_platform(registry_server: Any, client: Client) -> None:
    idx = random_index(["linux/amd64", "linux/arm64", "linux/arm/v7"], seed=2)
    ref = f"{registry_server.host}/{unique('rt/idx')}:multi"
    client.write_index(ref, idx)
    rd = client.get(ref)
    assert rd.raw == idx.raw_manifest()
    assert rd.is_index()
    arm = client.image(ref, "linux/arm64")
    want = next(
        d for d in idx.index_manifest().manifests if d.platform == Platform("linux", "arm64")
    )
    assert arm.digest() == want.digest
    assert arm.descriptor().platform == want.platform
    assert client.image(ref).config_file().architecture == "amd64"
    with pytest.raises(NoMatchingPlatform, match=r"linux/s390x.*offers linux/amd64"):
        client.image(ref, "linux/s390x")
    ridx = client.index(ref)
    assert [d.digest for d in ridx.index_manifest().manifests] == [
        d.digest for d in idx.index_manifest().manifests
    ]
    with pytest.raises(ManifestError, match="expected an index"):
        client.index(f"{registry_server.host}/{ref.split('/', 1)[1].split(':')[0]}@{arm.digest()}")


def test_get_by_digest_verifies_and_missing_is_not_found(
    registry_server: Any, client: Client
) -> None:
    img = random_image(1, 64, seed=3)
    repo = f"{registry_server.host}/{unique('rt/dig')}"
    client.write_image(f"{repo}:t", img)
    rd = client.get(f"{repo}@{img.digest()}")
    assert rd.digest == img.digest()
    with pytest.raises(NotFoundError, match="MANIFEST_UNKNOWN"):
        client.get(f"{repo}:missing")
    assert client.exists(f"{repo}:missing") is None
    with pytest.raises(RegistryError) as ei:
        client.get(f"{registry_server.host}/{unique('nope/repo')}:x")
    assert ei.value.status == 404
    assert "\n" not in str(ei.value)


def test_blobs_are_uploaded_once_and_skipped_when_present(
    registry_server: Any, client: Client
) -> None:
    img = random_image(2, 1024, duplicate_empty_layers=3, seed=4)
    repo = f"{registry_server.host}/{unique('rt/dedup')}"
    events: list[tuple[str, str, bool]] = []

    class Sink:
        def start(self, digest: Digest, total: int | None, description: str = "") -> None:
            events.append(("start", str(digest), False))

        def advance(self, digest: Digest, nbytes: int) -> None:
            pass

        def finish(self, digest: Digest, *, skipped: bool = False) -> None:
            events.append(("finish", str(digest), skipped))

    client.write_image(f"{repo}:a", img, progress=Sink())
    starts = [e[1] for e in events if e[0] == "start"]
    assert len(starts) == len(set(starts)) == 4  # config + 2 layers + one empty layer
    events.clear()
    client.write_image(f"{repo}:b", img, progress=Sink())
    assert [e for e in events if e[0] == "start"] == []
    assert all(e[2] for e in events)


def test_large_blob_streams_through_patch(registry_server: Any) -> None:
    c = Client(monolithic_limit=1 << 20)
    img = random_image(1, 3 << 20, seed=5)
    ref = f"{registry_server.host}/{unique('rt/large')}:v"
    c.write_image(ref, img)
    got = c.image(ref)
    assert layer_bytes(got.layers()[0]) == layer_bytes(img.layers()[0])


def test_chunked_upload_with_content_range(registry_server: Any) -> None:
    c = Client(chunk_size=256 * 1024)
    img = random_image(1, 1 << 20, seed=6)
    ref = f"{registry_server.host}/{unique('rt/chunked')}:v"
    c.write_image(ref, img)
    assert layer_bytes(c.image(ref).layers()[0]) == layer_bytes(img.layers()[0])


def test_copy_same_registry_mounts(registry_server: Any, client: Client) -> None:
    img = random_image(2, 4096, seed=7)
    src = f"{registry_server.host}/{unique('cp/src')}:v"
    dst = f"{registry_server.host}/{unique('cp/dst')}:v"
    client.write_image(src, img)
    client.copy(src, dst)
    assert client.get(dst).raw == img.raw_manifest()
    got = client.image(dst)
    for layer in got.layers():
        assert isinstance(layer, RemoteLayer)
        assert layer.repository == parse_reference(dst).repository
        layer_bytes(layer)  # verified read


def test_copy_between_registries_streams(
    distribution: Any, distribution_htpasswd: Any, client: Client
) -> None:
    idx = random_index(["linux/amd64", "linux/arm64"], seed=8)
    src = f"{distribution.host}/{unique('cp/x')}:multi"
    client.write_index(src, idx)
    dst_reg = distribution_htpasswd
    c2 = Client(
        keychain=remote.StaticKeychain(
            {dst_reg.host: remote.Credential(dst_reg.username, dst_reg.password)}
        )
    )
    dst = f"{dst_reg.host}/{unique('cp/y')}:multi"
    c2.copy(src, dst)
    assert c2.get(dst).raw == idx.raw_manifest()
    # One platform, as crane does: that platform's image, byte for byte, and nothing else.
    arm = c2.image(src, "linux/arm64")
    amd = c2.image(src, "linux/amd64")
    dst2 = f"{dst_reg.host}/{unique('cp/y')}:arm"
    out = c2.copy(src, dst2, platforms=["linux/arm64"])
    assert isinstance(out, Descriptor)
    assert out.digest == arm.digest()
    assert c2.get(dst2).raw == arm.raw_manifest()
    dst2_repo = parse_reference(dst2).repository
    assert not c2.blob_exists(dst2_repo, amd.config_name())
    for layer in amd.manifest().layers:
        assert not c2.blob_exists(dst2_repo, layer.digest)
    assert c2.exists(dst2_repo.digest(amd.digest())) is None
    # Several platforms: a new, filtered index (pycrane's extension).
    dst3 = f"{dst_reg.host}/{unique('cp/y')}:both"
    c2.copy(src, dst3, platforms=["linux/arm64", "linux/amd64"])
    assert c2.get(dst3).raw == idx.raw_manifest()  # nothing dropped: the index as it was


def test_copy_all_tags_and_no_clobber(registry_server: Any, client: Client) -> None:
    src_repo = f"{registry_server.host}/{unique('cp/all')}"
    dst_repo = f"{registry_server.host}/{unique('cp/alldst')}"
    imgs = {f"t{i}": random_image(1, 128, seed=100 + i) for i in range(5)}
    for t, img in imgs.items():
        client.write_image(f"{src_repo}:{t}", img)
    out = client.copy(Repository.parse(src_repo), Repository.parse(dst_repo), all_tags=True)
    assert isinstance(out, list) and len(out) == 5
    assert sorted(client.list_tags(dst_repo)) == sorted(imgs)
    for t, img in imgs.items():
        assert client.head(f"{dst_repo}:{t}").digest == img.digest()
    with pytest.raises(RegistryError, match="already exists"):
        client.copy(f"{src_repo}:t0", f"{dst_repo}:t1", no_clobber=True)


def test_list_tags_paginates(registry_server: Any, client: Client) -> None:
    repo = f"{registry_server.host}/{unique('ls/p')}"
    img = random_image(1, 32, seed=9)
    client.write_image(f"{repo}:base", img)
    names = [f"v{i:02d}" for i in range(12)]
    for n in names:
        client.tag(f"{repo}:base", n)
    assert sorted(client.list_tags(repo, page_size=5)) == sorted([*names, "base"])
    assert sorted(remote.list_tags(repo, client=client)) == sorted([*names, "base"])
    cat = client.catalog(registry_server.host, page_size=3)
    assert repo.split("/", 1)[1] in cat


def test_delete_by_digest_and_by_tag(registry_server: Any, client: Client) -> None:
    repo = f"{registry_server.host}/{unique('del/r')}"
    a, b = random_image(1, 32, seed=10), random_image(1, 32, seed=11)
    client.write_image(f"{repo}:a", a)
    client.write_image(f"{repo}:b", b)
    assert client.delete(f"{repo}@{a.digest()}") == a.digest()
    with pytest.raises(NotFoundError):
        client.get(f"{repo}@{a.digest()}")
    assert client.delete(f"{repo}:b") == b.digest()
    with pytest.raises(NotFoundError):
        client.get(f"{repo}:b")


def _artifact(subject: Descriptor, artifact_type: str, payload: bytes) -> SimpleImage:
    blob = BytesLayer(payload, "application/vnd.example+json")
    cfg = ConfigFile.parse(b"{}")
    man = Manifest.build(
        Descriptor(media_type=mt.OCI_EMPTY, digest=cfg.digest, size=cfg.size),
        [blob.descriptor()],
        subject=subject,
        artifact_type=artifact_type,
    )
    return SimpleImage(man, b"{}", [blob])


def test_referrers_api_or_fallback_tag_schema(registry_server: Any, client: Client) -> None:
    repo = f"{registry_server.host}/{unique('ref/r')}"
    img = random_image(1, 64, seed=12)
    client.write_image(f"{repo}:v", img)
    subject = img.descriptor()
    assert client.referrers(f"{repo}:v").manifests == ()
    sig = _artifact(subject, "application/vnd.example.sig", b'{"sig":1}')
    sbom = _artifact(subject, "application/vnd.example.sbom", b'{"sbom":1}')
    client.write_image(f"{repo}@{sig.digest()}", sig)
    client.write_image(f"{repo}@{sbom.digest()}", sbom)
    client.write_image(f"{repo}@{sbom.digest()}", sbom)  # twice: still one entry
    refs = client.referrers(f"{repo}@{img.digest()}")
    assert sorted(str(d.digest) for d in refs.manifests) == sorted(
        [str(sig.digest()), str(sbom.digest())]
    )
    only = client.referrers(f"{repo}:v", artifact_type="application/vnd.example.sbom")
    assert [d.digest for d in only.manifests] == [sbom.digest()]
    assert {d.artifact_type for d in refs.manifests} == {
        "application/vnd.example.sig",
        "application/vnd.example.sbom",
    }
    # The tag schema is written only for registries without the referrers API.
    fallback_tag = f"sha256-{img.digest().hex}"
    has_api = getattr(registry_server, "kind", "pycrane") != "distribution"
    assert (fallback_tag in client.list_tags(repo)) == (not has_api)
    # Copy with referrers brings them along.
    dst = f"{registry_server.host}/{unique('ref/dst')}"
    client.copy(f"{repo}:v", f"{dst}:v", referrers=True)
    copied = client.referrers(f"{dst}:v")
    assert sorted(str(d.digest) for d in copied.manifests) == sorted(
        [str(sig.digest()), str(sbom.digest())]
    )


def test_digest_mismatch_on_put_by_wrong_digest(registry_server: Any, client: Client) -> None:
    img = random_image(1, 16, seed=13)
    other = random_image(1, 16, seed=14)
    with pytest.raises(DigestMismatch):
        client.put_manifest(
            f"{registry_server.host}/{unique('bad/r')}@{other.digest()}",
            img.raw_manifest(),
            img.media_type(),
        )


def test_docker_media_types_and_zstd_layers(registry_server: Any, client: Client) -> None:
    img = random_image(2, 256, seed=15, media_type=mt.DOCKER_MANIFEST)
    ref = f"{registry_server.host}/{unique('mt/docker')}:v"
    client.write_image(ref, img)
    assert client.head(ref).media_type == mt.DOCKER_MANIFEST
    assert client.get(ref).raw == img.raw_manifest()
    zl = random_layer(300, seed=16, media_type=mt.OCI_LAYER_ZSTD)
    from pycrane.random import image_from_layers

    zimg = image_from_layers([zl])
    zref = f"{registry_server.host}/{unique('mt/zstd')}:v"
    client.write_image(zref, zimg)
    got = client.image(zref).layers()[0]
    assert got.media_type() == mt.OCI_LAYER_ZSTD
    assert got.diff_id() == zl.diff_id()


def test_nondistributable_layers_are_skipped(distribution: Any) -> None:
    class Foreign(BytesLayer):
        def descriptor(self) -> Descriptor:
            return replace(super().descriptor(), urls=("https://example.invalid/blob",))

    foreign = Foreign(b"not really a layer", mt.OCI_RESTRICTED_LAYER_GZIP)
    normal = random_layer(64, seed=17)
    from pycrane.random import image_from_layers

    img = image_from_layers([normal, foreign])
    repo = f"{distribution.host}/{unique('nd/r')}"
    c = Client()
    c.write_image(f"{repo}:v", img)
    assert not c.blob_exists(repo, foreign.digest())
    assert c.blob_exists(repo, normal.digest())
    c2 = Client(allow_nondistributable=True)
    c2.write_image(f"{repo}:w", img)
    assert c2.blob_exists(repo, foreign.digest())


def test_inline_data_needs_no_request(distribution: Any, client: Client) -> None:
    data = b'{"hello":"inline"}'
    d = replace(Descriptor.from_bytes("application/json", data), data=data)
    layer = RemoteLayer(client.fetcher, Repository.parse(f"{distribution.host}/nothing/here"), d)
    assert layer_bytes(layer) == data
    bad = Descriptor(
        media_type="application/json", digest=Digest.from_bytes(b"x"), size=len(data), data=data
    )
    with pytest.raises(DigestMismatch):
        layer_bytes(RemoteLayer(client.fetcher, Repository.parse(f"{distribution.host}/n/h"), bad))


def test_concurrent_pushes_of_overlapping_images(registry_server: Any) -> None:
    c = Client(jobs=4)
    shared = [random_layer(2048, seed=200 + i) for i in range(3)]
    from pycrane.random import image_from_layers

    imgs = [image_from_layers([*shared, random_layer(512, seed=300 + i)]) for i in range(6)]
    repo = f"{registry_server.host}/{unique('conc/r')}"
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
    for i, img in enumerate(imgs):
        got = c.image(f"{repo}:i{i}")
        assert got.digest() == img.digest()
        for layer in got.layers():
            layer_bytes(layer)


def test_nested_index_push_copy_and_platform(registry_server: Any, client: Client) -> None:
    from pycrane.v1.image import SimpleIndex

    inner = random_index(["linux/arm64", "linux/ppc64le"], seed=30)
    img = random_image(1, 128, seed=31, platform=Platform("linux", "amd64"))
    outer = SimpleIndex.build([(None, img), (inner.descriptor(), inner)])
    host = registry_server.host
    src = f"{host}/{unique('nest/src')}:v"
    client.write_index(src, outer)
    assert client.get(src).raw == outer.raw_manifest()
    ppc = client.image(src, "linux/ppc64le")
    assert ppc.config_file().architecture == "ppc64le"
    dst = f"{host}/{unique('nest/dst')}:v"
    client.copy(src, dst)
    assert client.get(dst).raw == outer.raw_manifest()
    assert client.image(dst, "linux/ppc64le").digest() == ppc.digest()
    assert client.get(f"{dst.rsplit(':', 1)[0]}@{inner.digest()}").raw == inner.raw_manifest()


def test_manifest_size_cap(distribution: Any) -> None:
    img = random_image(3, 16, seed=32)
    ref = f"{distribution.host}/{unique('cap/r')}:v"
    c = Client()
    c.write_image(ref, img)
    c.manifest_limit = len(img.raw_manifest()) - 1
    with pytest.raises(ManifestError, match="larger than"):
        c.get(ref)
    c.manifest_limit = len(img.raw_manifest())
    assert c.get(ref).raw == img.raw_manifest()


@pytest.mark.parametrize("delta", [-10, 10])
def test_source_of_wrong_length_fails_fast(distribution: Any, delta: int) -> None:
    """A body shorter than its Content-Length would hang the registry; it must fail here."""

    class Liar(BytesLayer):
        def descriptor(self) -> Descriptor:
            d = super().descriptor()
            return replace(d, size=d.size + delta)

    from pycrane.random import image_from_layers

    for limit in (1 << 30, 1):  # monolithic PUT, then PATCH
        liar = Liar(random_layer(4096, seed=33).data, diff_id=Digest.from_bytes(b"x"))
        img = image_from_layers([liar])
        c = Client(monolithic_limit=limit, read_timeout=20)
        with pytest.raises(SizeMismatch):
            c.write_image(f"{distribution.host}/{unique('liar/r')}:v", img)


def test_copy_between_pycrane_and_distribution(request: pytest.FixtureRequest) -> None:
    try:
        pyc = request.getfixturevalue("pycrane_registry")
    except pytest.FixtureLookupError:
        pytest.skip("pycrane's registry plugin is not available")
    dist = request.getfixturevalue("distribution")
    c = Client()
    idx = random_index(["linux/amd64", "linux/arm64"], seed=34)
    a = f"{pyc.host}/{unique('x/a')}:v"
    b = f"{dist.host}/{unique('x/b')}:v"
    a2 = f"{pyc.host}/{unique('x/a')}:back"
    c.write_index(a, idx)
    c.copy(a, b)
    c.copy(b, a2)
    for ref in (a, b, a2):
        assert c.get(ref).raw == idx.raw_manifest()
        for layer in c.image(ref, "linux/arm64").layers():
            layer_bytes(layer)


def test_concurrent_referrers_are_all_recorded(registry_server: Any) -> None:
    c = Client(jobs=4)
    repo = f"{registry_server.host}/{unique('ref/conc')}"
    img = random_image(1, 64, seed=35)
    c.write_image(f"{repo}:v", img)
    arts = [
        _artifact(img.descriptor(), f"application/vnd.example.a{i}", b'{"n":%d}' % i)
        for i in range(8)
    ]
    errors: list[BaseException] = []

    def push(a: SimpleImage) -> None:
        try:
            c.write_image(f"{repo}@{a.digest()}", a)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=push, args=(a,)) for a in arts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = {d.digest for d in c.referrers(f"{repo}:v").manifests}
    assert got == {a.digest() for a in arts}


def test_copy_platforms_filters_nested_indexes(registry_server: Any, client: Client) -> None:
    from pycrane.v1.image import SimpleIndex

    inner = random_index(["linux/arm64", "linux/ppc64le"], seed=36)
    img = random_image(1, 128, seed=37, platform=Platform("linux", "amd64"))
    outer = SimpleIndex.build([(None, img), (inner.descriptor(), inner)])
    host = registry_server.host
    src = f"{host}/{unique('nestf/src')}:v"
    client.write_index(src, outer)
    dst = f"{host}/{unique('nestf/dst')}:v"
    # Two platforms (one absent): a filtered index, its nested index filtered too.
    client.copy(src, dst, platforms=["linux/ppc64le", "linux/s390x"])
    assert (
        client.image(dst, "linux/ppc64le").digest() == client.image(src, "linux/ppc64le").digest()
    )
    # One platform: the image found inside the nested index, as crane copies it.
    one = f"{host}/{unique('nestf/dst')}:one"
    client.copy(src, one, platforms=["linux/ppc64le"])
    assert client.get(one).raw == client.image(src, "linux/ppc64le").raw_manifest()
    with pytest.raises(NoMatchingPlatform):
        client.image(dst, "linux/amd64")
    with pytest.raises(NoMatchingPlatform):
        client.image(dst, "linux/arm64")
    # Everything matching: the very same index is copied.
    dst2 = f"{host}/{unique('nestf/dst')}:all"
    client.copy(src, dst2, platforms=["linux/amd64", "linux/arm64", "linux/ppc64le"])
    assert client.get(dst2).raw == outer.raw_manifest()
