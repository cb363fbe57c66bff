"""``pycrane registry serve``: pycrane's own OCI registry."""

from __future__ import annotations

import os

import click

from pycrane.cli._options import Options, command, group

__all__ = ["registry"]


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
def serve(
    opts: Options,
    address: str | None,
    disk: str | None,
    htpasswd: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    read_only: bool,
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
    serve_registry(
        address,
        disk=disk,
        htpasswd=htpasswd,
        tls_cert=tls_cert,
        tls_key=tls_key,
        read_only=read_only,
        verbose=opts.verbose,
    )


registry.add_command(serve)
