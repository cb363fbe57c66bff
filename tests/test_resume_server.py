"""The registry's disk storage keeps upload sessions across a server crash (issue 12.2).

``pycrane registry serve --disk DIR`` runs as a real process and is killed with
SIGKILL; a new process on the same DIR must answer the spec's upload-status GET
with what the dead one received, take the next PATCH at that offset (and refuse
one at another offset with 416), and publish the blob that hashes to its digest.
A dead server's temp files (a monolithic upload cut short) are removed when the
next one starts, since their writer's lock died with it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL of a child process"),
]

CHUNK = 3 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One ``pycrane registry serve --disk`` process on a fixed port."""

    def __init__(self, root: Path, port: int) -> None:
        env = dict(os.environ)
        env.pop("PYCRANE_DEBUG", None)
        self.port = port
        args = ["registry", "serve", "--address", f"127.0.0.1:{port}", "--disk", str(root)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pycrane", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(600):  # up to ~30 s for the interpreter to start and listen
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                if self.request("GET", "/v2/")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("server did not start")

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        c = self.conn()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.stderr is not None
        self.proc.stderr.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "registry"


def _patch(s: Server, location: str, data: bytes, start: int) -> tuple[int, dict[str, str]]:
    status, headers, _ = s.request(
        "PATCH",
        location,
        data,
        {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(data) - 1}",
        },
    )
    return status, headers


def _status(s: Server, location: str) -> int:
    """The upload-status GET: the offset the server holds (its ``Range: 0-<last>``)."""
    status, headers, _ = s.request("GET", location)
    assert status == 204, status
    last = int(headers["range"].split("-", 1)[1])
    return last + 1


def _ingest_leftovers(root: Path) -> list[str]:
    ingest = root / "ingest"
    return sorted(
        str(p.relative_to(ingest))
        for p in ingest.rglob("*")
        if p.is_file() and not p.name.endswith(".lock")
    )


def test_an_upload_session_survives_sigkill_and_continues_at_its_offset(root: Path) -> None:
    blob = os.urandom(3 * CHUNK + 12345)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    port = _free_port()
    s = Server(root, port)
    try:
        status, headers, _ = s.request("POST", "/v2/t/r/blobs/uploads/")
        assert status == 202
        location = headers["location"]
        for i in range(2):
            st, h = _patch(s, location, blob[i * CHUNK : (i + 1) * CHUNK], i * CHUNK)
            assert st == 202 and h["range"] == f"0-{(i + 1) * CHUNK - 1}", (st, h)
    finally:
        s.kill()

    s = Server(root, port)
    try:
        offset = _status(s, location)
        print(f"\nafter SIGKILL the new server holds {offset} of {len(blob)} bytes")
        assert offset == 2 * CHUNK
        # Another offset is refused (416): the client must continue where the server is.
        st, _ = _patch(s, location, blob[CHUNK : 2 * CHUNK], CHUNK)
        assert st == 416, st
        st, h = _patch(s, location, blob[offset : 3 * CHUNK], offset)
        assert st == 202 and h["range"] == f"0-{3 * CHUNK - 1}", (st, h)
        st, h, _ = s.request("PUT", f"{location}?digest={digest}", blob[3 * CHUNK :])
        assert st == 201, (st, h)
        st, _, got = s.request("GET", f"/v2/t/r/blobs/{digest}")
        assert st == 200 and got == blob
        st, _, _ = s.request("GET", location)
        assert st == 404  # the session ended with its PUT
        assert _ingest_leftovers(root) == []
    finally:
        s.stop()


def _kill_mid_request(s: Server, root: Path, path: str, body: bytes, send: int) -> None:
    """Send headers and ``send`` bytes of ``body`` to ``path``, wait until the server has
    written at least half of them into ``ingest/``, then SIGKILL it."""
    c = s.conn()
    try:
        c.putrequest("PATCH", path)
        c.putheader("Content-Type", "application/octet-stream")
        c.putheader("Content-Length", str(len(body)))
        c.endheaders()
        c.send(body[:send])
        for _ in range(600):  # bounded: up to ~30 s for the server to write
            written = sum(
                p.stat().st_size
                for p in (root / "ingest").rglob("*")
                if p.is_file() and not p.name.endswith(".lock")
            )
            if written >= send // 2:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the server wrote nothing of the request")
        s.kill()
    finally:
        c.close()


def test_a_patch_cut_by_sigkill_resumes_at_what_the_disk_kept(root: Path) -> None:
    blob = os.urandom(2 * CHUNK)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    port = _free_port()
    s = Server(root, port)
    status, headers, _ = s.request("POST", "/v2/t/r/blobs/uploads/")
    assert status == 202
    location = headers["location"]
    _kill_mid_request(s, root, location, blob, send=CHUNK)

    s = Server(root, port)
    try:
        offset = _status(s, location)
        print(f"\nkilled mid-PATCH: the new server kept {offset} of {CHUNK} bytes sent")
        assert 0 < offset <= CHUNK
        st, h = _patch(s, location, blob[offset:], offset)
        assert st == 202, (st, h)
        st, h, _ = s.request("PUT", f"{location}?digest={digest}")
        assert st == 201, (st, h)
        st, _, got = s.request("GET", f"/v2/t/r/blobs/{digest}")
        assert st == 200 and got == blob
        assert _ingest_leftovers(root) == []
    finally:
        s.stop()


def test_a_dead_servers_temp_files_go_when_the_next_one_starts(root: Path) -> None:
    """A monolithic upload (POST ?digest=) goes to an owned temp file: once its server is
    dead, the next server's start-up sweep removes it at once, whatever its age."""
    blob = os.urandom(2 * CHUNK)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    port = _free_port()
    s = Server(root, port)
    c = s.conn()
    try:
        c.putrequest("POST", f"/v2/t/r/blobs/uploads/?digest={digest}")
        c.putheader("Content-Type", "application/octet-stream")
        c.putheader("Content-Length", str(len(blob)))
        c.endheaders()
        c.send(blob[:CHUNK])
        for _ in range(600):
            if any(p.name.endswith(".tmp") for p in (root / "ingest").glob("*")):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("no temp file appeared")
        s.kill()
    finally:
        c.close()
    assert any(p.name.endswith(".tmp") for p in (root / "ingest").glob("*"))

    s = Server(root, port)
    try:
        assert _ingest_leftovers(root) == []
        assert not (root / "blobs" / "sha256" / digest.split(":")[1]).exists()
    finally:
        s.stop()
