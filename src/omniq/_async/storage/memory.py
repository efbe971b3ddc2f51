"""In-memory storage: the full contract, kept in one process's memory.

For tests and for code that wants a queue without a file. Tasks vanish with the
process; share one instance between the queue and the workers that should see them.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Sequence

from omniq._async.storage.base import AsyncBaseStorage
from omniq._concurrency import AsyncThreadGuard
from omniq.models import new_attempt_token
from omniq.records import (
    FINAL_STATUSES,
    STATUSES,
    StateRecord,
    TaskFilter,
    TaskRecord,
    Transition,
)

_ACTIVE = frozenset(("pending", "running"))
_Level = tuple[str, int]  # (queue, priority)


class AsyncMemoryStorage(AsyncBaseStorage):
    """Tasks in a dict; due PENDING tasks in one heap per (queue, priority).

    Each heap is ordered by (eta, enqueue order); a claim takes, among the heads of
    the heaps of the queues asked for, the highest priority, then the earliest eta.
    Heap entries go stale when a task leaves PENDING; they are skipped when met.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, TaskRecord] = {}
        self._due: dict[_Level, list[tuple[float, int, str]]] = {}
        self._unique: dict[str, str] = {}  # unique_key -> id of the pending/running holder
        self._state: dict[tuple[str, str], StateRecord] = {}
        self._seq = 0
        self._guard = AsyncThreadGuard()

    def _push(self, record: TaskRecord) -> None:
        self._seq += 1
        heap = self._due.setdefault((record.queue, record.priority), [])
        heapq.heappush(heap, (record.eta, self._seq, record.id))

    def _live(self, entry: tuple[float, int, str]) -> bool:
        record = self._tasks.get(entry[2])
        return record is not None and record.status == "pending" and record.eta == entry[0]

    def _head(self, level: _Level) -> tuple[float, int, str] | None:
        """The first live entry of a level's heap (stale ones are dropped on the way)."""
        heap = self._due.get(level)
        while heap:
            if self._live(heap[0]):
                return heap[0]
            heapq.heappop(heap)
        if heap is not None:
            del self._due[level]
        return None

    def _levels(self, queues: Sequence[str] | None) -> list[_Level]:
        if queues is None:
            return list(self._due)
        wanted = set(queues)
        return [level for level in self._due if level[0] in wanted]

    def _settle_key(self, record: TaskRecord) -> None:
        """Free a unique key whose holder left pending/running."""
        key = record.unique_key
        if key is not None and record.status not in _ACTIVE and self._unique.get(key) == record.id:
            del self._unique[key]

    async def add(self, records: Sequence[TaskRecord]) -> list[str]:
        """Store copies of new tasks; a record whose unique key is held is not stored."""
        with self._guard:
            return self._add(records)

    def _add(self, records: Sequence[TaskRecord]) -> list[str]:
        for record in records:
            if record.id in self._tasks:
                raise ValueError(f"a task with id {record.id!r} already exists")
        ids: list[str] = []
        for record in records:
            key = record.unique_key
            holder = self._unique.get(key) if key is not None else None
            if holder is not None:
                ids.append(holder)
                continue
            stored = record.copy()
            self._tasks[record.id] = stored
            if key is not None and stored.status in _ACTIVE:
                self._unique[key] = record.id
            if stored.status == "pending":
                self._push(stored)
            ids.append(record.id)
        return ids

    async def claim(
        self,
        now: float,
        lease_until: float,
        limit: int,
        queues: Sequence[str] | None = None,
        worker: str | None = None,
    ) -> list[TaskRecord]:
        """Take up to ``limit`` due tasks: highest priority, then earliest eta, then order."""
        token = new_attempt_token()
        claimed: list[TaskRecord] = []
        with self._guard:
            levels = self._levels(queues)
            while len(claimed) < limit:
                best: tuple[tuple[int, float, int], _Level] | None = None
                for level in levels:
                    head = self._head(level)
                    if head is None or head[0] > now:
                        continue
                    rank = (-level[1], head[0], head[1])
                    if best is None or rank < best[0]:
                        best = (rank, level)
                if best is None:
                    break
                _, _, task_id = heapq.heappop(self._due[best[1]])
                record = self._tasks[task_id]
                record.status = "running"
                record.attempts += 1
                record.attempt_token = token
                record.lease_until = lease_until
                record.started_at = now
                record.updated_at = now
                record.worker = worker
                claimed.append(record.copy())
        return claimed

    def _held(self, task_id: str, token: str) -> TaskRecord | None:
        record = self._tasks.get(task_id)
        # A RUNNING record without a token (damaged) is held by the empty token.
        if record is None or record.status != "running" or (record.attempt_token or "") != token:
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
            if transition.history is not None:
                record.history = transition.history
            if transition.is_final:
                record.finished_at = transition.now
            if transition.eta is not None:
                record.eta = transition.eta
            if record.status == "pending":
                self._push(record)
            self._settle_key(record)
            successor = transition.successor
            if successor is not None:
                key = successor.unique_key
                if key is not None and key in self._unique:
                    successor = dataclasses.replace(successor, unique_key=None)
                stored = dataclasses.replace(successor)
                self._tasks[stored.id] = stored
                if stored.unique_key is not None:
                    self._unique[stored.unique_key] = stored.id
                self._push(stored)
            return True

    async def release(
        self, task_id: str, token: str, now: float, history: str | None = None
    ) -> bool:
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
            if history is not None:
                record.history = history
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
                record.copy()
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
            return record.copy() if record is not None else None

    async def next_eta(self, queues: Sequence[str] | None = None) -> float | None:
        """The earliest pending eta among the queues asked for."""
        with self._guard:
            heads = [self._head(level) for level in self._levels(queues)]
        etas = [head[0] for head in heads if head is not None]
        return min(etas) if etas else None

    async def list_tasks(
        self, status: str | None, limit: int, offset: int = 0, queue: str | None = None
    ) -> list[TaskRecord]:
        """Tasks, newest change first, optionally of one status and one queue."""
        with self._guard:
            found = [
                record.copy()
                for record in self._tasks.values()
                if (status is None or record.status == status)
                and (queue is None or record.queue == queue)
            ]
        found.sort(key=lambda record: record.updated_at, reverse=True)
        return found[offset : offset + limit]

    async def find_tasks(self, query: TaskFilter, limit: int, offset: int = 0) -> list[TaskRecord]:
        """Tasks matching ``query``, newest change first."""
        with self._guard:
            found = [record.copy() for record in self._tasks.values() if query.matches(record)]
        found.sort(key=lambda record: record.updated_at, reverse=True)
        return found[offset : offset + limit]

    async def count_finished(self, since: float, width: float) -> list[tuple[int, str, str, int]]:
        """Finished tasks per time slot, queue and status."""
        counts: dict[tuple[int, str, str], int] = {}
        with self._guard:
            for record in self._tasks.values():
                finished = record.finished_at
                if record.status in FINAL_STATUSES and finished is not None and finished >= since:
                    key = (int((finished - since) // width), record.queue, record.status)
                    counts[key] = counts.get(key, 0) + 1
        return [(slot, queue, status, count) for (slot, queue, status), count in counts.items()]

    async def count_by_queue(self) -> dict[str, dict[str, int]]:
        """Per queue, how many tasks are in each status (zeros included)."""
        counts: dict[str, dict[str, int]] = {}
        with self._guard:
            for record in self._tasks.values():
                per_queue = counts.get(record.queue)
                if per_queue is None:
                    per_queue = counts[record.queue] = dict.fromkeys(STATUSES, 0)
                per_queue[record.status] += 1
        return counts

    async def requeue(self, task_id: str, now: float) -> bool:
        """A FAILED or CANCELLED task back to PENDING, due now, with a fresh budget."""
        with self._guard:
            record = self._tasks.get(task_id)
            if record is None or record.status not in ("failed", "cancelled"):
                return False
            key = record.unique_key
            if key is not None and key in self._unique:
                return False  # another pending or running task holds the key now
            record.status = "pending"
            record.attempts = 0
            record.eta = now
            record.updated_at = now
            record.error = record.result = None
            record.finished_at = record.started_at = None
            if key is not None:
                self._unique[key] = record.id
            self._push(record)
            return True

    async def purge(self, before: float, statuses: Sequence[str], limit: int | None = None) -> int:
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
            if limit is not None:
                doomed = doomed[:limit]
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
            self._settle_key(record)
            return True

    async def put_state(self, kind: str, name: str, data: str, now: float) -> None:
        """Create or replace a named record's data (its mark is kept)."""
        with self._guard:
            current = self._state.get((kind, name))
            mark = None if current is None else current.mark
            self._state[(kind, name)] = StateRecord(kind, name, data, now, mark)

    async def get_state(self, kind: str, name: str) -> StateRecord | None:
        """A copy of the named record, or ``None``."""
        with self._guard:
            record = self._state.get((kind, name))
            return None if record is None else dataclasses.replace(record)

    async def list_state(self, kind: str) -> list[StateRecord]:
        """Copies of every record of ``kind``, by name."""
        with self._guard:
            found = [dataclasses.replace(r) for (k, _), r in self._state.items() if k == kind]
        return sorted(found, key=lambda record: record.name)

    async def delete_state(self, kind: str, name: str) -> bool:
        """Delete a named record."""
        with self._guard:
            return self._state.pop((kind, name), None) is not None

    async def advance_state(
        self, kind: str, name: str, mark: float, records: Sequence[TaskRecord]
    ) -> bool:
        """Move the mark forward and add the records, under one lock."""
        with self._guard:
            record = self._state.get((kind, name))
            if record is None or (record.mark is not None and record.mark >= mark):
                return False
            self._add(records)
            record.mark = mark
            return True


def _still_expired(record: TaskRecord, transition: Transition) -> bool:
    """False when a recovery finds the lease renewed since it looked (see Transition)."""
    limit = transition.expired_before
    return limit is None or (record.lease_until is not None and record.lease_until < limit)
