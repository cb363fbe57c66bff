"""``docker save`` tarballs (current and legacy formats) and layers from local files.

```python
from pycrane import tarball
tarball.write("out.tar", {"example.com/app:1": img})
img = tarball.image_from_path("out.tar", "example.com/app:1")
layer = tarball.layer_from_directory("rootfs/")
```
"""

from pycrane.tarball.layer import (
    FileLayer,
    SpooledLayer,
    layer_from_directory,
    layer_from_file,
    layer_from_reader,
    spool_tar,
)
from pycrane.tarball.legacy import v1_layer_id, write_legacy
from pycrane.tarball.read import (
    Tarball,
    TarballEntry,
    TarballImage,
    image_from_fileobj,
    image_from_path,
    open_tarball,
)
from pycrane.tarball.write import ImagesArg, write

__all__ = [
    "FileLayer",
    "ImagesArg",
    "SpooledLayer",
    "Tarball",
    "TarballEntry",
    "TarballImage",
    "image_from_fileobj",
    "image_from_path",
    "layer_from_directory",
    "layer_from_file",
    "layer_from_reader",
    "open_tarball",
    "spool_tar",
    "v1_layer_id",
    "write",
    "write_legacy",
]
