"""``pycrane completion bash|zsh|fish``: the shell script that completes pycrane's commands."""

from __future__ import annotations

import click

from pycrane.cli import _output as out
from pycrane.cli._options import Options, command

__all__ = ["completion"]


@command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(opts: Options, shell: str) -> None:
    """Print the completion script for SHELL.

    bash: `source <(pycrane completion bash)`; zsh: the same in ~/.zshrc; fish:
    `pycrane completion fish > ~/.config/fish/completions/pycrane.fish`.
    """
    from click.shell_completion import get_completion_class

    from pycrane.cli import COMPLETE_VAR
    from pycrane.cli._app import cli

    cls = get_completion_class(shell)
    assert cls is not None  # the choices are the shells click knows
    out.line(cls(cli, {}, "pycrane", COMPLETE_VAR).source())
