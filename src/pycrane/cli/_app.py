"""The root ``pycrane`` group and its lazy command table.

Each command lives in ``pycrane.cli.commands.<module>`` and is imported only when it
runs (pip's habit), so ``pycrane --help`` and ``pycrane digest`` do not pay for
rich, tar handling or the registry server.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from pycrane.cli._options import global_options, merge_options

__all__ = ["COMMANDS", "cli"]

#: name -> (module under pycrane.cli.commands, attribute, one-line summary)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "append": ("append", "append", "Append tarballs as layers to a base image and push it."),
    "auth": ("auth", "auth", "Log in or out of a registry, or get credentials and tokens."),
    "blob": ("blob", "blob", "Write a blob from the registry to stdout."),
    "catalog": ("catalog", "catalog", "List the repositories in a registry."),
    "completion": ("completion", "completion", "Print a shell completion script."),
    "config": ("inspect", "config", "Print the raw config of an image."),
    "copy": ("copy", "copy", "Copy an image (or index, or repository) between registries."),
    "cp": ("copy", "copy", "Alias of copy."),
    "delete": ("delete", "delete", "Delete an image reference from its registry."),
    "digest": ("inspect", "digest", "Print the digest of an image."),
    "edit": ("edit", "edit", "Edit an image's config, manifest or a file ($EDITOR or stdin)."),
    "export": ("export", "export", "Write an image's flattened filesystem as a tarball."),
    "flatten": ("flatten", "flatten", "Squash an image's layers into one and push it."),
    "index": ("index", "index", "List, build and filter image indexes."),
    "layout": ("layout", "layout", "Maintain OCI image layouts on disk (gc)."),
    "ls": ("ls", "ls", "List the tags in a repository."),
    "manifest": ("inspect", "manifest", "Print the raw manifest of an image or index."),
    "mutate": ("mutate", "mutate", "Change an image's config, annotations or layers and push it."),
    "optimize": ("optimize", "optimize", "Rewrite an image's layers as eStargz and push it."),
    "opt": ("optimize", "optimize", "Alias of optimize."),
    "pull": ("pull", "pull", "Pull images to a tarball, a legacy tarball or an OCI layout."),
    "push": ("push", "push", "Push an OCI layout or a tarball to a registry."),
    "rebase": ("rebase", "rebase", "Move an image onto a new base image."),
    "registry": ("registry", "registry", "Run pycrane's own registry server."),
    "tag": ("tag", "tag", "Tag a remote image without downloading it."),
    "validate": (
        "validate",
        "validate",
        "Check that an image is well formed and its blobs intact.",
    ),
    "version": ("version", "version", "Print pycrane's version."),
}
#: Not listed in ``--help`` (aliases, and what crane hides: ``edit``, ``optimize``).
_HIDDEN = {"cp", "opt", "edit", "optimize"}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attr, _ = entry
        mod = importlib.import_module(f"pycrane.cli.commands.{module}")
        cmd = getattr(mod, attr)
        assert isinstance(cmd, click.Command)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Summaries come from the table, so --help imports no command module.
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS) if name not in _HIDDEN]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from pycrane.cli import _output as out
    from pycrane.cli.commands.version import version_string

    out.line(version_string())
    ctx.exit(0)


@click.group(
    cls=LazyGroup,
    name="pycrane",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_version,
    help="Print the version and exit.",
)
@click.pass_context
def cli(ctx: click.Context, /, **values: Any) -> None:
    """pycrane: pull, push, copy, inspect and modify container images.

    Results (digests, references, manifests, tag lists) go to stdout; progress,
    notes and errors go to stderr.
    """
    merge_options(ctx, values)


global_options(cli)
