"""What an attempt's outcome becomes: the :class:`~omniq.records.Transition` a store applies.

Pure planning, shared by both twins: no I/O and nothing awaited. The queue calls
these with its own settings (serializer, execution budget) and hands the
transitions to the store. They apply the retry budget and backoff
(:mod:`omniq.retry`), append the attempt to the history (:mod:`omniq.history`),
schedule an interval task's next run, recover a dead worker's task and, when an
outcome or a record cannot be planned, plan the plain failure that surely can be
stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from omniq import logging as omniq_logging
from omniq import retry
from omniq.history import append_history, failure_outcome, history_entry, stored_history
from omniq.models import AttemptOutcome, ErrorType, Task, TaskError, TaskStatus, new_task_id
from omniq.records import Outcome, TaskRecord, Transition, encode_error, record_from_task
from omniq.serialization import Serializer, encode


def plan_outcome(
    outcome: Outcome,
    now: float,
    serializer: Serializer,
    default_budget: int,
    worker: str | None,
) -> tuple[Transition, TaskError | None]:
    """The transition an outcome leads to, and the error stored with it.

    ``default_budget`` is the execution budget of a task stored without one. The
    transition carries the task's attempt history with this execution appended, so
    the history is written with the outcome, in the same commit.
    """
    task = outcome.task
    error = outcome.error
    started = outcome.started_at
    if error is None:
        try:
            encoded = encode(serializer, outcome.result, "the result")
        except (TypeError, ValueError) as failure:
            error = TaskError(
                error_type=ErrorType.SERIALIZATION,
                message=f"the task's result cannot be serialized: {failure}",
                is_retryable=False,
            )
        else:
            entry = history_entry(
                task.attempts, worker, started, now, AttemptOutcome.COMPLETED, None
            )
            completed = Transition(
                status=TaskStatus.COMPLETED.value,
                now=now,
                result=encoded,
                successor=successor(task, now, serializer),
                history=append_history(stored_history(task.attempts_history), entry),
            )
            return completed, None
    budget = default_budget if task.max_retries is None else task.max_retries
    stored = dataclasses.replace(error, retry_count=task.attempts, max_retries=budget)
    retried = stored.is_retryable and retry.should_retry(task.attempts, budget)
    entry = history_entry(
        task.attempts, worker, started, now, failure_outcome(stored, retried), stored
    )
    history = append_history(stored_history(task.attempts_history), entry)
    if retried:
        retry_transition = Transition(
            status=TaskStatus.PENDING.value,
            now=now,
            error=encode_error(stored),
            eta=now + retry.retry_delay(task.attempts),
            history=history,
        )
        return retry_transition, stored
    failed = Transition(
        status=TaskStatus.FAILED.value,
        now=now,
        error=encode_error(stored),
        successor=successor(task, now, serializer),
        history=history,
    )
    return failed, stored


def plan_outcome_safely(
    outcome: Outcome,
    now: float,
    serializer: Serializer,
    default_budget: int,
    worker: str | None,
) -> tuple[Transition, TaskError | None]:
    """:func:`plan_outcome`, or, when planning itself fails, a plain failure of that task alone.

    Validation keeps values in bounds, but a task stored by an older omniq or by
    hand may still break the plan (its next interval run, its history): that task
    fails with the reason, and the others of the batch are recorded as usual.
    """
    try:
        return plan_outcome(outcome, now, serializer, default_budget, worker)
    except Exception as failure:
        omniq_logging.log_serialization_error(
            "record outcome", f"{type(failure).__name__}: {failure}", task_id=outcome.task.id
        )
        return unrecordable(outcome, failure, now)


def successor(task: Task, now: float, serializer: Serializer) -> TaskRecord | None:
    """The next run of an interval task, due one interval after this run was due.

    Slots missed while no worker ran are skipped, not replayed.
    """
    if task.interval is None:
        return None
    step = task.interval.total_seconds()
    due = task.eta.timestamp() + step
    if due <= now:
        due += step * (int((now - due) // step) + 1)
    moment = dt.datetime.fromtimestamp(due, dt.timezone.utc)
    next_run = dataclasses.replace(
        task,
        id=new_task_id(),
        status=TaskStatus.PENDING,
        attempts=0,
        eta=moment,
        result=None,
        error=None,
        created_at=dt.datetime.fromtimestamp(now, dt.timezone.utc),
        updated_at=dt.datetime.fromtimestamp(now, dt.timezone.utc),
        started_at=None,
        finished_at=None,
        lease_until=None,
        attempt_token=None,
        parent_id=task.id,
        attempts_history=[],
        worker=None,
    )
    return record_from_task(next_run, serializer)


def recovery(record: TaskRecord, now: float, default_budget: int) -> Transition:
    """The transition that recovers one expired task (``expired_before`` guards it).

    ``default_budget`` is the execution budget of a task stored without one.
    """
    if record.attempt_token is None:
        return unrecoverable(
            record,
            now,
            "it was running without an attempt token, so no worker can hold it "
            "(a damaged or foreign record)",
        )
    budget = default_budget if record.max_retries is None else record.max_retries
    lost = TaskError(
        error_type=ErrorType.WORKER_LOST,
        message="the worker running this task stopped before finishing it (its lease ran out)",
        retry_count=record.attempts,
        max_retries=budget,
    )
    entry = history_entry(
        record.attempts, record.worker, record.started_at, now, AttemptOutcome.LOST, lost
    )
    history = append_history(record.history, entry)
    # expired_before: if the holder renews its lease meanwhile, it is alive.
    # Its own eta (already past) puts it back at its place in line, ahead of
    # the backlog that queued up behind it, not at the back.
    if retry.should_retry(record.attempts, budget):
        return Transition(
            status=TaskStatus.PENDING.value,
            now=now,
            error=encode_error(lost),
            eta=min(record.eta, now),
            expired_before=now,
            history=history,
        )
    return Transition(
        status=TaskStatus.FAILED.value,
        now=now,
        error=encode_error(lost),
        expired_before=now,
        history=history,
    )


def release_history(
    task: Task, started_at: float | None, now: float, worker: str | None
) -> str | None:
    """The history to store with a task put back unfinished, or ``None`` to leave it as is.

    A task whose execution had begun (``started_at``) gets a ``released`` entry; one
    that was only claimed, never started, keeps its history unchanged.
    """
    if started_at is None:
        return None
    entry = history_entry(task.attempts, worker, started_at, now, AttemptOutcome.RELEASED, None)
    return append_history(stored_history(task.attempts_history), entry)


def unrecoverable(record: TaskRecord, now: float, why: str) -> Transition:
    """The failure of an expired RUNNING row that lease recovery cannot put back."""
    attempts = record.attempts if type(record.attempts) is int else 0
    error = TaskError(
        error_type=ErrorType.SERIALIZATION,
        message=f"lease recovery failed this task: {why}",
        is_retryable=False,
        retry_count=attempts,
    )
    return Transition(
        status=TaskStatus.FAILED.value, now=now, error=encode_error(error), expired_before=now
    )


def unrecordable(
    outcome: Outcome, failure: BaseException, now: float
) -> tuple[Transition, TaskError]:
    """The transition that fails a task whose outcome cannot be recorded as it is.

    No result, no next run, no new history entry: only what surely can be stored.
    """
    error = TaskError(
        error_type=ErrorType.SERIALIZATION,
        message=f"omniq could not record this execution's outcome: "
        f"{type(failure).__name__}: {failure}",
        is_retryable=False,
        retry_count=outcome.task.attempts,
    )
    return Transition(status=TaskStatus.FAILED.value, now=now, error=encode_error(error)), error


def undecodable(record: TaskRecord, now: float, failure: Exception) -> Transition:
    """The failure of a claimed record that cannot be decoded into a task."""
    error = TaskError(
        error_type=ErrorType.SERIALIZATION,
        message=f"the stored task cannot be decoded: {failure}",
        is_retryable=False,
        retry_count=record.attempts if isinstance(record.attempts, int) else 0,
    )
    return Transition(status=TaskStatus.FAILED.value, now=now, error=encode_error(error))


def as_task_error(error: str | BaseException | TaskError) -> TaskError:
    """``error`` (a message, an exception or a :class:`TaskError`) as a :class:`TaskError`."""
    if isinstance(error, TaskError):
        return error
    if isinstance(error, BaseException):
        return TaskError.from_exception(error)
    return TaskError(error_type=ErrorType.RUNTIME, message=str(error))


def log_outcome(
    outcome: Outcome,
    transition: Transition,
    error: TaskError | None,
    worker: str | None,
) -> None:
    """Log a recorded outcome: the task completed, or failed (and whether it will retry)."""
    task = outcome.task
    extra: dict[str, Any] = {"correlation_id": task.correlation_id or task.id}
    if worker is not None:
        extra["worker"] = worker
    if error is None:
        if outcome.duration is not None:
            extra["duration"] = round(outcome.duration, 6)
        omniq_logging.log_task_completed(task.id, task.attempts, **extra)
    else:
        omniq_logging.log_task_failed(
            task.id,
            str(error),
            will_retry=transition.status == TaskStatus.PENDING.value,
            attempt=task.attempts,
            **extra,
        )
