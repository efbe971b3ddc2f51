"""``python manage.py omniq_worker``: see :mod:`omniq.contrib.django.worker`."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS

from omniq import logging as omniq_logging
from omniq.cli.errors import UsageError
from omniq.cli.worker import setup_logging
from omniq.contrib.django.worker import (
    ALL_QUEUES,
    DEFAULT_SHUTDOWN_TIMEOUT,
    WorkerOptions,
    serve,
)

# Loggers whose records the command shows on stdout (Django's task signals log to the first).
LOGGERS = ("django.tasks", "omniq.contrib.django")
USAGE = 2  # the exit code of a bad option, as argparse's


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


class Command(BaseCommand):
    """Run the Django tasks of a ``TASKS`` alias that uses ``OmniQBackend``."""

    help = (
        "Run Django tasks stored by omniq.contrib.django.OmniQBackend. SIGINT or SIGTERM "
        "lets running tasks finish and exits 0; a second one stops at once and puts "
        "them back as READY."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue-name",
            default=ALL_QUEUES,
            help="the queues to run, comma-separated, or '*' for every queue in the "
            "alias's QUEUES (default: %(default)r)",
        )
        parser.add_argument(
            "--batch", action="store_true", help="run every task that is due, then exit"
        )
        parser.add_argument(
            "--max-tasks",
            type=_positive_int,
            default=None,
            help="exit after running this many tasks (with --batch: at most this many)",
        )
        parser.add_argument(
            "--backend",
            dest="backend_name",
            default=DEFAULT_TASK_BACKEND_ALIAS,
            help="the TASKS alias to run (default: %(default)r)",
        )
        parser.add_argument(
            "--worker-id",
            default=None,
            help="this worker's name in worker_ids and omniq's attempt history, at most "
            "64 characters (default: <host>-<pid>-<random>)",
        )
        parser.add_argument(
            "--concurrency",
            type=_positive_int,
            default=None,
            help="tasks run at once, each on a thread (default: OPTIONS['concurrency'], 4)",
        )
        parser.add_argument(
            "--interval",
            type=_seconds,
            default=None,
            help="seconds between looks for due tasks when no wake-up comes (default: "
            "OPTIONS['poll_interval'], 1)",
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=_seconds,
            default=DEFAULT_SHUTDOWN_TIMEOUT,
            help="on SIGINT/SIGTERM, seconds running tasks get to finish before they are "
            "put back as READY (default: %(default)s)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._configure_logging(options["verbosity"])
        worker = WorkerOptions(
            backend=options["backend_name"],
            queue_names=tuple(name.strip() for name in options["queue_name"].split(",")),
            batch=options["batch"],
            max_tasks=options["max_tasks"],
            worker_id=options["worker_id"],
            concurrency=options["concurrency"],
            interval=options["interval"] or None,
            shutdown_timeout=options["shutdown_timeout"],
        )
        try:
            serve(worker)
        except ValueError as error:
            raise CommandError(str(error), returncode=USAGE) from None

    def _configure_logging(self, verbosity: int) -> None:
        """Django's task log lines on stdout, as ``db_worker`` shows them (INFO at
        ``--verbosity 1``, DEBUG from 2, none at 0); omniq's own records on stderr
        (WARNING, INFO at 2, DEBUG at 3, or ``OMNIQ_LOG_LEVEL``)."""
        if verbosity:
            level = logging.INFO if verbosity == 1 else logging.DEBUG
            for name in LOGGERS:
                found = logging.getLogger(name)
                if found.getEffectiveLevel() > level:
                    found.setLevel(level)  # only ever lowered: the project's LOGGING stands
                # Django's default LOGGING gives "django" a console handler for DEBUG only,
                # so without a handler of their own these records would show nowhere.
                if not found.handlers:
                    handler = logging.StreamHandler(self.stdout)
                    handler.setLevel(level)
                    found.addHandler(handler)
        omniq_level: str | None = {0: "OFF", 1: "WARNING", 2: "INFO"}.get(verbosity, "DEBUG")
        if verbosity and os.environ.get(omniq_logging.ENV_LEVEL, "").strip():
            omniq_level = None  # OMNIQ_LOG_LEVEL decides
        try:
            setup_logging(omniq_level, under_bar=False)
        except UsageError as error:
            raise CommandError(str(error), returncode=USAGE) from None
