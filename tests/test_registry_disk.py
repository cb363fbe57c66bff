"""Disk storage: name mapping, resumable sessions, and several server processes on one directory."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pycrane.registry import RegistryServer
from pycrane.registry.disk import DiskStorage
from tests.test_registry import Client, codes, sha256


class Proc:
    """A registry in its own process, started through ``serve``."""

    def __init__(self, disk: Path, *extra: str) -> None:
        code = (
            "import sys; from pycrane.registry import serve; "
            "serve('127.0.0.1:0', disk=sys.argv[1], read_only='--ro' in sys.argv)"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(disk), *extra],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        assert line.startswith("serving on http://"), line
        self.url = line.split()[-1]
        self.host = self.url.removeprefix("http://")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return rc


@pytest.fixture
def two_procs(tmp_path: Path) -> Iterator[tuple[Proc, Proc]]:
    a = Proc(tmp_path)
    b = Proc(tmp_path)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_tags_that_differ_in_case_and_reserved_names(tmp_path: Path) -> None:
    with RegistryServer(disk=tmp_path) as reg:
        c = Client(reg)
        raws = {}
        for repo in ["con/nul", "aux.x/com1"]:
            for tag in ["Latest", "latest", "LATEST", "con", "v1.", "a_B-c.D"]:
                raws[repo, tag] = c.push_image(repo, tag, layer=f"{repo}:{tag}".encode())
        for (repo, tag), raw in raws.items():
            assert c.req("GET", f"/v2/{repo}/manifests/{tag}").data == raw, (repo, tag)
        for repo in ["con/nul", "aux.x/com1"]:
            tags = c.req("GET", f"/v2/{repo}/tags/list").json()["tags"]
            assert tags == sorted(["Latest", "latest", "LATEST", "con", "v1.", "a_B-c.D"])
        assert set(c.req("GET", "/v2/_catalog").json()["repositories"]) == {"con/nul", "aux.x/com1"}
    # No file name differs from another only by case, and none is a reserved device name.
    names = [p.name for p in tmp_path.rglob("*")]
    for tags_dir in tmp_path.rglob("tags"):
        files = [p.name for p in tags_dir.iterdir()]
        assert len(files) == 6 and len({f.lower() for f in files}) == 6
    assert "con" not in names and "com1" not in names


def test_data_survives_a_restart_and_is_verified(tmp_path: Path) -> None:
    with RegistryServer(disk=tmp_path) as reg:
        raw = Client(reg).push_image("keep/app", "v1", layer=b"persisted layer")
    with RegistryServer(disk=tmp_path) as reg:
        c = Client(reg)
        assert c.req("GET", "/v2/keep/app/manifests/v1").data == raw
        layer = json.loads(raw)["layers"][0]["digest"]
        assert c.req("GET", f"/v2/keep/app/blobs/{layer}").data == b"persisted layer"
    # Nothing is left in the ingest area after completed uploads.
    leftovers = (tmp_path / "ingest").rglob("*")
    assert [p for p in leftovers if p.is_file() and p.suffix != ".lock"] == []


def test_interrupted_upload_resumes(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    with RegistryServer(disk=tmp_path) as reg:
        c = Client(reg)
        loc = c.req("POST", "/v2/resume/blobs/uploads/").headers["Location"]
        host, port = reg.host.rsplit(":", 1)
        # Send 1.5 MiB of a 3 MiB PATCH, then hang up.
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(
                f"PATCH {loc} HTTP/1.1\r\nHost: {reg.host}\r\n"
                f"Content-Length: {len(data)}\r\n\r\n".encode()
            )
            s.sendall(data[: len(data) // 2])
        offset = -1
        for _ in range(200):  # the server notices the hang-up asynchronously
            r = c.req("GET", loc)
            assert r.status == 204
            offset = int(r.headers["Range"].split("-")[1]) + 1
            if offset == len(data) // 2:
                break
            threading.Event().wait(0.05)
        assert offset == len(data) // 2
        r = c.req("PATCH", loc, body=data[offset:], Content_Range=f"{offset}-{len(data) - 1}")
        assert r.status == 202, r.data
        r = c.req("PUT", f"{loc}?digest={sha256(data)}")
        assert r.status == 201, r.data
        assert c.req("GET", f"/v2/resume/blobs/{sha256(data)}").data == data


def test_serve_stops_on_sigterm(tmp_path: Path) -> None:
    p = Proc(tmp_path)
    c = Client(p.url)
    assert c.req("GET", "/v2/").status == 200
    assert p.stop() == 0


def test_read_only_process(tmp_path: Path) -> None:
    p = Proc(tmp_path, "--ro")
    try:
        c = Client(p.url)
        r = c.req("POST", "/v2/x/blobs/uploads/")
        assert r.status == 405 and codes(r) == ["UNSUPPORTED"]
    finally:
        p.stop()


def test_session_moves_between_processes(two_procs: tuple[Proc, Proc]) -> None:
    """POST on one server, PATCH on the other, PUT on the first: one directory, one session."""
    a, b = two_procs
    ca = Client(a.url)
    cb = Client(b.url)
    data = os.urandom(2 * 1024 * 1024)
    loc = ca.req("POST", "/v2/moving/blobs/uploads/").headers["Location"]
    r = ca.req("PATCH", loc, body=data[:1000], Content_Range="0-999")
    assert r.status == 202
    r = cb.req("PATCH", loc, body=data[1000:], Content_Range=f"1000-{len(data) - 1}")
    assert r.status == 202, r.data
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    r = ca.req("PUT", f"{loc}?digest={sha256(data)}")
    assert r.status == 201, r.data
    assert cb.req("GET", f"/v2/moving/blobs/{sha256(data)}").data == data


def test_two_processes_parallel_pushes_of_shared_blobs(two_procs: tuple[Proc, Proc]) -> None:
    """Threads push images that share layers through both servers; all pulls verify."""
    a, b = two_procs
    shared = [os.urandom(512 * 1024) for _ in range(4)]
    clients = [Client(p.url) for p in (a, b)]

    def push(i: int) -> tuple[str, bytes]:
        c = clients[i % 2]
        repo = f"par/app{i % 3}"
        layers = [shared[i % 4], shared[(i + 1) % 4], f"own {i}".encode()]
        descs = []
        for data in layers:
            d = sha256(data)
            if c.req("HEAD", f"/v2/{repo}/blobs/{d}").status != 200:
                loc = c.req("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
                r = c.req("PATCH", loc, body=iter([data[:1000], data[1000:]]))
                assert r.status == 202, r.data
                r = c.req("PUT", f"{r.headers['Location']}?digest={d}")
                assert r.status == 201, r.data
            descs.append({"mediaType": "application/octet-stream", "digest": d, "size": len(data)})
        cfg = c.push_blob(repo, b"{}")
        doc = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": cfg,
                "size": 2,
            },
            "layers": descs,
        }
        raw = json.dumps(doc).encode()
        r = c.push_manifest(repo, f"t{i}", raw)
        assert r.status == 201, r.data
        return repo, raw

    with ThreadPoolExecutor(8) as pool:
        pushed = list(pool.map(push, range(24)))

    def pull(item: tuple[int, tuple[str, bytes]]) -> None:
        i, (repo, raw) = item
        c = clients[(i + 1) % 2]  # pull through the other server
        assert c.req("GET", f"/v2/{repo}/manifests/t{i}").data == raw
        for layer in json.loads(raw)["layers"]:
            body = c.req("GET", f"/v2/{repo}/blobs/{layer['digest']}").data
            assert sha256(body) == layer["digest"]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(pull, enumerate(pushed)))


def test_concurrent_uploads_of_one_blob(tmp_path: Path) -> None:
    data = os.urandom(4 * 1024 * 1024)
    d = sha256(data)
    with RegistryServer(disk=tmp_path) as reg:
        c = Client(reg, maxsize=16)

        def up(i: int) -> int:
            if i % 2:
                return int(
                    c.req("POST", f"/v2/same{i % 3}/blobs/uploads/?digest={d}", body=data).status
                )
            loc = c.req("POST", f"/v2/same{i % 3}/blobs/uploads/").headers["Location"]
            return int(c.req("PUT", f"{loc}?digest={d}", body=data).status)

        with ThreadPoolExecutor(12) as pool:
            assert set(pool.map(up, range(12))) == {201}
        for i in range(3):
            assert hashlib.sha256(c.req("GET", f"/v2/same{i}/blobs/{d}").data).hexdigest() == d[7:]
    leftovers = (tmp_path / "ingest").rglob("*")
    assert [p for p in leftovers if p.is_file() and p.suffix != ".lock"] == []
    assert len(list((tmp_path / "blobs" / "sha256").iterdir())) == 1


def test_disk_storage_rejects_path_tricks(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path, fsync=False)
    with RegistryServer(storage=storage) as reg:
        c = Client(reg)
        for session in ["0" * 31, "Z" * 32, "..%5C..%5Cx"]:
            r = c.req("GET", f"/v2/a/blobs/uploads/{session}")
            assert r.status == 404 and codes(r) == ["BLOB_UPLOAD_UNKNOWN"], session
        r = c.req("GET", "/v2/a/blobs/uploads/..%2F..%2Fx")
        assert r.status == 404
        r = c.req("GET", "/v2/a/..%2F..%2Fetc/tags/list")
        assert r.status == 400 and codes(r) == ["NAME_INVALID"]


def test_longest_tags_fit_in_file_names(tmp_path: Path) -> None:
    with RegistryServer(disk=tmp_path) as reg:
        c = Client(reg)
        long_upper = "T" + "AB" * 63 + "C"  # 128 characters, each one escaped on disk
        long_lower = "t" + "ab" * 63 + "c"
        raw = c.push_image("long/tags", long_upper)
        assert c.push_manifest("long/tags", long_lower, raw).status == 201
        assert c.req("GET", f"/v2/long/tags/manifests/{long_upper}").data == raw
        tags = c.req("GET", "/v2/long/tags/tags/list").json()["tags"]
        assert tags == sorted([long_upper, long_lower])
        assert c.req("DELETE", f"/v2/long/tags/manifests/{sha256(raw)}").status == 202
        assert c.req("GET", "/v2/long/tags/tags/list").json()["tags"] == []


def test_disk_registry_under_emulated_windows_semantics(tmp_path: Path) -> None:
    """Pushes, re-tags and pulls race while a scanner holds new files and renames linger.

    With Windows rules (no replacing an open file, a rename window, an antivirus that
    opens fresh files) every request must still succeed: tag updates go through
    atomic replace with retries, links are published without replacing, and readers
    retry sharing violations.
    """
    from tests.winfs import emulate_windows

    root = tmp_path / "disk"
    with emulate_windows(tmp_path, rename_window=0.001, antivirus=0.3, seed=3) as fs:
        with RegistryServer(disk=root) as reg:
            c = Client(reg, maxsize=8)
            base = c.push_image("win/app", "latest", layer=b"first")

            def worker(i: int) -> None:
                raw = c.push_image("win/app", "latest", layer=f"layer {i % 3}".encode())
                assert c.push_manifest("win/app", f"t{i}", raw).status == 201
                for _ in range(3):
                    r = c.req("GET", "/v2/win/app/manifests/latest")
                    assert r.status == 200, r.data
                    doc = json.loads(r.data)
                    d = doc["layers"][0]["digest"]
                    assert sha256(c.req("GET", f"/v2/win/app/blobs/{d}").data) == d
                assert c.req("GET", f"/v2/win/app/manifests/t{i}").data == raw

            with ThreadPoolExecutor(6) as pool:
                list(pool.map(worker, range(18)))
            assert c.req("GET", f"/v2/win/app/manifests/{sha256(base)}").data == base
        fs.wait_idle()
        print(f"emulated Windows errors {dict(fs.errors)}, antivirus holds {fs.av_holds}")
        assert fs.av_holds > 0


def test_sweep_drops_abandoned_sessions(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path, fsync=False)
    with RegistryServer(storage=storage) as reg:
        c = Client(reg)
        old = c.req("POST", "/v2/sweep/me/blobs/uploads/").headers["Location"]
        assert c.req("PATCH", old, body=b"abandoned").status == 202
        fresh = c.req("POST", "/v2/sweep/me/blobs/uploads/").headers["Location"]
        storage.close()  # release the open writer, as the idle reaper would
        session = old.rsplit("/", 1)[1]
        past = 1_000_000_000  # 2001
        for p in [*tmp_path.rglob(f"*{session}*"), *tmp_path.rglob(f"*{session}*/*")]:
            os.utime(p, (past, past))
        assert storage.sweep(older_than=3600) >= 2
        r = c.req("GET", old)
        assert r.status == 404 and codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
        assert c.req("GET", fresh).status == 204
    assert not any(session in p.name for p in tmp_path.rglob("*") if p.suffix != ".lock")


def test_session_requests_race_the_idle_reaper_and_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Status checks from many threads race the idle reaper and the closing PUT.

    A request that was waiting for the session while it ended must not reopen it
    (which would leave an orphan ingest holding the session's lock).
    """
    import pycrane.registry.disk as disk_mod

    monkeypatch.setattr(disk_mod, "IDLE_RELEASE", 0.004)
    storage = DiskStorage(tmp_path, fsync=False)
    with RegistryServer(storage=storage) as reg:
        c = Client(reg, maxsize=8)
        for round_ in range(3):
            data = os.urandom(2_000_000)
            loc = c.req("POST", "/v2/race/blobs/uploads/").headers["Location"]
            r = c.req("PATCH", loc, body=data, Content_Range=f"0-{len(data) - 1}")
            assert r.status == 202

            def status(i: int, loc: str = loc, data: bytes = data) -> int:
                if i == 40:
                    r = c.req("PUT", f"{loc}?digest={sha256(data)}")
                    assert r.status == 201, r.data
                    return 201
                if i % 10 == 9:
                    threading.Event().wait(0.003)
                r = c.req("GET", loc)
                assert r.status in (204, 404), r.data
                if r.status == 204:
                    assert r.headers["Range"] == f"0-{len(data) - 1}"
                return int(r.status)

            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(status, range(100)))
            assert results.count(201) == 1 and 204 in results, round_
            assert c.req("GET", loc).status == 404
        storage.close()
    # Nothing reopened a finished session behind our back.
    assert [p.name for p in (tmp_path / "ingest").iterdir() if p.is_dir()] == []


