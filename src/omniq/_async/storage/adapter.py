"""Use any storage with this twin's queue: a blocking one runs its calls on a thread.

The spec writes ``AsyncTaskQueue(SQLiteStorage(path))``: a blocking storage given
to the async queue. :func:`as_storage` wraps such a storage so each call runs
off the event loop, and so a user's own blocking backend works in both twins.
In the blocking twin, a blocking storage is already the right kind and is
returned as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from omniq._async.storage.base import AsyncBaseStorage
from omniq._concurrency import arun_blocking
from omniq._wakeup import FinishedCallback
from omniq.blocking_storage import BlockingStorage, is_blocking_storage
from omniq.records import StateRecord, TaskFilter, TaskRecord, Transition


class AsyncStorageAdapter(AsyncBaseStorage):
    """Runs each call of a blocking storage on a worker thread."""

    def __init__(self, inner: BlockingStorage) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    async def open(self) -> None:
        """Open the wrapped storage."""
        await arun_blocking(self.inner.open)

    async def close(self) -> None:
        """Close the wrapped storage."""
        await arun_blocking(self.inner.close)

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Forward to the wrapped storage (its wake-ups may come from its own thread)."""
        self.inner.subscribe(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        """Forward to the wrapped storage."""
        self.inner.unsubscribe(callback)

    def subscribe_finished(self, callback: FinishedCallback) -> bool:
        """Forward to the wrapped storage."""
        return self.inner.subscribe_finished(callback)

    def unsubscribe_finished(self, callback: FinishedCallback) -> None:
        """Forward to the wrapped storage."""
        self.inner.unsubscribe_finished(callback)

    async def add(self, records: Sequence[TaskRecord]) -> list[str]:
        """See :meth:`AsyncBaseStorage.add`."""
        return await arun_blocking(self.inner.add, records)

    async def claim(
        self,
        now: float,
        lease_until: float,
        limit: int,
        queues: Sequence[str] | None = None,
        worker: str | None = None,
    ) -> list[TaskRecord]:
        """See :meth:`AsyncBaseStorage.claim`."""
        return await arun_blocking(self.inner.claim, now, lease_until, limit, queues, worker)

    async def finish(self, task_id: str, token: str, transition: Transition) -> bool:
        """See :meth:`AsyncBaseStorage.finish`."""
        return await arun_blocking(self.inner.finish, task_id, token, transition)

    async def finish_many(self, items: Sequence[tuple[str, str, Transition]]) -> list[bool]:
        """See :meth:`AsyncBaseStorage.finish_many` (the inner store's batching, one hop)."""
        return await arun_blocking(self.inner.finish_many, items)

    async def finish_and_claim(
        self,
        items: Sequence[tuple[str, str, Transition]],
        now: float,
        lease_until: float,
        limit: int,
        queues: Sequence[str] | None = None,
        worker: str | None = None,
    ) -> tuple[list[bool], list[TaskRecord]]:
        """See :meth:`AsyncBaseStorage.finish_and_claim` (one transaction where the inner can)."""
        return await arun_blocking(
            self.inner.finish_and_claim, items, now, lease_until, limit, queues, worker
        )

    async def release(
        self, task_id: str, token: str, now: float, history: str | None = None
    ) -> bool:
        """See :meth:`AsyncBaseStorage.release`."""
        return await arun_blocking(self.inner.release, task_id, token, now, history)

    async def heartbeat(self, leases: Sequence[tuple[str, str]], lease_until: float) -> list[str]:
        """See :meth:`AsyncBaseStorage.heartbeat`."""
        return await arun_blocking(self.inner.heartbeat, leases, lease_until)

    async def expired(self, now: float, limit: int) -> list[TaskRecord]:
        """See :meth:`AsyncBaseStorage.expired`."""
        return await arun_blocking(self.inner.expired, now, limit)

    async def get(self, task_id: str) -> TaskRecord | None:
        """See :meth:`AsyncBaseStorage.get`."""
        return await arun_blocking(self.inner.get, task_id)

    async def next_eta(self, queues: Sequence[str] | None = None) -> float | None:
        """See :meth:`AsyncBaseStorage.next_eta`."""
        return await arun_blocking(self.inner.next_eta, queues)

    async def list_tasks(
        self, status: str | None, limit: int, offset: int = 0, queue: str | None = None
    ) -> list[TaskRecord]:
        """See :meth:`AsyncBaseStorage.list_tasks`."""
        return await arun_blocking(self.inner.list_tasks, status, limit, offset, queue)

    async def count_by_queue(self) -> dict[str, dict[str, int]]:
        """See :meth:`AsyncBaseStorage.count_by_queue`."""
        return await arun_blocking(self.inner.count_by_queue)

    async def count_by_status(self) -> dict[str, int]:
        """See :meth:`AsyncBaseStorage.count_by_status`."""
        return await arun_blocking(self.inner.count_by_status)

    async def requeue(self, task_id: str, now: float) -> bool:
        """See :meth:`AsyncBaseStorage.requeue`."""
        return await arun_blocking(self.inner.requeue, task_id, now)

    async def purge(self, before: float, statuses: Sequence[str], limit: int | None = None) -> int:
        """See :meth:`AsyncBaseStorage.purge`."""
        return await arun_blocking(self.inner.purge, before, statuses, limit)

    async def cancel(self, task_id: str, now: float) -> bool:
        """See :meth:`AsyncBaseStorage.cancel`."""
        return await arun_blocking(self.inner.cancel, task_id, now)

    # The monitoring reads are optional in the blocking contract: forwarded when the
    # wrapped storage has them, else answered by the defaults (through list_tasks...).

    async def find_tasks(self, query: TaskFilter, limit: int, offset: int = 0) -> list[TaskRecord]:
        """See :meth:`AsyncBaseStorage.find_tasks`."""
        method = getattr(self.inner, "find_tasks", None)
        if method is None:
            return await super().find_tasks(query, limit, offset)
        found: list[TaskRecord] = await arun_blocking(method, query, limit, offset)
        return found

    async def count_finished(self, since: float, width: float) -> list[tuple[int, str, str, int]]:
        """See :meth:`AsyncBaseStorage.count_finished`."""
        method = getattr(self.inner, "count_finished", None)
        if method is None:
            return await super().count_finished(since, width)
        rows: list[tuple[int, str, str, int]] = await arun_blocking(method, since, width)
        return rows

    async def earliest_pending(self, queues: Sequence[str]) -> dict[str, float]:
        """See :meth:`AsyncBaseStorage.earliest_pending`."""
        method = getattr(self.inner, "earliest_pending", None)
        if method is None:
            return await super().earliest_pending(queues)
        earliest: dict[str, float] = await arun_blocking(method, queues)
        return earliest

    async def put_state(self, kind: str, name: str, data: str, now: float) -> None:
        """See :meth:`AsyncBaseStorage.put_state`."""
        await arun_blocking(self.inner.put_state, kind, name, data, now)

    async def get_state(self, kind: str, name: str) -> StateRecord | None:
        """See :meth:`AsyncBaseStorage.get_state`."""
        return await arun_blocking(self.inner.get_state, kind, name)

    async def list_state(self, kind: str) -> list[StateRecord]:
        """See :meth:`AsyncBaseStorage.list_state`."""
        return await arun_blocking(self.inner.list_state, kind)

    async def delete_state(self, kind: str, name: str) -> bool:
        """See :meth:`AsyncBaseStorage.delete_state`."""
        return await arun_blocking(self.inner.delete_state, kind, name)

    async def advance_state(
        self, kind: str, name: str, mark: float, records: Sequence[TaskRecord]
    ) -> bool:
        """See :meth:`AsyncBaseStorage.advance_state`."""
        return await arun_blocking(self.inner.advance_state, kind, name, mark, records)


def as_storage(storage: AsyncBaseStorage | BlockingStorage) -> AsyncBaseStorage:
    """``storage`` as this twin's kind of storage; ``TypeError`` for anything else."""
    if isinstance(storage, AsyncBaseStorage):
        return storage
    if is_blocking_storage(storage):
        return AsyncStorageAdapter(storage)
    raise TypeError(
        f"storage must be an omniq storage (e.g. SQLiteStorage, FileStorage), got {storage!r}"
    )
