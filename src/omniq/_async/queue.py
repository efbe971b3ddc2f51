"""``AsyncTaskQueue``: enqueue, claim, complete and fail tasks; the queue owns the policy.

The queue validates input at the call that made it, encodes arguments, applies
the retry budget and backoff (:mod:`omniq.retry`), schedules the next run of
interval tasks and recovers tasks whose worker died. The storage only persists.
This module does the storage calls; the pure parts are shared by both twins:
:mod:`omniq.enqueue_records` builds the records an enqueue stores, and
:mod:`omniq.outcomes` plans what an outcome (or an expired lease) becomes.
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
from omniq._async.storage.adapter import as_storage
from omniq._async.storage.base import AsyncBaseStorage
from omniq._concurrency import asleep
from omniq._validation import (
    check_task_id,
    non_negative_int,
    normalize_age,
    normalize_max_retries,
    normalize_queue,
    normalize_search,
    positive_int,
    positive_number,
)
from omniq.allowlist import AllowList
from omniq.blocking_storage import BlockingStorage
from omniq.enqueue_records import log_stored, new_record, records_for
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
    FINAL_STATUSES,
    STATUSES,
    Outcome,
    TaskFilter,
    TaskRecord,
    from_epoch,
    readable_task,
    task_from_record,
)
from omniq.serialization import DEFAULT_SERIALIZER, Serializer

DEFAULT_LEASE_TIMEOUT = 30.0
_RECOVERY_BATCH = 100
# An enqueue_many of at least STREAM_MIN items without unique keys is built and handed to
# the store STREAM_CHUNK items at a time (PostgreSQL: 47k -> 76k tasks/s, 10,000 tasks).
STREAM_MIN = 1024
STREAM_CHUNK = 512
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
        with _reported_as_storage_errors():
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

        with _reported_as_storage_errors():
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

    def _default_budget(self, default_max_retries: int | None) -> int:
        """The execution budget of a task stored without one (the caller's, or the queue's)."""
        return self.max_retries if default_max_retries is None else default_max_retries


@contextlib.contextmanager
def _reported_as_storage_errors() -> Iterator[None]:
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
