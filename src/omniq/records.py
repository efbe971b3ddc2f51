"""The stored form of a task, and its conversion to and from :class:`~omniq.models.Task`.

Every backend, in both twins, stores a :class:`TaskRecord`: plain columns
(str, int, float epoch seconds) with ``args``/``kwargs`` and the result already
encoded by the queue's serializer. So storages never see user objects, and one
on-disk format serves both twins.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, fields
from typing import Any

from omniq.models import Task, TaskError, TaskStatus
from omniq.serialization import Serializer


@dataclass
class TaskRecord:
    """One task as a storage keeps it (times are UTC epoch seconds)."""

    id: str
    func_path: str
    payload: str
    status: str
    attempts: int
    max_retries: int | None
    eta: float
    interval: float | None
    timeout: float | None
    result: str | None
    error: str | None
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    lease_until: float | None = None
    attempt_token: str | None = None
    correlation_id: str | None = None
    parent_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (the file backend's format)."""
        return {name: getattr(self, name) for name in RECORD_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRecord:
        """Rebuild a record; ``ValueError`` if a required field is missing or mistyped."""
        try:
            record = cls(**{name: data[name] for name in RECORD_FIELDS if name in data})
        except TypeError as error:
            raise ValueError(f"not a task record: {error}") from None
        record.validate()
        return record

    def validate(self) -> None:
        """Check the column types, so a corrupt row is caught when read, not when run."""
        for name, types, nullable in _COLUMN_TYPES:
            value = getattr(self, name)
            if value is None and nullable:
                continue
            if type(value) not in types:  # exact types: a bool is not an int here
                raise ValueError(f"task record field {name!r} has a bad value: {value!r}")
        if self.status not in _STATUSES:
            raise ValueError(f"task record has an unknown status: {self.status!r}")


_COLUMN_TYPES: tuple[tuple[str, tuple[type, ...], bool], ...] = (
    ("id", (str,), False),
    ("func_path", (str,), False),
    ("payload", (str,), False),
    ("status", (str,), False),
    ("attempts", (int,), False),
    ("max_retries", (int,), True),
    ("eta", (int, float), False),
    ("interval", (int, float), True),
    ("timeout", (int, float), True),
    ("result", (str,), True),
    ("error", (str,), True),
)
RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TaskRecord))
STATUSES: tuple[str, ...] = tuple(status.value for status in TaskStatus)
FINAL_STATUSES: frozenset[str] = frozenset(status.value for status in TaskStatus if status.is_final)
_STATUSES = frozenset(STATUSES)


def to_epoch(moment: dt.datetime) -> float:
    """An aware datetime as UTC epoch seconds."""
    return moment.timestamp()


def from_epoch(seconds: float | None) -> dt.datetime | None:
    """UTC epoch seconds as an aware datetime (``None`` stays ``None``)."""
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def encode_payload(serializer: Serializer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``args`` and ``kwargs`` as one encoded text; ``TypeError`` names what cannot be encoded."""
    return serializer.dumps({"args": list(args), "kwargs": kwargs})


def encode_error(error: TaskError) -> str:
    """A ``TaskError`` in its stored (JSON) form."""
    return json.dumps(error.to_dict(), separators=(",", ":"))


def record_from_task(task: Task, serializer: Serializer, payload: str | None = None) -> TaskRecord:
    """The stored form of a new task (``payload`` if already encoded)."""
    return TaskRecord(
        id=task.id,
        func_path=task.func_path,
        payload=payload
        if payload is not None
        else encode_payload(serializer, task.args, task.kwargs),
        status=task.status.value,
        attempts=task.attempts,
        max_retries=task.max_retries,
        eta=to_epoch(task.eta),
        interval=task.interval.total_seconds() if task.interval is not None else None,
        timeout=task.timeout,
        result=None,
        error=encode_error(task.error) if task.error is not None else None,
        created_at=to_epoch(task.created_at),
        updated_at=to_epoch(task.updated_at),
        correlation_id=task.correlation_id,
        parent_id=task.parent_id,
    )


def task_from_record(record: TaskRecord, serializer: Serializer) -> Task:
    """The user-facing :class:`Task` for a stored record; ``ValueError`` if it is corrupt."""
    record.validate()
    try:
        payload = serializer.loads(record.payload)
        args, kwargs = payload["args"], payload["kwargs"]
        result = serializer.loads(record.result) if record.result is not None else None
        error = TaskError.from_dict(json.loads(record.error)) if record.error else None
    except (ValueError, TypeError, KeyError) as failure:
        raise ValueError(f"task {record.id} has a corrupt payload: {failure}") from None
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError(f"task {record.id} has a corrupt payload: args/kwargs of the wrong type")
    return Task(
        id=record.id,
        func_path=record.func_path,
        args=tuple(args),
        kwargs=kwargs,
        status=TaskStatus(record.status),
        attempts=record.attempts,
        max_retries=record.max_retries,
        eta=from_epoch(record.eta) or dt.datetime.now(dt.timezone.utc),
        interval=dt.timedelta(seconds=record.interval) if record.interval is not None else None,
        timeout=record.timeout,
        result=result,
        error=error,
        created_at=from_epoch(record.created_at) or dt.datetime.now(dt.timezone.utc),
        updated_at=from_epoch(record.updated_at) or dt.datetime.now(dt.timezone.utc),
        started_at=from_epoch(record.started_at),
        finished_at=from_epoch(record.finished_at),
        lease_until=from_epoch(record.lease_until),
        attempt_token=record.attempt_token,
        correlation_id=record.correlation_id,
        parent_id=record.parent_id,
    )


@dataclass(frozen=True)
class Transition:
    """How a storage moves a RUNNING task on: the outcome of one attempt.

    ``status`` is the new status; ``eta`` is set for a retry; ``successor`` is a
    new task (the next run of an interval task) to insert in the same transaction.
    ``expired_before`` (recovery of a dead worker's task) applies the transition
    only if the lease still ends before that time: a holder that renewed its
    lease in the meantime is alive and keeps the task.
    """

    status: str
    now: float
    result: str | None = None
    error: str | None = None
    eta: float | None = None
    successor: TaskRecord | None = None
    expired_before: float | None = None

    @property
    def is_final(self) -> bool:
        """Whether the task leaves the RUNNING/PENDING cycle for good."""
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class Outcome:
    """What one attempt of a claimed task came to: a result, or an error.

    ``duration`` is how long the function ran (seconds), for the log.
    """

    task: Task
    result: Any = None
    error: TaskError | None = None
    duration: float | None = None
