"""``AsyncTaskQueue``: enqueue, claim, complete and fail tasks; the queue owns the policy.

The queue validates input at the call that made it, encodes arguments, applies
the retry budget and backoff (:mod:`omniq.retry`), schedules the next run of
interval tasks and recovers tasks whose worker died. The storage only persists.
This module does the storage calls; the pure parts are shared by both twins:
:mod:`omniq.enqueue_records` builds the records an enqueue stores, and
:mod:`omniq.outcomes` plans what an outcome (or an expired lease) becomes. Looking
tasks up, listing, counting, cancelling, retrying and pruning them is the queue's
admin half, inherited from :mod:`omniq._async.queue_admin`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from omniq import logging as omniq_logging
from omniq import retry
from omniq._async.group_commit import AsyncGroupCommit
from omniq._async.queue_admin import AsyncQueueAdmin
from omniq._async.storage.adapter import as_storage
from omniq._async.storage.base import AsyncBaseStorage
from omniq._validation import (
    check_task_id,
    normalize_max_retries,
    positive_number,
)
from omniq.allowlist import AllowList
from omniq.blocking_storage import BlockingStorage
from omniq.enqueue_records import log_stored, new_record, records_for, reported_as_storage_errors
from omniq.exceptions import StorageError
from omniq.models import Task, TaskError, TaskStatus
from omniq.outcomes import (
    as_task_error,
    log_outcome,
    plan_outcome_safely,
    recovery,
    release_history,
    undecodable,
    unrecordable,
    unrecoverable,
)
from omniq.records import (
    Outcome,
    TaskRecord,
    from_epoch,
    task_from_record,
)
from omniq.serialization import DEFAULT_SERIALIZER, Serializer

DEFAULT_LEASE_TIMEOUT = 30.0
_RECOVERY_BATCH = 100
# An enqueue_many of at least STREAM_MIN items without unique keys is built and handed to
# the store STREAM_CHUNK items at a time (PostgreSQL: 47k -> 76k tasks/s, 10,000 tasks).
STREAM_MIN = 1024
STREAM_CHUNK = 512


class AsyncTaskQueue(AsyncQueueAdmin):
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
        record = new_record(
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
            serializer=self.serializer,
            default_max_retries=self.max_retries,
            max_payload_bytes=self.max_payload_bytes,
            allow=self.allow,
        )
        (task_id,) = await self._store([record])
        return task_id

    async def enqueue_many(self, items: Iterable[Mapping[str, Any]]) -> list[str]:
        """Store many tasks in one transaction and return their ids, in order.

        Each item is a mapping of :meth:`enqueue`'s arguments (``func_path``
        required). Every item is validated and encoded before anything is
        committed, so one bad item stores none. A batch of ``STREAM_MIN`` items or
        more without unique keys is built ``STREAM_CHUNK`` items at a time while the
        store takes the chunks already built (see ``AsyncBaseStorage.add_stream``).
        """
        batch = items if isinstance(items, Sequence) else list(items)
        if len(batch) >= STREAM_MIN and all(
            isinstance(item, Mapping) and item.get("unique_key") is None for item in batch
        ):
            return await self._stream(batch)
        records = self.records_for(batch)
        return await self._store(records) if records else []

    def records_for(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        check_paths: bool = True,
        first_position: int = 0,
    ) -> list[TaskRecord]:
        """The validated, encoded records of :meth:`enqueue_many` items, not stored yet.

        ``check_paths=False`` skips the producer's allow-list check of string paths
        (a schedule's fire: a path that vanished must fail its task in the worker,
        visibly, instead of stopping the schedule). ``first_position``: the first
        item's position in its batch, for error messages.
        """
        return records_for(
            items,
            serializer=self.serializer,
            default_max_retries=self.max_retries,
            max_payload_bytes=self.max_payload_bytes,
            allow=self.allow,
            check_paths=check_paths,
            first_position=first_position,
        )

    async def _store(self, records: list[TaskRecord]) -> list[str]:
        """Add ``records``; return the id standing for each (a unique key's holder, or its own)."""
        with reported_as_storage_errors():
            ids = await self._adds.add(records)  # concurrent callers share commits
        if log_stored(records, ids):
            self.notify()
        return ids

    async def _stream(self, batch: Sequence[Mapping[str, Any]]) -> list[str]:
        """Build and add ``batch`` a chunk at a time, in one transaction (no unique keys)."""
        built: list[TaskRecord] = []

        def chunks() -> Iterator[list[TaskRecord]]:
            for start in range(0, len(batch), STREAM_CHUNK):
                chunk = self.records_for(batch[start : start + STREAM_CHUNK], first_position=start)
                built.extend(chunk)
                yield chunk

        with reported_as_storage_errors():
            ids = await self.storage.add_stream(chunks())
        if log_stored(built, ids):
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
        outcome = Outcome(task, error=as_task_error(error))
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
        budget = self._default_budget(default_max_retries)
        planned = [
            plan_outcome_safely(outcome, now, self.serializer, budget, worker)
            for outcome in outcomes
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
                log_outcome(outcome, transition, error, worker)
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
            log_outcome(outcome, transition, error, worker)
        return held

    async def _decode_claimed(self, records: Sequence[TaskRecord], now: float) -> list[Task]:
        """Claimed records as tasks; one that cannot be decoded is failed on the spot."""
        tasks: list[Task] = []
        for record in records:
            try:
                tasks.append(task_from_record(record, self.serializer))
            except (ValueError, TypeError) as error:
                omniq_logging.log_serialization_error("dequeue", str(error), task_id=record.id)
                failed = undecodable(record, now, error)
                await self.storage.finish(record.id, record.attempt_token or "", failed)
        return tasks

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
        history = release_history(task, started_at, now, worker)
        released = await self.storage.release(task.id, task.attempt_token, now, history)
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
        budget = self._default_budget(default_max_retries)
        try:
            transition = recovery(record, now, budget)
        except MemoryError:
            raise
        except Exception as failure:  # a value no task has: the row is damaged
            transition = unrecoverable(record, now, f"its record cannot be read ({failure})")
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

    def _default_budget(self, default_max_retries: int | None) -> int:
        """The execution budget of a task stored without one (the caller's, or the queue's)."""
        return self.max_retries if default_max_retries is None else default_max_retries
