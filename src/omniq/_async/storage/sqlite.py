"""SQLite storage: the embedded default, safe across threads and OS processes.

WAL mode, so readers never block the writer; ``synchronous=FULL`` by default, so
an acknowledged enqueue survives an OS crash (``durability="fast"`` uses NORMAL:
it survives a crash of the process only). Writes of several statements run in a
``BEGIN IMMEDIATE`` transaction, which takes the write lock up front, so concurrent
claims queue on SQLite's busy timeout instead of failing half-way. The schema and
statements are in ``omniq._sqlite_sql``, the operations (plain functions on a
``sqlite3`` connection, shared by both twins) in ``omniq._sqlite_ops``; this class
runs each operation whole on the connection (``omniq._async.storage.sqlite_connection``)
and sends the cross-process wake-ups after its commits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omniq import _sqlite_ops as ops
from omniq import _sqlite_sql as sql
from omniq._async.storage.base import AsyncBaseStorage
from omniq._async.storage.sqlite_connection import DB_FILENAME, AsyncSQLiteConnection
from omniq._sqlite_idle import IdleShortcut
from omniq._wakeup import FinishedCallback, channel_for
from omniq.models import new_attempt_token
from omniq.records import StateRecord, TaskFilter, TaskRecord, Transition

T = TypeVar("T")


def database_path(path: str | os.PathLike[str]) -> Path:
    """The database file for ``path``: the path itself, or ``omniq.db`` inside a directory."""
    resolved = Path(path).expanduser()
    return resolved / DB_FILENAME if resolved.is_dir() else resolved


class AsyncSQLiteStorage(AsyncBaseStorage):
    """Tasks in one SQLite database file, shared by threads and processes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "full",
        busy_timeout: float = 30.0,
    ) -> None:
        self.path = database_path(path)
        self.durability = durability
        self.busy_timeout = busy_timeout
        self._db = AsyncSQLiteConnection(
            self.path, durability, busy_timeout, on_open=self._forget_idle
        )
        # After an empty claim, per set of queues asked for: (data_version, earliest
        # pending eta of those queues) at that moment.
        self._idle = IdleShortcut()
        # Cross-process wake-ups: sockets in "omniq.db-wakeup/" beside the database.
        self._wakeup = channel_for(self.path.with_name(self.path.name + "-wakeup"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def _forget_idle(self) -> None:
        self._idle.write_begins()

    async def open(self) -> None:
        """Open the database, switch it to WAL, and create, migrate or check the schema."""
        await self._db.open()

    async def close(self) -> None:
        """Close the connection."""
        await self._db.close()

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when any process makes a task pending (see ``omniq._wakeup``)."""
        self._wakeup.subscribe(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        self._wakeup.unsubscribe(callback)

    def subscribe_finished(self, callback: FinishedCallback) -> bool:
        """Call ``callback(task_ids)`` when tasks finish in any process; False: poll."""
        return self._wakeup.subscribe_finished(callback)

    def unsubscribe_finished(self, callback: FinishedCallback) -> None:
        """Stop calling ``callback``."""
        self._wakeup.unsubscribe_finished(callback)

    async def add(self, records: Sequence[TaskRecord]) -> list[str]:
        """Insert new tasks, all or none; a task whose unique key is held is not inserted.

        A lone task without a unique key is one autocommit statement; otherwise one
        transaction, in which the unique index settles every race (see
        ``omniq._sqlite_ops.add_in``).
        """
        ids = await self._write("add", ops.add, records)
        if any(task_id == record.id for task_id, record in zip(ids, records, strict=True)):
            self._wakeup.notify_due()
        return ids

    async def claim(
        self,
        now: float,
        lease_until: float,
        limit: int,
        queues: Sequence[str] | None = None,
        worker: str | None = None,
    ) -> list[TaskRecord]:
        """Claim up to ``limit`` due tasks in claim order with one ``UPDATE ... RETURNING``.

        After a claim that found nothing, the next ones skip the write while nothing
        changed: no other connection committed (``PRAGMA data_version``, answered
        from memory) and the earliest pending eta is still ahead. So idle workers
        poll without taking SQLite's write lock.
        """
        if await self._still_idle(now, queues):
            return []
        token = new_attempt_token()
        generation = self._idle.write_begins()
        claimed, idle = await self._db.run(
            "claim", ops.claim, token, now, lease_until, limit, queues, worker
        )
        self._idle.remember(generation, queues, idle)
        return claimed

    async def finish(self, task_id: str, token: str, transition: Transition) -> bool:
        """Conditionally apply an outcome; insert the successor in the same transaction."""
        return (await self.finish_many([(task_id, token, transition)]))[0]

    async def finish_many(self, items: Sequence[tuple[str, str, Transition]]) -> list[bool]:
        """Apply several outcomes in one transaction: one disk sync for all of them."""
        applied = await self._write("finish", ops.finish_many, items)
        self._wakeup.notify_settled(items, applied)
        return applied

    async def finish_and_claim(
        self,
        items: Sequence[tuple[str, str, Transition]],
        now: float,
        lease_until: float,
        limit: int,
        queues: Sequence[str] | None = None,
        worker: str | None = None,
    ) -> tuple[list[bool], list[TaskRecord]]:
        """Record outcomes and claim the next tasks in one transaction (one disk sync)."""
        if not items or limit <= 0:
            return await super().finish_and_claim(items, now, lease_until, limit, queues, worker)
        token = new_attempt_token()
        generation = self._idle.write_begins()
        finished, claimed, idle = await self._db.run(
            "finish_and_claim",
            ops.finish_and_claim,
            items,
            token,
            now,
            lease_until,
            limit,
            queues,
            worker,
        )
        self._idle.remember(generation, queues, idle)
        self._wakeup.notify_settled(items, finished)
        return finished, claimed

    async def release(
        self, task_id: str, token: str, now: float, history: str | None = None
    ) -> bool:
        """Put an unfinished task back to PENDING without spending an attempt."""
        params = (now, now, history, task_id, token)
        if await self._write("release", ops.write, sql.RELEASE, params) != 1:
            return False
        self._wakeup.notify_due()
        return True

    async def heartbeat(self, leases: Sequence[tuple[str, str]], lease_until: float) -> list[str]:
        """Extend leases still held; report the ones lost."""
        return await self._db.run("heartbeat", ops.heartbeat, leases, lease_until)

    async def expired(self, now: float, limit: int) -> list[TaskRecord]:
        """RUNNING tasks whose lease has run out."""
        return await self._db.run("expired", ops.records, sql.EXPIRED, (now, limit))

    async def get(self, task_id: str) -> TaskRecord | None:
        """The task with this id, or ``None``."""
        found = await self._db.run("get", ops.records, sql.GET, (task_id,))
        return found[0] if found else None

    async def next_eta(self, queues: Sequence[str] | None = None) -> float | None:
        """The earliest pending eta: the first entry of each level of the due index."""
        return await self._db.run("next_eta", ops.next_eta, queues)

    async def _still_idle(self, now: float, queues: Sequence[str] | None) -> bool:
        """Whether the last empty claim still holds: nothing committed since, nothing due."""
        idle = self._idle.get(queues)
        if idle is None:
            return False
        version = await self._db.run("claim", ops.scalar, "PRAGMA data_version")
        if version != idle[0] or self._idle.get(queues) is not idle:
            return False
        next_eta = idle[1]
        return next_eta is None or now < next_eta

    async def cancel(self, task_id: str, now: float) -> bool:
        """Cancel a PENDING task."""
        if await self._write("cancel", ops.write, sql.CANCEL, (now, now, task_id)) != 1:
            return False
        self._wakeup.notify_finished([task_id])
        return True

    async def list_tasks(
        self, status: str | None, limit: int, offset: int = 0, queue: str | None = None
    ) -> list[TaskRecord]:
        """Tasks, newest change first, optionally of one status and one queue."""
        return await self._db.run("list_tasks", ops.list_tasks, status, limit, offset, queue)

    async def count_by_queue(self) -> dict[str, dict[str, int]]:
        """Per queue, how many tasks are in each status (zeros included)."""
        return await self._db.run("count_by_queue", ops.count_by_queue)

    async def requeue(self, task_id: str, now: float) -> bool:
        """A FAILED or CANCELLED task back to PENDING, due now, with a fresh budget."""
        if await self._write("requeue", ops.write, sql.REQUEUE, (now, now, task_id)) != 1:
            return False
        self._wakeup.notify_due()
        return True

    async def purge(self, before: float, statuses: Sequence[str], limit: int | None = None) -> int:
        """Delete finished tasks of ``statuses`` that finished before ``before``."""
        return await self._write("purge", ops.purge, before, statuses, limit)

    async def find_tasks(self, query: TaskFilter, limit: int, offset: int = 0) -> list[TaskRecord]:
        """Tasks matching ``query``, newest change first (one query)."""
        return await self._db.run("find_tasks", ops.find_tasks, query, limit, offset)

    async def count_finished(self, since: float, width: float) -> list[tuple[int, str, str, int]]:
        """Finished tasks per time slot, queue and status (a range of the finished index)."""
        return await self._db.run("count_finished", ops.count_finished, since, width)

    async def earliest_pending(self, queues: Sequence[str]) -> dict[str, float]:
        """The earliest pending eta per queue: the first entry of each level of the due index."""
        if not queues:
            return {}
        return await self._db.run("earliest_pending", ops.earliest_pending, queues)

    async def put_state(self, kind: str, name: str, data: str, now: float) -> None:
        """Create or replace a named record's data (its mark is kept)."""
        await self._write("put_state", ops.write, sql.PUT_STATE, (kind, name, data, now))

    async def get_state(self, kind: str, name: str) -> StateRecord | None:
        """The named record, or ``None``."""
        return await self._db.run("get_state", ops.get_state, kind, name)

    async def list_state(self, kind: str) -> list[StateRecord]:
        """Every record of ``kind``, by name."""
        return await self._db.run("list_state", ops.list_state, kind)

    async def delete_state(self, kind: str, name: str) -> bool:
        """Delete a named record."""
        return await self._write("delete_state", ops.write, sql.DELETE_STATE, (kind, name)) == 1

    async def advance_state(
        self, kind: str, name: str, mark: float, records: Sequence[TaskRecord]
    ) -> bool:
        """Move the mark forward and add the records in one transaction (under the write lock)."""
        advanced = await self._write("advance_state", ops.advance_state, kind, name, mark, records)
        if advanced and records:
            self._wakeup.notify_due()
        return advanced

    async def _write(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        """An operation that writes: this connection's idle shortcut no longer holds."""
        self._idle.write_begins()
        return await self._db.run(operation, fn, *args)
