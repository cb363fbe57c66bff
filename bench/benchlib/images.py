"""Benchmark images: written as OCI layouts in bounded memory, pushed with a tiny client.

The generator does not use pycrane on purpose: the inputs of a benchmark must not
depend on the code under test. Layers are gzip streams of a tar holding one file of
pseudo-random bytes; gzip level 0 (stored blocks) keeps generation of multi-GiB layers
cheap, and random bytes would not compress anyway. Every 1 MiB piece starts with its
own (seed, index) stamp so no two layers, and no two pieces, share a digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import tarfile
import urllib.parse
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import urllib3

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
CHUNK = 1 << 20


@dataclass
class Blob:
    digest: str
    size: int
    media_type: str


@dataclass
class BuiltImage:
    """An image written to a layout: its manifest bytes and the blobs it needs."""

    manifest: bytes
    config: Blob
    layers: list[Blob]
    platform: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    @property
    def blobs(self) -> list[Blob]:
        return [self.config, *self.layers]


@dataclass
class BuiltIndex:
    manifest: bytes
    images: list[BuiltImage]

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    @property
    def blobs(self) -> list[Blob]:
        return [b for img in self.images for b in img.blobs]


Built = BuiltImage | BuiltIndex


def total_bytes(built: Built) -> int:
    """Blob bytes a pull moves (configs and layers; manifests are noise)."""
    seen: dict[str, int] = {}
    for b in built.blobs:
        seen[b.digest] = b.size
    return sum(seen.values())


class LayoutWriter:
    """Writes blobs and index.json of an OCI image layout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def put_bytes(self, data: bytes, media_type: str) -> Blob:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blob_path(digest).write_bytes(data)
        return Blob(digest, len(data), media_type)

    def put_layer(self, size: int, seed: int) -> tuple[Blob, str]:
        """A gzip(tar(one random file of ``size`` bytes)) layer; returns (blob, diff_id)."""
        tmp = self.root / "blobs" / f".tmp-{seed}-{os.getpid()}"
        h_diff = hashlib.sha256()
        h_comp = hashlib.sha256()
        gz = zlib.compressobj(0, zlib.DEFLATED, 31)
        written = 0
        with open(tmp, "wb") as f:

            def emit(raw: bytes) -> None:
                nonlocal written
                h_diff.update(raw)
                comp = gz.compress(raw)
                if comp:
                    h_comp.update(comp)
                    f.write(comp)
                    written += len(comp)

            for piece in _tar_stream(size, seed):
                emit(piece)
            tail = gz.flush()
            h_comp.update(tail)
            f.write(tail)
            written += len(tail)
        digest = "sha256:" + h_comp.hexdigest()
        os.replace(tmp, self.blob_path(digest))
        return Blob(digest, written, OCI_LAYER_GZIP), "sha256:" + h_diff.hexdigest()

    def write_index_json(self, entries: list[tuple[str, str, int]], tag: str = "latest") -> None:
        manifests = [
            {
                "mediaType": mt,
                "digest": d,
                "size": n,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
            for mt, d, n in entries
        ]
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        (self.root / "index.json").write_text(json.dumps(doc))


def _tar_stream(size: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    base = bytearray(rng.randbytes(CHUNK))
    info = tarfile.TarInfo(f"data-{seed:x}.bin")
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    yield info.tobuf(format=tarfile.GNU_FORMAT)
    left = size
    i = 0
    while left > 0:
        struct.pack_into("<QQ", base, 0, seed & (2**64 - 1), i)
        n = min(CHUNK, left)
        yield bytes(base[:n])
        left -= n
        i += 1
    pad = (-size) % 512
    yield b"\0" * (pad + 1024)


def build_image(
    w: LayoutWriter,
    layer_sizes: list[int],
    seed: int,
    *,
    platform: tuple[str, str, str] = ("linux", "amd64", ""),
    shared: list[tuple[Blob, str]] | None = None,
) -> BuiltImage:
    """Write an image's blobs into ``w``; ``shared`` layers go first (already written)."""
    layers: list[tuple[Blob, str]] = list(shared or [])
    for i, n in enumerate(layer_sizes):
        layers.append(w.put_layer(n, seed * 1000 + i))
    os_, arch, variant = platform
    cfg: dict[str, object] = {
        "architecture": arch,
        "os": os_,
        "config": {"Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
        "history": [{"created_by": f"bench seed={seed}"} for _ in layers],
    }
    if variant:
        cfg["variant"] = variant
    config = w.put_bytes(json.dumps(cfg, separators=(",", ":")).encode(), OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
        "layers": [
            {"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b, _ in layers
        ],
    }
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    w.put_bytes(raw, OCI_MANIFEST)
    plat = {"os": os_, "architecture": arch}
    if variant:
        plat["variant"] = variant
    return BuiltImage(raw, config, [b for b, _ in layers], plat)


def write_image_layout(root: Path, layer_sizes: list[int], seed: int) -> BuiltImage:
    w = LayoutWriter(root)
    img = build_image(w, layer_sizes, seed)
    w.write_index_json([(OCI_MANIFEST, img.digest, len(img.manifest))])
    return img


PLATFORMS = [("linux", "amd64", ""), ("linux", "arm64", ""), ("linux", "arm", "v7")]


def write_index_layout(root: Path, layer_sizes: list[int], seed: int) -> BuiltIndex:
    w = LayoutWriter(root)
    images = [
        build_image(w, layer_sizes, seed * 10 + i, platform=p) for i, p in enumerate(PLATFORMS)
    ]
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": img.digest,
                "size": len(img.manifest),
                "platform": img.platform,
            }
            for img in images
        ],
    }
    raw = json.dumps(doc, separators=(",", ":")).encode()
    w.put_bytes(raw, OCI_INDEX)
    w.write_index_json([(OCI_INDEX, "sha256:" + hashlib.sha256(raw).hexdigest(), len(raw))])
    return BuiltIndex(raw, images)


def write_tags_layout(
    root: Path, count: int, base_size: int, own_size: int, seed: int
) -> list[BuiltImage]:
    """``count`` images sharing one base layer, each with one layer of its own."""
    w = LayoutWriter(root)
    base = w.put_layer(base_size, seed * 1000 + 999)
    return [build_image(w, [own_size], seed * 100 + i, shared=[base]) for i in range(count)]


class Pusher:
    """Just enough of the distribution API to seed a registry from a layout."""

    def __init__(self, host: str) -> None:
        self.base = f"http://{host}"
        self.http = urllib3.PoolManager(maxsize=8, retries=False, timeout=600)

    def _blob(self, repo: str, layout: Path, blob: Blob) -> None:
        r = self.http.request("HEAD", f"{self.base}/v2/{repo}/blobs/{blob.digest}")
        if r.status == 200:
            return
        r = self.http.request("POST", f"{self.base}/v2/{repo}/blobs/uploads/")
        if r.status != 202:
            raise RuntimeError(f"POST upload for {repo}: HTTP {r.status} {r.data[:200]!r}")
        loc = urllib.parse.urljoin(self.base + "/", r.headers["Location"])
        sep = "&" if "?" in loc else "?"
        path = layout / "blobs" / "sha256" / blob.digest.split(":", 1)[1]

        def body() -> Iterator[bytes]:
            with open(path, "rb") as f:
                while piece := f.read(CHUNK):
                    yield piece

        r = self.http.request(
            "PUT",
            f"{loc}{sep}digest={blob.digest}",
            body=body(),
            headers={"Content-Length": str(blob.size), "Content-Type": "application/octet-stream"},
            chunked=False,
        )
        if r.status != 201:
            raise RuntimeError(
                f"PUT blob {blob.digest} to {repo}: HTTP {r.status} {r.data[:200]!r}"
            )

    def _manifest(self, repo: str, ref: str, raw: bytes, media_type: str) -> None:
        r = self.http.request(
            "PUT",
            f"{self.base}/v2/{repo}/manifests/{ref}",
            body=raw,
            headers={"Content-Type": media_type},
        )
        if r.status != 201:
            raise RuntimeError(f"PUT manifest {repo}:{ref}: HTTP {r.status} {r.data[:300]!r}")

    def push(self, layout: Path, repo: str, built: Built, tag: str = "latest") -> None:
        images = built.images if isinstance(built, BuiltIndex) else [built]
        for img in images:
            for b in img.blobs:
                self._blob(repo, layout, b)
            self._manifest(
                repo,
                img.digest if isinstance(built, BuiltIndex) else tag,
                img.manifest,
                OCI_MANIFEST,
            )
        if isinstance(built, BuiltIndex):
            self._manifest(repo, tag, built.manifest, OCI_INDEX)
