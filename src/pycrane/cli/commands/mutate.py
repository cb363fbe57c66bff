"""``pycrane mutate IMAGE``: change config fields, annotations or layers, then push."""

from __future__ import annotations

import click

from pycrane.cli._flags import map_option, slice_option
from pycrane.cli._options import Options, command
from pycrane.cli.commands._publish import push_result, save_tarball, target_ref
from pycrane.crane import image_or_index
from pycrane.name import parse_reference
from pycrane.v1.image import Image, ImageIndex, is_index
from pycrane.v1.platform import Platform

__all__ = ["mutate"]


@command("mutate")
@click.argument("image")
@map_option("-a", "--annotation", help="Manifest annotations KEY=VALUE[,KEY=VALUE] (repeatable).")
@map_option("-l", "--label", help="Config labels KEY=VALUE[,KEY=VALUE] (repeatable).")
@map_option("-e", "--env", help="Environment variables KEY=VALUE[,...] (repeatable, merged).")
@slice_option("--entrypoint", help="New entrypoint; repeatable and comma separated ('' clears it).")
@slice_option("--cmd", help="New cmd; repeatable and comma separated ('' clears it).")
@click.option("-u", "--user", help="New user.")
@click.option("-w", "--workdir", help="New working directory.")
@slice_option("--exposed-ports", help="Ports to expose (e.g. 8080/tcp); repeatable, comma lists.")
@slice_option("--append", "append_", help="Tarball to append as a layer; repeatable, comma lists.")
@click.option("--set-platform", help="Set the config's platform (os/arch[/variant]).")
@click.option("-t", "--tag", help="Push to this tag (default: back to IMAGE).")
@click.option("-r", "--repo", help="Push by digest to this repository.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write a tarball instead.")
def mutate(
    opts: Options,
    image: str,
    annotation: dict[str, str],
    label: dict[str, str],
    env: dict[str, str],
    entrypoint: list[str] | None,
    cmd: list[str] | None,
    user: str | None,
    workdir: str | None,
    exposed_ports: list[str] | None,
    append_: list[str] | None,
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

    annotations, labels, envs = annotation, label, env
    ports = [p for p in exposed_ports or () if p]
    changes: dict[str, object] = {}
    if labels:
        changes["labels"] = labels
    if envs:
        changes["env"] = envs
    if entrypoint is not None:
        changes["entrypoint"] = entrypoint or None
    if cmd is not None:
        changes["cmd"] = cmd or None
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

        obj = m.append_layers(obj, load_layers(tuple(append_)))  # type: ignore[arg-type]
    if changes:
        obj = m.config(obj, **changes)  # type: ignore[arg-type]
    if annotations:
        obj = m.annotations(obj, annotations)
    if output:
        assert not is_index(obj)
        save_tarball(output, tag, obj)
        return
    push_result(opts, target_ref(ref, tag, repo, obj), obj)
