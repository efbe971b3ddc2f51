"""``main``: parse the command line, run the command, turn every failure into one line.

Exit status: 0 ok, 1 an operation failed, 2 a usage error, 130 interrupted. Nothing
prints a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

from omniq.cli import commands, monitor, parser, web, worker
from omniq.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, CliError


def _debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``omniq`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(arguments)
    try:
        args = parser.parse_args(arguments)
        debug = args.debug
        if args.command == "worker":
            return worker.run(args)
        if args.command == "web":
            return web.run(args)
        return {**commands.COMMANDS, **monitor.COMMANDS}[args.command](args)
    except CliError as error:
        if debug and error.__cause__ is not None:
            traceback.print_exception(error.__cause__)
        print(f"omniq: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("omniq: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # a store failure, or a bug: one line unless --debug
        if debug:
            traceback.print_exc()
        print(f"omniq: error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
