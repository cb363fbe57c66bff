"""``pycrane blob REPO@DIGEST``: one blob, streamed to stdout and verified."""

from __future__ import annotations

import click

from pycrane.cli import _output as out
from pycrane.cli._options import Options, command
from pycrane.errors import InvalidReference
from pycrane.name import DigestRef, parse_reference

__all__ = ["blob"]

CHUNK = 1 << 20


@command("blob")
@click.argument("ref", metavar="REPO@DIGEST")
def blob(opts: Options, ref: str) -> None:
    """Write the blob REPO@DIGEST to stdout, checking its size and digest.

    A corrupt blob fails with an error after the bytes were written; scripts must
    check the exit status.
    """
    parsed = parse_reference(ref)
    if not isinstance(parsed, DigestRef):
        raise InvalidReference(f"invalid blob reference {ref!r}: expected REPO@sha256:<hex>")
    stdout = out.binary_stdout()
    with opts.client().blob(parsed.repository, parsed.digest) as stream:
        while chunk := stream.read(CHUNK):
            stdout.write(chunk)
    stdout.flush()
