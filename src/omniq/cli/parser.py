"""The ``omniq`` command line: its subcommands, options and value checks.

Every mistake in the command line becomes a :class:`~omniq.cli.errors.UsageError`
with one line of text (argparse would print the usage block and exit by itself).
The store options (``--backend``, ``--base-dir``, ``--dsn``) and ``--json``/``--debug``
are accepted before or after the subcommand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from omniq import __version__, limits
from omniq._validation import (
    MAX_MIB,
    check_task_id,
    normalize_priority,
    normalize_queue,
    normalize_search,
    normalize_unique_key,
)
from omniq.cli import schedules
from omniq.cli.errors import UsageError
from omniq.durations import parse_duration
from omniq.models import TaskStatus
from omniq.schedules import check_schedule_name

STORE_BACKENDS = ("sqlite", "file", "postgres")
FINAL_STATUSES = tuple(status.value for status in TaskStatus if status.is_final)

DESCRIPTION = """\
Run workers and inspect, retry, cancel and purge the tasks of an omniq store.

The store comes from --backend/--base-dir/--dsn, else from the OMNIQ_* environment
variables (OMNIQ_BACKEND, OMNIQ_BASE_DIR, OMNIQ_DSN, OMNIQ_CONCURRENCY, ...), else the
default: SQLite in the user's data directory.

Exit status: 0 ok; 1 an operation failed (cancel of a task that is not pending, retry
of a task that is neither failed nor cancelled, a store error); 2 a usage error (bad
flag or value, unknown task id, unparsable JSON or duration)."""

EPILOG = (
    "Run 'omniq COMMAND --help' for a command's options. Durations: 30s, 5m, 1h, 7d, 1h30m, 90."
)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------ value checks


def _checked(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """Turn ``ValueError`` into the error argparse reports for the option."""

    def check(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    check.__name__ = convert.__name__
    return check


def _whole_number(text: str, minimum: int, maximum: int = limits.MAX_COUNT) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1  # reported below, with the same message
    if not minimum <= value <= maximum:
        raise ValueError(f"expected a whole number from {minimum} to {maximum}, got {text!r}")
    return value


@_checked
def positive_int(text: str) -> int:
    """An integer from 1 to 2**31-1."""
    return _whole_number(text, 1)


@_checked
def count(text: str) -> int:
    """An integer from 0 to 2**31-1."""
    return _whole_number(text, 0)


@_checked
def retries(text: str) -> int:
    """A ``max_retries``: an integer from 0 to 2**31-1, as every backend stores it."""
    return _whole_number(text, 0, limits.MAX_RETRIES)


@_checked
def task_id(text: str) -> str:
    """A task id: not empty, no NUL, valid text (not undecodable bytes), 255 characters at most."""
    return check_task_id(text)


@_checked
def queue_name(text: str) -> str:
    """A queue name: letters, digits and ``_.:-``, 64 characters at most."""
    return normalize_queue(text)


@_checked
def priority(text: str) -> int:
    """A priority: a whole number from -100 to 100 (higher runs first)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number from -100 to 100, got {text!r}") from None
    return normalize_priority(value)


@_checked
def unique_key(text: str) -> str:
    """A unique key: 1 to 200 characters."""
    key = normalize_unique_key(text)
    assert key is not None
    return key


@_checked
def schedule_name(text: str) -> str:
    """A schedule name: letters, digits and ``_.:-``, 150 characters at most."""
    return check_schedule_name(text)


@_checked
def mebibytes(text: str) -> float:
    """An amount of memory in MiB, above 0 (``512``, ``1.5``)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0  # reported below, with the same message
    if not 0 < value <= MAX_MIB:  # NaN fails this too
        raise ValueError(f"expected a number of MiB above 0, got {text!r}")
    return value


@_checked
def duration(text: str) -> float:
    """A duration >= 0 in seconds (``30s``, ``1h30m``, ``90``)."""
    return parse_duration(text)


@_checked
def positive_duration(text: str) -> float:
    """A duration > 0 in seconds."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"expected a duration above zero, got {text!r}")
    return seconds


