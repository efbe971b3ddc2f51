"""The monitoring commands: ``omniq workers`` and ``omniq stats``.

``workers`` lists the pools of the store's worker registry; ``stats`` prints the
numbers of the dashboard and of ``GET /metrics`` (``--json``: every one of them).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from omniq import OmniQ
from omniq.cli import output
from omniq.cli.errors import EXIT_OK
from omniq.cli.store import settings_from_args
from omniq.durations import format_duration
from omniq.models import TaskStatus

WORKER_HEADERS = (
    "state",
    "pool",
    "host",
    "pid",
    "queues",
    "concurrency",
    "processed",
    "failed",
    "heartbeat",
    "started",
)


def workers(args: argparse.Namespace) -> int:
    """The registered worker pools, alive ones first."""
    with OmniQ(settings_from_args(args)) as omniq:
        found = omniq.workers()
    if args.json:
        output.print_json([worker.to_dict() for worker in found])
        return EXIT_OK
    if not found:
        output.message("no worker is registered (start one with 'omniq worker')")
        return EXIT_OK
    output.table(
        WORKER_HEADERS,
        [
            [
                "alive" if worker.alive else "lost",
                worker.name,
                worker.host,
                str(worker.pid),
                ",".join(worker.queues) if worker.queues else "*",
                str(worker.concurrency),
                str(worker.processed),
                str(worker.failed),
                output.relative(worker.heartbeat_at),
                output.local_time(worker.started_at),
            ]
            for worker in found
        ],
    )
    return EXIT_OK


def stats(args: argparse.Namespace) -> int:
    """Counts per queue and status, the last hour's throughput, waits, workers."""
    with OmniQ(settings_from_args(args)) as omniq:
        metrics = omniq.metrics()
    if args.json:
        output.print_json(metrics.to_dict())
        return EXIT_OK
    statuses = [status.value for status in TaskStatus]
    output.table(
        ["queue", *statuses, "oldest due waits", "done/h", "failed/h"],
        [
            [
                queue.name,
                *(str(queue.counts[status]) for status in statuses),
                format_duration(round(queue.oldest_due_age)) if queue.oldest_due_age else "-",
                str(queue.completed_last_hour),
                str(queue.failed_last_hour),
            ]
            for queue in metrics.queues
        ],
    )
    completed = sum(minute.completed for minute in metrics.throughput)
    failed = sum(minute.failed for minute in metrics.throughput)
    print()
    print(f"tasks: {metrics.total}; last hour: {completed} completed, {failed} failed")
    print(f"workers: {metrics.workers_alive} alive, {metrics.workers_lost} lost")
    for schedule in metrics.schedules:
        when = "unreadable" if schedule.problem else output.local_time(schedule.next_fire)
        print(f"schedule {schedule.name}: next fire {when}")
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"workers": workers, "stats": stats}
