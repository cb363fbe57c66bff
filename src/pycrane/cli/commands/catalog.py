"""``pycrane catalog REGISTRY``: the repositories a registry lists."""

from __future__ import annotations

import click

from pycrane.cli import _output as out
from pycrane.cli._options import Options, command
from pycrane.name import Registry

__all__ = ["catalog"]


@command("catalog")
@click.argument("registry")
@click.option("--full-ref", is_flag=True, help="Print each repository with its registry.")
def catalog(opts: Options, registry: str, full_ref: bool) -> None:
    """List the repositories in REGISTRY (paging through /v2/_catalog)."""
    reg = Registry.parse(registry)
    for repo in opts.client().catalog(reg):
        out.line(f"{reg.name}/{repo}" if full_ref else repo)
