"""``pycrane edit config|manifest|fs IMAGE``: change it in ``$EDITOR`` (or from stdin), push it.

As crane does, the editor opens only when stdin and stdout are both terminals;
otherwise the new content is read from stdin, so scripts can pipe it in. An
edited config or manifest must be a JSON object before anything is pushed; an
edited file becomes a new top layer holding just that file.
"""

from __future__ import annotations

import base64
import io
import json
import posixpath
import sys
import tarfile
from typing import TYPE_CHECKING, Any

import click

from pycrane.cli import _output as out
from pycrane.cli._options import Options, command, group
from pycrane.name import DigestRef, Reference, parse_reference
from pycrane.v1.digest import Digest

if TYPE_CHECKING:
    from pycrane.v1.image import Image

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


@group("edit", hidden=True)  # hidden in crane too, "until we are happy with the interface"
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


@command("fs")
@click.argument("image")
@click.option("-f", "--filename", required=True, help="The file to edit (created if absent).")
@click.option("-t", "--tag", help="Push the result here (default: IMAGE's tag, or a new digest).")
def fs(opts: Options, image: str, filename: str, tag: str | None) -> None:
    """Edit (or add) a file of IMAGE's filesystem in a new top layer, push it, print the reference.

    On a terminal the file's current content (whiteouts applied) opens in $EDITOR;
    otherwise stdin is the new content. A new file gets mode 0555, as crane gives it.
    """
    from pycrane import mutate
    from pycrane.tarball import layer_from_reader

    name = _member_name(filename)
    src = parse_reference(image)
    client = opts.client()
    img = client.image(src, platform=opts.platform)
    if _interactive():
        info, current = _find_file(img, name)
        text = click.edit(
            current.decode("utf-8", "surrogateescape"),
            extension=posixpath.splitext(name)[1] or ".txt",
            require_save=False,
        )
        data = (text or "").encode("utf-8", "surrogateescape")
    else:
        info, data = _new_file(name), sys.stdin.buffer.read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    buf.seek(0)
    layer = layer_from_reader(buf)
    history = {"author": "pycrane", "created_by": f"pycrane edit fs -f {filename}"}
    new = mutate.append_layers(img, [layer], history=[history])
    dst = _destination(src, tag, new.raw_manifest())
    client.write_image(dst, new, jobs=opts.jobs)
    out.line(str(dst))


def _member_name(filename: str) -> str:
    """A tar member name for ``filename``: relative, normalised, never above the root."""
    name = posixpath.normpath("/" + filename.replace("\\", "/")).lstrip("/")
    if not name or name == ".":
        raise click.BadParameter(f"{filename!r} names no file", param_hint="'-f/--filename'")
    return name


def _new_file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    # A fixed mode, as crane: not the umask of whoever ran the command.
    info.mode = 0o555
    info.mtime = 0
    return info


def _find_file(img: Image, name: str) -> tuple[tarfile.TarInfo, bytes]:
    """The file's header and content in IMAGE's flattened filesystem (a new one if absent)."""
    from pycrane import mutate

    with mutate.extract(img) as stream, tarfile.open(fileobj=stream, mode="r|") as tf:
        for m in tf:
            if posixpath.normpath(m.name.lstrip("/")) != name:
                continue
            if not m.isfile():
                raise click.ClickException(f"{name} in {img.digest()} is not a regular file")
            f = tf.extractfile(m)
            data = f.read() if f is not None else b""
            m.name = name
            return m, data
    return _new_file(name), b""


edit.add_command(config)
edit.add_command(manifest)
edit.add_command(fs)
