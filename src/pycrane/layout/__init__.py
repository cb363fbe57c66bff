"""OCI image layouts on disk and the content-addressed blob store beneath them."""

from pycrane.layout.store import BlobStore, BlobWriter

__all__ = ["BlobStore", "BlobWriter"]
