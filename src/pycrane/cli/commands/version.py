"""``pycrane version``."""

from __future__ import annotations

import platform
import sys

import click

from pycrane.cli import _output as out
from pycrane.cli._options import Options, command

__all__ = ["version", "version_string"]


def version_string() -> str:
    """The package's own version constant.

    Not ``importlib.metadata``: importing it costs more than the rest of ``pycrane
    version`` together, and ``tests/test_startup_imports.py`` keeps the constant
    equal to the installed distribution's version.
    """
    from pycrane import __version__

    return __version__


@command("version")
def version(opts: Options) -> None:
    """Print pycrane's version."""
    out.line(version_string())
    if opts.verbose:
        click.echo(
            f"python {platform.python_version()} ({sys.implementation.name}) on {sys.platform}",
            err=True,
        )
