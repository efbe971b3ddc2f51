"""The storage contract every backend implements, in both twins.

A storage keeps :class:`~omniq.records.TaskRecord` rows and offers a handful of
atomic operations. It holds no queue logic: the retry budget, backoff, interval
rescheduling, attempt history and serialization belong to the queue. Every method
that changes a RUNNING task is conditional on the attempt token issued by
:meth:`claim`, so a worker whose lease was taken over can never overwrite the
newer attempt.

Schema v2 adds three rules every backend settles inside the store, never by a
read-then-write in Python: the claim order (higher ``priority`` first, then
earlier ``eta``, then enqueue order, among the due tasks of the queues asked
for); routing (a claim takes only tasks of the queues it names); and unique keys
(while a task with a ``unique_key`` is pending or running, no other task with that
key is stored).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType

from omniq._wakeup import FinishedCallback
from omniq.records import FINAL_STATUSES, STATUSES, StateRecord, TaskFilter, TaskRecord, Transition

_SCAN_PAGE = 500  # tasks per read when a default below scans list_tasks


class AsyncBaseStorage(ABC):
    """Abstract storage: persistence for tasks, with an atomic claim."""

    async def open(self) -> None:  # noqa: B027  (optional hook: not every store needs it)
        """Create what the store needs (schema, directories). Idempotent."""

    async def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections and handles. Idempotent."""

    def subscribe(self, callback: Callable[[], None]) -> None:  # noqa: B027  (optional hook)
        """Call ``callback``, from any thread, when another process makes a task due.

        Lets idle workers start a task at once instead of at their next poll. The
        default does nothing: workers poll. ``callback`` must be quick and thread-safe.
        """

    def unsubscribe(self, callback: Callable[[], None]) -> None:  # noqa: B027  (optional hook)
        """Stop calling ``callback``; unknown callbacks are ignored."""

    def subscribe_finished(self, callback: FinishedCallback) -> bool:
        """Call ``callback(task_ids)``, from any thread, when tasks reach a final state.

        Final: completed, failed or cancelled, by any process. ``task_ids`` names
        them, or is ``None`` when the store cannot tell which (every waiter looks).
        Returns whether such wake-ups will come: with False (this default) a
        waiting ``get_result`` polls. ``callback`` must be quick and thread-safe.
        """
        del callback
        return False

    def unsubscribe_finished(self, callback: FinishedCallback) -> None:  # noqa: B027
        """Stop calling ``callback``; unknown callbacks are ignored."""

    async def __aenter__(self) -> AsyncBaseStorage:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abstractmethod
    async def add(self, records: Sequence[TaskRecord]) -> list[str]:
        """Store new PENDING tasks, all or none, durably before returning.

        Returns, per record, the id of the task that now stands for it: its own, or,
        for a record whose ``unique_key`` is held by a pending or running task, that
        task's id (the record is then not stored). The rule also holds between the
        records of one call (the first one with a key is stored), and between
        concurrent callers in any thread or process.
        """

    async def add_stream(self, chunks: Iterable[Sequence[TaskRecord]]) -> list[str]:
        """Store the records of ``chunks``, none with a unique key, all or none; their ids.

        The queue hands a large ``enqueue_many`` over as chunks it builds on demand, so a
        store whose server runs apart (PostgreSQL) can ingest one chunk while the next is
        built; a chunk that cannot be built raises here, and nothing is stored. This
        default builds them all, then calls :meth:`add`.
        """
        return await self.add([record for chunk in chunks for record in chunk])

    @abstractmethod
    async def claim(
        self,
        now: float,
        lease_until: float,
        limit: int,
        queues: Sequence[str] | None = None,
        worker: str | None = None,
    ) -> list[TaskRecord]:
        """Atomically take up to ``limit`` due PENDING tasks of ``queues`` (``None``: all).

        Due means ``eta <= now``. They come in claim order: higher ``priority``
        first, then earlier ``eta``, then enqueue order; a task not yet due is never
        taken, whatever its priority. Each claimed task becomes RUNNING with
        ``attempts`` one higher, a fresh ``attempt_token``, ``lease_until`` set and
        ``worker`` (the claiming pool's name) recorded. No two claims, from any thread
        or process, ever return the same attempt.
        """

    @abstractmethod
    async def finish(self, task_id: str, token: str, transition: Transition) -> bool:
        """Apply ``transition`` to a RUNNING task if ``token`` is still its attempt token.

        Returns False (and changes nothing) when the task is no longer held by
        that attempt. The successor, if any, is inserted in the same transaction.
        A RUNNING task without an attempt token (a damaged or foreign record: no
        claim makes one) is held by the empty token, so that lease recovery and the
        decoding check can fail it instead of stepping over it forever.
        """

    async def finish_many(self, items: Sequence[tuple[str, str, Transition]]) -> list[bool]:
        """:meth:`finish` for several ``(task_id, token, transition)``; one result each.

        A store that can should apply them in one transaction (one disk sync for
        many tasks); this default applies them one by one, which is just as correct.
        """
        return [
            await self.finish(task_id, token, transition) for task_id, token, transition in items
        ]

    async def finish_and_claim(
        self,
        items: Sequence[tuple[str, str, Transition]],
        now: float,
        lease_until: float,
        limit: int,
        queues: Sequence[str] | None = None,
        worker: str | None = None,
    ) -> tuple[list[bool], list[TaskRecord]]:
        """:meth:`finish_many`, then :meth:`claim` up to ``limit`` (skipped when 0).

        A busy worker reports what finished and takes what is next in one call; a
        store that can should do both in one transaction (one disk sync). This
        default makes the two calls, which is just as correct.
        """
        finished = await self.finish_many(items) if items else []
        claimed = await self.claim(now, lease_until, limit, queues, worker) if limit > 0 else []
        return finished, claimed

    @abstractmethod
    async def release(
        self, task_id: str, token: str, now: float, history: str | None = None
    ) -> bool:
        """Put a RUNNING task back to PENDING, due now, without spending an attempt.

        Used at shutdown for tasks that did not finish. Conditional on ``token``.
        ``history``, when given, replaces the stored attempt history (the queue
        appends a ``released`` entry for an execution that had started).
        """

    @abstractmethod
    async def heartbeat(self, leases: Sequence[tuple[str, str]], lease_until: float) -> list[str]:
        """Extend the leases of ``(task_id, token)`` pairs; return the ids no longer held."""

    @abstractmethod
    async def expired(self, now: float, limit: int) -> list[TaskRecord]:
        """RUNNING tasks whose lease ended before ``now`` (their worker is presumed dead)."""

    @abstractmethod
    async def get(self, task_id: str) -> TaskRecord | None:
        """The task with this id, in any state, or ``None``."""

    async def next_eta(self, queues: Sequence[str] | None = None) -> float | None:
        """The earliest eta of a PENDING task of ``queues`` (``None``: all), or ``None``.

        ``None`` also means "not known". Lets an idle worker sleep exactly until the
        next task is due. A store that cannot answer cheaply keeps this default, and
        workers fall back to polling.
        """
        return None

    @abstractmethod
    async def list_tasks(
        self, status: str | None, limit: int, offset: int = 0, queue: str | None = None
    ) -> list[TaskRecord]:
        """Up to ``limit`` tasks (of ``status`` and of ``queue``, or all), newest change first."""

    @abstractmethod
    async def count_by_queue(self) -> dict[str, dict[str, int]]:
        """Per queue that has tasks, the number of its tasks in each status (zeros included)."""

    async def count_by_status(self) -> dict[str, int]:
        """The number of tasks in each status, every status present (zeros included)."""
        totals = dict.fromkeys(STATUSES, 0)
        for counts in (await self.count_by_queue()).values():
            for status, count in counts.items():
                totals[status] += count
        return totals

    @abstractmethod
    async def requeue(self, task_id: str, now: float) -> bool:
        """Put a FAILED or CANCELLED task back to PENDING, due ``now``, with a fresh budget.

        ``attempts`` goes back to 0 and the error, result and finish time are cleared
        (the attempt history is kept). False (nothing changed) for a task in any
        other state, an unknown id, or a task whose ``unique_key`` another pending or
        running task holds now.
        """

    @abstractmethod
    async def purge(self, before: float, statuses: Sequence[str], limit: int | None = None) -> int:
        """Delete tasks in the given final statuses that finished before ``before``.

        Statuses that are not final (pending, running) are ignored. With ``limit``
        at most that many are deleted (in one short transaction), so a large purge
        can run in batches without holding a write lock for long. Returns how many
        tasks were deleted.
        """

    @abstractmethod
    async def cancel(self, task_id: str, now: float) -> bool:
        """Mark a PENDING task CANCELLED; False if it is not pending (or unknown)."""

    # ------------------------------------------------------------ monitoring reads
    # Optional: the defaults answer through list_tasks/next_eta, correctly on any
    # store; a store with an index to answer from does it in one query.

    async def find_tasks(self, query: TaskFilter, limit: int, offset: int = 0) -> list[TaskRecord]:
        """Up to ``limit`` tasks that ``query`` matches, after ``offset`` of them, newest
        change first (the order of :meth:`list_tasks`)."""
        if query.is_simple:
            return await self.list_tasks(query.status, limit, offset, query.queue)
        found: list[TaskRecord] = []
        to_skip = offset
        position = 0
        while True:
            page = await self.list_tasks(query.status, _SCAN_PAGE, position, query.queue)
            for record in page:
                if not query.matches(record):
                    continue
                if to_skip:
                    to_skip -= 1
                    continue
                found.append(record)
                if len(found) == limit:
                    return found
            if len(page) < _SCAN_PAGE:
                return found
            position += len(page)

    async def count_finished(self, since: float, width: float) -> list[tuple[int, str, str, int]]:
        """Tasks that reached a final status at ``since`` or later, counted per time slot.

        Rows ``(slot, queue, status, count)``, where ``slot`` is
        ``int((finished_at - since) // width)``; slots with no task are left out.
        """
        counts: dict[tuple[int, str, str], int] = {}
        for status in sorted(FINAL_STATUSES):
            position = 0
            while True:
                page = await self.list_tasks(status, _SCAN_PAGE, position)
                for record in page:
                    finished = record.finished_at
                    if finished is not None and finished >= since:
                        key = (int((finished - since) // width), record.queue, record.status)
                        counts[key] = counts.get(key, 0) + 1
                # Newest change first, and a final task changes when it finishes: past
                # the first one changed before ``since``, none finished later.
                if len(page) < _SCAN_PAGE or page[-1].updated_at < since:
                    break
                position += len(page)
        return [(slot, queue, status, count) for (slot, queue, status), count in counts.items()]

    async def earliest_pending(self, queues: Sequence[str]) -> dict[str, float]:
        """Per queue of ``queues`` with pending tasks, the earliest eta among them.

        A queue left out has no pending task, or the store cannot tell (see
        :meth:`next_eta`).
        """
        earliest: dict[str, float] = {}
        for queue in queues:
            eta = await self.next_eta([queue])
            if eta is not None:
                earliest[queue] = eta
        return earliest

    # ------------------------------------------------------------ named state records

    @abstractmethod
    async def put_state(self, kind: str, name: str, data: str, now: float) -> None:
        """Create the record ``(kind, name)`` or replace its ``data``; its mark is kept."""

    @abstractmethod
    async def get_state(self, kind: str, name: str) -> StateRecord | None:
        """The record ``(kind, name)``, or ``None``."""

    @abstractmethod
    async def list_state(self, kind: str) -> list[StateRecord]:
        """Every record of ``kind``, by name."""

    @abstractmethod
    async def delete_state(self, kind: str, name: str) -> bool:
        """Delete the record ``(kind, name)``; False if there was none."""

    @abstractmethod
    async def advance_state(
        self, kind: str, name: str, mark: float, records: Sequence[TaskRecord]
    ) -> bool:
        """Move the record's mark forward to ``mark`` and add ``records``, atomically.

        Nothing changes (and False is returned) unless the record exists and its
        mark is unset or below ``mark``: of any number of callers, in any threads,
        processes or machines, advancing to one mark, exactly one stores the
        records. This is how every worker may fire a schedule and each fire time is
        enqueued once. The records follow :meth:`add`'s unique-key rule.
        """
