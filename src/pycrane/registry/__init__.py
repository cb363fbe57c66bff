"""pycrane's own OCI distribution registry server (distribution spec v1.1).

```python
from pycrane.registry import RegistryServer

with RegistryServer(disk="/srv/registry") as reg:   # or memory storage without disk=
    print(reg.url)                                  # http://127.0.0.1:PORT
```

``serve()`` runs one in the foreground (``pycrane registry serve``). Storage
layout on disk is described in :mod:`pycrane.registry.disk`; the HTTP surface in
:mod:`pycrane.registry.handler`.
"""

from __future__ import annotations

from pycrane.registry.server import RegistryServer, serve

__all__ = ["RegistryServer", "serve"]
