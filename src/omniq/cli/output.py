"""How commands print: readable tables and fields for people, ``--json`` for scripts.

Data goes to stdout, messages (errors, progress, worker notices) to stderr. Times
are shown in local time for people and as ISO 8601 UTC in JSON; intervals are
shown as durations (``1h30m``) for people and as seconds in JSON.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import sys
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from omniq.durations import format_duration
from omniq.models import Task, TaskError

EMPTY = "-"
_CELL_WIDTH = {"function": 40, "error": 60}


def to_json(value: Any) -> Any:
    """``value`` with what JSON cannot hold turned into strings, numbers and lists."""
    if isinstance(value, Task):
        return task_to_json(value)
    if isinstance(value, TaskError):
        return {key: to_json(item) for key, item in value.to_dict().items()}
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(item) for item in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def task_to_json(task: Task) -> dict[str, Any]:
    """Every field of ``task`` (the attempt token aside) in JSON form."""
    return {key: to_json(task[key]) for key in task if key != "attempt_token"}


def print_json(value: Any, stream: TextIO | None = None) -> None:
    """Write ``value`` as one indented JSON document."""
    out = stream or sys.stdout
    out.write(json.dumps(to_json(value), indent=2, ensure_ascii=False) + "\n")


def local_time(moment: dt.datetime | None) -> str:
    """``2026-05-01 14:03:07`` in the machine's time zone (``-`` for none)."""
    if moment is None:
        return EMPTY
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def relative(moment: dt.datetime, now: dt.datetime | None = None) -> str:
    """``in 5m`` or ``3s ago`` (``now`` for anything within a second)."""
    seconds = (moment - (now or dt.datetime.now(dt.timezone.utc))).total_seconds()
    if abs(seconds) < 1:
        return "now"
    text = format_duration(round(abs(seconds)))
    return f"in {text}" if seconds > 0 else f"{text} ago"


def shorten(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(width - 3, 0)] + "..."


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], stream: TextIO | None = None
) -> None:
    """Left-aligned columns, two spaces apart, under upper-case headers."""
    out = stream or sys.stdout
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    for row in [[header.upper() for header in headers], *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        out.write("  ".join(cells).rstrip() + "\n")


def attempts(task: Task) -> str:
    """``1/3``: executions started so far out of the budget."""
    budget = EMPTY if task.max_retries is None else str(task.max_retries)
    return f"{task.attempts}/{budget}"


def task_rows(tasks: Sequence[Task]) -> list[list[str]]:
    """One table row per task, for ``omniq list``."""
    rows = []
    for task in tasks:
        error = str(task.error) if task.error is not None else ""
        rows.append(
            [
                task.id,
                task.status.value,
                task.queue,
                shorten(task.func_path, _CELL_WIDTH["function"]),
                attempts(task),
                local_time(task.updated_at),
                shorten(error, _CELL_WIDTH["error"]),
            ]
        )
    return rows


TASK_HEADERS = ("id", "status", "queue", "function", "attempts", "updated", "error")


def _value(value: Any) -> str:
    return json.dumps(to_json(value), ensure_ascii=False)


def describe(task: Task) -> list[tuple[str, str]]:
    """The fields ``omniq show`` prints, as (label, text) pairs."""
    fields = [
        ("id", task.id),
        ("function", task.func_path),
        ("status", task.status.value),
        ("queue", task.queue),
        ("priority", str(task.priority)),
        ("args", _value(list(task.args))),
        ("kwargs", _value(task.kwargs)),
        (
            "attempts",
            f"{task.attempts} of {EMPTY if task.max_retries is None else task.max_retries}",
        ),
        ("eta", f"{local_time(task.eta)} ({relative(task.eta)})"),
        (
            "interval",
            EMPTY if task.interval is None else format_duration(task.interval.total_seconds()),
        ),
        ("timeout", EMPTY if task.timeout is None else format_duration(task.timeout)),
        ("created", local_time(task.created_at)),
        ("started", local_time(task.started_at)),
        ("finished", local_time(task.finished_at)),
        ("updated", local_time(task.updated_at)),
        ("result", _value(task.result) if task.status.value == "completed" else EMPTY),
    ]
    if task.unique_key is not None:
        fields.append(("unique key", task.unique_key))
    if task.worker is not None:
        fields.append(("worker", task.worker))
    if task.parent_id:
        fields.append(("parent", task.parent_id))
    if task.correlation_id and task.correlation_id != task.id:
        fields.append(("correlation", task.correlation_id))
    error = task.error
    if error is not None:
        fields.append(("error", str(error)))
        detail = [f"exception {error.exception_type or EMPTY}"]
        budget = EMPTY if error.max_retries is None else str(error.max_retries)
        detail.append(f"failed execution {error.retry_count} of {budget}")
        if task.status.value == "pending":
            detail.append(f"retry due {relative(task.eta)}")
        elif task.status.value == "failed":
            detail.append("budget spent" if error.is_retryable else "not retryable")
        fields.append(("", ", ".join(detail)))
    for entry in task.attempts_history:
        took = (
            ""
            if entry.started_at is None
            else f" in {format_duration((entry.finished_at - entry.started_at).total_seconds())}"
        )
        why = f": {entry.error.message}" if entry.error is not None else ""
        fields.append(
            (
                f"attempt {entry.attempt}",
                f"{entry.outcome} {local_time(entry.finished_at)}{took} "
                f"on {entry.worker or EMPTY}{why}",
            )
        )
    return fields


def print_task(task: Task, stream: TextIO | None = None) -> None:
    """``omniq show``: one field per line, then the error's traceback, if any."""
    out = stream or sys.stdout
    fields = describe(task)
    width = max(len(label) for label, _ in fields)
    for label, text in fields:
        out.write(f"{label.ljust(width)}  {text}\n")
    if task.error is not None and task.error.traceback:
        out.write("traceback:\n")
        for line in task.error.traceback.rstrip().splitlines():
            out.write(f"  {line}\n")


def message(text: str, stream: TextIO | None = None) -> None:
    """A notice for people, on stderr."""
    (stream or sys.stderr).write(text + "\n")
