"""pycrane's own OCI distribution registry server (distribution spec v1.1).

```python
from pycrane.registry import RegistryServer

with RegistryServer(disk="/srv/registry") as reg:   # memory storage without disk=
    print(reg.host, reg.url)                        # 127.0.0.1:PORT http://127.0.0.1:PORT
```

``serve()`` runs one in the foreground until SIGINT/SIGTERM (``pycrane registry
serve``). What it speaks: every v1.1 endpoint (blobs with ranges, monolithic,
POST+PUT and chunked uploads, cross-repository mounts, manifests by tag and
digest, tags and catalog pagination, the referrers API), sha256 and sha512,
optional htpasswd Basic auth, TLS, read-only mode. Manifests are stored and
served byte for byte; nothing becomes visible before its digest checks out.

Where things live: :mod:`~pycrane.registry.handler` (a connection, admission, routing),
:mod:`~pycrane.registry.exchange` (one request and response on the wire),
:mod:`~pycrane.registry.blob_routes`, :mod:`~pycrane.registry.upload_routes`,
:mod:`~pycrane.registry.manifest_routes`, :mod:`~pycrane.registry.listing_routes`
(the routes: blobs, upload sessions, manifests, catalog/tags/referrers),
:mod:`~pycrane.registry.framing` (strict request framing),
:mod:`~pycrane.registry.connections` (deadlines and caps for slow clients),
:mod:`~pycrane.registry.manifests` (what a pushed manifest must be),
:mod:`~pycrane.registry.storage` (the storage roles and the bounded memory backend),
:mod:`~pycrane.registry.disk` (the on-disk layout, safe for several processes),
:mod:`~pycrane.registry.disk_records` (its link files, tags and referrers),
:mod:`~pycrane.registry.disk_uploads` (its upload sessions),
:mod:`~pycrane.registry.pytest_plugin` (``pycrane_registry`` fixtures).
Deleted content is reclaimed offline by ``DiskStorage.collect_garbage()``.
"""

from __future__ import annotations

from pycrane.registry.server import RegistryServer, serve

__all__ = ["RegistryServer", "serve"]