def test_collect_garbage_keeps_what_repositories_link(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path, fsync=False)
    with RegistryServer(storage=storage) as reg:
        c = Client(reg)
        kept = c.push_image("gc/keep", "v1", layer=b"kept layer")
        gone = c.push_image("gc/gone", "v1", layer=b"gone layer")
        shared = c.push_blob("gc/gone", b"shared")
        c.push_blob("gc/keep", b"shared")
        assert c.req("DELETE", f"/v2/gc/gone/manifests/{sha256(gone)}").status == 202
        for layer in [json.loads(gone)["config"], *json.loads(gone)["layers"]]:
            assert c.req("DELETE", f"/v2/gc/gone/blobs/{layer['digest']}").status == 202
        assert c.req("DELETE", f"/v2/gc/gone/blobs/{shared}").status == 202
    # gone's manifest, config and layer go; everything keep links (and "shared") stays.
    assert storage.collect_garbage(dry_run=True)[0] == 3
    count, size = storage.collect_garbage()
    assert count == 3 and size == len(gone) + len(b"gone layer") + len(
        json.dumps({"architecture": "amd64", "os": "linux", "n": "gc/gone"})
    )
    assert storage.collect_garbage() == (0, 0)
    with RegistryServer(storage=storage) as reg:
        c = Client(reg)
        assert c.req("GET", "/v2/gc/keep/manifests/v1").data == kept
        for layer in [json.loads(kept)["config"], *json.loads(kept)["layers"]]:
            assert (
                sha256(c.req("GET", f"/v2/gc/keep/blobs/{layer['digest']}").data) == layer["digest"]
            )
        assert c.req("GET", f"/v2/gc/keep/blobs/{shared}").data == b"shared"
