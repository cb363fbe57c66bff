#!/usr/bin/env python3
"""Run the pycrane CLI with experimental patches of hot paths, to measure a change by A/B.

    python bench/experiments/pycrane_patched.py no-direct pull --format oci REF DIR

``no-direct``: blobs are written through the page cache as before 2026-12-07 (no
``O_DIRECT`` writer, ``pycrane._directio``). ``sync-direct``: O_DIRECT, but the thread
that downloads also waits for each 1 MiB write (no writer thread). ``bufNm``: direct
writes of N MiB. Patches join with ``+``. They patch private
names; if those change, this script must follow. (The 2026-11-27 patches, single-hash and
falloc, were measured and removed: see bench/FINDINGS.md.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def _no_direct() -> None:
    from pycrane import _directio

    def none(*args: Any) -> None:
        return None

    _directio.open_direct = none  # type: ignore[assignment]


def _sync_direct() -> None:
    from pycrane import _directio

    _directio.OVERLAP = False


def _monolithic() -> None:
    """Push every blob in one PUT (POST + PUT with the body), as the curl -T floor does."""
    import pycrane.remote._pusher as p

    p.MONOLITHIC_LIMIT = 1 << 40


def _buffer(mib: int) -> Callable[[], None]:
    def patch() -> None:
        from pycrane import _directio

        _directio.BUFFER = mib << 20

    return patch


PATCHES: dict[str, Callable[[], None]] = {
    "monolithic": _monolithic,
    "buf2m": _buffer(2),
    "buf4m": _buffer(4),
    "no-direct": _no_direct,
    "sync-direct": _sync_direct,
    "stock": lambda: None,
}


def patch(names: set[str]) -> None:
    for name in sorted(names):
        PATCHES[name]()


if __name__ == "__main__":
    patch(set(sys.argv[1].split("+")))
    sys.argv = ["pycrane", *sys.argv[2:]]
    from pycrane.cli import run

    run()
