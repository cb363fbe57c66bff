"""``pycrane mutate IMAGE``: change config fields, annotations or layers, then push."""

from __future__ import annotations

import click

from pycrane.cli._options import Options, command
from pycrane.cli.commands._publish import push_result, save_tarball, target_ref
from pycrane.crane import image_or_index
from pycrane.name import parse_reference
from pycrane.v1.image import Image, ImageIndex, is_index
from pycrane.v1.platform import Platform

__all__ = ["mutate", "parse_pairs"]


def parse_pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r}: expected KEY=VALUE", param_hint=f"'{flag}'")
        out[key] = value
    return out


def _split(value: str) -> list[str] | None:
    """crane's comma lists; an empty value clears the field."""
    return value.split(",") if value else None


@command("mutate")
@click.argument("image")
@click.option("-a", "--annotation", multiple=True, help="Manifest annotation KEY=VALUE.")
@click.option("-l", "--label", multiple=True, help="Config label KEY=VALUE.")
@click.option("-e", "--env", multiple=True, help="Environment variable KEY=VALUE (merged).")
@click.option("--entrypoint", help="New entrypoint, comma separated ('' clears it).")
@click.option("--cmd", help="New cmd, comma separated ('' clears it).")
@click.option("-u", "--user", help="New user.")
@click.option("-w", "--workdir", help="New working directory.")
@click.option(
    "--exposed-ports", multiple=True, help="Ports to expose (e.g. 8080/tcp), comma lists."
)
@click.option("--append", "append_", multiple=True, help="Tarball to append as a layer.")
@click.option("--set-platform", help="Set the config's platform (os/arch[/variant]).")
@click.option("-t", "--tag", help="Push to this tag (default: back to IMAGE).")
@click.option("--repo", help="Push by digest to this repository.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write a tarball instead.")
def mutate(
    opts: Options,
    image: str,
    annotation: tuple[str, ...],
    label: tuple[str, ...],
    env: tuple[str, ...],
    entrypoint: str | None,
    cmd: str | None,
    user: str | None,
    workdir: str | None,
    exposed_ports: tuple[str, ...],
    append_: tuple[str, ...],
    set_platform: str | None,
    tag: str | None,
    repo: str | None,
    output: str | None,
) -> None:
    """Change IMAGE and push the result, printing ref@digest.

    Annotations work on an index too (crane cannot); config changes need an image,
    so an index is resolved to --platform (default linux/amd64) for them.
    """
    from pycrane import mutate as m

    annotations = parse_pairs(annotation, "--annotation")
    labels = parse_pairs(label, "--label")
    envs = parse_pairs(env, "--env")
    ports = [p for v in exposed_ports for p in v.split(",") if p]
    changes: dict[str, object] = {}
    if labels:
        changes["labels"] = labels
    if envs:
        changes["env"] = envs
    if entrypoint is not None:
        changes["entrypoint"] = _split(entrypoint)
    if cmd is not None:
        changes["cmd"] = _split(cmd)
    if user is not None:
        changes["user"] = user
    if workdir is not None:
        changes["workdir"] = workdir
    if ports:
        changes["exposed_ports"] = ports
    if set_platform is not None:
        changes["platform"] = Platform.parse(set_platform)
    if tag and repo:
        raise click.UsageError("-t/--tag and --repo are mutually exclusive")

    ref = parse_reference(image)
    client = opts.client()
    needs_image = bool(changes or append_ or output)
    obj: Image | ImageIndex
    if needs_image or opts.platforms:
        obj = client.image(ref, platform=opts.platform)
    else:
        obj = image_or_index(ref, client=client)
    if append_:
        from pycrane.cli.commands.append import load_layers

        obj = m.append_layers(obj, load_layers(append_))  # type: ignore[arg-type]
    if changes:
        obj = m.config(obj, **changes)  # type: ignore[arg-type]
    if annotations:
        obj = m.annotations(obj, annotations)
    if output:
        assert not is_index(obj)
        save_tarball(output, tag, obj)
        return
    push_result(opts, target_ref(ref, tag, repo, obj), obj)
