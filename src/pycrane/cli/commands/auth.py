"""``pycrane auth login|logout|get|token``: Docker-config credentials and registry tokens."""

from __future__ import annotations

import json
import sys

import click

from pycrane.cli import _output as out
from pycrane.cli._flags import slice_option
from pycrane.cli._options import Options, command, group
from pycrane.cli._status import ERROR
from pycrane.name import Registry

__all__ = ["auth"]


@group("auth")
def auth(opts: Options) -> None:
    """Log in or out of a registry, or get credentials and tokens."""


def _registry(server: str) -> Registry:
    # Accept "https://host/v1/" style keys as docker login does.
    s = server.strip()
    for prefix in ("https://", "http://"):
        if s.startswith(prefix):
            s = s[len(prefix) :]
    s = s.split("/", 1)[0]
    return Registry.parse(s)


@command("login")
@click.argument("server")
@click.option("-u", "--username", required=True, help="Username.")
@click.option(
    "-p", "--password", help="Password (visible to other users: prefer --password-stdin)."
)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def login(
    opts: Options, server: str, username: str, password: str | None, password_stdin: bool
) -> None:
    """Store credentials for SERVER in the Docker config (or its credsStore).

    Like crane and docker, the credentials are not checked against the registry.
    """
    from pycrane.remote import Keychain

    if password_stdin:
        if password is not None:
            raise click.UsageError("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.read().rstrip("\r\n")
    if not password:
        raise click.UsageError("a password is required: -p PASSWORD or --password-stdin")
    reg = _registry(server)
    path = Keychain().login(reg.name, username, password)
    out.note(f"logged in to {reg.name} (credentials in {path})", quiet=opts.quiet)


auth.add_command(login)


@command("logout")
@click.argument("server")
def logout(opts: Options, server: str) -> None:
    """Remove the credentials stored for SERVER."""
    from pycrane.remote import Keychain

    reg = _registry(server)
    if Keychain().logout(reg.name):
        out.note(f"logged out of {reg.name}", quiet=opts.quiet)
    else:
        out.note(f"not logged in to {reg.name}", quiet=opts.quiet)


auth.add_command(logout)


@command("get")
@click.argument("registry", required=False)
def get(opts: Options, registry: str | None) -> int:
    """Print the credentials for REGISTRY as a docker credential helper does.

    Without REGISTRY the server is read from stdin (the credential-helper protocol),
    so pycrane can serve as ``docker-credential-pycrane``.
    """
    from pycrane.remote import Keychain

    server = registry if registry is not None else sys.stdin.read().strip()
    if not server:
        raise click.UsageError("missing REGISTRY (as an argument or on stdin)")
    cred = Keychain().resolve(_registry(server).name)
    if cred.anonymous:
        # The helper protocol wants this exact text on stdout and exit status 1.
        out.line("credentials not found in native keychain")
        return ERROR
    if cred.identity_token:
        doc = {"Username": "<token>", "Secret": cred.identity_token}
    else:
        doc = {"Username": cred.username or "", "Secret": cred.password or ""}
    out.line(json.dumps(doc))
    return 0


auth.add_command(get)


@command("token")
@click.argument("repo")
@click.option("--push", is_flag=True, help="Request push scope too.")
@click.option(
    "-H", "--header", is_flag=True, help="Print an 'Authorization: Bearer ...' header line."
)
@slice_option("-m", "--mount", help="Also request pull scope on these repositories (comma lists).")
def token(opts: Options, repo: str, push: bool, header: bool, mount: list[str] | None) -> None:
    """Get a registry token for REPO (pull scope, or pull+push with --push)."""
    from pycrane.name import Repository

    repository = Repository.parse(repo)
    extra = [Repository.parse(m) for m in mount or ()]
    tok = opts.client().token(repository, push=push, mounts=extra)
    if header:
        out.line(f"Authorization: Bearer {tok.token}")
    else:
        out.line(json.dumps(tok.as_dict()))


auth.add_command(token)
