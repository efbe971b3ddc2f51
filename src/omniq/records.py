"""The stored form of a task, and its conversion to and from :class:`~omniq.models.Task`.

Every backend, in both twins, stores a :class:`TaskRecord`: plain columns
(str, int, float epoch seconds) with ``args``/``kwargs`` and the result already
encoded by the queue's serializer. So storages never see user objects, and one
on-disk format serves both twins.

Reading a record back has two modes. :func:`task_from_record` is strict: any
value it cannot decode, or that lies outside :mod:`omniq.limits` (a time past
year 9999, an interval of zero), makes the record corrupt (``ValueError``), so a
worker fails that one task instead of running it. :func:`readable_task` is for
showing a task (``get_task``, ``list_tasks``): it decodes what it can and explains
the rest in the task's ``error``, so a damaged task can still say why it failed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from omniq import limits
from omniq._validation import check_text
from omniq.history import decode_history
from omniq.models import STATUS_OF, ErrorType, Task, TaskError, TaskStatus, trusted_task
from omniq.serialization import NO_ARGUMENTS, JsonSerializer, Serializer, encode, plain_payload


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
    queue: str = "default"
    priority: int = 0
    unique_key: str | None = None
    history: str | None = None  # JSON list of attempts (omniq.history), oldest first
    worker: str | None = None  # the pool that claimed the task last

    def copy(self) -> TaskRecord:
        """A shallow copy (every field is immutable): ``copy.copy`` at a quarter of its cost."""
        twin = object.__new__(TaskRecord)
        twin.__dict__.update(self.__dict__)
        return twin

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
        """Check the column types, so a corrupt row is caught when read, not when run.

        Every claimed row is checked, so the common shapes are remembered: a row whose
        fields have the types of a row that passed before (and a known status) passes
        at the cost of one tuple built and looked up.
        """
        values = self.__dict__
        shape = tuple(map(type, values.values()))
        if shape in _GOOD_SHAPES and values["status"] in _STATUSES:
            return
        for name, types, nullable in _COLUMN_TYPES:
            value = getattr(self, name)
            if value is None and nullable:
                continue
            if type(value) not in types:  # exact types: a bool is not an int here
                raise ValueError(f"task record field {name!r} has a bad value: {value!r}")
        if self.status not in _STATUSES:
            raise ValueError(f"task record has an unknown status: {self.status!r}")
        if len(_GOOD_SHAPES) < 256:  # bounded: a store cannot make this grow without end
            _GOOD_SHAPES.add(shape)


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
    ("queue", (str,), False),
    ("priority", (int,), False),
    ("unique_key", (str,), True),
    ("history", (str,), True),
    ("worker", (str,), True),
)
RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TaskRecord))
STATUSES: tuple[str, ...] = tuple(status.value for status in TaskStatus)
FINAL_STATUSES: frozenset[str] = frozenset(status.value for status in TaskStatus if status.is_final)
_STATUSES = frozenset(STATUSES)
# Field types (in field order) of records that passed TaskRecord.validate().
_GOOD_SHAPES: set[tuple[type, ...]] = set()


def to_epoch(moment: dt.datetime) -> float:
    """An aware datetime as UTC epoch seconds."""
    return moment.timestamp()


_MIN_STORED_EPOCH = limits.MIN_STORED_TIME.timestamp()
_MAX_STORED_EPOCH = limits.MAX_STORED_TIME.timestamp()


def from_epoch(seconds: float | None) -> dt.datetime | None:
    """UTC epoch seconds as an aware datetime (``None`` stays ``None``).

    ``ValueError`` for a time outside :data:`~omniq.limits.MIN_STORED_TIME` ..
    :data:`~omniq.limits.MAX_STORED_TIME` (NaN included), which no valid task has.
    """
    if seconds is None:
        return None
    if not _MIN_STORED_EPOCH <= seconds <= _MAX_STORED_EPOCH:  # False for NaN too
        raise ValueError(f"the time {seconds!r} (epoch seconds) is out of range")
    if seconds >= 0:
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    # fromtimestamp() refuses negative epochs on Windows; this works everywhere.
    return limits.EPOCH + dt.timedelta(seconds=seconds)


def _stored_interval(seconds: float | None) -> dt.timedelta | None:
    if seconds is None:
        return None
    if not limits.MIN_INTERVAL_SECONDS <= seconds <= limits.MAX_DURATION_SECONDS:
        raise ValueError(f"the interval {seconds!r} (seconds) is out of range")
    return dt.timedelta(seconds=seconds)


def _stored_timeout(seconds: float | None) -> float | None:
    if seconds is not None and not 0 < seconds <= limits.MAX_WAIT_SECONDS:
        raise ValueError(f"the timeout {seconds!r} (seconds) is out of range")
    return seconds


def encode_payload(serializer: Serializer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``args`` and ``kwargs`` as one encoded text.

    ``TypeError`` names what cannot be encoded; ``ValueError`` refuses too deep a
    value or a lone surrogate (see :func:`omniq.serialization.encode`).
    """
    if type(serializer) is JsonSerializer:
        text = plain_payload(args, kwargs)
        if text is not None:
            return check_text(text, "the encoded text of the arguments")
    return encode(serializer, {"args": list(args), "kwargs": kwargs}, "the arguments")


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
        queue=task.queue,
        priority=task.priority,
        unique_key=task.unique_key,
    )


