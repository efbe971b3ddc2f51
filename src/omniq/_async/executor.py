"""Run one task and record its outcome: the path shared by worker pools and eager mode.

:func:`call_function` resolves the task's function by import path, checks the stored
arguments against its signature, runs it (coroutine or plain) with its timeout and
describes what went wrong as a :class:`~omniq.models.TaskError`. :func:`run_task`
wraps that in the task's log context and returns the :class:`~omniq.records.Outcome`;
:func:`execute` also reports it to the queue, which owns the retry policy. A worker
pool calls :func:`run_task` for each task it claims and records the outcomes in
batches; eager mode (``Settings(eager=True)``) calls :func:`run_inline` at enqueue,
which claims and executes the new task on the spot through :func:`execute`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from omniq import logging as omniq_logging
from omniq._async.queue import DEFAULT_QUEUE, AsyncTaskQueue
from omniq._async.storage.memory import AsyncMemoryStorage
from omniq._concurrency import AsyncCancelled, arun_callable
from omniq._functions import check_arguments, resolve_function
from omniq._validation import normalize_eta
from omniq.exceptions import TaskFunctionError, TaskTimeout
from omniq.models import ErrorType, Task, TaskError
from omniq.records import Outcome, Transition, to_epoch

EAGER_WORKER = "eager"


async def call_function(task: Task, timeout: float | None) -> tuple[Any, TaskError | None]:
    """Run the task's function once; return ``(result, None)`` or ``(None, error)``.

    Import and argument errors are not retryable (running again cannot help);
    a timeout is, as is anything the function raises.
    """
    try:
        function = resolve_function(task.func_path)
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


async def run_task(task: Task, *, timeout: float | None, worker: str) -> Outcome:
    """Run a claimed task once, in its log context; return the outcome, recorded by nobody yet.

    ``timeout`` bounds this execution. The caller records the outcome on the
    queue (a worker pool gathers several and records them together).
    """
    correlation_id = task.correlation_id or task.id
    started_at = time.time()
    started = time.monotonic()
    with omniq_logging.task_context(
        task.id, "execute", correlation_id=correlation_id, worker=worker
    ):
        omniq_logging.log_task_started(
            task.id, task.attempts, worker=worker, correlation_id=correlation_id
        )
        result, error = await call_function(task, timeout)
    return Outcome(
        task,
        result=result,
        error=error,
        duration=time.monotonic() - started,
        started_at=started_at,
    )


class AsyncInlineExecutor:
    """Runs tasks inside the pool's process: the default executor of a worker pool.

    Coroutine functions run on the pool's event loop and plain functions on threads
    (in the blocking twin: every task on a thread of its own, coroutine functions on
    an event loop of that thread). A timeout cancels a coroutine; a plain function
    past its timeout is failed as a timeout and its thread abandoned (see
    ``omniq._concurrency``). Another executor (child processes) offers the same
    three methods.
    """

    name = "inline"

    async def start(self) -> None:
        """Nothing to prepare: threads are started on demand."""

    async def run(self, task: Task, timeout: float | None, worker: str) -> Outcome:
        """Run one claimed task once and return its outcome (recorded by the caller)."""
        return await run_task(task, timeout=timeout, worker=worker)

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
    outcome = await run_task(task, timeout=timeout, worker=worker)
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


# ---------------------------------------------------------------------- eager mode


class _InlineStorage(AsyncMemoryStorage):
    """The scratch store of one eager run: a retry is due at once, with no backoff."""

    async def finish(self, task_id: str, token: str, transition: Transition) -> bool:
        if transition.eta is not None:
            transition = dataclasses.replace(transition, eta=transition.now)
        return await super().finish(task_id, token, transition)


def _scratch_queue(queue: AsyncTaskQueue) -> AsyncTaskQueue:
    return AsyncTaskQueue(
        _InlineStorage(),
        queue.serializer,
        max_retries=queue.max_retries,
        lease_timeout=queue.lease_timeout,
        max_payload_bytes=queue.max_payload_bytes,
    )


async def run_inline(
    task_queue: AsyncTaskQueue,
    func_path: str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    eta: dt.datetime | None = None,
    interval: dt.timedelta | float | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    *,
    default_timeout: float | None = None,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    unique_key: str | None = None,
) -> str:
    """Enqueue a task and run it now, retries included; store the outcome on ``task_queue``.

    The task is validated as the queue's ``enqueue`` validates it, then
    claimed and executed on a scratch store of its own (so concurrent eager runs
    never take each other's tasks) until it completes or its budget is spent;
    retries do not wait for their backoff. ``eta`` and ``interval`` are kept on
    the stored task but otherwise ignored: it runs once, at once, and no next run
    is scheduled. The finished task is then added to ``task_queue``'s storage, where
    ``get_task``/``get_result`` find it. Returns the task's id.
    """
    requested_eta = normalize_eta(eta)  # validated here: the run itself ignores it
    scratch = _scratch_queue(task_queue)
    task_id = await scratch.enqueue(
        func_path,
        args,
        kwargs,
        None,
        interval,
        max_retries,
        timeout,
        queue=queue,
        priority=priority,
        unique_key=unique_key,
    )
    while True:
        claimed = await scratch.dequeue()
        if claimed is None or claimed.id != task_id:  # finished (an interval's next run)
            break
        run_timeout = claimed.timeout if claimed.timeout is not None else default_timeout
        await execute(
            scratch,
            claimed,
            timeout=run_timeout,
            default_max_retries=task_queue.max_retries,
            worker=EAGER_WORKER,
        )
    record = await scratch.storage.get(task_id)
    assert record is not None  # a scratch store loses nothing
    if requested_eta is not None:
        record = dataclasses.replace(record, eta=to_epoch(requested_eta))
    await task_queue.storage.add([record])  # the interval's next run stays behind, unrun
    return task_id


async def run_many_inline(
    queue: AsyncTaskQueue,
    items: Iterable[Mapping[str, Any]],
    *,
    default_timeout: float | None = None,
) -> list[str]:
    """:func:`run_inline` for each item, in order, after validating every item first."""
    chosen = list(items)
    await _scratch_queue(queue).enqueue_many(chosen)  # one bad item: nothing runs
    ids: list[str] = []
    for item in chosen:
        ids.append(
            await run_inline(
                queue,
                item["func_path"],
                item.get("args"),
                item.get("kwargs"),
                item.get("eta"),
                item.get("interval"),
                item.get("max_retries"),
                item.get("timeout"),
                default_timeout=default_timeout,
                queue=item.get("queue", DEFAULT_QUEUE),
                priority=item.get("priority", 0),
                unique_key=item.get("unique_key"),
            )
        )
    return ids
