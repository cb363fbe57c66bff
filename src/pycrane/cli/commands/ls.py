"""``pycrane ls REPO``: the tags of a repository, one a line."""

from __future__ import annotations

import re

import click

from pycrane.cli import _output as out
from pycrane.cli._options import Options, command
from pycrane.name import Repository

__all__ = ["ls"]

# The referrers fallback tags and cosign's .sig/.att/.sbom tags: "sha256-<hex>[.suffix]".
_DIGEST_TAG = re.compile(r"\Asha(256|512)-[0-9a-f]{64,128}(\..+)?\Z")


@command("ls")
@click.argument("repo")
@click.option("--full-ref", is_flag=True, help="Print each tag as a full reference.")
@click.option(
    "-O", "--omit-digest-tags", is_flag=True, help="Omit tags that look like digests (sha256-...)."
)
@click.option(
    "-r",
    "--recursive",
    is_flag=True,
    help="Also every repository under REPO (from the registry's catalog), as full references.",
)
def ls(opts: Options, repo: str, full_ref: bool, omit_digest_tags: bool, recursive: bool) -> None:
    """List the tags in REPO (with -r, in REPO and every repository below it, as gcrane does)."""
    client = opts.client()
    repos = [Repository.parse(repo)]
    if recursive:
        # gcrane walks GCR's own listing; any registry's catalog gives the same tree.
        top = repos[0]
        prefix = top.path + "/"
        repos = [
            Repository(top.registry, path)
            for path in client.catalog(top.registry)
            if path == top.path or path.startswith(prefix)
        ]
        full_ref = True
    for repository in repos:
        for tag in client.list_tags(repository):
            if omit_digest_tags and _DIGEST_TAG.match(tag):
                continue
            out.line(f"{repository.name}:{tag}" if full_ref else tag)
