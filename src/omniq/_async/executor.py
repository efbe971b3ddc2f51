"""Run one task: the path shared by worker pools and eager mode.

:func:`call_function` resolves the task's function through the allow-list (a
declared task, an allowed module, or a path this queue enqueued; see
:mod:`omniq.allowlist`), checks the stored arguments against its signature, runs it
(coroutine or plain) with its timeout and describes what went wrong as a
:class:`~omniq.models.TaskError`. :func:`run_task` wraps that in the task's log
context and its :func:`omniq.current_task` context and returns the
:class:`~omniq.records.Outcome`; :func:`execute` also reports it to the queue, which
owns the retry policy. A worker pool runs tasks through an executor
(:class:`AsyncInlineExecutor` by default) and records the outcomes in batches; eager
mode (``omniq._async.eager``) calls :func:`execute` at enqueue.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from omniq import logging as omniq_logging
from omniq._async.queue import AsyncTaskQueue
from omniq._concurrency import AsyncCancelled, arun_callable
from omniq._functions import check_arguments
from omniq.allowlist import AllowList
from omniq.exceptions import TaskFunctionError, TaskTimeout
from omniq.models import ErrorType, Task, TaskError
from omniq.records import Outcome
from omniq.task_context import TaskContext, running_task

Resolver = Callable[[str], Callable[..., Any]]


async def call_function(
    task: Task, timeout: float | None, resolve: Resolver
) -> tuple[Any, TaskError | None]:
    """Run the task's function once; return ``(result, None)`` or ``(None, error)``.

    ``resolve`` finds the function (the allow-list's ``resolve``). Refused, import and
    argument errors are not retryable (running again cannot help); a timeout is, as
    is anything the function raises.
    """
    try:
        function = resolve(task.func_path)
        check_arguments(function, task.args, task.kwargs)
        return await arun_callable(function, task.args, task.kwargs, timeout), None
    except AsyncCancelled:
        raise
    except TaskTimeout as failure:
        return None, TaskError.from_exception(failure, ErrorType.TIMEOUT)
    except TaskFunctionError as failure:
        kind = getattr(failure, "error_type", ErrorType.IMPORT)
        return None, TaskError.from_exception(failure, kind, is_retryable=False)
    except BaseException as failure:  # SystemExit or KeyboardInterrupt from a task, too
        return None, TaskError.from_exception(failure)


async def run_task(
    task: Task,
    *,
    timeout: float | None,
    worker: str,
    resolve: Resolver,
    default_max_retries: int | None = None,
) -> Outcome:
    """Run a claimed task once, in its log context; return the outcome, recorded by nobody yet.

    ``timeout`` bounds this execution. ``current_task()`` gives the task's context
    inside (``default_max_retries``: the budget of a task stored without one). The
    caller records the outcome on the queue (a worker pool gathers several and
    records them together).
    """
    correlation_id = task.correlation_id or task.id
    started_at = time.time()
    started = time.monotonic()
    with omniq_logging.execution_scope(task.id, correlation_id, worker=worker):
        omniq_logging.log_task_started(
            task.id, task.attempts, worker=worker, correlation_id=correlation_id
        )
        context = TaskContext.from_task(
            task, worker=worker, default_max_retries=default_max_retries
        )
        with running_task(context):
            result, error = await call_function(task, timeout, resolve)
    return Outcome(
        task,
        result=result,
        error=error,
        duration=time.monotonic() - started,
        started_at=started_at,
    )


class TaskReleased(Exception):
    """An executor gave a task back unfinished (its pool is stopping): put it back as
    PENDING without spending an attempt."""


class AsyncExecutor(Protocol):
    """What a worker pool needs of an executor: it runs claimed tasks, nothing else.

    The pool keeps the store (claims, leases, heartbeats, outcomes) and calls
    :meth:`run` once per claimed attempt, after its ``before_task`` hooks, from as
    many concurrent units as its ``concurrency``. ``run`` returns the
    :class:`~omniq.records.Outcome` (task errors are outcomes, never exceptions) or
    raises :class:`TaskReleased`. ``stops_tasks`` says whether :meth:`stop` ends the
    runs in progress (they then return or raise ``TaskReleased`` by themselves); the
    pool cancels them otherwise. An executor may be started again after a stop.
    """

    name: str
    stops_tasks: bool

    async def start(self) -> None:
        """Get ready to run tasks (idempotent; also after :meth:`stop`)."""
        ...

    async def run(self, task: Task, timeout: float | None, worker: str) -> Outcome:
        """Run one claimed attempt of ``task``; ``timeout`` bounds it."""
        ...

    async def stop(self, grace: float) -> None:
        """Let runs in progress finish within ``grace`` seconds, then end them."""
        ...


class AsyncInlineExecutor:
    """Runs tasks inside the pool's process: the default executor of a worker pool.

    Coroutine functions run on the pool's event loop and plain functions on threads
    (in the blocking twin: every task on the thread of its pool slot, one after
    another, coroutine functions on an event loop of that thread). A timeout cancels a
    coroutine; a plain function past its timeout is failed as a timeout and its thread
    abandoned (see ``omniq._concurrency``). The process executor
    (``omniq._async.process_executor``) offers the same interface.
    """

    name = "inline"
    stops_tasks = False  # the pool cancels what still runs; a thread runs on regardless

    def __init__(self, allow: AllowList, default_max_retries: int | None = None) -> None:
        self.allow = allow
        self.default_max_retries = default_max_retries

    async def start(self) -> None:
        """Nothing to prepare: threads are started on demand."""

    async def run(self, task: Task, timeout: float | None, worker: str) -> Outcome:
        """Run one claimed task once and return its outcome (recorded by the caller)."""
        return await run_task(
            task,
            timeout=timeout,
            worker=worker,
            resolve=self.allow.resolve,
            default_max_retries=self.default_max_retries,
        )

    async def stop(self, grace: float) -> None:
        """Nothing to release: running tasks are the pool's to wait for."""


async def execute(
    queue: AsyncTaskQueue,
    task: Task,
    *,
    timeout: float | None,
    default_max_retries: int | None,
    worker: str,
) -> bool:
    """Run a claimed task and record the outcome on ``queue`` at once.

    ``default_max_retries`` is the budget of a task stored without one. Returns
    False when this attempt no longer holds the task (its lease was taken over),
    so its outcome was not recorded.
    """
    outcome = await run_task(
        task,
        timeout=timeout,
        worker=worker,
        resolve=queue.allow.resolve,
        default_max_retries=default_max_retries,
    )
    held = await queue.record_outcomes([outcome], default_max_retries, worker)
    if not held[0]:
        log_lost(worker, task)
    return held[0]


def log_lost(worker: str, task: Task) -> None:
    """Say that an attempt's outcome was dropped because another attempt holds the task."""
    omniq_logging.get_logger().warning(
        f"{worker} lost task {task.id}: another attempt holds it now, "
        "so this attempt's outcome was not recorded"
    )
