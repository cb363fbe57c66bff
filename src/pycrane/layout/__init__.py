"""OCI image layouts on disk and the content-addressed blob store beneath them.

```python
from pycrane.layout import Layout
from pycrane.random import random_image

layout = Layout.open_or_create("out/")
desc = layout.append_image(random_image(2, duplicate_empty_layers=3), ref_name="latest")
img = layout.image("latest")          # lazy; blobs are verified as they are read
assert layout.validate() == []        # every blob hashes to its name, nothing missing
layout.gc()                           # drop blobs index.json no longer reaches
```

Safe with many threads and processes writing at once, on POSIX and Windows: blobs
are verified, synced and published without ever replacing a file, and
``index.json`` changes are locked read-modify-writes with an atomic replace.
"""

from pycrane.layout.layout import (
    LAYOUT_VERSION,
    GcResult,
    Layout,
    LayoutImage,
    LayoutIndex,
    LayoutLayer,
    LayoutRootIndex,
)
from pycrane.layout.memory import MemoryBlobStore, StoreFull
from pycrane.layout.roles import BlobIngester, BlobManager, BlobReader, Blobs, Ingest
from pycrane.layout.store import BlobStore, BlobWriter, StaleIngest


def _conforms(disk: BlobStore, memory: MemoryBlobStore) -> tuple[Blobs, Blobs]:
    """Never called: mypy checks here that both stores implement every role."""
    return disk, memory


__all__ = [
    "LAYOUT_VERSION",
    "BlobIngester",
    "BlobManager",
    "BlobReader",
    "BlobStore",
    "BlobWriter",
    "Blobs",
    "GcResult",
    "Ingest",
    "Layout",
    "LayoutImage",
    "LayoutIndex",
    "LayoutLayer",
    "LayoutRootIndex",
    "MemoryBlobStore",
    "StaleIngest",
    "StoreFull",
]
