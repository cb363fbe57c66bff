"""Strict HTTP/1.1 request framing (issue 16, item 5), over raw sockets to 127.0.0.1.

Before the fix each of these requests was accepted with 201 (and the TE+CL one
left a smuggled second request on the connection). Now every one is a 400 (501
for an unknown transfer coding) and the server closes the connection. The
Content-Length cases also run against CNCF distribution, which answers 400 too.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pycrane.registry import RegistryServer
from tests.test_registry import sha256

BLOB = b"abc"
DIGEST = sha256(BLOB)


@pytest.fixture(scope="module", params=["memory", "disk"])
def reg(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    disk = tmp_path_factory.mktemp("regdisk") if request.param == "disk" else None
    with RegistryServer(disk=disk) as server:
        yield server


def exchange(host: str, payload: bytes) -> list[bytes]:
    """Send ``payload``, collect every response head until the server closes (or 10 s)."""
    h, port = host.rsplit(":", 1)
    with socket.create_connection((h, int(port)), timeout=10) as s:
        s.sendall(payload)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except TimeoutError:
            data += b"\r\n\r\n<still open>"
    return [p for p in data.split(b"\r\n\r\n") if p.startswith(b"HTTP/1.1 ") or b"<still" in p]


def post(
    headers: str, body: bytes = BLOB, path: str = f"/v2/f/x/blobs/uploads/?digest={DIGEST}"
) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body


BAD_LENGTHS = {
    "plus": "Content-Length: +3\r\n",
    "underscore": "Content-Length: 0_3\r\n",
    "hex": "Content-Length: 0x3\r\n",
    "negative": "Content-Length: -3\r\n",
    "two-different": "Content-Length: 3\r\nContent-Length: 10\r\n",
    "list-different": "Content-Length: 3, 10\r\n",
}


@pytest.mark.parametrize("case", sorted(BAD_LENGTHS))
def test_bad_content_length_is_400_and_close(reg: RegistryServer, case: str) -> None:
    replies = exchange(reg.host, post(BAD_LENGTHS[case]))
    assert len(replies) == 1 and replies[0].startswith(b"HTTP/1.1 400"), replies


@pytest.mark.parametrize("case", ["plus", "underscore", "two-different"])
def test_distribution_refuses_the_same_lengths(distribution: object, case: str) -> None:
    host = distribution.host  # type: ignore[attr-defined]
    replies = exchange(host, post(BAD_LENGTHS[case]))
    assert replies and replies[0].startswith(b"HTTP/1.1 400"), replies


def test_equal_repeated_lengths_are_one_value(reg: RegistryServer) -> None:
    replies = exchange(
        reg.host, post("Content-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n")
    )
    assert replies[0].startswith(b"HTTP/1.1 201"), replies


@pytest.mark.parametrize("size", [b"0x3", b"+3", b"0_3", b"3 3", b"", b"-3", b"11111111111111111"])
def test_bad_chunk_sizes_are_400_and_close(reg: RegistryServer, size: bytes) -> None:
    body = size + b"\r\nabc\r\n0\r\n\r\n"
    replies = exchange(reg.host, post("Transfer-Encoding: chunked\r\n", body))
    assert len(replies) == 1 and replies[0].startswith(b"HTTP/1.1 400"), replies


def test_bare_lf_in_chunked_framing_is_refused(reg: RegistryServer) -> None:
    replies = exchange(reg.host, post("Transfer-Encoding: chunked\r\n", b"3\nabc\r\n0\r\n\r\n"))
    assert len(replies) == 1 and replies[0].startswith(b"HTTP/1.1 400"), replies


def test_te_and_cl_together_are_refused_and_nothing_is_smuggled(reg: RegistryServer) -> None:
    smuggled = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    replies = exchange(
        reg.host, post(f"Transfer-Encoding: chunked\r\nContent-Length: {len(body)}\r\n", body)
    )
    assert len(replies) == 1 and replies[0].startswith(b"HTTP/1.1 400"), replies
    assert b"Connection: close" in replies[0]


@pytest.mark.parametrize(
    ("te", "status"), [("gzip", b"400"), ("chunked, gzip", b"400"), ("gzip, chunked", b"501")]
)
def test_transfer_codings_other_than_chunked(reg: RegistryServer, te: str, status: bytes) -> None:
    replies = exchange(reg.host, post(f"Transfer-Encoding: {te}\r\n", b"3\r\nabc\r\n0\r\n\r\n"))
    assert len(replies) == 1 and replies[0].startswith(b"HTTP/1.1 " + status), replies


@pytest.mark.parametrize(
    "headers",
    [
        "Content-Length : 3\r\n",  # whitespace before the colon
        "X-A: 1\r\n X-Folded: 1\r\nContent-Length: 3\r\n",  # obs-fold
        "Bad Name: 1\r\nContent-Length: 3\r\n",
        "NoColon\r\nContent-Length: 3\r\n",
    ],
)
def test_malformed_header_lines_are_refused(reg: RegistryServer, headers: str) -> None:
    replies = exchange(reg.host, post(headers))
    assert len(replies) == 1 and replies[0].startswith(b"HTTP/1.1 400"), replies


def test_valid_framing_still_works(reg: RegistryServer) -> None:
    body = b"1;name=value\r\na\r\n2 ; x\r\nbc\r\n0\r\nTrailer: 1\r\n\r\n"
    replies = exchange(reg.host, post("Transfer-Encoding: Chunked\r\nConnection: close\r\n", body))
    assert len(replies) == 1 and replies[0].startswith(b"HTTP/1.1 201"), replies
    replies = exchange(reg.host, post("Content-Length: 003\r\nConnection: close\r\n"))
    assert replies[0].startswith(b"HTTP/1.1 201"), replies
