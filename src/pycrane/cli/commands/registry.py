"""``pycrane registry serve``: pycrane's own OCI registry."""

from __future__ import annotations

import os
import re

import click

from pycrane.cli._options import Options, command, group

__all__ = ["parse_size", "registry"]

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2}
_UNITS.update({"mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3})
_UNITS.update({"t": 1000**4, "tb": 1000**4, "tib": 1024**4})


def parse_size(text: str) -> int:
    """``"512MiB"`` -> 536870912; plain digits are bytes. Raise click.BadParameter."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = m[2].lower() if m else ""
    if m is None or unit not in _UNITS:
        raise click.BadParameter(f"{text!r}: expected a size like 512MiB, 2GiB or bytes")
    return int(float(m[1]) * _UNITS[unit])


@group("registry")
def registry(opts: Options) -> None:
    """Run pycrane's own registry server."""


@command("serve")
@click.option(
    "--address",
    default=None,
    help=(
        "HOST:PORT to listen on (default 127.0.0.1:$PORT, or a free port). ':PORT' stays"
        " on loopback; 0.0.0.0:PORT serves every interface."
    ),
)
@click.option(
    "--disk",
    type=click.Path(file_okay=False),
    default=None,
    help="Store blobs and manifests in this directory (default: in memory).",
)
@click.option("--htpasswd", type=click.Path(dir_okay=False, exists=True), help="Basic auth file.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), help="TLS certificate.")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="TLS private key.")
@click.option("--read-only", is_flag=True, help="Refuse every write (405).")
@click.option(
    "--max-memory",
    default="1GiB",
    show_default=True,
    metavar="SIZE",
    help=(
        "Without --disk: bound the bytes held in memory (stored content and uploads in"
        " flight, e.g. 512MiB, 2GiB, 0 for no bound); writes past it get 413. Use --disk"
        " for large images."
    ),
)
@click.option(
    "--max-conns-per-client",
    type=click.IntRange(min=0),
    default=32,
    show_default=True,
    help=(
        "Connections one client address (IPv6: /64) may hold; 0 for no cap. Behind a"
        " reverse proxy every client has the proxy's address: raise it or use 0."
    ),
)
def serve(
    opts: Options,
    address: str | None,
    disk: str | None,
    htpasswd: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    read_only: bool,
    max_memory: str,
    max_conns_per_client: int,
) -> None:
    """Serve the OCI distribution API until interrupted (prints its URL on stderr)."""
    from pycrane.registry import serve as serve_registry

    if address is None:
        address = f"127.0.0.1:{os.environ.get('PORT') or 0}"
    elif address.startswith(":"):
        # crane's ":PORT" means every interface; pycrane stays on loopback unless told.
        address = "127.0.0.1" + address
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    limit = parse_size(max_memory)
    serve_registry(
        address,
        max_memory=limit or None,
        max_per_client=max_conns_per_client or None,
        disk=disk,
        htpasswd=htpasswd,
        tls_cert=tls_cert,
        tls_key=tls_key,
        read_only=read_only,
        verbose=opts.verbose,
    )


registry.add_command(serve)
