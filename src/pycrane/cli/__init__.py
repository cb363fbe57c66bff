"""The ``pycrane`` command line: crane's commands, flags and output, in Python.

:func:`main` runs in-process and returns an exit code; every failure goes through
one funnel that prints ONE line, ``pycrane: error: <message>``, on stderr and
returns a named code (:mod:`pycrane.cli._status`): 0 success, 1 error, 2 usage,
3 internal bug, 130 interrupted, 141 stdout closed by its reader. Tracebacks
appear only with ``--debug`` or ``PYCRANE_DEBUG=1``.

Streams: results (digests, references, raw manifests and configs, tag lists) go
to stdout exactly as crane prints them; notes, warnings, ``-v`` request logs and
progress bars (only on a terminal, not in CI, not with ``-q``) go to stderr.

Layout: ``_app`` holds the lazy command table, ``_options`` the global flags,
``_output``/``_logging``/``_progress`` the streams, ``commands/<verb>.py`` one
thin adapter per command over :mod:`pycrane.crane`, :mod:`pycrane.remote`,
:mod:`pycrane.mutate` and friends.
"""

from __future__ import annotations

import os
import sys

from pycrane.cli import _status as status

# Only what ``pycrane version`` needs loads with this module (the fast path in ``run``);
# tests/test_startup_imports.py keeps it that way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

    import click

__all__ = ["main", "run", "status"]


def _no_args_is_help() -> type[click.UsageError]:
    """click >= 8.2 raises this for a group called without a subcommand; older clicks print
    the help and exit 0 themselves."""
    import click

    return getattr(click.exceptions, "NoArgsIsHelpError", type("_Never", (click.UsageError,), {}))


def _noted(message: str, exc: BaseException) -> str:
    """``message`` with the exception's notes (e.g. what an interrupted pull kept)."""
    notes = [str(n) for n in getattr(exc, "__notes__", ()) or ()]
    return "; ".join([message, *notes])


def _error(message: str) -> None:
    from pycrane.cli._logging import redact

    line = " ".join(redact(message).split()) or "unknown error"
    try:
        sys.stderr.write(f"pycrane: error: {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _print_traceback() -> None:
    """The traceback ``--debug`` asks for (traceback loads only then: ~3 ms of start-up)."""
    import traceback

    traceback.print_exc()


def _os_error_message(e: OSError) -> str:
    if e.strerror and e.filename is not None:
        if e.filename2 is not None:
            return f"{e.strerror}: {e.filename!s} -> {e.filename2!s}"
        return f"{e.strerror}: {e.filename!s}"
    return str(e) or type(e).__name__


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at devnull so the exit-time flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _wants_debug(args: Sequence[str]) -> bool:
    if os.environ.get("PYCRANE_DEBUG", "") not in ("", "0"):
        return True
    for arg in args:
        if arg == "--":
            break
        if arg == "--debug":
            return True
    return False


#: The environment variable through which a shell asks for completions (click's protocol).
COMPLETE_VAR = "_PYCRANE_COMPLETE"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI in-process and return its exit code (never calls ``sys.exit``)."""
    # click and the command table load here, not with the package: ``run`` answers
    # ``pycrane version`` without them (start-up is most of a short command's time).
    import click

    from pycrane.cli import _output as out
    from pycrane.cli._app import cli
    from pycrane.cli._logging import LogSetup
    from pycrane.cli._options import root_options
    from pycrane.errors import PycraneError

    _NoArgsIsHelp = _no_args_is_help()

    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None and os.environ.get(COMPLETE_VAR):
        # The shell asks for completions (the script `pycrane completion SHELL` prints).
        from click.shell_completion import shell_complete

        return shell_complete(cli, {}, "pycrane", COMPLETE_VAR, os.environ[COMPLETE_VAR])
    debug = _wants_debug(args)
    log = LogSetup()
    log.install(verbose=False)
    try:
        try:
            with cli.make_context("pycrane", args) as ctx:
                opts = root_options(ctx)
                opts.log = log
                log.set_verbose(opts.verbose)
                try:
                    rv = cli.invoke(ctx)
                finally:
                    opts.close()
            out.flush()
            return rv if isinstance(rv, int) else status.SUCCESS
        except click.exceptions.Exit as e:
            out.flush()
            return e.exit_code
    except out.StdoutClosed:
        _silence_stdout()
        return status.BROKEN_PIPE
    except (KeyboardInterrupt, click.exceptions.Abort) as e:
        if debug:
            _print_traceback()
        _error(_noted("interrupted", e))
        return status.INTERRUPTED
    except _NoArgsIsHelp as e:
        # `pycrane` or `pycrane auth` alone: show the help, as crane does (not an error).
        out.line(e.format_message())
        return status.SUCCESS
    except click.UsageError as e:
        if debug:
            _print_traceback()
        hint = ""
        if e.ctx is not None and e.ctx.command.get_help_option(e.ctx) is not None:
            hint = f" (see '{e.ctx.command_path} --help')"
        _error(e.format_message() + hint)
        return status.USAGE
    except click.ClickException as e:
        if debug:
            _print_traceback()
        _error(e.format_message())
        return e.exit_code or status.ERROR
    except PycraneError as e:
        if debug:
            _print_traceback()
        _error(_noted(str(e) or type(e).__name__, e))
        return status.ERROR
    except OSError as e:
        if debug:
            _print_traceback()
        _error(_os_error_message(e))
        return status.ERROR
    except Exception as e:
        if debug:
            _print_traceback()
        _error(
            f"internal error: {type(e).__name__}: {e} "
            "(this is a bug; PYCRANE_DEBUG=1 shows the traceback)"
        )
        return status.UNKNOWN_ERROR
    finally:
        log.uninstall()


def _quiet_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """Finalizer noise (``Exception ignored in ...``) after an error was already reported.

    A writer aborted half-way may leave objects whose ``__del__`` fails at exit; the
    user was told what went wrong in one line, so these go to the debug log only.
    """
    import logging

    logging.getLogger("pycrane.cli").debug(
        "ignored in finalizer %r: %s: %s",
        unraisable.object,
        unraisable.exc_type.__name__,
        unraisable.exc_value,
    )


def _sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwind like Ctrl-C, so writers abort their temp files and nothing half-written stays.
    raise KeyboardInterrupt


def _fast_path(args: Sequence[str]) -> int | None:
    """Answer a command that needs no parsing without importing click (~35 ms here).

    Only the exact argv ``version``, and only when no ``PYCRANE_*`` variable could
    change what click would do (an invalid ``PYCRANE_TIMEOUT`` is a usage error there);
    everything else returns None and goes through :func:`main`.
    """
    if list(args) != ["version"] or any(k.startswith("PYCRANE_") for k in os.environ):
        return None
    if os.environ.get(COMPLETE_VAR):
        return None
    from pycrane import __version__

    try:
        sys.stdout.write(__version__ + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return status.BROKEN_PIPE
    return status.SUCCESS


def run() -> None:
    """Console-script entry point: ``main`` plus process-level signal and exit handling."""
    fast = _fast_path(sys.argv[1:])
    if fast is not None:
        sys.exit(fast)
    import signal

    try:  # noqa: SIM105 (contextlib is not loaded on this path)
        signal.signal(signal.SIGTERM, _sigterm)
    except (ValueError, OSError):
        pass
    if not _wants_debug(sys.argv[1:]):
        sys.unraisablehook = _quiet_unraisable
    code = main()
    if code == status.INTERRUPTED:
        # Do not wait for worker threads still busy with transfers: the main thread has
        # already unwound (temp files aborted); whatever a worker leaves is in temp space.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os._exit(code)
    sys.exit(code)
