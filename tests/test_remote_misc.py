"""Proxies from the environment, the crane-like module functions, and odd manifests."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pycrane import remote
from pycrane.errors import ManifestError, TransportError
from pycrane.name import parse_reference
from pycrane.random import random_image, random_index
from pycrane.remote import Client, RemoteDescriptor, RetryPolicy
from pycrane.remote._transport import Transport
from pycrane.v1 import mediatypes as mt
from pycrane.v1.digest import Digest
from tests.faultproxy import FaultProxy
from tests.fixtures_distribution import start_distribution

pytestmark = pytest.mark.distribution

FAST = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02)


@pytest.fixture
def forward_proxy(distribution: Any) -> Iterator[FaultProxy]:
    # Go's HTTP server accepts absolute-form request targets, so the fault proxy
    # doubles as a forward proxy to the one registry behind it.
    p = FaultProxy(distribution.host).start()
    try:
        yield p
    finally:
        p.stop()


def test_http_proxy_from_environment(
    forward_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://{forward_proxy.host}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://{forward_proxy.host}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    # A name that does not resolve: only the proxy can reach it. Not loopback, so
    # https is tried first (the proxy refuses CONNECT) and insecure falls back to http.
    c = Client(insecure=True, retry=FAST)
    img = random_image(1, 64, seed=601)
    ref = "registry.invalid:5000/proxied/img:v"
    c.write_image(ref, img)
    assert c.get(ref).raw == img.raw_manifest()
    paths = [e.path for e in forward_proxy.log]
    assert any(p.startswith("http://registry.invalid:5000/v2/proxied/img/") for p in paths)
    assert all(
        "proxy-authorization" not in {k.lower() for k in e.headers} for e in forward_proxy.log
    )


def test_proxy_credentials_from_url(
    forward_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    monkeypatch.setenv("HTTP_PROXY", f"http://pu:p%40ss@{forward_proxy.host}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://pu:p%40ss@{forward_proxy.host}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    c = Client(insecure=True, retry=FAST)
    c.write_image("registry.invalid:5000/proxied/auth:v", random_image(1, 32, seed=607))
    want = "Basic " + base64.b64encode(b"pu:p@ss").decode()
    plain = [e for e in forward_proxy.log if e.path.startswith("http://")]
    got = [{k.lower(): v for k, v in e.headers.items()} for e in plain]
    assert got and all(h.get("proxy-authorization") == want for h in got)


def test_no_proxy_bypasses(forward_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://{forward_proxy.host}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://{forward_proxy.host}")
    monkeypatch.setenv("NO_PROXY", ".invalid")
    with pytest.raises(TransportError):
        Client(insecure=True, retry=FAST).get("registry.invalid:5000/proxied/img:v")
    assert forward_proxy.log == []


@pytest.mark.parametrize(
    ("err", "tries"), [(socket.EAI_NONAME, 1), (socket.EAI_AGAIN, 3)], ids=["unknown", "again"]
)
def test_a_host_that_does_not_exist_fails_at_once(
    err: int, tries: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "nowhere.invalid":
            asked.append(host)
            raise socket.gaierror(err, "resolver says no")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(TransportError, match=r"nowhere\.invalid"):
        Client(retry=RetryPolicy(attempts=3, backoff=0.01)).get("nowhere.invalid/x:1")
    assert len(asked) == tries


def test_module_functions_close_the_client_they_open(
    registry_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = registry_server.host
    img = random_image(2, 256, seed=603)
    with Client() as c:
        remote.push(img, f"{host}/fn/closed:v", client=c)
    closed: list[Client] = []
    close = Client.close

    def counting_close(self: Client) -> None:
        closed.append(self)
        close(self)

    monkeypatch.setattr(Client, "close", counting_close)
    assert remote.digest(f"{host}/fn/closed:v") == img.digest()
    assert len(closed) == 1
    lazy = remote.image(f"{host}/fn/closed:v")
    assert len(closed) == 2
    # Closing frees the connections; a lazy image still reads (new connections).
    for layer in lazy.layers():
        with layer.compressed() as r:
            assert r.read() == img.layer_by_digest(layer.digest()).compressed().read()
    with Client() as mine:
        before = len(closed)
        remote.digest(f"{host}/fn/closed:v", client=mine)
        assert len(closed) == before  # a caller's client is the caller's to close


def test_module_functions_mirror_crane(registry_server: Any) -> None:
    c = Client()
    host = registry_server.host
    idx = random_index(["linux/amd64", "linux/arm64"], seed=602)
    remote.push(idx, f"{host}/fn/idx:v", client=c)
    arm = next(d for d in idx.index_manifest().manifests if str(d.platform) == "linux/arm64")
    assert remote.digest(f"{host}/fn/idx:v", client=c) == idx.digest()
    assert remote.digest(f"{host}/fn/idx:v", platform="linux/arm64", client=c) == arm.digest
    assert remote.manifest(f"{host}/fn/idx:v", client=c) == idx.raw_manifest()
    cfg = json.loads(remote.config(f"{host}/fn/idx:v", platform="linux/arm64", client=c))
    assert cfg["architecture"] == "arm64"
    remote.tag(f"{host}/fn/idx:v", "w", client=c)
    assert sorted(remote.list_tags(f"{host}/fn/idx", client=c)) == ["v", "w"]
    remote.copy(f"{host}/fn/idx:v", f"{host}/fn/copy:v", platforms=["linux/amd64"], client=c)
    assert remote.image(f"{host}/fn/copy:v", client=c).config_file().architecture == "amd64"
    assert remote.delete(f"{host}/fn/copy:v", client=c) is not None
    assert "fn/idx" in remote.catalog(host, client=c)
    assert remote.referrers(f"{host}/fn/idx:v", client=c).manifests == ()
    with pytest.raises(TypeError):
        remote.get(f"{host}/fn/idx:v", client=c, insecure=True)


def test_schema1_is_a_clear_manifest_error() -> None:
    raw = json.dumps(
        {"schemaVersion": 1, "name": "a/b", "tag": "v", "fsLayers": [], "history": []}
    ).encode()
    rd = RemoteDescriptor(
        Client(),
        parse_reference("127.0.0.1:1/a/b:v"),
        raw,
        mt.DOCKER_MANIFEST_SCHEMA1,
        Digest.from_bytes(raw),
    )
    with pytest.raises(ManifestError, match="schema 1") as ei:
        rd.image()
    assert "\n" not in str(ei.value)


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    reg = start_distribution(tmp_path_factory.mktemp("tls"), "anonymous", tls=True)
    try:
        yield reg
    finally:
        reg.stop()


def test_tls_verified_with_ca_file(tls_registry: Any) -> None:
    ca = str(tls_registry.extra["ca_cert"])
    c = Client(ca_file=ca, retry=FAST)
    img = random_image(1, 64, seed=603)
    # Loopback: plain http is tried first; the TLS server's answer sends us to https.
    c.write_image(f"{tls_registry.host}/tls/img:v", img)
    assert c.get(f"{tls_registry.host}/tls/img:v").raw == img.raw_manifest()
    assert c.session(parse_reference(f"{tls_registry.host}/a:b").registry).base_url.startswith(
        "https://"
    )


def test_tls_unknown_ca_is_refused_unless_insecure(tls_registry: Any) -> None:
    t = Transport(retry=FAST)
    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED") as ei:
        t.request("GET", f"https://{tls_registry.host}/v2/")
    assert "\n" not in str(ei.value)
    assert (
        Transport(insecure=True, retry=FAST)
        .request("GET", f"https://{tls_registry.host}/v2/")
        .status
        == 200
    )
    assert Client(insecure=True, retry=FAST).catalog(tls_registry.host) is not None


def test_user_agent_and_no_auth_for_anonymous(forward_proxy: FaultProxy) -> None:
    c = Client(retry=FAST)
    c.write_image(f"{forward_proxy.host}/ua/img:v", random_image(1, 32, seed=604))
    assert forward_proxy.log
    for e in forward_proxy.log:
        assert e.headers.get("User-Agent", "").startswith("pycrane/")
        assert "Authorization" not in e.headers


class _Endless:
    def __init__(self, fail_after: int | None = None) -> None:
        self.closed = threading.Event()
        self.reads = 0
        self.fail_after = fail_after

    def read(self, n: int = -1) -> bytes:
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise TransportError("boom")
        return b"x" * min(n, 1000)

    def close(self) -> None:
        self.closed.set()


def test_prefetcher_stops_when_closed_dropped_or_failing() -> None:
    import gc

    from pycrane.remote._prefetch import Prefetcher

    raw = _Endless()
    p = Prefetcher(raw, chunk=1000, depth=2)
    assert p.read(10) == b"x" * 10
    assert p.read(2000) == b"x" * 990  # the rest of the first chunk, no more
    p.close()
    assert raw.closed.wait(10)

    raw2 = _Endless()
    p2 = Prefetcher(raw2, chunk=1000, depth=2)
    p2.read(1)
    del p2
    gc.collect()
    assert raw2.closed.wait(10)  # dropped without close: the pump thread still ends

    raw3 = _Endless(fail_after=3)
    p3 = Prefetcher(raw3, chunk=1000, depth=8)
    with pytest.raises(TransportError, match="boom"):
        while p3.read(1000):
            pass
    assert raw3.closed.wait(10)


def test_foreign_layer_is_pulled_from_its_url(distribution: Any) -> None:
    from dataclasses import replace
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from pycrane.errors import NotFoundError
    from pycrane.random import image_from_layers, random_layer
    from pycrane.v1.image import BytesLayer

    payload = random_layer(5000, seed=605).data
    hits: list[str] = []

    class Blobs(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            hits.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Blobs)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/layer.tar.gz"

        class Foreign(BytesLayer):
            def descriptor(self) -> Any:
                return replace(super().descriptor(), urls=(url,))

        foreign = Foreign(payload, mt.DOCKER_FOREIGN_LAYER, diff_id=Digest.from_bytes(b"f"))
        img = image_from_layers([random_layer(100, seed=606), foreign])
        ref = f"{distribution.host}/foreign/img:v"
        Client(retry=FAST).write_image(ref, img)  # the foreign layer is not uploaded
        layer = Client(insecure=True, retry=FAST).image(ref).layers()[1]
        with layer.compressed() as r:
            data = r.read()
        assert data == payload and hits == [""]
        with pytest.raises(NotFoundError, match="not https"):
            Client(retry=FAST).image(ref).layers()[1].compressed()
    finally:
        srv.shutdown()
        srv.server_close()