@_checked
def search_text(text: str) -> str:
    """A piece of text to look for: 1 to 255 characters."""
    found = normalize_search("the text", text)
    if found is None:
        raise ValueError("expected some text to look for")
    return found


@_checked
def port(text: str) -> int:
    """A TCP port: 1 to 65535 (0: any free one)."""
    return _whole_number(text, 0, 65535)


@_checked
def health_file(text: str) -> str:
    """A file path whose directory exists (the worker touches the file)."""
    path = Path(text).expanduser()
    if not text.strip() or path.is_dir():
        raise ValueError(f"expected a file path, got {text!r}")
    if not path.absolute().parent.is_dir():
        raise ValueError(f"the directory of {text!r} does not exist")
    return str(path)


def _json(text: str, kind: type, name: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON {text!r}: {error.msg} at column {error.colno}") from None
    if not isinstance(value, kind):
        raise ValueError(f"expected a JSON {name}, got {text!r}")
    return value


@_checked
def json_array(text: str) -> list[Any]:
    """A JSON array (``'[1, 2]'``)."""
    return list(_json(text, list, "array such as '[1, 2]'"))


@_checked
def json_object(text: str) -> dict[str, Any]:
    """A JSON object (``'{"b": 2}'``)."""
    return dict(_json(text, dict, "object such as '{\"b\": 2}'"))


@_checked
def iso_datetime(text: str) -> dt.datetime:
    """An ISO 8601 date and time; without an offset it is local time."""
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        return dt.datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(
            f"invalid date and time {text!r}: use ISO 8601, e.g. 2030-01-31T09:30 or "
            "2030-01-31T09:30:00+00:00"
        ) from None


# ------------------------------------------------------------------ the parser


def _common_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Defined on the top parser and again on each subcommand, so they may come before
    # or after it; a subcommand's copy has no default, or it would undo the top one.
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    store = parser.add_argument_group("store (default: the OMNIQ_* environment)")
    store.add_argument(
        "--backend", choices=STORE_BACKENDS, default=default(None), help="the store kind"
    )
    store.add_argument(
        "--base-dir", metavar="DIR", default=default(None), help="where sqlite/file keep tasks"
    )
    store.add_argument(
        "--dsn", metavar="DSN", default=default(None), help="PostgreSQL connection string"
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON for scripts"
    )
    output.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="print the traceback of an unexpected error",
    )


