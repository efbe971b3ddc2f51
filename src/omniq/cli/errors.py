"""The two ways a command ends badly, each with its exit status.

:class:`UsageError` (exit 2) is a mistake in the command line: a bad flag or value,
an unknown task id, unparsable JSON, a duration like ``5x``. :class:`CommandFailed`
(exit 1) is an operation that could not be carried out on an existing task, such
as cancelling one that already runs. Both print one line on stderr.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A command ended with a one-line message and the exit status ``exit_code``."""

    exit_code = EXIT_FAILED


class UsageError(CliError):
    """The command line is wrong (exit 2)."""

    exit_code = EXIT_USAGE


class CommandFailed(CliError):
    """The operation was refused or failed (exit 1)."""

    exit_code = EXIT_FAILED
