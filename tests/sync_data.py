"""Test data for sync: many repositories x several tags sharing base layers, pushed fast.

``seed(client, host, repos=200, tags=5)`` pushes ``{prefix}/r{i:03d}`` with tags
``1.0.0, 1.1.0, 1.2.0, 2.0.0, latest`` (``latest`` aliases ``2.0.0``: registries
mirror that way), each image one of two shared base layers plus a small layer of
its own. Returns ``{"repo:tag": digest}`` for every tag pushed.
"""

from __future__ import annotations

from pycrane._concurrency import bounded_map
from pycrane.name import Repository, Tag
from pycrane.random import image_from_layers, random_layer
from pycrane.remote import Client
from pycrane.v1.image import BytesLayer

__all__ = ["TAGS", "base_layers", "seed"]

TAGS = ("1.0.0", "1.1.0", "1.2.0", "2.0.0", "latest")


def base_layers() -> list[BytesLayer]:
    """The two base layers every seeded image is built on (half the repositories each)."""
    return [random_layer(4096, seed=1000 + i) for i in range(2)]


def seed(
    client: Client,
    host: str,
    *,
    repos: int = 200,
    tags: int = 5,
    prefix: str = "src",
    layer_size: int = 256,
    jobs: int = 8,
) -> dict[str, str]:
    bases = base_layers()
    names = TAGS[:tags]
    work: list[tuple[int, int, str]] = []
    for r in range(repos):
        for t, name in enumerate(names):
            if name != "latest":
                work.append((r, t, name))

    def push(w: tuple[int, int, str]) -> tuple[str, str]:
        r, t, name = w
        img = image_from_layers(
            [bases[r % 2], random_layer(layer_size, seed=r * 100 + t)],
            created_by=f"sync test {r}/{name}",
        )
        repo = Repository.parse(f"{host}/{prefix}/r{r:03d}")
        desc = client.write_image(Tag(repo, name), img, jobs=1)
        if name == "2.0.0" and "latest" in names:
            client.put_manifest(Tag(repo, "latest"), img.raw_manifest(), img.media_type())
        return f"{prefix}/r{r:03d}:{name}", str(desc.digest)

    out: dict[str, str] = {}
    for key, digest in bounded_map(push, work, jobs):
        out[key] = digest
        if key.endswith(":2.0.0") and "latest" in names:
            out[key.replace(":2.0.0", ":latest")] = digest
    return out