def _add_worker(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="run a worker pool until stopped",
        description="Run a worker pool until Ctrl-C or SIGTERM (a second signal stops at "
        "once; unfinished tasks are put back). The current directory is importable, as "
        "with 'python -m'. With --limit it stops after that many tasks, or earlier when "
        "nothing more is due (unless --duration gives it time to wait), and shows a "
        "progress bar on a terminal. Exit status 0 when it stopped as asked, whatever "
        "the tasks' outcomes (see 'omniq list --status failed').",
    )
    worker.add_argument(
        "--import",
        dest="imports",
        metavar="MODULE",
        action="append",
        default=[],
        help="import MODULE first, e.g. your tasks (repeatable)",
    )
    worker.add_argument(
        "--concurrency", type=positive_int, metavar="N", help="tasks at once (default 4)"
    )
    worker.add_argument(
        "--queue",
        dest="queues",
        metavar="NAME",
        type=queue_name,
        action="append",
        help="serve this queue (repeatable; default: every queue)",
    )
    mode = worker.add_mutually_exclusive_group()
    mode.add_argument(
        "--async",
        dest="use_async",
        action="store_true",
        help="an asyncio pool (coroutine tasks on the loop, plain ones on threads)",
    )
    mode.add_argument(
        "--threads",
        dest="use_async",
        action="store_false",
        help="a pool of threads (the default)",
    )
    worker.set_defaults(use_async=False)
    children = worker.add_argument_group(
        "process executor (hard timeouts, crash containment, recycling; see docs/workers.md)"
    )
    children.add_argument(
        "--processes",
        type=positive_int,
        metavar="N",
        help="run each task in one of N reused child processes (also with --async)",
    )
    children.add_argument(
        "--max-tasks-per-child",
        type=positive_int,
        metavar="N",
        help="replace a child after N tasks (default: never)",
    )
    children.add_argument(
        "--max-memory-per-child",
        type=mebibytes,
        metavar="MIB",
        help="replace a child when a task leaves it above MIB MiB of memory (default: never)",
    )
    children.add_argument(
        "--kill-grace",
        type=duration,
        metavar="S",
        help="from SIGTERM to SIGKILL for a task past its timeout (default 5s)",
    )
    worker.add_argument(
        "--limit", type=positive_int, metavar="N", help="stop after N tasks (see above)"
    )
    worker.add_argument(
        "--duration", type=positive_duration, metavar="S", help="stop after S (e.g. 10m)"
    )
    worker.add_argument(
        "--health-file",
        metavar="PATH",
        type=health_file,
        help="touch PATH on every heartbeat (every third of the lease), for liveness probes",
    )
    worker.add_argument(
        "--log-level",
        metavar="LEVEL",
        type=str.upper,
        choices=("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL", "OFF"),
        help="omniq's log level on stderr (default: OMNIQ_LOG_LEVEL, else INFO; WARNING "
        "under a progress bar; OFF for none)",
    )
    _common_options(worker, top=False)


def _add_enqueue(commands: Any) -> None:
    enqueue = commands.add_parser(
        "enqueue",
        help="store a task and print its id",
        description="Store a task for FUNCTION (an import path such as my_tasks.add) and "
        "print its id. The worker imports the function; this command does not.",
    )
    enqueue.add_argument("func_path", metavar="FUNCTION", help="module.function")
    enqueue.add_argument(
        "--args", type=json_array, default=[], metavar="JSON", help="positional arguments"
    )
    enqueue.add_argument(
        "--kwargs", type=json_object, default={}, metavar="JSON", help="keyword arguments"
    )
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument(
        "--eta", type=iso_datetime, metavar="WHEN", help="first run at (ISO 8601; local time)"
    )
    when.add_argument("--delay", type=duration, metavar="S", help="first run after S")
    enqueue.add_argument(
        "--interval", type=positive_duration, metavar="S", help="run again every S"
    )
    enqueue.add_argument(
        "--max-retries", type=retries, metavar="N", help="executions allowed in total"
    )
    enqueue.add_argument(
        "--timeout", type=positive_duration, metavar="S", help="time limit per execution"
    )
    enqueue.add_argument(
        "--queue", type=queue_name, default="default", metavar="NAME", help="(default 'default')"
    )
    enqueue.add_argument(
        "--priority",
        type=priority,
        default=0,
        metavar="N",
        help="-100 to 100, higher runs first (default 0)",
    )
    enqueue.add_argument(
        "--unique-key",
        type=unique_key,
        metavar="KEY",
        help="store nothing while a task with KEY is pending or running (prints its id)",
    )
    _common_options(enqueue, top=False)


def _add_inspection(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="count tasks per status (and per queue)",
        description="Count tasks per status, in all and per queue, and show when the next "
        "pending task is due.",
    )
    _common_options(status, top=False)

    listing = commands.add_parser(
        "list", help="list tasks", description="List tasks, most recently changed first."
    )
    listing.add_argument(
        "--status", choices=[status.value for status in TaskStatus], help="only these"
    )
    listing.add_argument(
        "--limit", type=positive_int, default=50, metavar="N", help="at most N (default 50)"
    )
    listing.add_argument("--offset", type=count, default=0, metavar="N", help="skip N first")
    listing.add_argument("--queue", type=queue_name, metavar="NAME", help="only this queue")
    listing.add_argument(
        "--function", type=search_text, metavar="TEXT", help="only functions whose path holds TEXT"
    )
    listing.add_argument("--id", type=search_text, metavar="TEXT", help="only ids holding TEXT")
    _common_options(listing, top=False)

    show = commands.add_parser(
        "show",
        help="show a task, with its error and traceback",
        description="Show every field of a task, with its error and traceback. Exit "
        "status 0 whatever the task's status (use --json and its 'status' in scripts).",
    )
    show.add_argument("task_id", metavar="ID", type=task_id)
    _common_options(show, top=False)


