"""Media types of OCI and Docker manifests, indexes, configs and layers."""

from __future__ import annotations

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER",
    "DOCKER_LAYER",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_MANIFEST_SCHEMA1",
    "DOCKER_MANIFEST_SCHEMA1_SIGNED",
    "DOCKER_UNCOMPRESSED_LAYER",
    "MANIFEST_ACCEPT",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "OCI_RESTRICTED_LAYER",
    "OCI_RESTRICTED_LAYER_GZIP",
    "OCI_RESTRICTED_LAYER_ZSTD",
    "compression_of",
    "is_config",
    "is_distributable",
    "is_image",
    "is_index",
    "is_layer",
    "is_manifest",
    "is_schema1",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_RESTRICTED_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_RESTRICTED_LAYER_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_RESTRICTED_LAYER_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_UNCOMPRESSED_LAYER = "application/vnd.docker.image.rootfs.diff.tar"

#: The ``Accept`` header value for manifest requests: every manifest kind we can read.
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_INDEX,
        OCI_MANIFEST,
        DOCKER_MANIFEST_LIST,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_SCHEMA1_SIGNED,
        DOCKER_MANIFEST_SCHEMA1,
    ]
)

_INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
_IMAGES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
_SCHEMA1 = frozenset({DOCKER_MANIFEST_SCHEMA1, DOCKER_MANIFEST_SCHEMA1_SIGNED})
_CONFIGS = frozenset({OCI_CONFIG, DOCKER_CONFIG})
_LAYERS = frozenset(
    {
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        OCI_RESTRICTED_LAYER,
        OCI_RESTRICTED_LAYER_GZIP,
        OCI_RESTRICTED_LAYER_ZSTD,
        DOCKER_LAYER,
        DOCKER_FOREIGN_LAYER,
        DOCKER_UNCOMPRESSED_LAYER,
    }
)
_NON_DISTRIBUTABLE = frozenset(
    {
        OCI_RESTRICTED_LAYER,
        OCI_RESTRICTED_LAYER_GZIP,
        OCI_RESTRICTED_LAYER_ZSTD,
        DOCKER_FOREIGN_LAYER,
    }
)


def is_index(media_type: str | None) -> bool:
    """An OCI image index or a Docker manifest list."""
    return media_type in _INDEXES


def is_image(media_type: str | None) -> bool:
    """An OCI image manifest or a Docker schema 2 manifest."""
    return media_type in _IMAGES


def is_schema1(media_type: str | None) -> bool:
    """A Docker schema 1 manifest (signed or not)."""
    return media_type in _SCHEMA1


def is_manifest(media_type: str | None) -> bool:
    """Anything served from ``/v2/<name>/manifests/``."""
    return is_index(media_type) or is_image(media_type) or is_schema1(media_type)


def is_config(media_type: str | None) -> bool:
    """An image config blob."""
    return media_type in _CONFIGS


def is_layer(media_type: str | None) -> bool:
    """A known filesystem layer media type."""
    return media_type in _LAYERS


def is_distributable(media_type: str | None) -> bool:
    """False for foreign and non-distributable layers, which pushes skip by default."""
    return media_type not in _NON_DISTRIBUTABLE


def compression_of(media_type: str | None) -> str:
    """``"gzip"``, ``"zstd"`` or ``"none"``, as the media type declares it."""
    if media_type is None:
        return "none"
    if media_type.endswith("+zstd") or media_type.endswith(".zstd"):
        return "zstd"
    if media_type.endswith("+gzip") or media_type.endswith(".gzip"):
        return "gzip"
    return "none"
