"""The ``pycrane`` command end to end: ``python -m pycrane`` in a subprocess against real
registries (CNCF distribution and pycrane's own server), read back by skopeo and umoci.

Every successful command must leave stderr empty (stderr is not a terminal here), and
every failure must be one ``pycrane: error:`` line without a traceback.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pycrane.layout import Layout
from pycrane.random import random_image, random_index
from pycrane.v1.image import Image, ImageIndex

pytestmark = pytest.mark.timeout(300)

HAVE_SKOPEO = shutil.which("skopeo") is not None
HAVE_UMOCI = shutil.which("umoci") is not None
POSIX_ONLY = pytest.mark.skipif(
    sys.platform == "win32", reason="ptys, SIGINT to a child, SIGPIPE and bash are POSIX things"
)


def _env(extra: dict[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYCRANE_DEBUG", None)
    env.pop("CI", None)
    if home is not None:
        env["DOCKER_CONFIG"] = str(home)
        env["REGISTRY_AUTH_FILE"] = str(home / "auth.json")
        env["XDG_RUNTIME_DIR"] = str(home)
        env["XDG_CONFIG_HOME"] = str(home)
    env.update(extra or {})
    return env


class Cli:
    """Runs ``python -m pycrane`` with an isolated credentials directory."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def __call__(
        self,
        *args: str,
        stdin: bytes | None = None,
        ok: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        p = subprocess.run(
            [sys.executable, "-m", "pycrane", *args],
            input=stdin,
            capture_output=True,
            env=_env(env, self.home),
            timeout=240,
        )
        if ok:
            assert p.returncode == 0, (args, p.returncode, p.stderr.decode())
            assert p.stderr == b"", (args, p.stderr.decode())
        return p

    def out(self, *args: str, **kw: Any) -> str:
        return self(*args, **kw).stdout.decode().strip()

    def fails(self, *args: str, code: int = 1, **kw: Any) -> str:
        p = self(*args, ok=False, **kw)
        err = p.stderr.decode()
        assert p.returncode == code, (args, p.returncode, err)
        assert "Traceback" not in err, err
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("pycrane: error: "), err
        return lines[0]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home)


@pytest.fixture(params=["distribution", "pycrane_registry"])
def registry(request: pytest.FixtureRequest) -> Any:
    """Each test runs against CNCF distribution and against pycrane's own server."""
    if request.param == "distribution" and shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed")
    return request.getfixturevalue(request.param)


def _layout_with(path: Path, obj: Image | ImageIndex, ref_name: str = "v1") -> Path:
    Layout.create(path).append(obj, ref_name=ref_name)
    return path


@pytest.fixture(scope="module")
def image_layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Image]:
    img = random_image(3, 64 * 1024, duplicate_empty_layers=2, seed=4)
    return _layout_with(tmp_path_factory.mktemp("src") / "layout", img), img


@pytest.fixture(scope="module")
def index_layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ImageIndex]:
    idx = random_index(("linux/amd64", "linux/arm64", "linux/arm/v7"), layers=2, seed=5)
    return _layout_with(tmp_path_factory.mktemp("src") / "layout", idx), idx


_counter = iter(range(10**6))


def _repo(registry: Any, name: str) -> str:
    # Session-scoped registries: a fresh repository per test keeps tests independent.
    return f"{registry.host}/cli/{name}-{next(_counter)}"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ push and inspect


def test_push_inspect_tag_ls_delete(
    cli: Cli, registry: Any, image_layout: tuple[Path, Image]
) -> None:
    layout, img = image_layout
    repo = _repo(registry, "app")
    digest = str(img.digest())
    refs_file = layout.parent / f"refs-{next(_counter)}"

    assert (
        cli.out("push", str(layout), f"{repo}:v1", "--image-refs", str(refs_file))
        == f"{repo}@{digest}"
    )
    assert refs_file.read_text() == f"{repo}@{digest}\n"
    assert cli.out("digest", f"{repo}:v1") == digest
    assert cli.out("digest", "--full-ref", f"{repo}:v1") == f"{repo}@{digest}"

    raw = cli("manifest", f"{repo}:v1").stdout
    assert raw == img.raw_manifest()  # byte for byte, no trailing newline
    assert _sha256(raw) == digest
    config = cli("config", f"{repo}@{digest}").stdout
    assert config == img.raw_config()

    layer = img.manifest().layers[0]
    blob = cli("blob", f"{repo}@{layer.digest}").stdout
    assert _sha256(blob) == str(layer.digest) and len(blob) == layer.size

    cli("tag", f"{repo}:v1", "v2")
    assert sorted(cli.out("ls", repo).split()) == ["v1", "v2"]
    assert sorted(cli.out("ls", "--full-ref", repo).split()) == [f"{repo}:v1", f"{repo}:v2"]
    catalog = cli.out("catalog", registry.host).split()
    assert repo.split("/", 1)[1] in catalog
    assert f"{repo}" in cli.out("catalog", "--full-ref", registry.host).split()

    cli("delete", f"{repo}:v2")
    line = cli.fails("digest", f"{repo}@{digest}")
    assert "404" in line or "not found" in line.lower() or "unknown" in line.lower()


