"""Load on the registry: many parallel pushes and pulls, and a 1 GiB blob in bounded memory."""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import urllib3

from pycrane.registry import RegistryServer
from tests.test_registry import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Client, sha256
from tests.test_registry_disk import Proc


@pytest.mark.stress
@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_parallel_pushes_and_pulls_of_overlapping_images(tmp_path: Path, storage: str) -> None:
    """16 threads push 48 images made of 12 shared layers in several upload styles, then pull."""
    pool_layers = [os.urandom(random.randint(1, 600_000)) for _ in range(12)]
    with RegistryServer(disk=tmp_path if storage == "disk" else None, max_threads=32) as reg:
        c = Client(reg, maxsize=32)

        def upload(repo: str, data: bytes, style: int) -> None:
            d = sha256(data)
            if style == 0:
                r = c.req("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", body=data)
            else:
                loc = c.req("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
                if style == 1:
                    r = c.req("PUT", f"{loc}?digest={d}", body=data)
                else:
                    half = len(data) // 2
                    r = c.req("PATCH", loc, body=data[:half], Content_Range=f"0-{half - 1}")
                    assert r.status == 202, r.data
                    loc = r.headers["Location"]
                    r = c.req("PUT", f"{loc}?digest={d}", body=iter([data[half:]]))
            assert r.status == 201, r.data

        def push(i: int) -> tuple[str, str, bytes]:
            rnd = random.Random(i)
            repo = f"stress/r{i % 5}"
            layers = rnd.sample(pool_layers, 3)
            for n, data in enumerate(layers):
                upload(repo, data, (i + n) % 3)
            cfg = json.dumps({"i": i}).encode()
            upload(repo, cfg, 0)
            doc = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha256(cfg), "size": len(cfg)},
                "layers": [
                    {"mediaType": OCI_LAYER, "digest": sha256(x), "size": len(x)} for x in layers
                ],
            }
            raw = json.dumps(doc).encode()
            r = c.push_manifest(repo, f"t{i}", raw)
            assert r.status == 201, r.data
            return repo, f"t{i}", raw

        with ThreadPoolExecutor(16) as ex:
            pushed = list(ex.map(push, range(48)))

        def pull(item: tuple[str, str, bytes]) -> None:
            repo, tag, raw = item
            assert c.req("GET", f"/v2/{repo}/manifests/{tag}").data == raw
            for layer in json.loads(raw)["layers"]:
                body = c.req("GET", f"/v2/{repo}/blobs/{layer['digest']}").data
                assert sha256(body) == layer["digest"]

        with ThreadPoolExecutor(16) as ex:
            list(ex.map(pull, pushed * 2))
        tags = set()
        for r in range(5):
            tags |= set(c.req("GET", f"/v2/stress/r{r}/tags/list").json()["tags"])
        assert tags == {f"t{i}" for i in range(48)}


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.stress
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_one_gib_blob_streams_in_bounded_memory(tmp_path: Path) -> None:
    """Upload 1 GiB twice (chunked PATCH, then a Content-Length POST) and download it."""
    block = os.urandom(1024 * 1024)
    blocks = 1024
    h = hashlib.sha256()
    for _ in range(blocks):
        h.update(block)
    digest = "sha256:" + h.hexdigest()

    def body() -> Iterator[bytes]:
        for _ in range(blocks):
            yield block

    p = Proc(tmp_path / "disk")
    try:
        http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=10, read=300))
        base = p.url
        loc = http.request("POST", f"{base}/v2/big/blobs/uploads/").headers["Location"]
        r = http.request("PATCH", base + loc, body=body(), chunked=True)
        assert r.status == 202, r.data
        r = http.request("PUT", f"{base}{r.headers['Location']}?digest={digest}")
        assert r.status == 201, r.data
        r = http.request(
            "POST",
            f"{base}/v2/big2/blobs/uploads/?digest={digest}",
            body=body(),
            headers={"Content-Length": str(blocks * len(block))},
        )
        assert r.status == 201, r.data
        r = http.request("GET", f"{base}/v2/big/blobs/{digest}", preload_content=False)
        got = hashlib.sha256()
        n = 0
        for chunk in r.stream(1024 * 1024):
            got.update(chunk)
            n += len(chunk)
        r.release_conn()
        assert n == blocks * len(block) and "sha256:" + got.hexdigest() == digest
        peak = _peak_rss_mib(p.proc.pid)
        print(f"server peak RSS after 2 x 1 GiB up + 1 GiB down: {peak:.1f} MiB")
        assert peak < 160, f"server peak RSS {peak:.0f} MiB for a 1 GiB blob"
    finally:
        assert p.stop() == 0


def test_abandoned_downloads_and_idle_connections_do_not_wedge_the_server(tmp_path: Path) -> None:
    """Readers that hang up half-way and idle keep-alive sockets leave the server usable."""
    import socket

    data = os.urandom(8 * 1024 * 1024)
    with RegistryServer(disk=tmp_path, max_threads=4) as reg:
        c = Client(reg)
        d = c.push_blob("abandon/x", data)
        host, port = reg.host.rsplit(":", 1)
        for _ in range(12):  # three times more hang-ups than threads
            s = socket.create_connection((host, int(port)), timeout=30)
            s.sendall(f"GET /v2/abandon/x/blobs/{d} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert s.recv(65536)
            s.close()
        idle = [socket.create_connection((host, int(port)), timeout=30) for _ in range(2)]
        # With 2 of 4 threads held by idle sockets, requests are still served.
        for _ in range(5):
            assert sha256(c.req("GET", f"/v2/abandon/x/blobs/{d}").data) == d
    # Stopping did not wait for the idle sockets; they are closed by the server.
    for s in idle:
        assert s.recv(10) == b""
        s.close()


def test_stop_returns_while_every_thread_slot_is_taken() -> None:
    import socket
    import threading

    reg = RegistryServer(max_threads=1).start()
    host, port = reg.host.rsplit(":", 1)
    idle = socket.create_connection((host, int(port)), timeout=30)
    idle.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(4096).startswith(b"HTTP/1.1 200")  # its handler now waits for more
    waiting = socket.create_connection((host, int(port)), timeout=30)  # no slot for it
    stopper = threading.Thread(target=reg.stop)
    stopper.start()
    stopper.join(30)
    assert not stopper.is_alive(), "stop() hung with every thread slot taken"
    idle.close()
    waiting.close()
