"""``--allow-nondistributable-artifacts`` (crane's persistent flag): foreign layers are
pushed only when it is given; without it the manifest goes with the layer left to its URLs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pycrane.layout import Layout
from pycrane.name import Repository
from pycrane.random import random_image
from pycrane.v1 import mediatypes as mt
from pycrane.v1.descriptor import Descriptor
from tests.test_cli_e2e import Cli, cli  # noqa: F401

__all__: list[str] = []


def _layout_with_foreign_layer(path: Path) -> tuple[Path, Descriptor]:
    img = random_image(2, 4096, seed=21, media_type=mt.DOCKER_MANIFEST)
    layout = Layout.create(path)
    layout.write_image(img)
    m = json.loads(img.raw_manifest())
    m["layers"][1]["mediaType"] = mt.DOCKER_FOREIGN_LAYER
    m["layers"][1]["urls"] = ["https://example.invalid/foreign-layer"]
    raw = json.dumps(m).encode()
    layout.write_blob(raw)
    desc = Descriptor.from_bytes(mt.DOCKER_MANIFEST, raw)
    layout.append_descriptor(desc)
    return path, Descriptor.from_dict(m["layers"][1], "layer")


def test_foreign_layers_pushed_only_when_allowed(
    cli: Cli,  # noqa: F811
    pycrane_registry: Any,
    tmp_path: Path,
) -> None:
    from pycrane.remote import Client

    layout, foreign = _layout_with_foreign_layer(tmp_path / "layout")
    host = pycrane_registry.host
    with Client() as c:
        plain = f"{host}/nondist/plain:v1"
        assert cli.out("push", str(layout), plain).startswith(f"{host}/nondist/plain@")
        assert not c.fetcher.blob_exists(Repository.parse(f"{host}/nondist/plain"), foreign.digest)
        allowed = f"{host}/nondist/allowed:v1"
        cli.out("push", "--allow-nondistributable-artifacts", str(layout), allowed)
        assert c.fetcher.blob_exists(Repository.parse(f"{host}/nondist/allowed"), foreign.digest)
        # Before the subcommand too, as a persistent flag.
        before = f"{host}/nondist/before:v1"
        cli.out("--allow-nondistributable-artifacts", "push", str(layout), before)
        assert c.fetcher.blob_exists(Repository.parse(f"{host}/nondist/before"), foreign.digest)
