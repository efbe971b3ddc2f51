"""The records an enqueue stores: ``enqueue`` arguments checked, encoded, made PENDING.

Pure, shared by both twins: nothing here touches a store. The queue passes its own
settings (serializer, default budget, payload limit, allow-list) with each call, so a
record is built exactly as :func:`omniq.tasks.create_task` would check it, without a
:class:`~omniq.models.Task` in between (enqueue is a hot path).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from omniq import logging as omniq_logging
from omniq._validation import (
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
from omniq.allowlist import AllowList
from omniq.exceptions import StorageError
from omniq.models import TaskStatus, new_task_id, new_task_ids
from omniq.records import TaskRecord, encode_payload
from omniq.serialization import NO_ARGUMENTS, JsonSerializer, Serializer
from omniq.task_context import DEFAULT_QUEUE
from omniq.tasks import declared_options, func_path_of

ENQUEUE_OPTIONS = frozenset(
    (
        "func_path",
        "args",
        "kwargs",
        "eta",
        "interval",
        "max_retries",
        "timeout",
        "queue",
        "priority",
        "unique_key",
    )
)
"""The keys an ``enqueue_many`` item may have: ``enqueue``'s arguments."""
PENDING = TaskStatus.PENDING.value


class Target(NamedTuple):
    """A function to enqueue, resolved: its path and its normalized enqueue defaults."""

    func_path: str
    queue: str
    priority: int
    budget: int | None
    timeout: float | None


def _resolve(target: Callable[..., Any] | str, default_max_retries: int) -> Target:
    """The path of ``target`` and its defaults: the declared task's, then the queue's."""
    func_path = func_path_of(target)
    declared = declared_options(func_path)
    budget = default_max_retries if declared.max_retries is None else declared.max_retries
    return Target(
        func_path,
        normalize_queue(declared.queue or DEFAULT_QUEUE),
        normalize_priority(0 if declared.priority is None else declared.priority),
        normalize_max_retries(budget),
        normalize_timeout(declared.timeout),
    )


def records_for(
    items: Iterable[Mapping[str, Any]],
    *,
    serializer: Serializer,
    default_max_retries: int,
    max_payload_bytes: int | None,
    allow: AllowList,
    check_paths: bool = True,
    first_position: int = 0,
) -> list[TaskRecord]:
    """The validated, encoded records of ``enqueue_many`` items (see :func:`new_record`).

    ``first_position`` is the first item's position in the caller's batch (errors name
    it), when the batch is built a chunk at a time.

    What every item of one batch shares is worked out once: each distinct target's
    function and defaults, the time, the correlation id, and the ids (one lock for all).
    """
    batch = items if isinstance(items, Sequence) else list(items)
    ids = new_task_ids(len(batch))
    now = time.time()
    correlation_id = omniq_logging.current_correlation_id()
    records: list[TaskRecord] = []
    resolved: dict[object, Target] = {}
    for position, item in enumerate(batch):
        if not item.keys() <= ENQUEUE_OPTIONS or "func_path" not in item:
            raise TypeError(
                f"enqueue_many item {first_position + position} must have 'func_path' and only "
                f"{sorted(ENQUEUE_OPTIONS)}; got keys {sorted(item)}"
            )
        get = item.get
        records.append(
            new_record(
                item["func_path"],
                get("args"),
                get("kwargs"),
                get("eta"),
                get("interval"),
                get("max_retries"),
                get("timeout"),
                get("queue"),
                get("priority"),
                get("unique_key"),
                serializer=serializer,
                default_max_retries=default_max_retries,
                max_payload_bytes=max_payload_bytes,
                allow=allow,
                check_paths=check_paths,
                resolved=resolved,
                stamp=(ids[position], now, correlation_id),
            )
        )
    return records


