"""In-memory storage: the full contract, kept in one process's memory.

For tests and for code that wants a queue without a file. Tasks vanish with the
process; share one instance between the queue and the workers that should see them.
"""

from __future__ import annotations

import dataclasses
import heapq
import uuid
from collections.abc import Sequence

from omniq._async.storage.base import AsyncBaseStorage
from omniq._concurrency import AsyncThreadGuard
from omniq.records import FINAL_STATUSES, STATUSES, TaskRecord, Transition


class AsyncMemoryStorage(AsyncBaseStorage):
    """Tasks in a dict, with a heap of due PENDING tasks ordered by (eta, enqueue order)."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskRecord] = {}
        self._due: list[tuple[float, int, str]] = []  # (eta, seq, id); stale entries skipped
        self._seq = 0
        self._guard = AsyncThreadGuard()

    def _push(self, record: TaskRecord) -> None:
        self._seq += 1
        heapq.heappush(self._due, (record.eta, self._seq, record.id))

    async def add(self, records: Sequence[TaskRecord]) -> None:
        """Store copies of new tasks."""
        with self._guard:
            for record in records:
                if record.id in self._tasks:
                    raise ValueError(f"a task with id {record.id!r} already exists")
            for record in records:
                self._tasks[record.id] = dataclasses.replace(record)
                self._push(record)

    async def claim(self, now: float, lease_until: float, limit: int) -> list[TaskRecord]:
        """Pop up to ``limit`` due tasks off the heap."""
        token = uuid.uuid4().hex
        claimed: list[TaskRecord] = []
        with self._guard:
            while self._due and len(claimed) < limit and self._due[0][0] <= now:
                eta, _, task_id = heapq.heappop(self._due)
                record = self._tasks.get(task_id)
                if record is None or record.status != "pending" or record.eta != eta:
                    continue  # stale heap entry: cancelled, or re-pushed with a new eta
                record.status = "running"
                record.attempts += 1
                record.attempt_token = token
                record.lease_until = lease_until
                record.started_at = now
                record.updated_at = now
                claimed.append(dataclasses.replace(record))
        return claimed

    def _held(self, task_id: str, token: str) -> TaskRecord | None:
        record = self._tasks.get(task_id)
        if record is None or record.status != "running" or record.attempt_token != token:
            return None
        return record

    async def finish(self, task_id: str, token: str, transition: Transition) -> bool:
        """Apply an outcome if ``token`` still holds the task."""
        with self._guard:
            record = self._held(task_id, token)
            if record is None or not _still_expired(record, transition):
                return False
            record.status = transition.status
            record.result = transition.result
            record.error = transition.error
            record.updated_at = transition.now
            record.lease_until = None
            record.attempt_token = None
            if transition.is_final:
                record.finished_at = transition.now
            if transition.eta is not None:
                record.eta = transition.eta
            if record.status == "pending":
                self._push(record)
            successor = transition.successor
            if successor is not None:
                self._tasks[successor.id] = dataclasses.replace(successor)
                self._push(successor)
            return True

    async def release(self, task_id: str, token: str, now: float) -> bool:
        """Put an unfinished task back, due now, without spending an attempt."""
        with self._guard:
            record = self._held(task_id, token)
            if record is None:
                return False
            record.status = "pending"
            record.attempts = max(record.attempts - 1, 0)
            record.eta = now
            record.updated_at = now
            record.lease_until = None
            record.attempt_token = None
            self._push(record)
            return True

    async def heartbeat(self, leases: Sequence[tuple[str, str]], lease_until: float) -> list[str]:
        """Extend held leases; report lost ones."""
        lost: list[str] = []
        with self._guard:
            for task_id, token in leases:
                record = self._held(task_id, token)
                if record is None:
                    lost.append(task_id)
                else:
                    record.lease_until = lease_until
        return lost

    async def expired(self, now: float, limit: int) -> list[TaskRecord]:
        """RUNNING tasks whose lease has run out."""
        with self._guard:
            found = [
                dataclasses.replace(record)
                for record in self._tasks.values()
                if record.status == "running"
                and record.lease_until is not None
                and record.lease_until < now
            ]
        return sorted(found, key=lambda record: record.lease_until or 0.0)[:limit]

    async def get(self, task_id: str) -> TaskRecord | None:
        """A copy of the task, or ``None``."""
        with self._guard:
            record = self._tasks.get(task_id)
            return dataclasses.replace(record) if record is not None else None

    async def next_eta(self) -> float | None:
        """The earliest pending eta (stale heap entries are dropped on the way)."""
        with self._guard:
            while self._due:
                eta, _, task_id = self._due[0]
                record = self._tasks.get(task_id)
                if record is not None and record.status == "pending" and record.eta == eta:
                    return eta
                heapq.heappop(self._due)
            return None

    async def list_tasks(self, status: str | None, limit: int, offset: int = 0) -> list[TaskRecord]:
        """Tasks, newest change first, optionally of one status."""
        with self._guard:
            found = [
                dataclasses.replace(record)
                for record in self._tasks.values()
                if status is None or record.status == status
            ]
        found.sort(key=lambda record: record.updated_at, reverse=True)
        return found[offset : offset + limit]

    async def count_by_status(self) -> dict[str, int]:
        """How many tasks are in each status (zeros included)."""
        counts = dict.fromkeys(STATUSES, 0)
        with self._guard:
            for record in self._tasks.values():
                counts[record.status] += 1
        return counts

    async def requeue(self, task_id: str, now: float) -> bool:
        """A FAILED or CANCELLED task back to PENDING, due now, with a fresh budget."""
        with self._guard:
            record = self._tasks.get(task_id)
            if record is None or record.status not in ("failed", "cancelled"):
                return False
            record.status = "pending"
            record.attempts = 0
            record.eta = now
            record.updated_at = now
            record.error = record.result = None
            record.finished_at = record.started_at = None
            self._push(record)
            return True

    async def purge(self, before: float, statuses: Sequence[str]) -> int:
        """Delete finished tasks of ``statuses`` that finished before ``before``."""
        final = FINAL_STATUSES.intersection(statuses)
        with self._guard:
            doomed = [
                task_id
                for task_id, record in self._tasks.items()
                if record.status in final
                and record.finished_at is not None
                and record.finished_at < before
            ]
            for task_id in doomed:
                del self._tasks[task_id]
        return len(doomed)

    async def cancel(self, task_id: str, now: float) -> bool:
        """Cancel a PENDING task (its heap entry goes stale)."""
        with self._guard:
            record = self._tasks.get(task_id)
            if record is None or record.status != "pending":
                return False
            record.status = "cancelled"
            record.updated_at = now
            record.finished_at = now
            return True


def _still_expired(record: TaskRecord, transition: Transition) -> bool:
    """False when a recovery finds the lease renewed since it looked (see Transition)."""
    limit = transition.expired_before
    return limit is None or (record.lease_until is not None and record.lease_until < limit)
