"""Shared ends of the commands that build an image: push it (and print ref@digest) or save it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycrane.cli import _output as out
from pycrane.cli._progress import progress_for
from pycrane.name import Reference, Tag, parse_reference
from pycrane.v1.image import Image, ImageIndex, is_index

if TYPE_CHECKING:
    from pycrane.cli._options import Options

__all__ = ["push_result", "save_tarball", "target_ref"]


def push_result(
    opts: Options, target: Reference, obj: Image | ImageIndex, *, jobs: int | None = None
) -> str:
    """Push ``obj`` to ``target`` and print ``repository@digest`` as crane does."""
    client = opts.client()
    jobs = jobs or opts.jobs
    with progress_for(opts.quiet, title="push") as sink:
        if is_index(obj):
            client.write_index(target, obj, jobs=jobs, progress=sink)
        else:
            client.write_image(target, obj, jobs=jobs, progress=sink)
    result = f"{target.repository.name}@{obj.digest()}"
    out.line(result)
    return result


def save_tarball(path: str, tag: str | None, img: Image) -> None:
    """Write ``img`` as a docker-save tarball (atomically, by pycrane.tarball)."""
    from pycrane import tarball

    tags = [parse_reference(tag)] if tag else []
    tarball.write(path, [([t for t in tags if isinstance(t, Tag)], img)])


def target_ref(
    source: Reference, tag: str | None, repo: str | None, obj: Image | ImageIndex
) -> Reference:
    """Where a changed image goes: ``-t TAG`` (a full reference or a bare tag), else
    ``--repo`` by digest, else back to the source reference (by digest when the
    source was a digest, since the content changed)."""
    from pycrane.name import Repository

    if tag:
        if ":" not in tag and "/" not in tag and "@" not in tag:
            return source.repository.tag(tag)
        return parse_reference(tag)
    if repo:
        return Repository.parse(repo).digest(obj.digest())
    if isinstance(source, Tag):
        return source
    return source.repository.digest(obj.digest())