def test_ls_omit_digest_tags(cli: Cli, registry: Any, image_layout: tuple[Path, Image]) -> None:
    layout, img = image_layout
    repo = _repo(registry, "sigs")
    cli.out("push", str(layout), f"{repo}:v1")
    sig_tag = "sha256-" + img.digest().hex + ".sig"
    cli("tag", f"{repo}:v1", sig_tag)
    assert sorted(cli.out("ls", repo).split()) == sorted(["v1", sig_tag])
    assert cli.out("ls", "-O", repo).split() == ["v1"]


# ------------------------------------------------------------------ pull in every format


@pytest.mark.interop
def test_pull_oci_read_by_skopeo_and_umoci(
    cli: Cli, registry: Any, image_layout: tuple[Path, Image], tmp_path: Path
) -> None:
    layout, img = image_layout
    repo = _repo(registry, "pull")
    cli("push", str(layout), f"{repo}:v1")
    out = tmp_path / "oci"
    cli("pull", "--format", "oci", "--annotate-ref", f"{repo}:v1", str(out))
    index = json.loads((out / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == str(img.digest())
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == f"{repo}:v1"
    assert cli.out("validate", "--layout", str(out)) == f"PASS: {out}"
    # Same pull again: the entry is replaced, not duplicated (ggcr #1807).
    cli("pull", "--format", "oci", "--annotate-ref", f"{repo}:v1", str(out))
    assert len(json.loads((out / "index.json").read_text())["manifests"]) == 1

    if not HAVE_SKOPEO:
        pytest.skip("skopeo is not installed")
    p = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{out}:{repo}:v1"], capture_output=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == img.raw_manifest()
    if not HAVE_UMOCI:
        pytest.skip("umoci is not installed")
    # umoci wants a ref name without ':' or '/': pull again under a plain name.
    out2 = tmp_path / "oci-umoci"
    cli("pull", "--format", "oci", f"{repo}:v1", str(out2))
    Layout.open(out2).append(Layout.open(out2).image(img.digest()), ref_name="v1")
    bundle = tmp_path / "bundle"
    p = subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{out2}:v1", str(bundle)],
        capture_output=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    files = sorted(f.name for f in (bundle / "rootfs").iterdir())
    assert len([f for f in files if f.startswith("random-")]) == 3


@pytest.mark.interop
def test_pull_tarball_and_legacy(
    cli: Cli, registry: Any, image_layout: tuple[Path, Image], tmp_path: Path
) -> None:
    layout, img = image_layout
    repo = _repo(registry, "tar")
    cli("push", str(layout), f"{repo}:v1")
    target = tmp_path / "image.tar"
    cli("pull", f"{repo}:v1", str(target))
    assert cli.out("validate", "--tarball", str(target)) == f"PASS: {target}"
    assert cli.out("digest", "--tarball", str(target)) == str(img.digest())
    with tarfile.open(target) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == [f"{repo}:v1"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left

    legacy = tmp_path / "legacy.tar"
    cli("pull", "--format", "legacy", f"{repo}:v1", str(legacy))
    with tarfile.open(legacy) as tf:
        names = tf.getnames()
        repositories = json.load(tf.extractfile("repositories"))  # type: ignore[arg-type]
    assert len([n for n in names if n.endswith("/layer.tar")]) >= 3
    assert f"{repo}" in repositories

    if not HAVE_SKOPEO:
        pytest.skip("skopeo is not installed")
    p = subprocess.run(
        ["skopeo", "inspect", "--config", f"docker-archive:{target}"],
        capture_output=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    # skopeo re-serialises the config; compare what it parsed.
    assert json.loads(p.stdout)["rootfs"] == json.loads(img.raw_config())["rootfs"]
    p = subprocess.run(
        ["skopeo", "inspect", f"docker-archive:{target}"], capture_output=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["RepoTags"] == [f"{repo}:v1"] or json.loads(p.stdout)["Layers"]


def test_pull_several_images_into_one_tarball(
    cli: Cli, registry: Any, image_layout: tuple[Path, Image], tmp_path: Path
) -> None:
    layout, img = image_layout
    repo = _repo(registry, "multi")
    cli("push", str(layout), f"{repo}:a")
    cli("tag", f"{repo}:a", "b")
    target = tmp_path / "both.tar"
    cli("pull", f"{repo}:a", f"{repo}:b", str(target))
    with tarfile.open(target) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer_members = [
            n for n in tf.getnames() if n.startswith("blobs/") or n.endswith(".tar.gz")
        ]
    tags = sorted(t for entry in manifest for t in entry["RepoTags"])
    assert tags == [f"{repo}:a", f"{repo}:b"]
    # One copy of each distinct blob even though two images (and duplicate empty layers) share them.
    distinct = {d.digest for d in img.manifest().layers} | {img.manifest().config.digest}
    assert len(layer_members) <= len(distinct) + 2


def test_push_and_validate_a_tarball_of_several_images(
    cli: Cli, pycrane_registry: Any, tmp_path: Path
) -> None:
    from pycrane import tarball

    a, b = random_image(1, 300, seed=71), random_image(2, 300, seed=72)
    target = tmp_path / "two.tar"
    tarball.write(target, {"example.com/x/a:1": a, "example.com/x/b:1": b})
    assert cli.out("validate", "--tarball", str(target)) == f"PASS: {target}"
    repo = _repo(pycrane_registry, "fromtar")
    err = cli.fails("push", str(target), f"{repo}:1")
    assert "holds 2 images (example.com/x/a:1, example.com/x/b:1)" in err
    pushed = cli.out("push", "--tarball-tag", "example.com/x/b:1", str(target), f"{repo}:1")
    assert pushed == f"{repo}@{b.digest()}"
    err = cli.fails("push", "--tarball-tag", "example.com/x/c:1", str(target), f"{repo}:1")
    assert "no image tagged example.com/x/c:1" in err
    # validate looks at every image: a second image with a bad layer fails it.
    with tarfile.open(target) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        members = {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}  # type: ignore[union-attr]
    last_layer = manifest[1]["Layers"][-1]
    members[last_layer] = members[last_layer][:-1] + bytes([members[last_layer][-1] ^ 1])
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    assert cli.fails("validate", "--tarball", str(bad)).startswith(f"pycrane: error: FAIL: {bad}")


def test_pull_with_cache(
    cli: Cli, registry: Any, image_layout: tuple[Path, Image], tmp_path: Path
) -> None:
    layout, img = image_layout
    repo = _repo(registry, "cache")
    cli("push", str(layout), f"{repo}:v1")
    cache = tmp_path / "cache"
    cli("pull", "-c", str(cache), f"{repo}:v1", str(tmp_path / "a.tar"))
    cached = sorted(p.name for p in (cache / "blobs" / "sha256").iterdir())
    assert cached == sorted({d.digest.hex for d in img.manifest().layers})
    # A corrupt cache entry of the right size is caught by digest verification.
    victim = cache / "blobs" / "sha256" / cached[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.chmod(0o644)
    victim.write_bytes(bytes(data))
    line = cli.fails("pull", "-c", str(cache), f"{repo}:v1", str(tmp_path / "b.tar"))
    assert "digest" in line and cached[0][:12] in line
    assert not (tmp_path / "b.tar").exists()


# ------------------------------------------------------------------ indexes and platforms


def test_index_platforms_pull_copy_filter(
    cli: Cli, registry: Any, index_layout: tuple[Path, ImageIndex], tmp_path: Path
) -> None:
    layout, idx = index_layout
    repo = _repo(registry, "multiarch")
    assert cli.out("push", str(layout), f"{repo}:v1") == f"{repo}@{idx.digest()}"
    listing = cli.out("index", "list", f"{repo}:v1").splitlines()
    assert [line.split("\t")[2] for line in listing] == [
        "linux/amd64",
        "linux/arm64",
        "linux/arm/v7",
    ]

    by_platform = {str(d.platform): d.digest for d in idx.index_manifest().manifests}
    assert cli.out("digest", "--platform", "linux/arm64", f"{repo}:v1") == str(
        by_platform["linux/arm64"]
    )
    assert cli.out("digest", f"{repo}:v1") == str(idx.digest())

    whole = tmp_path / "whole"
    cli("pull", "--format", "oci", f"{repo}:v1", str(whole))
    (entry,) = Layout.open(whole).descriptors()
    assert entry.digest == idx.digest()

    one = tmp_path / "one"
    cli("pull", "--format", "oci", "--platform", "linux/arm/v7", f"{repo}:v1", str(one))
    (entry,) = Layout.open(one).descriptors()
    assert entry.digest == by_platform["linux/arm/v7"]

    two = tmp_path / "two"
    cli("pull", "--format", "oci", "--platform", "linux/amd64,linux/arm64", f"{repo}:v1", str(two))
    (entry,) = Layout.open(two).descriptors()
    kids = Layout.open(two).image_index(entry.digest).index_manifest().manifests
    assert [str(k.platform) for k in kids] == ["linux/amd64", "linux/arm64"]
    assert cli.out("validate", "--layout", str(two)) == f"PASS: {two}"

    # The tarball format holds single images: an index resolves to one platform.
    tar = tmp_path / "arm.tar"
    cli("pull", "--platform", "linux/arm64", f"{repo}:v1", str(tar))
    assert cli.out("digest", "--tarball", str(tar)) == str(by_platform["linux/arm64"])
    line = cli.fails(
        "pull",
        "--platform",
        "linux/amd64",
        "--platform",
        "linux/arm64",
        f"{repo}:v1",
        str(tmp_path / "x.tar"),
        code=2,
    )
    assert "--format oci" in line

    # copy --platform P copies P's image, as crane does; several push a filtered index;
    # copy without keeps the whole index.
    cli("copy", f"{repo}:v1", f"{repo}-copy:all")
    assert cli.out("digest", f"{repo}-copy:all") == str(idx.digest())
    cli("copy", "--platform", "linux/arm64", f"{repo}:v1", f"{repo}-copy:arm")
    assert cli.out("digest", f"{repo}-copy:arm") == str(by_platform["linux/arm64"])
    cli("copy", "--platform", "linux/arm64,linux/arm/v7", f"{repo}:v1", f"{repo}-copy:arms")
    filtered = cli.out("index", "list", f"{repo}-copy:arms").splitlines()
    assert [line.split("\t")[2] for line in filtered] == ["linux/arm64", "linux/arm/v7"]

    out = cli.out("index", "filter", "--platform", "linux/amd64", f"{repo}:v1", "-t", f"{repo}:amd")
    assert out.startswith(f"{repo}@sha256:")
    assert [x.split("\t")[2] for x in cli.out("index", "list", f"{repo}:amd").splitlines()] == [
        "linux/amd64"
    ]

    # From a local layout: filter its index.json and push the result.
    from_layout = cli.out(
        "index", "filter", "--platform", "linux/arm/v7", str(layout), "-t", f"{repo}:v7"
    )
    assert from_layout.startswith(f"{repo}@sha256:")
    v7 = cli.out("index", "list", f"{repo}:v7").splitlines()
    assert [x.split("\t")[2] for x in v7] == ["linux/arm/v7"]

    line = cli.fails("config", "--platform", "windows/amd64", f"{repo}:v1")
    assert "windows/amd64" in line


def test_copy_all_tags_and_no_clobber(
    cli: Cli, registry: Any, image_layout: tuple[Path, Image]
) -> None:
    layout, _img = image_layout
    src = _repo(registry, "src")
    dst = _repo(registry, "dst")
    cli("push", str(layout), f"{src}:a")
    for t in ("b", "c"):
        cli("tag", f"{src}:a", t)
    cli("cp", "-a", "-j", "2", src, dst)
    assert sorted(cli.out("ls", dst).split()) == ["a", "b", "c"]
    line = cli.fails("copy", "-n", f"{src}:a", f"{dst}:a")
    assert "exists" in line


# ------------------------------------------------------------------ skopeo-written layouts


@pytest.mark.interop
@pytest.mark.skipif(not HAVE_SKOPEO, reason="skopeo is not installed")
def test_push_what_skopeo_wrote_keeps_digests(
    cli: Cli, registry: Any, image_layout: tuple[Path, Image], tmp_path: Path
) -> None:
    layout, _img = image_layout
    skopeo_layout = tmp_path / "by-skopeo"
    p = subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{layout}:v1", f"oci:{skopeo_layout}:copied"],
        capture_output=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    written = json.loads((skopeo_layout / "index.json").read_text())["manifests"][0]["digest"]
    repo = _repo(registry, "skopeo")
    assert cli.out("push", str(skopeo_layout), f"{repo}:v1") == f"{repo}@{written}"
    assert cli.out("digest", f"{repo}:v1") == written
    assert cli.out("validate", "--remote", f"{repo}:v1") == f"PASS: {repo}:v1"


# ------------------------------------------------------------------ build commands


def _tar_of(tmp_path: Path, files: dict[str, bytes]) -> Path:
    root = tmp_path / f"rootfs-{next(_counter)}"
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    out = tmp_path / f"{root.name}.tar"
    with tarfile.open(out, "w") as tf:
        for p in sorted(root.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(root)), recursive=False)
    return out


def test_append_mutate_flatten_export(cli: Cli, registry: Any, tmp_path: Path) -> None:
    repo = _repo(registry, "built")
    l1 = _tar_of(tmp_path, {"etc/motd": b"one\n", "bin/tool": b"x" * 1000})
    l2 = _tar_of(tmp_path, {"etc/motd": b"two\n"})
    pushed = cli.out("append", "-f", str(l1), "-f", str(l2), "-t", f"{repo}:v1")
    assert pushed.startswith(f"{repo}@sha256:")
    digest = pushed.split("@")[1]
    assert cli.out("digest", f"{repo}:v1") == digest
    m = json.loads(cli("manifest", f"{repo}:v1").stdout)
    assert len(m["layers"]) == 2
    # From stdin too.
    pushed2 = cli.out(
        "append",
        "-b",
        f"{repo}:v1",
        "-f",
        "-",
        "-t",
        f"{repo}:v2",
        stdin=_tar_of(tmp_path, {"etc/extra": b"3"}).read_bytes(),
    )
    assert len(json.loads(cli("manifest", pushed2).stdout)["layers"]) == 3

    out = cli.out(
        "mutate",
        f"{repo}:v1",
        "-l",
        "org.example=yes",
        "-e",
        "A=1",
        "--entrypoint",
        "/bin/tool,--flag",
        "-a",
        "note=hi",
        "-t",
        f"{repo}:mutated",
    )
    assert out.startswith(f"{repo}@sha256:")
    cfg = json.loads(cli("config", f"{repo}:mutated").stdout)
    assert cfg["config"]["Labels"]["org.example"] == "yes"
    assert "A=1" in cfg["config"]["Env"]
    assert cfg["config"]["Entrypoint"] == ["/bin/tool", "--flag"]
    assert json.loads(cli("manifest", f"{repo}:mutated").stdout)["annotations"]["note"] == "hi"

    flat = cli.out("flatten", f"{repo}:v1", "-t", f"{repo}:flat")
    assert len(json.loads(cli("manifest", flat).stdout)["layers"]) == 1

    fs_tar = tmp_path / "fs.tar"
    cli("export", f"{repo}:v1", str(fs_tar))
    with tarfile.open(fs_tar) as tf:
        members = {m.name.lstrip("./"): m for m in tf.getmembers()}
        assert tf.extractfile(members["etc/motd"]).read() == b"two\n"  # type: ignore[union-attr]
    exported = cli("export", f"{repo}:v1", "-").stdout
    assert exported == fs_tar.read_bytes()


def test_append_output_tarball(cli: Cli, tmp_path: Path) -> None:
    layer = _tar_of(tmp_path, {"hello": b"world"})
    out = tmp_path / "built.tar"
    cli("append", "-f", str(layer), "-t", "example.com/built:1", "-o", str(out))
    assert cli.out("validate", "--tarball", str(out)) == f"PASS: {out}"
    # export reads a docker-save tarball from stdin ("-") and writes the filesystem to stdout.
    fs = cli("export", "-", "-", stdin=out.read_bytes()).stdout
    with tarfile.open(fileobj=io.BytesIO(fs)) as tf:
        member = next(m for m in tf.getmembers() if m.name.lstrip("./") == "hello")
        assert tf.extractfile(member).read() == b"world"  # type: ignore[union-attr]


# ------------------------------------------------------------------ auth


def test_auth_login_get_logout(cli: Cli, tmp_path: Path) -> None:
    p = cli(
        "auth",
        "login",
        "registry.example.com",
        "-u",
        "alice",
        "--password-stdin",
        stdin=b"s3cret\n",
        ok=False,
    )
    assert p.returncode == 0 and p.stdout == b""
    assert p.stderr.decode().startswith("pycrane: logged in to registry.example.com")
    assert b"s3cret" not in p.stderr
    cfg = json.loads((cli.home / "config.json").read_text())
    assert "registry.example.com" in cfg["auths"]
    got = json.loads(cli.out("auth", "get", "registry.example.com"))
    assert got == {"Username": "alice", "Secret": "s3cret"}
    # The credential-helper protocol: server on stdin.
    assert (
        json.loads(cli.out("auth", "get", stdin=b"registry.example.com\n"))["Username"] == "alice"
    )
    cli("auth", "logout", "-q", "registry.example.com")
    p = cli("auth", "get", "registry.example.com", ok=False)
    assert p.returncode == 1
    assert p.stdout.decode().strip() == "credentials not found in native keychain"


@pytest.mark.distribution
def test_htpasswd_registry_auth(
    cli: Cli, distribution_htpasswd: Any, image_layout: tuple[Path, Image]
) -> None:
    reg = distribution_htpasswd
    layout, img = image_layout
    repo = f"{reg.host}/cli/auth"
    line = cli.fails("push", str(layout), f"{repo}:v1")
    assert "401" in line or "auth" in line.lower()
    cli("auth", "login", "-q", reg.host, "-u", reg.username, "-p", "wrong-password")
    line = cli.fails("push", str(layout), f"{repo}:v1")
    assert "wrong-password" not in line
    cli("auth", "login", "-q", reg.host, "-u", reg.username, "-p", reg.password)
    assert cli.out("push", str(layout), f"{repo}:v1") == f"{repo}@{img.digest()}"
    assert cli.out("digest", f"{repo}:v1") == str(img.digest())
    # -v logs each request and status on stderr, never the credentials.
    p = cli("-v", "digest", f"{repo}:v1", ok=False)
    assert p.returncode == 0 and p.stdout.decode().strip() == str(img.digest())
    log = p.stderr.decode()
    assert f"GET http://{reg.host}/v2/" in log and "/v2/cli/auth/manifests/v1" in log
    assert "401" in log and "200" in log
    import base64

    basic = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    assert reg.password not in log and basic not in log


def test_multi_entry_layout_needs_index(cli: Cli, registry: Any, tmp_path: Path) -> None:
    layout = tmp_path / "two"
    a, b = random_image(1, 100, seed=11), random_image(1, 100, seed=12)
    Layout.create(layout).append(a, ref_name="a")
    Layout.open(layout).append(b, ref_name="b")
    repo = _repo(registry, "two")
    assert "--index" in cli.fails("push", str(layout), f"{repo}:v1")
    pushed = cli.out("push", "--index", str(layout), f"{repo}:v1")
    kids = cli.out("index", "list", f"{repo}:v1").splitlines()
    assert sorted(k.split("\t")[0] for k in kids) == sorted([str(a.digest()), str(b.digest())])
    assert pushed == f"{repo}@{Layout.open(layout).index().digest}"


@POSIX_ONLY
def test_blob_into_a_closed_pipe_is_quiet(cli: Cli, big_image_ref: str) -> None:
    repo, _ = big_image_ref.rsplit(":", 1)
    raw = json.loads(cli("manifest", big_image_ref).stdout)
    digest = raw["layers"][0]["digest"]
    r, w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pycrane", "blob", f"{repo}@{digest}"],
        stdout=w,
        stderr=subprocess.PIPE,
        env=_env(None, cli.home),
    )
    os.close(w)
    assert len(os.read(r, 100)) > 0
    os.close(r)
    _, err = proc.communicate(timeout=120)
    assert err == b"", err
    assert proc.returncode == 141


@pytest.mark.distribution
def test_auth_token(
    cli: Cli, distribution_token: Any, image_layout: tuple[Path, Image], tmp_path: Path
) -> None:
    reg = distribution_token
    repo = f"{reg.host}/cli/token"
    if reg.username:
        cli("auth", "login", "-q", reg.host, "-u", reg.username, "-p", reg.password)
    doc = json.loads(cli.out("auth", "token", repo))
    assert doc["token"] and "repository:cli/token:pull" in doc["scopes"]
    header = cli.out("auth", "token", "--push", "-H", repo)
    assert header.startswith("Authorization: Bearer ") and len(header) > 40
    line = cli.fails("auth", "token", f"{reg.host.split(':')[0]}:1/x")
    assert "127.0.0.1:1" in line
    # The whole round trip through the bearer-token flow.
    layout, img = image_layout
    assert cli.out("push", str(layout), f"{repo}:v1") == f"{repo}@{img.digest()}"
    cli("pull", "--format", "oci", f"{repo}:v1", str(tmp_path / "pulled"))
    assert Layout.open(tmp_path / "pulled").descriptors()[0].digest == img.digest()
    assert cli.out("ls", repo) == "v1"


# ------------------------------------------------------------------ errors


def test_errors_are_one_line(cli: Cli, pycrane_registry: Any, tmp_path: Path) -> None:
    host = pycrane_registry.host
    assert "Foo/bar" in cli.fails("digest", "Foo/bar")
    assert "nope" in cli.fails("manifest", f"{host}/cli/nope:v1")
    assert "127.0.0.1:1" in cli.fails("digest", "127.0.0.1:1/x/y:z")
    assert "REPO@" in cli.fails("blob", f"{host}/cli/x:v1")
    cli.fails("push", str(tmp_path), f"{host}/cli/x:v1")  # an empty dir is not a layout
    not_a_tar = tmp_path / "junk.tar"
    not_a_tar.write_bytes(b"not a tarball at all")
    cli.fails("push", str(not_a_tar), f"{host}/cli/x:v1")
    assert cli.fails("validate", code=2)
    assert "--format" in cli.fails("pull", "--format", "zip", "a", "b", code=2)
    assert not list(tmp_path.glob(".*"))


# ------------------------------------------------------------------ terminal behaviour


@pytest.fixture(scope="module")
def big_image_ref(pycrane_registry: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An image big enough that a pull takes a noticeable moment (3 x 16 MiB)."""
    img = random_image(3, 16 << 20, seed=7)
    layout = _layout_with(tmp_path_factory.mktemp("big") / "layout", img)
    ref = f"{pycrane_registry.host}/cli/big:v1"
    p = subprocess.run(
        [sys.executable, "-m", "pycrane", "push", str(layout), ref],
        capture_output=True,
        env=_env(),
        timeout=240,
    )
    assert p.returncode == 0, p.stderr
    return ref


@POSIX_ONLY
def test_progress_bars_on_a_terminal_only(cli: Cli, big_image_ref: str, tmp_path: Path) -> None:
    import pty
    import select

    master, slave = pty.openpty()
    env = _env({"TERM": "xterm", "COLUMNS": "120"}, cli.home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pycrane", "pull", big_image_ref, str(tmp_path / "tty.tar")],
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=120) == 0
    assert proc.stdout is not None and proc.stdout.read() == b""  # bars never touch stdout
    text = seen.decode(errors="replace")
    # A tarball holds the config as a blob too: three layers and the config, all done.
    assert "pull (4/4 blobs)" in text, text
    assert "MiB" in text, text
    # The same pull with stderr not a terminal (or -q on a terminal) prints nothing at all.
    p = cli("pull", big_image_ref, str(tmp_path / "pipe.tar"))
    assert p.stderr == b"" and p.stdout == b""


@POSIX_ONLY
@pytest.mark.parametrize("fmt", ["tarball", "oci"])
def test_ctrl_c_leaves_nothing_half_written(
    cli: Cli, big_image_ref: str, tmp_path: Path, fmt: str
) -> None:
    import signal
    import time

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / ("image.tar" if fmt == "tarball" else "layout")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pycrane", "pull", "--format", fmt, big_image_ref, str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(None, cli.home),
    )

    def under_way() -> bool:
        # Temp files come and go while we look (they are published or removed).
        for p in out_dir.rglob("*"):
            try:
                if p.is_file() and p.stat().st_size > (1 << 20):
                    return True
            except FileNotFoundError:
                continue
        return False

    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if under_way():
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=120)
    # 48 MiB remain to fetch when the first MiB is on disk: a pull that still
    # finished means the signal was not delivered, which is a failure, not a skip.
    assert proc.returncode != 0, "the pull finished although it was interrupted"
    assert proc.returncode == 130, err
    if fmt == "tarball":
        # No target: a tarball appears only when complete. What was downloaded stays
        # beside it, with its plan, for the same command to resume (issue 12;
        # tests/test_resume_tarball.py measures the resume), and the one line says so.
        (line,) = err.decode().splitlines()
        assert not target.exists()
        kept = sorted(p.name for p in out_dir.iterdir())
        if line == "pycrane: error: interrupted":
            # The archive is laid out before any layer byte arrives: a signal that
            # early finds nothing to keep, and nothing is left.
            assert kept == [], kept
            return
        assert line.startswith("pycrane: error: interrupted; kept "), line
        assert line.endswith("run the same command again to resume"), line
        assert kept in (
            [".image.tar.pull", ".image.tar.pull.json"],
            [".image.tar.pull", ".image.tar.pull.json", ".image.tar.pull.lock"],
        ), kept
        return
    # Issue 12 changed this case: an interrupted OCI pull keeps what it downloaded
    # (verified blobs, partial downloads in ingest/) for the same command to resume,
    # says so in its one line, and still adds no index.json entry and no blob that
    # did not verify (tests/test_resume.py measures the resume).
    (line,) = err.decode().splitlines()
    assert line.startswith("pycrane: error: interrupted; kept "), line
    assert line.endswith("run the same command again to resume"), line
    from pycrane.layout import Layout

    lay = Layout.open(target)
    assert lay.descriptors() == [] and lay.validate() == []
    stray = [
        p.relative_to(target)
        for p in target.rglob("*")
        if p.is_file()
        and p.relative_to(target).parts[0] != "blobs"
        and p.name not in ("index.json", "oci-layout")
        and not p.name.endswith((".lock", ".partial"))
    ]
    assert stray == []


def _files(root: Path) -> list[tuple[str, bytes]]:
    return sorted(
        (str(p.relative_to(root)), p.read_bytes()) for p in root.rglob("*") if p.is_file()
    )


@pytest.mark.parametrize("new", [True, False], ids=["new-dir", "existing-layout"])
def test_failed_oci_pull_leaves_the_directory_as_it_was(
    cli: Cli, pycrane_registry: Any, tmp_path: Path, new: bool
) -> None:
    from pycrane.remote import Client

    small = f"{pycrane_registry.host}/cli/rollback:v1"
    with Client() as client:
        client.write_image(small, random_image(2, 4096, seed=7301))
    other = f"{pycrane_registry.host}/cli/rollback:other"
    with Client() as client:
        client.write_image(other, random_image(1, 4096, seed=7302))
    target = tmp_path / "layout"
    if not new:
        cli("pull", "--format", "oci", other, str(target))
    before = [] if new else _files(target)
    # The first reference exists: its blobs would be on disk before the second
    # failed, had the references not all been resolved first.
    line = cli.fails(
        "pull", "--format", "oci", small, f"{pycrane_registry.host}/cli/never:x", str(target)
    )
    assert "never:x" in line
    if new:
        assert not target.exists()
    else:
        assert _files(target) == before


def test_oci_pull_failing_mid_stream_removes_the_layout_it_created(
    cli: Cli, pycrane_registry: Any, big_image_ref: str, tmp_path: Path
) -> None:
    from tests.faultproxy import Fault, FaultProxy

    proxy = FaultProxy(pycrane_registry.host).start()
    try:
        proxy.add(
            Fault("corrupt", match=r"/blobs/sha256:", method="GET", after=5_000_000, count=-1)
        )
        ref = big_image_ref.replace(pycrane_registry.host, proxy.host)
        target = tmp_path / "new" / "layout"
        line = cli.fails("pull", "--format", "oci", ref, str(target))
        assert [e.fault for e in proxy.log if e.fault == "corrupt"], proxy.log
    finally:
        proxy.stop()
    assert "sha256:" in line
    assert not target.exists()
    assert not (tmp_path / "new").exists()  # the parent the pull made goes too


@POSIX_ONLY
def test_e2e_script(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parent.parent / "scripts" / "e2e.sh"
    p = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        env=_env({"PYCRANE": f"{sys.executable} -m pycrane", "TMPDIR": str(tmp_path)}),
        timeout=280,
    )
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    assert "e2e: PASS:" in p.stdout.decode()
    assert list(tmp_path.iterdir()) == []  # cleaned up after itself


# ------------------------------------------------------------------ more build commands


def test_rebase_infers_bases_from_annotations(cli: Cli, registry: Any, tmp_path: Path) -> None:
    repo = _repo(registry, "rebase")
    base1 = cli.out("append", "-f", str(_tar_of(tmp_path, {"base": b"1"})), "-t", f"{repo}:base")
    app = cli.out(
        "append",
        "-b",
        f"{repo}:base",
        "-f",
        str(_tar_of(tmp_path, {"app": b"app"})),
        "-t",
        f"{repo}:app",
        "--set-base-image-annotations",
    )
    anns = json.loads(cli("manifest", app).stdout)["annotations"]
    assert anns["org.opencontainers.image.base.name"] == f"{repo}:base"
    assert anns["org.opencontainers.image.base.digest"] == base1.split("@")[1]
    # A new base under the same tag: rebase finds both bases from the annotations.
    cli.out(
        "append", "-f", str(_tar_of(tmp_path, {"base": b"2", "more": b"x"})), "-t", f"{repo}:base"
    )
    new_base_layers = json.loads(cli("manifest", f"{repo}:base").stdout)["layers"]
    app_layers = json.loads(cli("manifest", app).stdout)["layers"]
    rebased = cli.out("rebase", f"{repo}:app", "-t", f"{repo}:rebased")
    layers = json.loads(cli("manifest", rebased).stdout)["layers"]
    assert [x["digest"] for x in layers] == [
        new_base_layers[0]["digest"],
        app_layers[-1]["digest"],
    ]
    line = cli.fails("rebase", f"{repo}:base")
    assert "base" in line


def test_index_append(
    cli: Cli, registry: Any, index_layout: tuple[Path, ImageIndex], image_layout: tuple[Path, Image]
) -> None:
    idx_layout, idx = index_layout
    img_layout, img = image_layout
    repo = _repo(registry, "idxappend")
    cli("push", str(idx_layout), f"{repo}:multi")
    cli("push", str(img_layout), f"{repo}:single")
    out = cli.out(
        "index", "append", "-m", f"{repo}:multi", "-m", f"{repo}:single", "-t", f"{repo}:all"
    )
    assert out.startswith(f"{repo}@sha256:")
    digests = [x.split("\t")[0] for x in cli.out("index", "list", f"{repo}:all").splitlines()]
    kids = [str(d.digest) for d in idx.index_manifest().manifests]
    assert digests == [*kids, str(img.digest())]  # --flatten (default) adds the children
    # Append to an existing index in place.
    cli.out("index", "append", f"{repo}:multi", "-m", f"{repo}:single")
    assert len(cli.out("index", "list", f"{repo}:multi").splitlines()) == 4
    assert "expected an index" in cli.fails("index", "list", f"{repo}:single")


def test_copy_with_referrers(
    cli: Cli, registry: Any, image_layout: tuple[Path, Image], tmp_path: Path
) -> None:
    from pycrane.v1 import mediatypes as mt
    from pycrane.v1.config import ConfigFile
    from pycrane.v1.image import BytesLayer, SimpleImage

    layout, img = image_layout
    src, dst = _repo(registry, "refsrc"), _repo(registry, "refdst")
    cli("push", str(layout), f"{src}:v1")
    sig = SimpleImage.build(
        ConfigFile.new(), [BytesLayer(b"signature", mt.OCI_LAYER)], subject=img.descriptor()
    )
    sig_layout = _layout_with(tmp_path / "sig", sig)
    cli("push", str(sig_layout), f"{src}@{sig.digest()}")
    cli("copy", "--referrers", f"{src}:v1", f"{dst}:v1")
    assert cli("manifest", f"{dst}@{sig.digest()}").stdout == sig.raw_manifest()
    # Without --referrers the signature stays behind.
    other = _repo(registry, "refnone")
    cli("copy", f"{src}:v1", f"{other}:v1")
    cli.fails("manifest", f"{other}@{sig.digest()}")


def test_insecure_reaches_a_self_signed_tls_registry(
    cli: Cli, pycrane_registry_factory: Any, image_layout: tuple[Path, Image]
) -> None:
    layout, img = image_layout
    reg = pycrane_registry_factory(tls=True)
    assert reg.url.startswith("https://")
    ref = f"{reg.host}/cli/tls:v1"
    assert reg.host in cli.fails("push", str(layout), ref)
    assert cli.out("--insecure", "push", str(layout), ref) == f"{reg.host}/cli/tls@{img.digest()}"
    assert cli.out("digest", "--insecure", ref) == str(img.digest())  # flag after the command too


def test_concurrent_pulls_into_one_layout(cli: Cli, pycrane_registry: Any, tmp_path: Path) -> None:
    """crane's seed bug: several pulls into one OCI layout at once, sharing empty layers."""
    from pycrane.remote import Client

    refs = []
    with Client() as client:
        for i in range(4):
            img = random_image(2, 4096, duplicate_empty_layers=3, seed=100 + i)
            ref = f"{pycrane_registry.host}/cli/concurrent:{i}"
            client.write_image(ref, img)
            refs.append((ref, img.digest()))
    target = tmp_path / "shared"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pycrane",
                "pull",
                "--format",
                "oci",
                "--annotate-ref",
                ref,
                str(target),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(None, cli.home),
        )
        for ref, _ in refs
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0 and err == b"", err
    entries = {d.ref_name: d.digest for d in Layout.open(target).descriptors()}
    assert entries == {ref: digest for ref, digest in refs}
    assert cli.out("validate", "--layout", str(target)) == f"PASS: {target}"
