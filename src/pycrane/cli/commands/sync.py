"""``pycrane sync CONFIG`` or ``pycrane sync SRC DST``: mirror repositories, incrementally.

Results go to stdout (``--dry-run``: the plan, one line per image), the summary
and failures to stderr; ``--report FILE`` writes the JSON report. The exit code
is 1 when any image failed.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from pycrane.cli import _output as out
from pycrane.cli import _status as status
from pycrane.cli._options import Options, command
from pycrane.cli._progress import wants_progress
from pycrane.v1.digest import Digest

if TYPE_CHECKING:
    from pycrane.sync import ImageResult, SyncReport

__all__ = ["sync"]


class _Bar:
    """Images done of total, bytes sent and the rate, on one rich line (stderr)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("sync"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("images {task.fields[moved]}"),
            console=Console(file=sys.stderr, stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task("sync", total=None, moved="")
        self._lock = threading.Lock()
        self._bytes = 0
        self._t0 = time.monotonic()

    def _moved(self) -> str:
        from pycrane.sync.report import _size

        rate = self._bytes / max(time.monotonic() - self._t0, 1e-3)
        return f"{_size(self._bytes)} at {_size(int(rate))}/s"

    def on_result(self, result: ImageResult, done: int, total: int) -> None:
        with self._lock:
            self._progress.update(self._task, completed=done, total=total, moved=self._moved())

    def start(self, digest: Digest, total: int | None, description: str = "") -> None:
        pass

    def advance(self, digest: Digest, nbytes: int) -> None:
        with self._lock:
            self._bytes += nbytes
            self._progress.update(self._task, moved=self._moved())

    def finish(self, digest: Digest, *, skipped: bool = False) -> None:
        pass

    @contextmanager
    def shown(self) -> Iterator[_Bar]:
        self._progress.start()
        try:
            yield self
        finally:
            self._progress.stop()


@contextmanager
def _bar(quiet: bool) -> Iterator[_Bar | None]:
    if not wants_progress(quiet):
        yield None
        return
    with _Bar().shown() as bar:
        yield bar


def _write_report(path: str, report: SyncReport) -> None:
    """Write the JSON report whole or not at all (temp file, then rename)."""
    from pycrane import _fs

    try:
        _fs.atomic_write_bytes(path, report.to_json().encode(), durable=False)
    except OSError as e:
        raise click.ClickException(f"--report {path}: {e.strerror or e}") from None


@command("sync")
@click.argument("config_or_src", metavar="CONFIG | SRC")
@click.argument("dst", required=False)
@click.option(
    "-r", "--recursive", is_flag=True, help="SRC is a registry or namespace: every repository."
)
@click.option("--dry-run", is_flag=True, help="Print what would be copied; write nothing.")
@click.option("--report", "report_path", metavar="FILE", help="Write the JSON report to FILE.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Images at once [default: 4].")
@click.option(
    "--max-per-host", type=click.IntRange(min=1), help="Requests in flight per registry host."
)
@click.option("--tag", "exact", multiple=True, help="Copy this tag (repeatable; SRC DST form).")
@click.option("--tag-glob", "glob", multiple=True, help="Copy tags matching this glob.")
@click.option("--tag-regex", "regex", multiple=True, help="Copy tags this regex finds.")
@click.option("--semver", help="Copy tags in this semver range, e.g. '>=1.2 <2'.")
@click.option("--latest", type=click.IntRange(min=1), help="Keep the N highest versions.")
@click.option("--exclude", multiple=True, help="Skip tags matching this glob.")
@click.option("--referrers", is_flag=True, help="Also copy referrers (signatures, SBOMs).")
def sync(
    opts: Options,
    config_or_src: str,
    dst: str | None,
    recursive: bool,
    dry_run: bool,
    report_path: str | None,
    jobs: int | None,
    max_per_host: int | None,
    **filters: Any,
) -> None:
    """Mirror repositories: only what is missing or changed at the destination is copied.

    With one argument, CONFIG is a YAML or JSON file (see the README). With two, SRC
    (a repository, or with -r a registry or namespace) is mirrored to DST (a
    repository, or with -r a prefix). A second run over an unchanged source sends
    only HEAD requests; an interrupted run resumes where it stopped.
    """
    from pycrane.remote import Client
    from pycrane.sync import ConfigError, SourceSpec, SyncConfig, TagFilter, build_plan, load_config
    from pycrane.sync.engine import Engine

    referrers = bool(filters.pop("referrers"))
    tag_opts = {k: v for k, v in filters.items() if v}
    if dst is None:
        if recursive or tag_opts or referrers:
            raise click.UsageError("with a CONFIG file, put -r, tag filters and --referrers in it")
        try:
            cfg = load_config(config_or_src)
        except ConfigError as e:
            raise click.ClickException(str(e)) from None
        if opts.platforms:
            raise click.UsageError("with a CONFIG file, put platforms in it")
    else:
        try:
            tags = TagFilter(
                exact=tuple(filters["exact"]),
                glob=tuple(filters["glob"]),
                regex=tuple(filters["regex"]),
                semver=filters["semver"],
                latest=filters["latest"],
                exclude=tuple(filters["exclude"]),
            )
        except ValueError as e:
            raise click.UsageError(str(e)) from None
        spec = SourceSpec(
            source=config_or_src.rstrip("/"),
            destination=dst.rstrip("/"),
            recursive=recursive,
            tags=tags,
            platforms=tuple(opts.platforms),
            referrers=referrers,
        )
        cfg = SyncConfig((spec,))
    n = jobs or cfg.jobs
    client = Client(
        insecure=opts.insecure,
        jobs=n,
        timeout=opts.timeout,
        allow_nondistributable=opts.allow_nondistributable,
        limits=cfg.limits(max_per_host),
    )
    opts._client = client  # closed with the invocation
    started = time.monotonic()
    plan = build_plan(client, cfg.sources, jobs=n)
    with _bar(opts.quiet or dry_run) as bar:
        engine = Engine(
            client,
            jobs=n,
            dry_run=dry_run,
            progress=bar,
            on_result=bar.on_result if bar is not None else None,
        )
        report = engine.run(plan, started=started)
    if dry_run:
        for r in report.images:
            verb = {"planned": "copy", "skipped": "skip", "failed": "fail"}.get(r.status, r.status)
            out.line(f"{verb} {r.source} -> {r.destination} ({r.reason})")
    if report_path:
        _write_report(report_path, report)
    for r in report.failed:
        out.note(f"failed: {r.source} -> {r.destination}: {r.reason}")
    out.note(report.summary(), quiet=opts.quiet and report.ok)
    if not report.ok:
        click.get_current_context().exit(status.ERROR)
