"""The manifest PUT: raw bytes under a tag or digest, retried while the blobs commit.

Shared by the writer (images, indexes, tags) and by the referrers tag schema, which
rewrites its index with the same request.
"""

from __future__ import annotations

from dataclasses import dataclass

from pycrane.errors import ErrorCode, RegistryError
from pycrane.name import DigestRef, Reference
from pycrane.remote._api import RegistryAPI
from pycrane.remote._retry import retry_call
from pycrane.remote._transport import Response
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest

__all__ = ["OCI_SUBJECT_HEADER", "PutResult", "put_manifest"]

#: The header a registry sets when it processed a manifest's ``subject`` itself.
OCI_SUBJECT_HEADER = "OCI-Subject"


@dataclass(frozen=True)
class PutResult:
    """A manifest PUT: its descriptor, and whether the registry handled its subject."""

    descriptor: Descriptor
    subject_handled: bool


def _blob_not_yet_there(e: Exception) -> bool:
    return isinstance(e, RegistryError) and e.has_code(ErrorCode.MANIFEST_BLOB_UNKNOWN)


def put_manifest(api: RegistryAPI, r: Reference, raw: bytes, media: str) -> PutResult:
    """PUT raw manifest bytes as they are; the caller has checked them."""
    repo = r.repository
    what = f"manifest {r}"

    def put() -> Response:
        return api.request(
            "PUT",
            repo.registry,
            f"/v2/{repo.path}/manifests/{r.identifier}",
            scopes=[repo.scope("pull,push")],
            what=what,
            expected=(200, 201, 202, 204),
            headers={"Content-Type": media, "Content-Length": str(len(raw))},
            body=raw,
        )

    # Another writer may be committing a blob this manifest relies on right now.
    resp = retry_call(put, api.retry, what, retry_on=_blob_not_yet_there, attempts=3)
    algorithm = r.digest.algorithm if isinstance(r, DigestRef) else "sha256"
    return PutResult(
        Descriptor(media_type=media, digest=Digest.from_bytes(raw, algorithm), size=len(raw)),
        bool(resp.header(OCI_SUBJECT_HEADER)),
    )
