"""One conformance suite for every blob store (the contract in ``pycrane.layout.roles``).

Each test runs over the disk store, the disk store under the Windows-semantics
emulator, and the memory store. A behaviour one implementation has and another
lacks fails here; what only one store does (quarantine, cross-process locks,
fsync order) stays in that store's own tests.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pycrane.errors import DigestMismatch, NotFoundError, SizeMismatch, StoreError
from pycrane.layout import Blobs, BlobStore, MemoryBlobStore, StoreFull
from pycrane.v1.digest import Digest

DATA = b"the contract holds for every store" * 1000
DIGEST = Digest.from_bytes(DATA)


@pytest.fixture(params=["disk", "disk-windows", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Blobs]:
    if request.param == "memory":
        yield MemoryBlobStore()
        return
    root = tmp_path / "store"
    root.mkdir()
    if request.param == "disk-windows":
        windows_fs = request.getfixturevalue("windows_fs")
        windows_fs(root, rename_window=0.01)  # on until the end of the test
        yield BlobStore(root, fsync=False)
        return
    yield BlobStore(root, fsync=False)


def visible(store: Blobs) -> set[Digest]:
    return set(store.digests())


def test_put_bytes_stream_and_chunks_give_one_blob(store: Blobs) -> None:
    assert store.put(DATA) == (DIGEST, len(DATA))
    assert store.put(io.BytesIO(DATA), digest=DIGEST) == (DIGEST, len(DATA))
    assert store.put(iter([DATA[:10], DATA[10:]]), digest=DIGEST, size=len(DATA)) == (
        DIGEST,
        len(DATA),
    )
    assert visible(store) == {DIGEST}
    assert store.size(DIGEST) == len(DATA)
    assert store.exists(DIGEST) and store.exists(DIGEST, len(DATA))
    assert not store.exists(DIGEST, len(DATA) + 1)
    with store.open(DIGEST) as f:
        assert f.read() == DATA
    assert store.read_bytes(DIGEST) == DATA


def test_a_present_digest_is_success_without_opening_the_source(store: Blobs) -> None:
    store.put(DATA, digest=DIGEST)
    opened: list[int] = []

    def opener() -> bytes:
        opened.append(1)
        return b"not read"

    assert store.put_from(opener, digest=DIGEST, size=len(DATA)) == (DIGEST, len(DATA))
    assert opened == []


@pytest.mark.parametrize("kind", ["digest", "size-short", "size-long"])
def test_a_mismatch_raises_and_leaves_nothing(store: Blobs, kind: str) -> None:
    bad = DATA[:-1] + b"!"
    if kind == "digest":
        with pytest.raises(DigestMismatch):
            store.put(bad, digest=DIGEST)
    elif kind == "size-short":
        with pytest.raises(SizeMismatch):
            store.put_from(lambda: io.BytesIO(DATA[:-5]), digest=DIGEST, size=len(DATA))
    else:
        with pytest.raises(SizeMismatch):
            store.put_from(lambda: iter([DATA, b"extra"]), digest=DIGEST, size=len(DATA))
    assert visible(store) == set()
    assert store.size(DIGEST) is None
    with pytest.raises(NotFoundError):
        store.open(DIGEST)


def test_open_and_read_of_a_missing_blob_raise_not_found(store: Blobs) -> None:
    with pytest.raises(NotFoundError):
        store.open(DIGEST)
    with pytest.raises(NotFoundError):
        store.read_bytes(DIGEST)
    assert not store.delete(DIGEST)


def test_read_bytes_is_bounded(store: Blobs) -> None:
    store.put(DATA)
    with pytest.raises(StoreError):
        store.read_bytes(DIGEST, max_size=len(DATA) - 1)
    assert store.read_bytes(DIGEST, max_size=len(DATA)) == DATA


def test_ingest_commit_abort_and_mismatch(store: Blobs) -> None:
    w = store.ingest()
    w.write(DATA[:100])
    w.write(DATA[100:])
    assert w.offset == len(DATA) and w.digest() == DIGEST
    assert w.commit(DIGEST, len(DATA)) == DIGEST
    assert visible(store) == {DIGEST}

    other = b"another blob"
    w = store.ingest()
    w.write(other)
    w.abort()
    assert visible(store) == {DIGEST}

    w = store.ingest()
    w.write(other)
    with pytest.raises(DigestMismatch):
        w.commit(DIGEST)
    w.abort()
    w = store.ingest()
    w.write(other)
    with pytest.raises(SizeMismatch):
        w.commit(None, len(other) + 1)
    w.abort()
    assert visible(store) == {DIGEST}
    with pytest.raises(StoreError):
        w.write(b"after abort")


def test_committing_a_digest_that_exists_is_success(store: Blobs) -> None:
    store.put(DATA)
    w = store.ingest()
    w.write(DATA)
    assert w.commit(DIGEST) == DIGEST
    assert visible(store) == {DIGEST} and store.read_bytes(DIGEST) == DATA


def test_an_ingest_with_a_ref_continues_where_it_was_closed(store: Blobs) -> None:
    w = store.ingest("upload-1")
    w.write(DATA[:1000])
    w.close()
    assert visible(store) == set()
    w = store.ingest("upload-1")
    assert w.offset == 1000
    w.write(DATA[1000:])
    assert w.commit(DIGEST, len(DATA)) == DIGEST
    w = store.ingest("upload-1")  # committed: a new ingest of the ref starts empty
    assert w.offset == 0
    w.abort()


def test_an_aborted_ref_starts_again_from_zero(store: Blobs) -> None:
    w = store.ingest("upload-2")
    w.write(b"x" * 10)
    w.close()
    w = store.ingest("upload-2")
    w.abort()
    w = store.ingest("upload-2")
    assert w.offset == 0
    w.abort()


def test_concurrent_writers_of_one_digest_all_succeed_with_one_blob(store: Blobs) -> None:
    errors: list[BaseException] = []
    results: list[tuple[Digest, int]] = []
    gate = threading.Barrier(8)

    def writer(i: int) -> None:
        try:
            gate.wait()
            chunks = [DATA[j : j + 997] for j in range(0, len(DATA), 997)]
            if i % 2:
                results.append(store.put(iter(chunks), digest=DIGEST, size=len(DATA)))
            else:
                results.append(store.put_from(lambda: io.BytesIO(DATA), digest=DIGEST))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert results == [(DIGEST, len(DATA))] * 8
    assert visible(store) == {DIGEST} and store.read_bytes(DIGEST) == DATA


def test_listing_and_delete(store: Blobs) -> None:
    blobs = [bytes([i]) * (i + 1) for i in range(5)]
    digests = {store.put(b)[0] for b in blobs}
    assert visible(store) == digests
    victim = Digest.from_bytes(blobs[2])
    assert store.delete(victim)
    assert not store.delete(victim)
    assert visible(store) == digests - {victim}
    assert not store.exists(victim)


def test_progress_sees_a_write_and_a_skip(store: Blobs) -> None:
    events: list[tuple[Any, ...]] = []

    class Sink:
        def start(self, digest: Digest, total: int | None, description: str = "") -> None:
            events.append(("start", total, description))

        def advance(self, digest: Digest, nbytes: int) -> None:
            events.append(("advance",))

        def finish(self, digest: Digest, *, skipped: bool = False) -> None:
            events.append(("finish", skipped))

    store.put(DATA, digest=DIGEST, progress=Sink())
    assert events[0][:2] == ("start", len(DATA)) and events[-1] == ("finish", False)
    events.clear()
    store.put(DATA, digest=DIGEST, progress=Sink())
    assert events == [("start", len(DATA), "exists"), ("finish", True)]


def test_a_stopped_job_gives_up_and_leaves_nothing(store: Blobs) -> None:
    from pycrane._concurrency import Stopped

    stop = threading.Event()

    def chunks() -> Iterator[bytes]:
        yield DATA[:100]
        stop.set()
        yield DATA[100:]

    opener: Callable[[], Any] = chunks
    with pytest.raises(Stopped):
        store.put_from(opener, digest=DIGEST, size=len(DATA), stop=stop)
    assert visible(store) == set()


def test_a_bounded_memory_store_refuses_what_does_not_fit() -> None:
    store = MemoryBlobStore(max_bytes=len(DATA) + 10)
    store.put(DATA)
    with pytest.raises(StoreFull):
        store.put(b"y" * 11)
    assert store.used == len(DATA)
    w = store.ingest("r")
    w.write(b"z" * 10)
    w.close()  # a parked ingest still counts
    with pytest.raises(StoreFull):
        store.put(b"q")
    store.ingest("r").abort()
    assert store.used == len(DATA)
    assert store.delete(DIGEST) and store.used == 0
