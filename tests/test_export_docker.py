"""``pycrane export`` against Docker's own view of the same image's filesystem."""

from __future__ import annotations

import io
import shutil
import tarfile
from typing import Any

import pytest

from pycrane import Client, mutate
from tests.fixtures_docker import Docker
from tests.test_export_helpers import E, image_of

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("dockerd") is None, reason="dockerd is not installed"),
]

#: What Docker adds to every container's filesystem (its init layer and mount points).
DOCKER_INIT = {
    ".dockerenv",
    "dev",
    "dev/console",
    "dev/pts",
    "dev/shm",
    "etc",
    "etc/hostname",
    "etc/hosts",
    "etc/mtab",
    "etc/resolv.conf",
    "proc",
    "sys",
}


def _tree(data: bytes) -> dict[str, Any]:
    """name -> file bytes, ("symlink", target) or "dir"; hard links read as their target."""
    out: dict[str, Any] = {}
    links: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t:
            name = m.name.rstrip("/")
            if m.isdir():
                out[name] = "dir"
            elif m.issym():
                out[name] = ("symlink", m.linkname)
            elif m.islnk():
                links[name] = m.linkname
            else:
                f = t.extractfile(m)
                assert f is not None
                out[name] = f.read()
    for name, target in links.items():
        out[name] = out[target]
    return out


def test_export_matches_dockers_view_of_the_image(docker: Docker, pycrane_registry: Any) -> None:
    img = image_of(
        [
            E("x", "d"),
            E("x/old", "f", b"old"),
            E("a", "f", b"1"),
            E("b", "f", b"b"),
            E("o", "d"),
            E("o/gone", "f", b"g"),
            E("t", "f", b"target"),
            E("ln", "l", "t"),
            E("dir/deep/file", "f", b"deep"),
        ],
        [E("x", "f", b"file")],  # a directory replaced by a file...
        [
            E("x", "d"),  # ...and by a directory again: x/old must stay hidden
            E("x/new", "f", b"new"),
            E("a", "f", b"2"),
            E(".wh.b"),
            E("o", "d"),
            E("o/.wh..wh..opq"),
            E("o/new", "f", b"n"),
            E("hl", "h", "t"),
            E("ünï/" + "n" * 150, "f", b"long"),
        ],
    )
    ref = f"{pycrane_registry.host}/docker/export:1"
    Client().write_image(ref, img)
    docker.run("pull", ref)
    cid = docker.run("create", ref, "unused").stdout.strip()
    try:
        theirs = _tree(docker.run_bytes("export", cid))
    finally:
        docker.run("rm", cid)
        docker.run("rmi", ref)
    buf = io.BytesIO()
    mutate.export(img, buf)
    ours = _tree(buf.getvalue())
    extra = set(theirs) - set(ours) - DOCKER_INIT
    # Docker makes the parents a layer leaves implicit; pycrane, like crane, does not.
    parents = {"/".join(n.split("/")[:i]) for n in ours for i in range(1, n.count("/") + 1)}
    assert extra <= parents, extra - parents
    assert all(theirs[p] == "dir" for p in extra)
    assert ours == {k: v for k, v in theirs.items() if k in ours}
    assert set(ours) <= set(theirs)
