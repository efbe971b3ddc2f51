"""Django tasks of the backend tests: Django's own ``tests/tasks/tasks.py`` and a few more.

The first group follows Django's test tasks (BSD-licensed, django/django
``tests/tasks/tasks.py``), so the adapted tests check the same behaviour; the rest
serve the worker tests (files as side effects, so other processes can see them).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from django.db import connection
from django.tasks import TaskContext, task

from omniq import current_task


@task()
def noop_task(*args: Any, **kwargs: Any) -> None:
    return None


@task
def noop_task_from_bare_decorator(*args: Any, **kwargs: Any) -> None:
    return None


@task()
async def noop_task_async(*args: Any, **kwargs: Any) -> None:
    return None


@task()
def calculate_meaning_of_life() -> int:
    return 42


@task()
def failing_task_value_error() -> None:
    raise ValueError("This Task failed due to ValueError")


@task()
def failing_task_system_exit() -> None:
    raise SystemExit("This Task failed due to SystemExit")


@task()
def failing_task_keyboard_interrupt() -> None:
    raise KeyboardInterrupt("This Task failed due to KeyboardInterrupt")


@task()
def complex_exception() -> None:
    raise ValueError(ValueError("This task failed"))


@task()
def complex_return_value() -> Any:
    # Return something which isn't JSON serializable nor picklable.
    return lambda: True


@task()
def exit_task() -> None:
    exit(1)


@task(takes_context=True)
def get_task_id(context: TaskContext) -> str:
    return str(context.task_result.id)


@task(takes_context=True)
def test_context(context: TaskContext, attempt: int) -> None:
    assert isinstance(context, TaskContext)
    assert context.attempt == attempt


# ---------------------------------------------------------------- for the worker tests


@task(takes_context=True)
def describe_context(context: TaskContext) -> dict[str, Any]:
    """What the task sees of itself: Django's context next to omniq's."""
    omniq_context = current_task()
    assert omniq_context is not None
    result = context.task_result
    return {
        "id": result.id,
        "attempt": context.attempt,
        "status": str(result.status),
        "worker_ids": list(result.worker_ids),
        "omniq_id": omniq_context.id,
        "omniq_attempt": omniq_context.attempt,
        "omniq_worker": omniq_context.worker,
        "queue": omniq_context.queue,
    }


@task()
def append_line(path: str, text: str) -> str:
    """Append ``text`` and this process's pid to ``path``: one line per execution."""
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{text} {os.getpid()}\n")
    return text


@task()
async def append_line_async(path: str, text: str) -> str:
    """:func:`append_line` as a coroutine task."""
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{text} {os.getpid()}\n")
    return text


@task()
def wait_for_file(started: str, release: str, timeout: float = 120.0) -> str:
    """Say it started (the file ``started``), then run until ``release`` exists."""
    Path(started).write_text("started", encoding="utf-8")
    deadline = time.monotonic() + timeout
    while not Path(release).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} did not appear within {timeout}s")
        time.sleep(0.02)
    return "released"


@task()
def touch_database() -> dict[str, Any]:
    """Run a query; say which thread ran it and whether it found its connection open."""
    was_open = connection.connection is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"thread": threading.get_ident(), "was_open": was_open}


@task()
def return_value(value: Any) -> Any:
    """Return ``value`` (the tests pick values JSON can or cannot hold)."""
    return value


@task()
def return_float(name: str) -> float:
    """Return a float JSON has no room for (``nan``, ``inf``)."""
    return float(name)
