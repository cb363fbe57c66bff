"""Named exit codes, so scripts and tests can tell failures apart (as pip does)."""

from __future__ import annotations

__all__ = ["BROKEN_PIPE", "ERROR", "INTERRUPTED", "SUCCESS", "UNKNOWN_ERROR", "USAGE"]

SUCCESS = 0
#: A pycrane error: bad reference, unknown image, registry or file-system failure.
ERROR = 1
#: The command line itself is wrong (click usage errors).
USAGE = 2
#: A bug: an exception pycrane did not raise on purpose.
UNKNOWN_ERROR = 3
#: Ctrl-C (128 + SIGINT), like a shell reports it.
INTERRUPTED = 130
#: Whoever read our stdout went away (128 + SIGPIPE); not worth an error line.
BROKEN_PIPE = 141
