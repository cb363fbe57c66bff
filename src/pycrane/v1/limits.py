"""How large a manifest or config may be before pycrane refuses to hold it in memory.

Manifests and configs are read whole (their digests are taken over the exact
bytes), so every reader (registry client, OCI layout, tarball, registry server)
applies the same bound. 100 MiB is go-containerregistry's manifest limit; the
distribution spec asks registries to accept at least 4 MiB, and real indexes of
many platforms with attestations stay far below either.
"""

from __future__ import annotations

__all__ = ["CONFIG_LIMIT", "MANIFEST_LIMIT"]

#: Manifests and indexes larger than this are refused.
MANIFEST_LIMIT = 100 << 20
#: Config blobs larger than this are refused.
CONFIG_LIMIT = 100 << 20
