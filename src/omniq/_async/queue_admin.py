"""Looking into a queue's store and tidying it: the admin half of ``AsyncTaskQueue``.

Look tasks up, list and count them; cancel, retry, purge and prune. Each call
checks its input first (ids, statuses, limits), so a bad value fails at the call
that made it, before the store is asked. :class:`AsyncTaskQueue` inherits these;
they need only its ``storage``, ``serializer``, ``notify`` and ``next_eta``.
"""

from __future__ import annotations

import datetime as dt
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from omniq import logging as omniq_logging
from omniq._async.storage.base import AsyncBaseStorage
from omniq._concurrency import asleep
from omniq._validation import (
    check_task_id,
    non_negative_int,
    normalize_age,
    normalize_queue,
    normalize_search,
    positive_int,
)
from omniq.models import Task, TaskStatus
from omniq.records import FINAL_STATUSES, STATUSES, TaskFilter, readable_task
from omniq.serialization import Serializer

PRUNE_BATCH = 1000  # tasks deleted per transaction by prune(): a short hold of the write lock
FINAL_STATUS_VALUES = tuple(sorted(FINAL_STATUSES))
_RETRY_BATCH = 100  # failed tasks read per store call by retry_failed()


class AsyncQueueAdmin(ABC):
    """Inspection and upkeep of the tasks a queue's store holds (see the module)."""

    storage: AsyncBaseStorage
    serializer: Serializer

    @abstractmethod
    def notify(self) -> None:
        """Tell the queue's listeners that a task is due now."""

    @abstractmethod
    async def next_eta(self, queues: Sequence[str] | None = None) -> dt.datetime | None:
        """When the earliest pending task is due, if the store knows."""

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
                TaskStatus.FAILED.value, _RETRY_BATCH, kept, chosen
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
