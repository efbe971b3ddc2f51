"""The task model shared by both twins: ``Task``, ``TaskStatus``, ``TaskError``.

A :class:`Task` is an immutable snapshot of one stored task. It is also a
read-only mapping, so ``task["status"]`` and ``task.get("error")`` work as the
spec shows, next to attribute access (``task.status``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import threading
import time
import traceback as traceback_module
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omniq import retry
from omniq._validation import (
    check_func_path,
    check_task_id,
    normalize_args,
    normalize_eta,
    normalize_interval,
    normalize_kwargs,
    normalize_max_retries,
    normalize_priority,
    normalize_queue,
    normalize_timeout,
    normalize_unique_key,
)


def utcnow() -> dt.datetime:
    """The current time as an aware UTC datetime."""
    return dt.datetime.now(dt.timezone.utc)


class TaskStatus(str, Enum):
    """Where a task is in its lifecycle. Compares equal to its lowercase name."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        """True for states a task never leaves (completed, failed, cancelled)."""
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class ErrorType:
    """The ``error_type`` values omniq itself writes (users may use their own)."""

    RUNTIME = "runtime"
    TIMEOUT = "timeout"
    IMPORT = "import"
    ARGUMENTS = "arguments"
    SERIALIZATION = "serialization"
    WORKER_LOST = "worker_lost"
    FORBIDDEN = "forbidden"
    """The worker's allow-list refused the task's function (see :mod:`omniq.allowlist`)."""
    HOOK = "hook"
    """A ``before_task`` hook raised, so the task did not run (see :mod:`omniq.hooks`)."""
    CRASHED = "crashed"
    """The process running the task died under it (a signal, ``os._exit``, the OOM killer)."""


@dataclass(frozen=True)
class TaskError:
    """Why a task run failed, kept on the task.

    ``retry_count`` is the number of executions that failed so far and
    ``max_retries`` the task's budget of executions, so :meth:`can_retry` is the
    queue's own retry predicate (``retry_count < max_retries``).
    """

    error_type: str
    message: str
    exception_type: str | None = None
    traceback: str | None = None
    is_retryable: bool = True
    retry_count: int = 0
    max_retries: int | None = None
    timestamp: dt.datetime = field(default_factory=utcnow)

    @classmethod
    def from_exception(
        cls,
        exception: BaseException,
        error_type: str = ErrorType.RUNTIME,
        is_retryable: bool = True,
        retry_count: int = 0,
        max_retries: int | None = None,
    ) -> TaskError:
        """Describe ``exception`` (its type, message and traceback) as a ``TaskError``."""
        exc_type = type(exception)
        formatted = "".join(
            traceback_module.format_exception(exc_type, exception, exception.__traceback__)
        )
        return cls(
            error_type=error_type,
            message=str(exception) or exc_type.__name__,
            exception_type=f"{exc_type.__module__}.{exc_type.__qualname__}",
            traceback=formatted,
            is_retryable=is_retryable,
            retry_count=retry_count,
            max_retries=max_retries,
        )

    def can_retry(self) -> bool:
        """Whether another execution is allowed (retryable and budget not spent)."""
        if not self.is_retryable:
            return False
        return self.max_retries is None or retry.should_retry(self.retry_count, self.max_retries)

    def increment_retry(self) -> TaskError:
        """A copy with ``retry_count`` one higher, for the next attempt."""
        return dataclasses.replace(self, retry_count=self.retry_count + 1, timestamp=utcnow())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the stored form)."""
        data = dataclasses.asdict(self)
        data["timestamp"] = self.timestamp.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskError:
        """Rebuild a ``TaskError`` from :meth:`to_dict` output."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        stamp = values.get("timestamp")
        values["timestamp"] = dt.datetime.fromisoformat(stamp) if stamp else utcnow()
        return cls(**values)

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


class AttemptOutcome:
    """How one execution of a task ended, as its attempt history records it."""

    COMPLETED = "completed"
    FAILED = "failed"  # the last execution: the budget is spent or the error is final
    RETRY = "retry"  # failed, and another execution is scheduled
    TIMEOUT = "timeout"  # ran past its timeout (retried or not)
    LOST = "lost"  # its worker stopped before finishing it (the lease ran out)
    RELEASED = "released"  # put back unfinished at shutdown, without spending the attempt


@dataclass(frozen=True)
class Attempt(Mapping[str, Any]):
    """One execution of a task: who ran it, when, and how it ended. A read-only mapping too.

    ``attempt`` is the task's ``attempts`` count during this execution (1 for the
    first); ``outcome`` is one of :class:`AttemptOutcome`; ``error`` is the
    :class:`TaskError` of a failed execution.
    """

    attempt: int
    worker: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime
    outcome: str
    error: TaskError | None = None

    def __getitem__(self, key: str) -> Any:
        if key not in _ATTEMPT_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_ATTEMPT_FIELDS)

    def __len__(self) -> int:
        return len(_ATTEMPT_FIELDS)


_ATTEMPT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Attempt))


@dataclass(frozen=True)
class Task(Mapping[str, Any]):
    """One stored task, as the queue returns it. Also a read-only mapping of its fields.

    ``attempts`` counts claims (see :mod:`omniq.retry`); ``max_retries`` is the
    budget of executions (``None``: the worker's default); ``interval`` is always
    a ``timedelta`` or ``None``; times are aware UTC datetimes. ``queue`` routes the
    task to the pools serving it; among due tasks a higher ``priority`` runs first;
    while the task is pending or running no other task with its ``unique_key`` can
    be enqueued. ``attempts_history`` lists its executions, oldest first;
    ``worker`` names the pool that claimed it last.
    """

    id: str
    func_path: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    status: TaskStatus = TaskStatus.PENDING
    attempts: int = 0
    max_retries: int | None = retry.DEFAULT_MAX_RETRIES
    eta: dt.datetime = field(default_factory=utcnow)
    interval: dt.timedelta | None = None
    timeout: float | None = None
    result: Any = None
    error: TaskError | None = None
    created_at: dt.datetime = field(default_factory=utcnow)
    updated_at: dt.datetime = field(default_factory=utcnow)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    lease_until: dt.datetime | None = None
    attempt_token: str | None = None
    correlation_id: str | None = None
    parent_id: str | None = None
    queue: str = "default"
    priority: int = 0
    unique_key: str | None = None
    attempts_history: list[Attempt] = field(default_factory=list)
    worker: str | None = None

    def __getitem__(self, key: str) -> Any:
        if key not in _TASK_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_TASK_FIELDS)

    def __len__(self) -> int:
        return len(_TASK_FIELDS)

    __hash__ = None  # type: ignore[assignment]  # args and kwargs are mutable values


_TASK_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Task))
STATUS_OF: dict[str, TaskStatus] = {status.value: status for status in TaskStatus}


def trusted_task(**fields: Any) -> Task:
    """A :class:`Task` from every one of its fields, already checked (a decoded record).

    The frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``;
    a worker decodes every task it claims, so this fills the instance's ``__dict__`` at
    once instead. The caller gives all fields (``omniq.records.task_from_record``).
    """
    task = object.__new__(Task)
    task.__dict__.update(fields)
    return task


_last_id_stamp = 0
_id_lock = threading.Lock()
_random_bits = random.getrandbits  # reseeded by Python in a forked child


def new_attempt_token() -> str:
    """A claim's attempt token: 128 random bits in hex; unique, not secret.

    It fences a stale worker's writes (each claim gets a new one). The bits come from
    the ``random`` module's generator, reseeded by Python in a forked child, rather
    than ``os.urandom``, which releases the GIL: a thread switch in every claim of a
    busy pool.
    """
    return f"{_random_bits(128):032x}"


def new_task_id() -> str:
    """A fresh, unique, time-ordered task id in the UUID version 7 layout (RFC 9562).

    48 bits of Unix milliseconds, then 12 bits of sub-millisecond time made strictly
    increasing within the process, then 62 random bits. Ids made later sort later,
    so index inserts land on the right edge of a B-tree (one page per enqueue), and
    the id breaks ties in enqueue order. The random bits come from the ``random``
    module's generator, which Python reseeds in a forked child; ids are unique, not
    secret (no one can do anything with a guessed id they cannot do with a listed one).
    """
    return new_task_ids(1)[0]


def new_task_ids(count: int) -> list[str]:
    """``count`` fresh ids in increasing order, as :func:`new_task_id` makes them one by one.

    A batch takes its time stamps under one lock: ``count`` consecutive steps of 1/4096
    ms from now (a batch of 10,000 runs 2.4 ms ahead of the clock, and the next id
    follows it).
    """
    global _last_id_stamp
    stamp = time.time_ns() * 4096 // 1_000_000  # Unix time in 1/4096 ms
    with _id_lock:
        first = max(stamp, _last_id_stamp + 1)
        _last_id_stamp = first + count - 1
    bits = _random_bits
    return [_id_text(stamp, bits(62)) for stamp in range(first, first + count)]


def _id_text(stamp: int, random_bits: int) -> str:
    value = (
        (stamp >> 12) << 80  # unix_ts_ms
        | 0x7 << 76  # version 7
        | (stamp & 0xFFF) << 64  # rand_a: the sub-millisecond fraction
        | 0b10 << 62  # variant
        | random_bits
    )
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def create_task(
    func_path: str,
    args: Any = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    max_retries: int | None = retry.DEFAULT_MAX_RETRIES,
    timeout: float | None = None,
    eta: dt.datetime | None = None,
    interval: dt.timedelta | float | None = None,
    task_id: str | None = None,
    correlation_id: str | None = None,
    queue: str = "default",
    priority: int = 0,
    unique_key: str | None = None,
) -> Task:
    """Build a validated PENDING task; bad values raise ``ValueError``/``TypeError``."""
    now = utcnow()
    return Task(
        id=new_task_id() if task_id is None else check_task_id(task_id),
        func_path=check_func_path(func_path),
        args=normalize_args(args),
        kwargs=normalize_kwargs(kwargs),
        max_retries=normalize_max_retries(max_retries),
        timeout=normalize_timeout(timeout),
        eta=normalize_eta(eta) or now,
        interval=normalize_interval(interval),
        created_at=now,
        updated_at=now,
        correlation_id=correlation_id,
        queue=normalize_queue(queue),
        priority=normalize_priority(priority),
        unique_key=normalize_unique_key(unique_key),
    )


def has_error(task: Mapping[str, Any]) -> bool:
    """Whether the task carries a ``TaskError``."""
    return task.get("error") is not None


def is_failed(task: Mapping[str, Any]) -> bool:
    """Whether the task ended FAILED."""
    return task.get("status") == TaskStatus.FAILED


def get_error_message(task: Mapping[str, Any]) -> str | None:
    """The task's error message, or ``None`` when it has no error."""
    error = task.get("error")
    if error is None:
        return None
    return error.message if isinstance(error, TaskError) else str(error)
