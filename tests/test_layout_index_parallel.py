"""An index's blobs, across all its children, share one bounded pool of writers."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

from pycrane.layout import Layout
from pycrane.random import image_from_layers, random_layer
from pycrane.v1 import Platform
from pycrane.v1.image import BytesLayer, SimpleIndex


class _RendezvousLayer(BytesLayer):
    """A layer whose download only proceeds once every sibling's has started."""

    def __init__(self, inner: BytesLayer, barrier: threading.Barrier) -> None:
        super().__init__(inner.data, inner.media_type(), diff_id=inner.diff_id())
        self._barrier = barrier

    def compressed(self) -> BinaryIO:
        self._barrier.wait()
        return io.BytesIO(self.data)


def _index(barrier: threading.Barrier) -> SimpleIndex:
    children = []
    for i, plat in enumerate(("linux/amd64", "linux/arm64", "linux/s390x")):
        layer = _RendezvousLayer(random_layer(256, seed=i), barrier)
        img = image_from_layers([layer], platform=Platform.parse(plat))
        children.append((None, img))
    return SimpleIndex.build(children)


def test_children_blobs_download_concurrently(tmp_path: Path) -> None:
    # With one pool per child image, the three layers would be fetched one child at a
    # time and the barrier (which needs all three at once) would break.
    barrier = threading.Barrier(3, timeout=10)
    idx = _index(barrier)
    layout = Layout.create(tmp_path / "oci")
    desc = layout.append_index(idx, ref_name="multi", jobs=3)
    assert desc.digest == idx.digest()
    assert layout.validate() == []


def test_one_job_writes_sequentially_and_still_completes(tmp_path: Path) -> None:
    barrier = threading.Barrier(1)
    layout = Layout.create(tmp_path / "oci")
    idx = _index(barrier)
    layout.append_index(idx, ref_name="multi", jobs=1)
    assert {d.digest for d in layout.descriptors()} == {idx.digest()}


def test_failed_child_blob_publishes_no_manifest(tmp_path: Path) -> None:
    barrier = threading.Barrier(3, timeout=0.5)
    idx = _index(barrier)
    layout = Layout.create(tmp_path / "oci")
    with pytest.raises(threading.BrokenBarrierError):
        layout.append_index(idx, ref_name="multi", jobs=2)  # only 2 can rendezvous
    manifests = {d.digest for d, _ in idx.children()} | {idx.digest()}
    assert not any(layout.store.exists(d) for d in manifests)
    assert layout.descriptors() == []