def new_record(
    func_path: Callable[..., Any] | str,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    eta: dt.datetime | None,
    interval: dt.timedelta | float | None,
    max_retries: int | None,
    timeout: float | None,
    queue: str | None,
    priority: int | None,
    unique_key: str | None,
    *,
    serializer: Serializer,
    default_max_retries: int,
    max_payload_bytes: int | None,
    allow: AllowList,
    check_paths: bool = True,
    resolved: dict[object, Target] | None = None,
    stamp: tuple[str, float, str | None] | None = None,
) -> TaskRecord:
    """A validated, encoded PENDING record (the checks of :func:`create_task`).

    Options left ``None`` take the declared task's (``@task(...)``), then the
    queue's defaults (``default_max_retries``, the ``"default"`` queue, priority 0).
    ``check_paths=False`` skips the producer's allow-list check of a string path;
    the path is recorded in ``allow`` as enqueued either way. ``resolved`` (a batch's)
    remembers targets already resolved and checked. ``stamp`` is the record's id,
    creation time and correlation id when a batch chose them (else: new, now, the
    caller's).
    """
    target = func_path
    known = None
    if resolved is not None:
        try:
            known = resolved.get(target)
        except TypeError:  # an unhashable callable: resolved on its own
            resolved = None
    resolving = known is None
    if known is None:
        known = _resolve(target, default_max_retries)
    func_path = known.func_path
    # What an item leaves None takes the target's defaults, normalized once per target.
    queue = known.queue if queue is None else normalize_queue(queue)
    priority = known.priority if priority is None else normalize_priority(priority)
    unique_key = None if unique_key is None else normalize_unique_key(unique_key)
    budget = known.budget if max_retries is None else normalize_max_retries(max_retries)
    seconds = known.timeout if timeout is None else normalize_timeout(timeout)
    step = None if interval is None else normalize_interval(interval)
    moment = None if eta is None else normalize_eta(eta)
    no_arguments = args is None and kwargs is None and type(serializer) is JsonSerializer
    payload = (
        NO_ARGUMENTS
        if no_arguments and (max_payload_bytes is None or max_payload_bytes >= len(NO_ARGUMENTS))
        else encode_arguments(
            func_path, normalize_args(args), normalize_kwargs(kwargs), serializer, max_payload_bytes
        )
    )
    if resolving:
        if check_paths and isinstance(target, str):  # last: it may import the function
            allow.check_enqueue(func_path)
        allow.record_enqueued(func_path)  # rule 3: workers on this queue may run it
        if resolved is not None:
            resolved[target] = known
    if stamp is None:
        task_id, now = new_task_id(), time.time()
        correlation_id = omniq_logging.current_correlation_id()
    else:
        task_id, now, correlation_id = stamp
    return TaskRecord(
        id=task_id,
        func_path=func_path,
        payload=payload,
        status=PENDING,
        attempts=0,
        max_retries=budget,
        eta=now if moment is None else moment.timestamp(),
        interval=None if step is None else step.total_seconds(),
        timeout=seconds,
        result=None,
        error=None,
        created_at=now,
        updated_at=now,
        correlation_id=correlation_id,
        queue=queue,
        priority=priority,
        unique_key=unique_key,
    )


def encode_arguments(
    func_path: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    serializer: Serializer,
    max_payload_bytes: int | None,
) -> str:
    """A task's encoded payload; ``TypeError``/``ValueError`` naming the task if it cannot be,
    or if it is over ``max_payload_bytes``."""
    try:
        payload = encode_payload(serializer, args, kwargs)
    except (TypeError, ValueError) as error:
        raise type(error)(f"cannot enqueue {func_path}: {error}") from None
    limit = max_payload_bytes
    if limit is not None and len(payload) * 4 > limit:  # UTF-8: at most 4 bytes a char
        size = len(payload.encode("utf-8"))
        if size > limit:
            raise ValueError(
                f"cannot enqueue {func_path}: its arguments encode to {size} bytes, over "
                f"the limit of {limit} (Settings.max_payload_bytes); store big data "
                "elsewhere and pass a reference"
            )
    return payload


def log_stored(records: Sequence[TaskRecord], ids: Sequence[str]) -> bool:
    """Log each record as enqueued, or as deduplicated when ``ids`` names another task.

    ``ids`` are the store's answer, one per record; returns whether any record was stored.
    """
    stored = False
    for record, task_id in zip(records, ids, strict=True):
        correlation_id = record.correlation_id or record.id
        if task_id == record.id:
            stored = True
            omniq_logging.log_task_enqueued(
                record.id, record.func_path, correlation_id=correlation_id
            )
        else:
            omniq_logging.log_task_deduplicated(
                task_id, record.func_path, record.unique_key, correlation_id=correlation_id
            )
    return stored


@contextlib.contextmanager
def reported_as_storage_errors() -> Iterator[None]:
    """A store's failure to add tasks, as one clear ``StorageError`` at the enqueuing call.

    Driver errors (``sqlite3.OperationalError``: disk full, read-only...) become one too;
    anything else (a bad item found while a stream was built) passes through as it is.
    """
    try:
        yield
    except (OSError, StorageError) as error:
        omniq_logging.log_storage_error("enqueue", str(error))
        raise StorageError(f"could not store the task: {error}") from error
    except Exception as error:
        if type(error).__module__.split(".")[0] in ("sqlite3", "aiosqlite", "psycopg"):
            omniq_logging.log_storage_error("enqueue", str(error))
            raise StorageError(f"could not store the task: {error}") from error
        raise
