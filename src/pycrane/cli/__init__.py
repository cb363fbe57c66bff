"""The ``pycrane`` command line (being built; see issue 4)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main", "run"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI in-process and return its exit code."""
    print("pycrane: the command line is not built yet", file=sys.stderr)
    return 2


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