def _decode_payload(
    record: TaskRecord, serializer: Serializer
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if record.payload == NO_ARGUMENTS and type(serializer) is JsonSerializer:
        return (), {}  # the payload of a task called without arguments: nothing to decode
    payload = serializer.loads(record.payload)
    args, kwargs = payload["args"], payload["kwargs"]
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("args/kwargs of the wrong type")
    return tuple(args), kwargs


def _decode_error(text: str | None) -> TaskError | None:
    return TaskError.from_dict(json.loads(text)) if text else None


def _decoding_failure(failure: Exception) -> str:
    # A RecursionError or OverflowError says little on its own: name its type.
    text = str(failure)
    if isinstance(failure, (ValueError, TypeError, KeyError)) and text:
        return text
    return f"{type(failure).__name__}: {text}" if text else type(failure).__name__


def task_from_record(record: TaskRecord, serializer: Serializer) -> Task:
    """The user-facing :class:`Task` for a stored record; ``ValueError`` if it is corrupt.

    Corrupt is anything that cannot be decoded, whatever the codec raises
    (``RecursionError`` for a too deeply nested payload, ``OverflowError``...), and
    any time, interval or timeout outside :mod:`omniq.limits`.
    """
    record.validate()
    try:
        args, kwargs = _decode_payload(record, serializer)
        result = serializer.loads(record.result) if record.result is not None else None
        error = _decode_error(record.error)
        eta = from_epoch(record.eta)
        interval = _stored_interval(record.interval)
        timeout = _stored_timeout(record.timeout)
        created_at = from_epoch(record.created_at)
        # A claim stamps started_at and updated_at with one time, and a new task has
        # created_at == updated_at: convert each distinct time once (a claimed row).
        updated_at = (
            created_at if record.updated_at == record.created_at else from_epoch(record.updated_at)
        )
        started_at = (
            updated_at if record.started_at == record.updated_at else from_epoch(record.started_at)
        )
        finished_at = from_epoch(record.finished_at)
        lease_until = from_epoch(record.lease_until)
        attempts_history = decode_history(record.history) if record.history else []
    except MemoryError:
        raise
    except Exception as failure:
        raise ValueError(
            f"task {record.id} has a corrupt record: {_decoding_failure(failure)}"
        ) from None
    assert eta is not None and created_at is not None and updated_at is not None
    return trusted_task(
        id=record.id,
        func_path=record.func_path,
        args=args,
        kwargs=kwargs,
        status=STATUS_OF[record.status],
        attempts=record.attempts,
        max_retries=record.max_retries,
        eta=eta,
        interval=interval,
        timeout=timeout,
        result=result,
        error=error,
        created_at=created_at,
        updated_at=updated_at,
        started_at=started_at,
        finished_at=finished_at,
        lease_until=lease_until,
        attempt_token=record.attempt_token,
        correlation_id=record.correlation_id,
        parent_id=record.parent_id,
        queue=record.queue,
        priority=record.priority,
        unique_key=record.unique_key,
        attempts_history=attempts_history,
        worker=record.worker,
    )


T = TypeVar("T")


class _Salvage:
    """Decodes one field at a time for :func:`readable_task`, noting each failure."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def get(self, what: str, decode: Callable[[], T], fallback: T) -> T:
        try:
            return decode()
        except MemoryError:
            raise
        except Exception as failure:
            self.problems.append(f"its {what} cannot be decoded ({_decoding_failure(failure)})")
            return fallback

    def typed(self, what: str, value: Any, types: tuple[type, ...], fallback: Any) -> Any:
        if type(value) in types:  # exact types, as TaskRecord.validate checks them
            return value
        self.problems.append(f"its {what} has a bad value: {value!r:.80}")
        return fallback


def readable_task(record: TaskRecord, serializer: Serializer) -> Task:
    """The task for showing, however damaged its record: never raises but for its status.

    Fields that cannot be decoded are left empty (args ``()``, kwargs ``{}``, no
    result; times at the epoch) and the task's ``error`` says which and why. A
    stored ``serialization`` error (the worker's own diagnosis) is kept as it is.
    Only a record whose status omniq does not know raises ``ValueError``: such a
    task is no task omniq could run, cancel or retry.
    """
    try:
        return task_from_record(record, serializer)
    except ValueError:
        pass
    if not isinstance(record.status, str) or record.status not in _STATUSES:
        raise ValueError(f"task {record.id!r} has an unknown status: {record.status!r:.80}")
    salvage = _Salvage()
    nothing: tuple[tuple[Any, ...], dict[str, Any]] = ((), {})
    payload = salvage.get("arguments", lambda: _decode_payload(record, serializer), nothing)
    result = salvage.get(
        "result",
        lambda: serializer.loads(record.result) if record.result is not None else None,
        None,
    )
    stored_error = salvage.get("stored error", lambda: _decode_error(record.error), None)

    def time(what: str, seconds: Any) -> dt.datetime | None:
        return salvage.get(what, lambda: from_epoch(seconds), None)

    def required_time(what: str, seconds: Any) -> dt.datetime:
        return time(what, seconds) or limits.EPOCH  # the epoch: "unknown", explained in error

    attempts = salvage.typed("attempts", record.attempts, (int,), 0)
    task = Task(
        id=str(record.id),
        func_path=str(record.func_path),
        args=payload[0],
        kwargs=payload[1],
        status=TaskStatus(record.status),
        attempts=attempts,
        max_retries=salvage.typed("max_retries", record.max_retries, (int, type(None)), None),
        eta=required_time("eta", record.eta),
        interval=salvage.get("interval", lambda: _stored_interval(record.interval), None),
        timeout=salvage.get("timeout", lambda: _stored_timeout(record.timeout), None),
        result=result,
        error=stored_error,
        created_at=required_time("created_at", record.created_at),
        updated_at=required_time("updated_at", record.updated_at),
        started_at=time("started_at", record.started_at),
        finished_at=time("finished_at", record.finished_at),
        lease_until=time("lease_until", record.lease_until),
        attempt_token=record.attempt_token,
        correlation_id=record.correlation_id,
        parent_id=record.parent_id,
        queue=salvage.typed("queue", record.queue, (str,), "default"),
        priority=salvage.typed("priority", record.priority, (int,), 0),
        unique_key=salvage.typed("unique_key", record.unique_key, (str, type(None)), None),
        attempts_history=salvage.get("attempt history", lambda: decode_history(record.history), []),
        worker=salvage.typed("worker", record.worker, (str, type(None)), None),
    )
    if not salvage.problems or (
        stored_error is not None and stored_error.error_type == ErrorType.SERIALIZATION
    ):
        return task
    message = f"the stored task cannot be fully decoded: {'; '.join(salvage.problems)}"
    if stored_error is not None:
        message += f" (its stored error: {stored_error})"
    explained = TaskError(
        error_type=ErrorType.SERIALIZATION,
        message=message,
        is_retryable=False,
        retry_count=attempts,
        max_retries=task.max_retries,
    )
    return dataclasses.replace(task, error=explained)


@dataclass
class StateRecord:
    """A small named record a store keeps beside its tasks: a schedule, a worker's entry.

    ``kind`` groups them (``"schedule"``, ``"worker"``); ``data`` is JSON text the
    store never reads; ``mark`` is a number that only moves forward (a schedule's
    last fire time), advanced atomically with the tasks it stands for.
    """

    kind: str
    name: str
    data: str
    updated_at: float
    mark: float | None = None


@dataclass(frozen=True)
class Transition:
    """How a storage moves a RUNNING task on: the outcome of one attempt.

    ``status`` is the new status; ``eta`` is set for a retry; ``successor`` is a
    new task (the next run of an interval task) to insert in the same transaction.
    ``expired_before`` (recovery of a dead worker's task) applies the transition
    only if the lease still ends before that time: a holder that renewed its
    lease in the meantime is alive and keeps the task. ``history`` is the task's
    whole attempt history with this attempt appended, stored with the outcome.
    """

    status: str
    now: float
    result: str | None = None
    error: str | None = None
    eta: float | None = None
    successor: TaskRecord | None = None
    expired_before: float | None = None
    history: str | None = None

    @property
    def is_final(self) -> bool:
        """Whether the task leaves the RUNNING/PENDING cycle for good."""
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class Outcome:
    """What one attempt of a claimed task came to: a result, or an error.

    ``duration`` is how long the function ran (seconds), for the log;
    ``started_at`` when it started (epoch seconds), for the attempt history.
    """

    task: Task
    result: Any = None
    error: TaskError | None = None
    duration: float | None = None
    started_at: float | None = None


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks a listing wants (:meth:`find_tasks` of a storage). ``None``: any.

    ``func_contains`` and ``id_contains`` match a piece of the function path or of
    the id (case-sensitive, no wildcards); ``parent_id`` finds the next runs of an
    interval task.
    """

    status: str | None = None
    queue: str | None = None
    func_contains: str | None = None
    id_contains: str | None = None
    parent_id: str | None = None

    @property
    def is_simple(self) -> bool:
        """Whether only ``status`` and ``queue`` are set (what ``list_tasks`` can do)."""
        return self.func_contains is None and self.id_contains is None and self.parent_id is None

    def matches(self, record: TaskRecord) -> bool:
        """Whether ``record`` passes every condition set."""
        return (
            (self.status is None or record.status == self.status)
            and (self.queue is None or record.queue == self.queue)
            and (self.func_contains is None or self.func_contains in record.func_path)
            and (self.id_contains is None or self.id_contains in record.id)
            and (self.parent_id is None or record.parent_id == self.parent_id)
        )
