"""``AsyncTaskQueue``: enqueue, claim, complete and fail tasks; the queue owns the policy.

The queue validates input at the call that made it, encodes arguments, applies
the retry budget and backoff (:mod:`omniq.retry`), schedules the next run of
interval tasks and recovers tasks whose worker died. The storage only persists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from omniq import logging as omniq_logging
from omniq import retry
from omniq._async.group_commit import AsyncGroupCommit
from omniq._async.storage.adapter import as_storage
from omniq._async.storage.base import AsyncBaseStorage
from omniq._concurrency import asleep
from omniq._validation import (
    check_task_id,
    non_negative_int,
    normalize_age,
    normalize_args,
    normalize_eta,
    normalize_interval,
    normalize_kwargs,
    normalize_max_retries,
    normalize_priority,
    normalize_queue,
    normalize_search,
    normalize_timeout,
    normalize_unique_key,
    positive_int,
    positive_number,
)
from omniq.allowlist import AllowList
from omniq.blocking_storage import BlockingStorage
from omniq.exceptions import StorageError
from omniq.history import append_history, failure_outcome, history_entry, stored_history
from omniq.models import AttemptOutcome, ErrorType, Task, TaskError, TaskStatus, new_task_id
from omniq.records import (
    FINAL_STATUSES,
    STATUSES,
    Outcome,
    TaskFilter,
    TaskRecord,
    Transition,
    encode_error,
    encode_payload,
    from_epoch,
    readable_task,
    record_from_task,
    task_from_record,
)
from omniq.serialization import DEFAULT_SERIALIZER, Serializer, encode
from omniq.tasks import declared_options, func_path_of

DEFAULT_LEASE_TIMEOUT = 30.0
_ENQUEUE_OPTIONS = frozenset(
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
_RECOVERY_BATCH = 100
DEFAULT_QUEUE = "default"
PRUNE_BATCH = 1000  # tasks deleted per transaction by prune(): a short hold of the write lock
FINAL_STATUS_VALUES = tuple(sorted(FINAL_STATUSES))


class AsyncTaskQueue:
    """The task queue engine: scheduling, claiming, retries and interval tasks.

    ``storage`` is any omniq storage (a blocking one works too). ``max_retries``
    is the budget for tasks enqueued without one; ``lease_timeout`` is how long a
    claim holds a task before another worker may take it over (running workers
    renew it while the task runs).
    """

    def __init__(
        self,
        storage: AsyncBaseStorage | BlockingStorage,
        serializer: Serializer | None = None,
        *,
        max_retries: int = retry.DEFAULT_MAX_RETRIES,
        lease_timeout: float = DEFAULT_LEASE_TIMEOUT,
        max_payload_bytes: int | None = None,
        allow: AllowList | None = None,
    ) -> None:
        self.storage = as_storage(storage)
        self.serializer = serializer or DEFAULT_SERIALIZER
        budget = normalize_max_retries(max_retries)
        if budget is None:
            raise TypeError("max_retries must be an int >= 0, got None")
        self.max_retries = budget
        self.lease_timeout = positive_number("lease_timeout", lease_timeout)
        self.max_payload_bytes = max_payload_bytes
        # What workers on this queue may run (declared tasks, allowed modules, and
        # the paths this queue enqueued): see omniq.allowlist.
        self.allow = AllowList() if allow is None else allow
        self._adds = AsyncGroupCommit(self.storage)
        self._listeners: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.storage!r})"

    async def open(self) -> None:
        """Open the storage (also done on first use)."""
        await self.storage.open()

    async def close(self) -> None:
        """Close the storage."""
        await self.storage.close()

    async def __aenter__(self) -> AsyncTaskQueue:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever this queue makes a task due now (enqueue, release).

        Worker pools on this queue listen, so a task enqueued in the same process
        starts at once instead of at the next poll. Callbacks must be quick and
        thread-safe.
        """
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    def notify(self) -> None:
        """Tell this queue's listeners (its pools) that a task is due now."""
        for callback in list(self._listeners):
            callback()

    async def next_eta(self, queues: Sequence[str] | None = None) -> dt.datetime | None:
        """When the earliest pending task (of ``queues``, or any) is due, if the store knows."""
        eta = await self.storage.next_eta(queues)
        try:
            return from_epoch(eta)
        except (TypeError, ValueError) as error:  # a corrupt row; a claim will fail it
            omniq_logging.log_serialization_error("next_eta", str(error))
            return None

    # ------------------------------------------------------------------ producing

    async def enqueue(
        self,
        func_path: Callable[..., Any] | str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        eta: dt.datetime | None = None,
        interval: dt.timedelta | float | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
    ) -> str:
        """Store a new task and return its id.

        ``func_path`` is a ``"module.function"`` path or the function itself (a task
        declared with ``@task``, whose declared options are the defaults here, or any
        importable function). With ``Settings.task_modules`` configured, a string path
        outside them is refused here (``ValueError``) instead of in the worker.

        ``eta`` delays the first run (a naive datetime is local time);
        ``interval`` (a ``timedelta`` or seconds) repeats the task after each run;
        ``max_retries`` is the total number of executions allowed (default: the
        queue's); ``timeout`` bounds each execution in seconds. ``queue`` names the
        queue (pools serve some queues or all); among due tasks a higher
        ``priority`` (-100..100) runs first. While a task with the same
        ``unique_key`` is pending or running, nothing is stored and that task's id
        is returned. ``queue`` defaults to ``"default"`` and ``priority`` to 0 (or the
        declared task's). Bad values raise ``ValueError``/``TypeError`` here, before
        anything is stored.
        """
        record = self._new_record(
            func_path,
            args,
            kwargs,
            eta,
            interval,
            max_retries,
            timeout,
            queue,
            priority,
            unique_key,
        )
        (task_id,) = await self._store([record])
        return task_id

    async def enqueue_many(self, items: Iterable[Mapping[str, Any]]) -> list[str]:
        """Store many tasks in one transaction and return their ids, in order.

        Each item is a mapping of :meth:`enqueue`'s arguments (``func_path``
        required). Every item is validated and encoded before anything is
        stored, so one bad item stores none.
        """
        records = self.records_for(items)
        return await self._store(records) if records else []

    def records_for(
        self, items: Iterable[Mapping[str, Any]], *, check_paths: bool = True
    ) -> list[TaskRecord]:
        """The validated, encoded records of :meth:`enqueue_many` items, not stored yet.

        ``check_paths=False`` skips the producer's allow-list check of string paths
        (a schedule's fire: a path that vanished must fail its task in the worker,
        visibly, instead of stopping the schedule).
        """
        records: list[TaskRecord] = []
        for position, item in enumerate(items):
            unknown = set(item) - _ENQUEUE_OPTIONS
            if unknown or "func_path" not in item:
                raise TypeError(
                    f"enqueue_many item {position} must have 'func_path' and only "
                    f"{sorted(_ENQUEUE_OPTIONS)}; got keys {sorted(item)}"
                )
            records.append(
                self._new_record(
                    item["func_path"],
                    item.get("args"),
                    item.get("kwargs"),
                    item.get("eta"),
                    item.get("interval"),
                    item.get("max_retries"),
                    item.get("timeout"),
                    item.get("queue"),
                    item.get("priority"),
                    item.get("unique_key"),
                    check_paths,
                )
            )
        return records

    def _new_record(
        self,
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
        check_paths: bool = True,
    ) -> TaskRecord:
        """A validated, encoded PENDING record (the checks of :func:`create_task`).

        Built directly, without a :class:`Task` in between: enqueue is a hot path.
        Options left ``None`` take the declared task's (``@task(...)``), then the
        queue's defaults.
        """
        target = func_path
        func_path = func_path_of(target)
        declared = declared_options(func_path)
        queue = normalize_queue((declared.queue or DEFAULT_QUEUE) if queue is None else queue)
        if priority is None:
            priority = declared.priority if declared.priority is not None else 0
        priority = normalize_priority(priority)
        if max_retries is None:
            max_retries = declared.max_retries
        if timeout is None:
            timeout = declared.timeout
        unique_key = normalize_unique_key(unique_key)
        budget = normalize_max_retries(self.max_retries if max_retries is None else max_retries)
        seconds = normalize_timeout(timeout)
        step = normalize_interval(interval)
        moment = normalize_eta(eta)
        payload = self._encode(func_path, normalize_args(args), normalize_kwargs(kwargs))
        if check_paths and isinstance(target, str):  # last: it may import the function
            self.allow.check_enqueue(func_path)
        self.allow.record_enqueued(func_path)  # rule 3: workers on this queue may run it
        now = time.time()
        return TaskRecord(
            id=new_task_id(),
            func_path=func_path,
            payload=payload,
            status=TaskStatus.PENDING.value,
            attempts=0,
            max_retries=budget,
            eta=now if moment is None else moment.timestamp(),
            interval=None if step is None else step.total_seconds(),
            timeout=seconds,
            result=None,
            error=None,
            created_at=now,
            updated_at=now,
            correlation_id=omniq_logging.current_correlation_id(),
            queue=queue,
            priority=priority,
            unique_key=unique_key,
        )

    def _encode(self, func_path: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        try:
            payload = encode_payload(self.serializer, args, kwargs)
        except (TypeError, ValueError) as error:
            raise type(error)(f"cannot enqueue {func_path}: {error}") from None
        limit = self.max_payload_bytes
        if limit is not None and len(payload) * 4 > limit:  # UTF-8: at most 4 bytes a char
            size = len(payload.encode("utf-8"))
            if size > limit:
                raise ValueError(
                    f"cannot enqueue {func_path}: its arguments encode to {size} bytes, over "
                    f"the limit of {limit} (Settings.max_payload_bytes); store big data "
                    "elsewhere and pass a reference"
                )
        return payload

    async def _store(self, records: list[TaskRecord]) -> list[str]:
        """Add ``records``; return the id standing for each (a unique key's holder, or its own)."""
        try:
            ids = await self._adds.add(records)  # concurrent callers share commits
        except (OSError, StorageError) as error:
            omniq_logging.log_storage_error("enqueue", str(error))
            raise StorageError(f"could not store the task: {error}") from error
        except Exception as error:
            # Driver errors (sqlite3.OperationalError: disk full, read-only...) are
            # reported as one clear StorageError at the call that enqueued.
            if type(error).__module__.split(".")[0] in ("sqlite3", "aiosqlite", "psycopg"):
                omniq_logging.log_storage_error("enqueue", str(error))
                raise StorageError(f"could not store the task: {error}") from error
            raise
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
        if stored:
            self.notify()
        return ids

    # ------------------------------------------------------------------ consuming

    async def dequeue(self) -> Task | None:
        """Claim the oldest due task (by eta, then enqueue order), or ``None``."""
        tasks = await self.dequeue_many(1)
        return tasks[0] if tasks else None

    async def dequeue_many(self, limit: int, lease_timeout: float | None = None) -> list[Task]:
        """Claim up to ``limit`` due tasks in one storage round-trip.

        Each claim holds its task for ``lease_timeout`` seconds (default: the
        queue's) unless renewed by :meth:`heartbeat`. A stored task that cannot be
        decoded is failed on the spot (and logged), so one corrupt record never
        stops a worker.
        """
        _, tasks = await self.settle_and_claim((), limit, lease_timeout)
        return tasks

    async def complete_task(
        self, task_id: str, result: Any = None, task: Task | None = None
    ) -> bool:
        """Store ``result`` and mark the task COMPLETED.

        For an interval task the next run is enqueued, as a new task, in the same
        transaction. A result the serializer cannot encode fails the task instead
        (not retried). Returns False when this attempt no longer holds the task
        (its lease was taken over): the newer attempt's outcome is left alone.
        """
        task = await self._held_task(task_id, task)
        return (await self.record_outcomes([Outcome(task, result=result)]))[0]

    async def fail_task(
        self,
        task_id: str,
        error: str | BaseException | TaskError,
        task: Task | None = None,
        *,
        default_max_retries: int | None = None,
    ) -> bool:
        """Record a failed attempt; retry with backoff iff ``attempts < max_retries``.

        ``error`` may be a message, an exception or a :class:`TaskError`. A
        non-retryable error fails the task at once. On final failure the task is
        FAILED with the ``TaskError`` kept on it (and an interval task's next run
        is still scheduled). Returns False when this attempt no longer holds the task.
        """
        task = await self._held_task(task_id, task)
        outcome = Outcome(task, error=_as_task_error(error))
        return (await self.record_outcomes([outcome], default_max_retries))[0]

    async def record_outcomes(
        self,
        outcomes: Sequence[Outcome],
        default_max_retries: int | None = None,
        worker: str | None = None,
    ) -> list[bool]:
        """Record the outcomes of several attempts in one storage transaction.

        Each is applied as :meth:`complete_task` or :meth:`fail_task` would apply
        it. Returns, per outcome, whether its attempt still held the task. Worker
        pools call this with the outcomes gathered since their last write, so a
        busy pool commits once for many tasks; a crash before the write leaves
        those tasks RUNNING until their lease ends, then they run again.
        """
        held, _ = await self.settle_and_claim(outcomes, 0, None, default_max_retries, worker)
        return held

    async def settle_and_claim(
        self,
        outcomes: Sequence[Outcome],
        limit: int,
        lease_timeout: float | None = None,
        default_max_retries: int | None = None,
        worker: str | None = None,
        queues: Sequence[str] | None = None,
    ) -> tuple[list[bool], list[Task]]:
        """Record ``outcomes`` and claim up to ``limit`` due tasks, in one storage call.

        The worker's hot path: what finished and what runs next share one
        transaction where the store allows it. Only tasks of ``queues`` are claimed
        (``None``: every queue). Returns, per outcome, whether its attempt still
        held the task, and the claimed tasks (see :meth:`dequeue_many`).
        """
        now = time.time()
        planned = [
            self._plan_safely(outcome, now, default_max_retries, worker) for outcome in outcomes
        ]
        # Only a claimed attempt (RUNNING, with its token) can report an outcome.
        writable = [
            position
            for position, outcome in enumerate(outcomes)
            if outcome.task.status == TaskStatus.RUNNING and outcome.task.attempt_token
        ]
        items = [
            (outcomes[i].task.id, outcomes[i].task.attempt_token or "", planned[i][0])
            for i in writable
        ]
        lease = self.lease_timeout if lease_timeout is None else lease_timeout
        finished, records = await self.storage.finish_and_claim(
            items, now, now + lease, limit, queues, worker
        )
        held = [False] * len(outcomes)
        for position, changed in zip(writable, finished, strict=True):
            held[position] = changed
        for outcome, (transition, error), changed in zip(outcomes, planned, held, strict=True):
            if changed:
                self._log_outcome(outcome, transition, error, worker)
        return held, await self._decode_claimed(records, now)

    async def fail_unrecordable(
        self, outcome: Outcome, failure: BaseException, worker: str | None = None
    ) -> bool:
        """Fail a task whose outcome the store refuses (see :func:`unrecordable`).

        Returns whether this attempt still held the task.
        """
        transition, error = unrecordable(outcome, failure, time.time())
        task = outcome.task
        held = await self.storage.finish(task.id, task.attempt_token or "", transition)
        if held:
            self._log_outcome(outcome, transition, error, worker)
        return held

    async def _decode_claimed(self, records: Sequence[TaskRecord], now: float) -> list[Task]:
        """Claimed records as tasks; one that cannot be decoded is failed on the spot."""
        tasks: list[Task] = []
        for record in records:
            try:
                tasks.append(task_from_record(record, self.serializer))
            except (ValueError, TypeError) as error:
                omniq_logging.log_serialization_error("dequeue", str(error), task_id=record.id)
                bad = TaskError(
                    error_type=ErrorType.SERIALIZATION,
                    message=f"the stored task cannot be decoded: {error}",
                    is_retryable=False,
                    retry_count=record.attempts if isinstance(record.attempts, int) else 0,
                )
                await self.storage.finish(
                    record.id,
                    record.attempt_token or "",
                    Transition(status=TaskStatus.FAILED.value, now=now, error=encode_error(bad)),
                )
        return tasks

    def _plan_safely(
        self,
        outcome: Outcome,
        now: float,
        default_max_retries: int | None,
        worker: str | None,
    ) -> tuple[Transition, TaskError | None]:
        """:meth:`_plan`, or, when planning itself fails, a plain failure of that task alone.

        Validation keeps values in bounds, but a task stored by an older omniq or by
        hand may still break the plan (its next interval run, its history): that task
        fails with the reason, and the others of the batch are recorded as usual.
        """
        try:
            return self._plan(outcome, now, default_max_retries, worker)
        except Exception as failure:
            omniq_logging.log_serialization_error(
                "record outcome", f"{type(failure).__name__}: {failure}", task_id=outcome.task.id
            )
            return unrecordable(outcome, failure, now)

    def _plan(
        self,
        outcome: Outcome,
        now: float,
        default_max_retries: int | None,
        worker: str | None,
    ) -> tuple[Transition, TaskError | None]:
        """The transition an outcome leads to, and the error stored with it.

        The transition carries the task's attempt history with this execution
        appended, so the history is written with the outcome, in the same commit.
        """
        task = outcome.task
        error = outcome.error
        started = outcome.started_at
        if error is None:
            try:
                encoded = encode(self.serializer, outcome.result, "the result")
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
                    successor=self._successor(task, now),
                    history=append_history(stored_history(task.attempts_history), entry),
                )
                return completed, None
        budget = self._budget(task, default_max_retries)
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
            successor=self._successor(task, now),
            history=history,
        )
        return failed, stored

    def _log_outcome(
        self,
        outcome: Outcome,
        transition: Transition,
        error: TaskError | None,
        worker: str | None,
    ) -> None:
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

    async def release(
        self,
        task: Task,
        *,
        started_at: float | None = None,
        worker: str | None = None,
    ) -> bool:
        """Put a claimed task back to PENDING without spending an attempt (shutdown).

        For a task whose execution had begun (``started_at``, epoch seconds), a
        ``released`` entry joins its attempt history. A task that was only claimed,
        never started, is put back with its history unchanged.
        """
        if task.attempt_token is None:
            return False
        now = time.time()
        new_history = None
        if started_at is not None:
            entry = history_entry(
                task.attempts, worker, started_at, now, AttemptOutcome.RELEASED, None
            )
            new_history = append_history(stored_history(task.attempts_history), entry)
        released = await self.storage.release(task.id, task.attempt_token, now, new_history)
        if released:
            self.notify()
        return released

    async def heartbeat(
        self, tasks: Sequence[Task], lease_timeout: float | None = None
    ) -> list[str]:
        """Renew the leases of running tasks; return the ids this worker lost."""
        leases = [(task.id, task.attempt_token) for task in tasks if task.attempt_token]
        if not leases:
            return []
        lease = self.lease_timeout if lease_timeout is None else lease_timeout
        return await self.storage.heartbeat(leases, time.time() + lease)

    async def recover_expired(self, default_max_retries: int | None = None) -> int:
        """Make tasks of dead workers (lease ran out) claimable again, or fail them.

        The lost run already counted as an attempt when it was claimed, so a task
        whose budget is spent ends FAILED with ``error_type="worker_lost"``. A
        RUNNING row that no worker can hold (no attempt token: a damaged or foreign
        record) or that cannot be read is failed with a ``serialization`` error, so
        it cannot stand in front of the real ones; one row the store refuses is
        logged and skipped. Expired tasks are taken in batches until none is left.
        Returns how many tasks were recovered or failed.
        """
        handled = 0
        while True:
            now = time.time()
            batch = await self.storage.expired(now, _RECOVERY_BATCH)
            settled = 0
            for record in batch:
                if await self._recover(record, now, default_max_retries):
                    settled += 1
            handled += settled
            # A short batch was the last; a batch of rows that all stayed is no progress.
            if len(batch) < _RECOVERY_BATCH or settled == 0:
                return handled

    async def _recover(
        self, record: TaskRecord, now: float, default_max_retries: int | None
    ) -> bool:
        """Recover or fail one expired task; whether the store applied it."""
        try:
            transition = self._recovery(record, now, default_max_retries)
        except MemoryError:
            raise
        except Exception as failure:  # a value no task has: the row is damaged
            transition = _unrecoverable(record, now, f"its record cannot be read ({failure})")
        if transition.status == TaskStatus.FAILED.value and record.attempt_token is None:
            omniq_logging.log_serialization_error(
                "recover", "a running task without an attempt token was failed", task_id=record.id
            )
        try:
            # The empty token holds a RUNNING row that has none (see the storage contract).
            return await self.storage.finish(record.id, record.attempt_token or "", transition)
        except (OSError, StorageError) as error:
            omniq_logging.log_storage_error("recover", str(error), task_id=record.id)
            return False

    def _recovery(
        self, record: TaskRecord, now: float, default_max_retries: int | None
    ) -> Transition:
        """The transition that recovers one expired task (``expired_before`` guards it)."""
        if record.attempt_token is None:
            return _unrecoverable(
                record,
                now,
                "it was running without an attempt token, so no worker can hold it "
                "(a damaged or foreign record)",
            )
        budget = record.max_retries
        if budget is None:
            budget = self.max_retries if default_max_retries is None else default_max_retries
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

    # ------------------------------------------------------------------ inspecting

    async def get_task(self, task_id: str) -> Task | None:
        """The task with this id, in any state, or ``None`` if there is none.

        A task whose record is damaged is still returned, with what can be decoded
        and an ``error`` that says what cannot (see :func:`omniq.records.readable_task`).
        A malformed id (not a str, empty, NUL, a lone surrogate, over 255 characters)
        raises ``ValueError``/``TypeError`` before the store is asked.
        """
        record = await self.storage.get(check_task_id(task_id))
        return None if record is None else readable_task(record, self.serializer)

    async def cancel(self, task_id: str) -> bool:
        """Cancel a PENDING task; False if it is running, finished or unknown."""
        return await self.storage.cancel(check_task_id(task_id), time.time())

    async def list_tasks(
        self,
        status: TaskStatus | str | None = None,
        limit: int = 100,
        offset: int = 0,
        queue: str | None = None,
        *,
        function: str | None = None,
        id_contains: str | None = None,
        parent_id: str | None = None,
    ) -> list[Task]:
        """Tasks, most recently changed first, optionally only those of ``status``/``queue``.

        ``function`` and ``id_contains`` keep the tasks whose function path or id
        contains that text; ``parent_id`` the next runs of that interval task.
        ``limit`` is 1 to 2**31-1, ``offset`` 0 to 2**31-1. A damaged task is listed
        with what can be decoded (see :meth:`get_task`); a record that is no task at
        all (an unknown status) is skipped and logged.
        """
        wanted = None if status is None else TaskStatus(status).value
        positive_int("limit", limit)
        non_negative_int("offset", offset)
        query = TaskFilter(
            status=wanted,
            queue=None if queue is None else normalize_queue(queue),
            func_contains=normalize_search("function", function),
            id_contains=normalize_search("id_contains", id_contains),
            parent_id=None if parent_id is None else check_task_id(parent_id),
        )
        tasks: list[Task] = []
        for record in await self.storage.find_tasks(query, limit, offset):
            try:
                tasks.append(readable_task(record, self.serializer))
            except (ValueError, TypeError) as error:
                omniq_logging.log_serialization_error("list", str(error), task_id=record.id)
        return tasks

    async def retry(self, task_id: str) -> bool:
        """Run a FAILED or CANCELLED task again, now, with a fresh budget of executions."""
        requeued = await self.storage.requeue(check_task_id(task_id), time.time())
        if requeued:
            self.notify()
        return requeued

    async def retry_failed(self, queue: str | None = None) -> int:
        """Run every FAILED task (of ``queue``, or of all) again (see :meth:`retry`);
        return how many."""
        chosen = None if queue is None else normalize_queue(queue)
        count = 0
        kept = 0  # failed tasks that stay failed (their unique key is taken): skipped
        while True:
            batch = await self.storage.list_tasks(
                TaskStatus.FAILED.value, _RECOVERY_BATCH, kept, chosen
            )
            if not batch:
                return count
            for record in batch:
                # Straight to the store: ids read from it need no check (and one a
                # foreign writer stored, too long for check_task_id, still retries).
                if await self.storage.requeue(record.id, time.time()):
                    count += 1
                else:
                    kept += 1
            self.notify()

    async def purge(
        self,
        older_than: dt.timedelta | float,
        statuses: Sequence[TaskStatus | str] = (
            TaskStatus.COMPLETED,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
        ),
    ) -> int:
        """Delete finished tasks that finished more than ``older_than`` ago; return how many.

        Only final statuses (completed, failed, cancelled) can be purged.
        """
        age = normalize_age(older_than)
        chosen = [TaskStatus(status) for status in statuses]
        unfinished = [status.value for status in chosen if not status.is_final]
        if unfinished:
            raise ValueError(f"only finished tasks can be purged, not {', '.join(unfinished)}")
        return await self.storage.purge(time.time() - age, [status.value for status in chosen])

    async def prune(self, retention: float, batch: int = PRUNE_BATCH) -> int:
        """Delete finished tasks (completed, failed, cancelled) that finished over
        ``retention`` seconds ago, ``batch`` at a time; return how many.

        Each batch is one short transaction, so producers and workers get the store
        between batches, however many tasks are deleted in all.
        """
        before = time.time() - retention
        deleted = 0
        while True:
            count = await self.storage.purge(before, FINAL_STATUS_VALUES, batch)
            deleted += count
            if count < batch:
                return deleted
            await asleep(0)  # let other callers of this store in between batches

    async def stats(self) -> dict[str, Any]:
        """Counts per status, their ``total``, ``next_eta``, and ``queues``: per queue,
        its counts per status."""
        per_queue = await self.storage.count_by_queue()
        counts: dict[str, Any] = dict.fromkeys(STATUSES, 0)
        for queue_counts in per_queue.values():
            for status, count in queue_counts.items():
                counts[status] += count
        counts["total"] = sum(counts.values())
        counts["next_eta"] = await self.next_eta()
        counts["queues"] = {name: dict(per_queue[name]) for name in sorted(per_queue)}
        return counts

    # ------------------------------------------------------------------ internals

    async def _held_task(self, task_id: str, task: Task | None) -> Task:
        check_task_id(task_id)
        if task is None:
            task = await self.get_task(task_id)
            if task is None:
                raise KeyError(f"no task with id {task_id!r}")
        elif task.id != task_id:
            raise ValueError(f"task_id {task_id!r} does not match the task's id {task.id!r}")
        return task

    def _budget(self, task: Task, default_max_retries: int | None) -> int:
        if task.max_retries is not None:
            return task.max_retries
        return self.max_retries if default_max_retries is None else default_max_retries

    def _successor(self, task: Task, now: float) -> TaskRecord | None:
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
        successor = dataclasses.replace(
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
        return record_from_task(successor, self.serializer)


def _unrecoverable(record: TaskRecord, now: float, why: str) -> Transition:
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


def _as_task_error(error: str | BaseException | TaskError) -> TaskError:
    if isinstance(error, TaskError):
        return error
    if isinstance(error, BaseException):
        return TaskError.from_exception(error)
    return TaskError(error_type=ErrorType.RUNTIME, message=str(error))
