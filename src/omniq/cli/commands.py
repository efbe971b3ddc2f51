"""The store commands: enqueue, status, list, show, retry, cancel, purge.

Each takes the parsed arguments, works through the blocking ``OmniQ`` facade and
returns the exit status (or raises a :class:`~omniq.cli.errors.CliError`).
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable

from omniq import OmniQ, Task, TaskStatus
from omniq.cli import output, schedules
from omniq.cli.errors import EXIT_OK, CommandFailed, UsageError
from omniq.cli.store import settings_from_args


def _open(args: argparse.Namespace) -> OmniQ:
    return OmniQ(settings_from_args(args))


def _known(omniq: OmniQ, task_id: str) -> Task:
    task = omniq.get_task(task_id)
    if task is None:
        raise UsageError(f"no task with id {task_id!r} (see 'omniq list')")
    return task


def enqueue(args: argparse.Namespace) -> int:
    """Store a task; print its id."""
    eta = args.eta
    if args.delay is not None:
        eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=args.delay)
    with _open(args) as omniq:
        try:
            task_id = omniq.enqueue(
                args.func_path,
                args=args.args,
                kwargs=args.kwargs,
                eta=eta,
                interval=args.interval,
                max_retries=args.max_retries,
                timeout=args.timeout,
                queue=args.queue,
                priority=args.priority,
                unique_key=args.unique_key,
            )
        except (TypeError, ValueError) as error:  # a bad function path or argument
            raise UsageError(f"cannot enqueue: {error}") from None
    if args.json:
        output.print_json({"id": task_id})
    else:
        print(task_id)
    return EXIT_OK


def status(args: argparse.Namespace) -> int:
    """Counts per status and when the next pending task is due."""
    with _open(args) as omniq:
        stats = omniq.stats()
    if args.json:
        output.print_json(stats)
        return EXIT_OK
    rows = [
        [name, str(value)] for name, value in stats.items() if name not in ("next_eta", "queues")
    ]
    output.table(["status", "tasks"], rows)
    per_queue = stats.get("queues") or {}
    if per_queue:
        statuses = [status.value for status in TaskStatus]
        print()
        output.table(
            ["queue", *statuses, "total"],
            [
                [name, *(str(counts[status]) for status in statuses), str(sum(counts.values()))]
                for name, counts in per_queue.items()
            ],
        )
    next_eta = stats.get("next_eta")
    if next_eta is None:
        print("next due: -")
    else:
        print(f"next due: {output.local_time(next_eta)} ({output.relative(next_eta)})")
    return EXIT_OK


def list_tasks(args: argparse.Namespace) -> int:
    """Tasks, most recently changed first."""
    with _open(args) as omniq:
        tasks = omniq.list_tasks(
            args.status,
            limit=args.limit,
            offset=args.offset,
            queue=args.queue,
            function=args.function,
            id_contains=args.id,
        )
    if args.json:
        output.print_json(tasks)
    elif not tasks:
        which = f"{args.status} " if args.status else ""
        where = f" in queue {args.queue!r}" if args.queue else ""
        if args.function or args.id:
            where += " matching the search"
        output.message(f"no {which}tasks{where}")
    else:
        output.table(output.TASK_HEADERS, output.task_rows(tasks))
    return EXIT_OK


def show(args: argparse.Namespace) -> int:
    """One task with every field, its error and its traceback."""
    with _open(args) as omniq:
        task = _known(omniq, args.task_id)
    if args.json:
        output.print_json(task)
    else:
        output.print_task(task)
    return EXIT_OK


def _refused(args: argparse.Namespace, key: str, task: Task, why: str) -> int:
    if args.json:
        output.print_json({"id": task.id, key: False, "status": task.status.value})
    raise CommandFailed(f"task {task.id} is {task.status.value}: {why}")


def retry(args: argparse.Namespace) -> int:
    """A failed or cancelled task (or every failed one) back to pending, due now."""
    if args.queue is not None and not args.all_failed:
        raise UsageError("--queue goes with --all-failed (a task id names its task)")
    with _open(args) as omniq:
        if args.all_failed:
            count = omniq.retry_failed(queue=args.queue)
            if args.json:
                output.print_json({"retried": count})
            else:
                print(f"{count} failed task(s) pending again")
            return EXIT_OK
        if not omniq.retry(args.task_id):
            task = _known(omniq, args.task_id)
            return _refused(args, "retried", task, "only failed or cancelled tasks can be retried")
    if args.json:
        output.print_json({"id": args.task_id, "retried": True, "status": "pending"})
    else:
        print(f"task {args.task_id} is pending again")
    return EXIT_OK


def cancel(args: argparse.Namespace) -> int:
    """Cancel a pending task."""
    with _open(args) as omniq:
        if not omniq.cancel(args.task_id):
            task = _known(omniq, args.task_id)
            return _refused(args, "cancelled", task, "only pending tasks can be cancelled")
    if args.json:
        output.print_json({"id": args.task_id, "cancelled": True, "status": "cancelled"})
    else:
        print(f"task {args.task_id} cancelled")
    return EXIT_OK


def purge(args: argparse.Namespace) -> int:
    """Delete finished tasks older than ``--older-than``."""
    with _open(args) as omniq:
        if args.statuses:
            count = omniq.purge(args.older_than, statuses=args.statuses)
        else:
            count = omniq.purge(args.older_than)
    if args.json:
        output.print_json({"purged": count})
    else:
        print(f"{count} task(s) purged")
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "enqueue": enqueue,
    "status": status,
    "list": list_tasks,
    "show": show,
    "retry": retry,
    "cancel": cancel,
    "purge": purge,
    "schedules": schedules.run,
}