def _add_operations(commands: Any) -> None:
    retry = commands.add_parser(
        "retry",
        help="run a failed or cancelled task again",
        description="Put a failed or cancelled task back to pending, due now, with a fresh "
        "budget of executions (exit 1 for a task in another status), or every failed "
        "task with --all-failed.",
    )
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("task_id", metavar="ID", nargs="?", type=task_id)
    target.add_argument("--all-failed", action="store_true", help="every failed task")
    retry.add_argument(
        "--queue", type=queue_name, metavar="NAME", help="with --all-failed: only this queue"
    )
    _common_options(retry, top=False)

    cancel = commands.add_parser(
        "cancel",
        help="cancel a pending task",
        description="Cancel a pending task (exit 1 when it is running or finished; a "
        "running task cannot be stopped from here).",
    )
    cancel.add_argument("task_id", metavar="ID", type=task_id)
    _common_options(cancel, top=False)

    purge = commands.add_parser(
        "purge",
        help="delete old finished tasks",
        description="Delete finished tasks that finished more than --older-than ago.",
    )
    purge.add_argument(
        "--older-than", type=duration, required=True, metavar="S", help="e.g. 7d (0: all)"
    )
    purge.add_argument(
        "--status",
        dest="statuses",
        action="append",
        choices=FINAL_STATUSES,
        help="only this status (repeatable; default: completed, failed and cancelled)",
    )
    _common_options(purge, top=False)


def _add_monitoring(commands: Any) -> None:
    workers = commands.add_parser(
        "workers",
        help="list the registered worker pools",
        description="List the worker pools registered in the store, on any machine: alive "
        "(a heartbeat within their lease) first, then lost ones (removed after ten leases).",
    )
    _common_options(workers, top=False)

    stats = commands.add_parser(
        "stats",
        help="print the monitoring numbers",
        description="Print the numbers of the dashboard and of its /metrics: tasks per queue "
        "and status, how long each queue's oldest due task has waited, the tasks finished "
        "in the last hour, the workers alive and lost, the next schedule fires.",
    )
    _common_options(stats, top=False)

    web = commands.add_parser(
        "web",
        help="serve the web dashboard",
        description="Serve the web dashboard (needs the web extra: pip install "
        "'omniq[web]') until Ctrl-C. Any address but the loopback needs a token: --token, "
        "or better OMNIQ_WEB_TOKEN (a command line is visible to other users in ps).",
    )
    web.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    web.add_argument("--port", type=port, default=8080, metavar="N", help="TCP port (default 8080)")
    web.add_argument(
        "--token", metavar="TOKEN", help="require this token (default: OMNIQ_WEB_TOKEN)"
    )
    web.add_argument("--read-only", action="store_true", help="show, but allow no action")
    web.add_argument(
        "--log-level",
        metavar="LEVEL",
        type=str.upper,
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="the server's log level (default INFO: one line per request)",
    )
    _common_options(web, top=False)


def build_parser() -> Parser:
    """The ``omniq`` parser with all its subcommands."""
    parser = Parser(
        prog="omniq",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"omniq {__version__}")
    _common_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_worker(commands)
    _add_enqueue(commands)
    _add_inspection(commands)
    _add_operations(commands)
    schedules.add_parser(commands, _common_options, schedule_name)
    _add_monitoring(commands)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv`` (default: ``sys.argv[1:]``); raise :class:`UsageError` on a mistake."""
    return build_parser().parse_args(argv)
