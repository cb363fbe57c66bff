"""click options that parse like crane's cobra/pflag flag kinds.

Users port scripts by rewriting ``crane`` to ``pycrane``, so a repeated or
comma-joined value must mean what pflag makes of it:

- ``StringSliceVar``: each occurrence is read as one CSV record (commas split,
  double quotes protect a comma), and occurrences accumulate.
- ``StringArrayVar``: occurrences accumulate, commas are kept.
- ``StringToStringVar``: each occurrence is a CSV record of ``KEY=VALUE`` pairs;
  occurrences merge, a later key wins.
- ``StringVar``/``IntVar``/``BoolVar``: one value; a repeat replaces it (click's default).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from typing import Any

import click

__all__ = ["map_option", "read_csv", "slice_option"]


def read_csv(value: str) -> list[str]:
    """pflag's ``readAsCSV``: one CSV record; the empty string is the empty list."""
    if value == "":
        return []
    try:
        return next(csv.reader([value], strict=True))
    except csv.Error as e:
        raise click.BadParameter(f"{value!r}: {e}") from e


def _slice(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> Any:
    # None when the flag is absent, so "given but empty" stays distinguishable.
    if not values:
        return None
    return [part for v in values for part in read_csv(v)]


def _map(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Any:
    out: dict[str, str] = {}
    for v in values:
        for pair in read_csv(v) if v else [v]:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{pair!r} must be formatted as KEY=VALUE", param=param)
            out[key] = value
    return out


def slice_option(*decls: str, **kw: Any) -> Callable[[Any], Any]:
    """crane's ``StringSliceVar``: repeatable and comma-splitting; absent is None."""
    return click.option(*decls, multiple=True, callback=_slice, **kw)


def map_option(*decls: str, **kw: Any) -> Callable[[Any], Any]:
    """crane's ``StringToStringVar``: ``KEY=VALUE[,KEY=VALUE]``, repeatable, merged."""
    return click.option(*decls, multiple=True, callback=_map, **kw)
