"""``pycrane edit config|manifest IMAGE``: change the JSON in ``$EDITOR`` (or from stdin), push it.

As crane does, the editor opens only when stdin and stdout are both terminals;
otherwise the new content is read from stdin, so scripts can pipe it in. The
edited text must be a JSON object before anything is pushed.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import click

from pycrane.cli import _output as out
from pycrane.cli._options import Options, command, group
from pycrane.name import DigestRef, Reference, parse_reference
from pycrane.v1.digest import Digest

__all__ = ["edit"]


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _edited(current: bytes, what: str) -> bytes:
    """The new bytes: from $EDITOR seeded with ``current``, or all of stdin."""
    if _interactive():
        text = click.edit(current.decode("utf-8"), extension=".json", require_save=False)
        data = (text or "").encode("utf-8")
    else:
        data = sys.stdin.buffer.read()
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise click.ClickException(f"edited {what} is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise click.ClickException(f"edited {what} must be a JSON object, not {type(doc).__name__}")
    return data


def _destination(src: Reference, tag: str | None, raw: bytes) -> Reference:
    if tag:
        return parse_reference(tag)
    if isinstance(src, DigestRef):
        return src.repository.digest(Digest.from_bytes(raw))
    return src


@group("edit")
def edit(opts: Options) -> None:
    """Edit an image's config or manifest and push the result."""


@command("config")
@click.argument("image")
@click.option("-t", "--tag", help="Push the result here (default: IMAGE's tag, or a new digest).")
def config(opts: Options, image: str, tag: str | None) -> None:
    """Edit IMAGE's config file (an index resolves to --platform), push it, print the reference."""
    src = parse_reference(image)
    client = opts.client()
    img = client.image(src, platform=opts.platform)
    edited = _edited(img.raw_config(), "config")
    manifest: dict[str, Any] = json.loads(img.raw_manifest())
    cfg = dict(manifest["config"])
    digest = Digest.from_bytes(edited)
    if "data" in cfg:
        # crane keeps embedded data in step with the new config rather than dropping it.

        cfg["data"] = base64.b64encode(edited).decode("ascii")
    cfg["digest"] = str(digest)
    cfg["size"] = len(edited)
    manifest["config"] = cfg
    raw = json.dumps(manifest, separators=(",", ":")).encode("utf-8")
    dst = _destination(src, tag, raw)
    client.write_blob(dst.repository, edited)
    client.put_manifest(dst, raw, img.media_type())
    out.line(str(dst))


@command("manifest")
@click.argument("image")
@click.option("-t", "--tag", help="Push the result here (default: IMAGE's tag, or a new digest).")
@click.option(
    "-m",
    "--media-type",
    help="Content-Type for the PUT (default: the document's mediaType, else the original's).",
)
def manifest(opts: Options, image: str, tag: str | None, media_type: str | None) -> None:
    """Edit IMAGE's raw manifest, push it, print the reference."""
    src = parse_reference(image)
    client = opts.client()
    desc = client.get(src)
    edited = _edited(desc.raw, "manifest")
    if not media_type:
        declared = json.loads(edited).get("mediaType")
        media_type = declared if isinstance(declared, str) and declared else desc.media_type
    dst = _destination(src, tag, edited)
    client.put_manifest(dst, edited, media_type)
    out.line(str(dst))


edit.add_command(config)
edit.add_command(manifest)
