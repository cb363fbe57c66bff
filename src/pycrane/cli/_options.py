"""Global flags (crane's persistent flags) and the decorator every command is built with.

crane accepts ``--platform``, ``--insecure`` and ``-v`` before or after the
subcommand; click only knows group options before it. So the same options are put
on the root group and on every command, and merged into one :class:`Options`
stored on the root context.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from pycrane.errors import InvalidPlatform

if TYPE_CHECKING:
    from pycrane.cli._logging import LogSetup
    from pycrane.remote import Client
    from pycrane.v1.platform import Platform

__all__ = [
    "Options",
    "command",
    "global_options",
    "group",
    "merge_options",
    "parse_platforms",
    "root_options",
]


@dataclass
class Options:
    """Everything the global flags say, merged from before and after the subcommand."""

    platforms: list[Platform] = field(default_factory=list)
    insecure: bool = False
    #: Push non-distributable (foreign) layers too (--allow-nondistributable-artifacts).
    allow_nondistributable: bool = False
    verbose: bool = False
    quiet: bool = False
    debug: bool = False
    #: Transfers at once (-j); sizes the client's connection pool too.
    jobs: int = 4
    #: Seconds to connect, and that a registry may stay silent (--timeout, PYCRANE_TIMEOUT).
    timeout: float | None = None
    log: LogSetup | None = None
    _client: Client | None = None

    @property
    def platform(self) -> Platform | None:
        """The one platform a single-image command resolves an index to (None: default)."""
        if len(self.platforms) > 1:
            raise click.UsageError("this command takes one --platform, not several")
        return self.platforms[0] if self.platforms else None

    def client(self, *, jobs: int | None = None) -> Client:
        """One registry client per invocation (one connection pool, one token cache).

        ``jobs`` (a command's -j) sizes the pool; it counts only on the first call,
        which creates the client, so commands pass it there explicitly.
        """
        if self._client is None:
            from pycrane.remote import Client

            if jobs is not None:
                self.jobs = jobs
            self._client = Client(
                insecure=self.insecure,
                jobs=self.jobs,
                timeout=self.timeout,
                allow_nondistributable=self.allow_nondistributable,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            close = getattr(self._client, "close", None)
            if close is not None:
                close()
            self._client = None


def parse_platforms(values: Sequence[str]) -> list[Platform]:
    """``--platform`` values, each possibly a comma list; ``all`` means every platform."""
    from pycrane.v1.platform import Platform  # the model loads only when a flag needs it

    out: list[Platform] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part or part == "all":
                continue
            head, colon, version = part.partition(":")
            if "/" not in head:
                # crane accepts an OS alone ("--platform linux"): any architecture.
                part = f"{head}/*{colon}{version}"
            try:
                out.append(Platform.parse(part))
            except InvalidPlatform as e:
                raise click.BadParameter(str(e), param_hint="'--platform'") from e
    return out


def _global_params() -> list[click.Parameter]:
    return [
        click.Option(
            ["--platform"],
            multiple=True,
            metavar="OS/ARCH[/VARIANT][:OSVERSION]",
            help="Platform(s) to select from an index; repeatable or a comma list (default: all).",
        ),
        click.Option(
            ["--insecure"],
            is_flag=True,
            default=False,
            help="Allow plain HTTP and skip TLS verification.",
        ),
        click.Option(
            ["--allow-nondistributable-artifacts", "allow_nondistributable"],
            is_flag=True,
            default=False,
            help="Push non-distributable (foreign) layers too, not only their descriptors.",
        ),
        click.Option(
            ["--timeout"],
            type=click.FloatRange(min=0, min_open=True),
            envvar="PYCRANE_TIMEOUT",
            metavar="SECONDS",
            help="How long to wait for a connection, and for a silent registry to go on "
            "answering, before retrying or giving up (default: 15 s to connect, 30 s silence; "
            "env PYCRANE_TIMEOUT).",
        ),
        click.Option(
            ["-v", "--verbose"],
            is_flag=True,
            default=False,
            help="Log every HTTP request and response status to stderr (secrets redacted).",
        ),
        click.Option(
            ["-q", "--quiet"], is_flag=True, default=False, help="No progress bars or notes."
        ),
        click.Option(["--debug"], is_flag=True, default=False, hidden=True),
    ]


_GLOBAL_NAMES = (
    "platform",
    "insecure",
    "allow_nondistributable",
    "timeout",
    "verbose",
    "quiet",
    "debug",
)


def root_options(ctx: click.Context) -> Options:
    root = ctx.find_root()
    if not isinstance(root.obj, Options):
        root.obj = Options(debug=os.environ.get("PYCRANE_DEBUG", "") not in ("", "0"))
    return root.obj


def merge_options(ctx: click.Context, values: dict[str, Any]) -> Options:
    opts = root_options(ctx)
    if values.get("platform"):
        opts.platforms.extend(parse_platforms(values["platform"]))
    opts.insecure = opts.insecure or bool(values.get("insecure"))
    opts.allow_nondistributable = opts.allow_nondistributable or bool(
        values.get("allow_nondistributable")
    )
    if values.get("timeout") is not None:
        opts.timeout = float(values["timeout"])
    opts.verbose = opts.verbose or bool(values.get("verbose"))
    opts.quiet = opts.quiet or bool(values.get("quiet"))
    opts.debug = opts.debug or bool(values.get("debug"))
    if opts.log is not None:
        opts.log.set_verbose(opts.verbose)
    return opts


def global_options(f: click.Command) -> click.Command:
    """Add the global flags to ``f`` (a command or group)."""
    f.params.extend(_global_params())
    return f


def _with_options(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name, None) for name in _GLOBAL_NAMES}
        opts = merge_options(click.get_current_context(), values)
        return f(opts, *args, **kwargs)

    return wrapper


def command(name: str | None = None, **kw: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """``click.command`` whose callback receives :class:`Options` first, global flags included."""

    def deco(f: Callable[..., Any]) -> click.Command:
        kw.setdefault("context_settings", {}).setdefault("help_option_names", ["-h", "--help"])
        cmd = click.Command(name or f.__name__.replace("_", "-"), callback=_with_options(f), **kw)
        cmd.params.extend(reversed(getattr(f, "__click_params__", [])))
        cmd.help = cmd.help or (f.__doc__ or "").strip() or None
        return global_options(cmd)

    return deco


def group(name: str | None = None, **kw: Any) -> Callable[[Callable[..., Any]], click.Group]:
    """A subcommand group (``auth``, ``index``, ``registry``) taking the global flags too."""

    def deco(f: Callable[..., Any]) -> click.Group:
        kw.setdefault("context_settings", {}).setdefault("help_option_names", ["-h", "--help"])
        grp = click.Group(name or f.__name__, callback=_with_options(f), **kw)
        grp.params.extend(reversed(getattr(f, "__click_params__", [])))
        grp.help = grp.help or (f.__doc__ or "").strip() or None
        global_options(grp)
        return grp

    return deco
