"""Big layers pass through tarball write/read, validate and export in bounded memory."""

from __future__ import annotations

import os
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from pycrane import mutate, tarball
from pycrane.compression import CHUNK, iter_compress
from pycrane.random import image_from_layers
from pycrane.validate import validate_image

SIZE = 48 << 20
LIMIT = 16 << 20  # a few 1 MiB chunks, never the layer


def _big_layer_file(tmp: Path) -> Path:
    raw = tmp / "big.tar"
    with tarfile.open(raw, "w") as t:
        info = tarfile.TarInfo("big.bin")
        info.size = SIZE

        class _Random:
            def read(self, n: int) -> bytes:
                return os.urandom(n)

        t.addfile(info, _Random())  # type: ignore[arg-type]
    gz = tmp / "big.tar.gz"
    with open(raw, "rb") as src, open(gz, "wb") as dst:
        for chunk in iter_compress(iter(lambda: src.read(CHUNK), b"")):
            dst.write(chunk)
    raw.unlink()
    return gz


class _Null:
    def write(self, data: bytes) -> int:
        return len(data)


@pytest.mark.stress
def test_big_layer_round_trip_in_bounded_memory(tmp_path: Path) -> None:
    layer = tarball.layer_from_file(_big_layer_file(tmp_path))
    img = image_from_layers([layer])
    out = tmp_path / "big-image.tar"
    tracemalloc.start()
    try:
        tarball.write(out, {"big:1": img})
        back = tarball.image_from_path(out)
        assert back.digest() == img.digest()
        validate_image(back)
        mutate.export(back, _Null())  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.stat().st_size > SIZE
    assert peak < LIMIT, f"peak traced memory {peak} bytes for a {SIZE}-byte layer"
