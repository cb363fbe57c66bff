"""A disk registry's repository records: the link files under ``repositories/``.

Each repository is a directory (one per name component) of small records::

    _layers/<alg>/<hex>                  empty link: the blob is visible in <name>
    _manifests/revisions/<alg>/<hex>     link to a manifest: {"mediaType", "subject"}
    _manifests/tags/t_<tag>.ref          two lines, digest and tag: where a tag points
                                         (h_<hash>.ref when the name would be too long)
    _referrers/<alg>/<hex>/<alg>-<hex>   subject -> referrer: the referrer's descriptor
    _uploads/<session>                   marker: the upload session belongs to <name>

Links are created with an exclusive publish and never rewritten, so they need no
lock; tags are replaced atomically through a temp file. Name components that
Windows reserves (``con``, ``nul``, ``com1``...) get a ``_`` prefix, which no
valid component has; tag file names escape upper case as ``^x``, because
Windows file names ignore case while tags do not. The content these records
point at lives in the :class:`~pycrane.layout.BlobStore` beside them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pycrane import _fs
from pycrane.registry.manifests import PushedManifest
from pycrane.v1.digest import ALGORITHMS, Digest

__all__ = ["RepositoryRecords"]

_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"com{i}" for i in range(1, 10)]
    + [f"lpt{i}" for i in range(1, 10)]
)
_MARKERS = ("_layers", "_manifests")


def _component(c: str) -> str:
    return "_" + c if c.split(".", 1)[0] in _RESERVED else c


def _tag_file(tag: str) -> str:
    """``t_<tag>.ref`` with upper case as ``^x``; a name too long for a file system is hashed."""
    name = "t_" + re.sub(r"[A-Z]", lambda m: "^" + m[0].lower(), tag) + ".ref"
    if len(name) > 160:
        name = "h_" + hashlib.sha256(tag.encode()).hexdigest()[:40] + ".ref"
    return name


def _tag_name(filename: str) -> str | None:
    """The tag a ``t_`` file name encodes (``h_`` names keep theirs inside the file)."""
    if not (filename.startswith("t_") and filename.endswith(".ref")):
        return None
    return re.sub(r"\^([a-z])", lambda m: m[1].upper(), filename[2:-4])


class RepositoryRecords:
    """The records of every repository under ``root`` (the ``repositories`` directory)."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        _fs.ensure_dir(root, durable=fsync)

    # -- paths --------------------------------------------------------------------------------

    def repo(self, repo: str) -> Path:
        return self.root.joinpath(*(_component(c) for c in repo.split("/")))

    def _blob_link(self, repo: str, digest: Digest) -> Path:
        return self.repo(repo) / "_layers" / digest.algorithm / digest.hex

    def _revision(self, repo: str, digest: Digest) -> Path:
        return self.repo(repo) / "_manifests" / "revisions" / digest.algorithm / digest.hex

    def _tags_dir(self, repo: str) -> Path:
        return self.repo(repo) / "_manifests" / "tags"

    def _referrers_dir(self, repo: str, subject: Digest) -> Path:
        return self.repo(repo) / "_referrers" / subject.algorithm / subject.hex

    def marker(self, repo: str, session: str) -> Path:
        """The file that says upload ``session`` belongs to ``repo``."""
        return self.repo(repo) / "_uploads" / session

    def sessions(self, repo: str) -> list[str]:
        """The upload sessions that have a marker in ``repo``."""
        return _fs.listdir(self.repo(repo) / "_uploads")

    def write_link(self, path: Path, data: bytes = b"") -> None:
        """Create a record that is never rewritten; an existing one is kept."""
        if _fs.stat(path) is not None:
            return
        _fs.ensure_dir(path.parent, durable=self.fsync)
        _fs.atomic_write_bytes(path, data, durable=self.fsync, exclusive=True)

    # -- blobs --------------------------------------------------------------------------------

    def has_blob(self, repo: str, digest: Digest) -> bool:
        return _fs.stat(self._blob_link(repo, digest)) is not None

    def link_blob(self, repo: str, digest: Digest) -> None:
        self.write_link(self._blob_link(repo, digest))

    def unlink_blob(self, repo: str, digest: Digest) -> bool:
        return _fs.unlink(self._blob_link(repo, digest))

    # -- manifests, tags, referrers -----------------------------------------------------------

    def _revision_info(self, repo: str, digest: Digest) -> dict[str, Any] | None:
        try:
            info = json.loads(_fs.read_bytes(self._revision(repo, digest)))
        except (FileNotFoundError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def revision_media_type(self, repo: str, digest: Digest) -> str | None:
        """The media type ``digest`` was pushed with to ``repo``; None when not linked."""
        info = self._revision_info(repo, digest)
        return None if info is None else str(info.get("mediaType"))

    def _tag_record(self, repo: str, filename: str) -> tuple[str, Digest] | None:
        """A tag file holds ``<digest>\\n<tag>``."""
        try:
            text = _fs.read_bytes(self._tags_dir(repo) / filename).decode()
            digest, _, tag = text.partition("\n")
            return tag, Digest.parse(digest)
        except (FileNotFoundError, ValueError):
            return None

    def tag_target(self, repo: str, tag: str) -> Digest | None:
        record = self._tag_record(repo, _tag_file(tag))
        return record[1] if record is not None and record[0] == tag else None

    def add_revision(self, repo: str, manifest: PushedManifest, tag: str | None) -> None:
        """Link a stored manifest, index it under its subject, point ``tag`` at it."""
        info: dict[str, Any] = {"mediaType": manifest.media_type}
        if manifest.subject is not None:
            info["subject"] = str(manifest.subject)
        self.write_link(self._revision(repo, manifest.digest), json.dumps(info).encode())
        if manifest.subject is not None:
            ref = self._referrers_dir(repo, manifest.subject)
            name = f"{manifest.digest.algorithm}-{manifest.digest.hex}"
            self.write_link(ref / name, json.dumps(manifest.referrer_descriptor()).encode())
        if tag is not None:
            path = self._tags_dir(repo) / _tag_file(tag)
            _fs.ensure_dir(path.parent, durable=self.fsync)
            record = f"{manifest.digest}\n{tag}".encode()
            _fs.atomic_write_bytes(path, record, durable=self.fsync)

    def delete_revision(self, repo: str, digest: Digest) -> bool:
        """Unlink a manifest, every tag pointing at it, and its referrers entry."""
        info = self._revision_info(repo, digest)
        if not _fs.unlink(self._revision(repo, digest)):
            return False
        tags_dir = self._tags_dir(repo)
        for name in _fs.listdir(tags_dir):
            if name.endswith(".ref") and not name.startswith("."):
                record = self._tag_record(repo, name)
                if record is not None and record[1] == digest:
                    _fs.unlink(tags_dir / name)
        subject = (info or {}).get("subject")
        if isinstance(subject, str):
            try:
                s = Digest.parse(subject)
            except ValueError:
                return True
            _fs.unlink(self._referrers_dir(repo, s) / f"{digest.algorithm}-{digest.hex}")
        return True

    def delete_tag(self, repo: str, tag: str) -> bool:
        return _fs.unlink(self._tags_dir(repo) / _tag_file(tag))

    def tags(self, repo: str) -> list[str] | None:
        path = self.repo(repo)
        if not any(_fs.stat(path / m) is not None for m in _MARKERS):
            return None
        tags = []
        for name in _fs.listdir(self._tags_dir(repo)):
            tag = _tag_name(name)
            if tag is None and name.startswith("h_") and name.endswith(".ref"):
                record = self._tag_record(repo, name)
                tag = record[0] if record is not None else None
            if tag is not None:
                tags.append(tag)
        return sorted(tags)

    def referrers(self, repo: str, subject: Digest) -> list[dict[str, Any]]:
        out = []
        base = self._referrers_dir(repo, subject)
        for name in sorted(_fs.listdir(base)):
            alg, _, hexpart = name.partition("-")
            if alg not in ALGORITHMS or name.startswith("."):
                continue
            try:
                digest = Digest(alg, hexpart)
                entry = json.loads(_fs.read_bytes(base / name))
            except (ValueError, FileNotFoundError):
                continue
            if _fs.stat(self._revision(repo, digest)) is not None and isinstance(entry, dict):
                out.append(entry)
        return out

    # -- the whole tree -----------------------------------------------------------------------

    def repositories(self, *, uploads: bool = False) -> list[str]:
        """Repositories with content (and, with ``uploads``, those with only sessions)."""
        found: list[str] = []
        markers = (*_MARKERS, "_uploads") if uploads else _MARKERS

        def walk(path: Path, prefix: str) -> None:
            try:
                entries = sorted(os.scandir(path), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                return
            names = {e.name for e in entries}
            if prefix and any(m in names for m in markers):
                found.append(prefix)
            for e in entries:
                if e.name.startswith("_") and e.name[1:].split(".", 1)[0] not in _RESERVED:
                    continue
                if e.is_dir(follow_symlinks=False):
                    comp = e.name[1:] if e.name.startswith("_") else e.name
                    walk(Path(e.path), f"{prefix}/{comp}" if prefix else comp)

        walk(self.root, "")
        return sorted(found)

    def linked(self) -> Iterator[Digest]:
        """Every blob and manifest some repository links (repeats included)."""
        for repo in self.repositories():
            base = self.repo(repo)
            for kind in (base / "_layers", base / "_manifests" / "revisions"):
                for alg in ALGORITHMS:
                    for entry in _fs.walk_files(kind / alg):
                        try:
                            yield Digest(alg, entry.name)
                        except ValueError:
                            continue
