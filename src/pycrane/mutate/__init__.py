"""Pure image transforms: each returns a new lazy image (or index); nothing changes in place.

```python
from pycrane import mutate, tarball
img2 = mutate.append_layers(img, [tarball.layer_from_directory("app/")])
img3 = mutate.config(img2, entrypoint=["/app"], env={"MODE": "prod"})
with open("rootfs.tar", "wb") as f:
    mutate.export(img3, f)
```
"""

from pycrane.mutate.extract import export, extract, iter_extract, safe_name
from pycrane.mutate.image import DerivedImage, DerivedIndex, RetypedLayer
from pycrane.mutate.ops import (
    ANNOTATION_BASE_DIGEST,
    ANNOTATION_BASE_NAME,
    annotations,
    append_layers,
    config,
    created_at,
    flatten,
    media_type,
    prefetch,
    set_config_file,
)
from pycrane.mutate.rebase import rebase

__all__ = [
    "ANNOTATION_BASE_DIGEST",
    "ANNOTATION_BASE_NAME",
    "DerivedImage",
    "DerivedIndex",
    "RetypedLayer",
    "annotations",
    "append_layers",
    "config",
    "created_at",
    "export",
    "extract",
    "flatten",
    "iter_extract",
    "media_type",
    "prefetch",
    "rebase",
    "safe_name",
    "set_config_file",
]
