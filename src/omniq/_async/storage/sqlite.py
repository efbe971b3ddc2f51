"""SQLite storage: the embedded default, safe across threads and OS processes.

WAL mode, so readers never block the writer; ``synchronous=FULL`` by default, so
an acknowledged enqueue survives an OS crash (``durability="fast"`` uses NORMAL:
it survives a crash of the process only). Every write runs in a ``BEGIN
IMMEDIATE`` transaction, which takes the write lock up front, so concurrent
claims queue on SQLite's busy timeout instead of failing half-way. The claim is
one ``UPDATE ... RETURNING`` over a partial index of due PENDING tasks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from omniq import _sqlite_sql as sql
from omniq._async.storage.base import AsyncBaseStorage
from omniq._async.storage.sqlite_connection import DB_FILENAME, AsyncSQLiteConnection, scalar
from omniq._wakeup import FinishedCallback, channel_for
from omniq.exceptions import StorageError
from omniq.records import (
    FINAL_STATUSES,
    RECORD_FIELDS,
    STATUSES,
    StateRecord,
    TaskFilter,
    TaskRecord,
    Transition,
)

_QueuesKey = tuple[str, ...] | None
# Claimed rows in claim order: higher priority, then earlier eta, then id.
_PRIORITY, _ETA, _ID = (RECORD_FIELDS.index(name) for name in ("priority", "eta", "id"))


def _finish_params(task_id: str, token: str, transition: Transition) -> tuple[object, ...]:
    finished_at = transition.now if transition.is_final else None
    return (
        transition.status,
        transition.result,
        transition.error,
        transition.eta,
        transition.now,
        finished_at,
        transition.history,
        task_id,
        token,
        transition.expired_before,
        transition.expired_before,
    )


def _ordered(rows: Iterable[Sequence[Any]]) -> list[TaskRecord]:
    """Claimed rows as records in claim order (RETURNING promises no order)."""
    ordered = sorted(rows, key=lambda row: (-row[_PRIORITY], row[_ETA], row[_ID]))
    return [TaskRecord(*row) for row in ordered]


def _insert(record: TaskRecord) -> tuple[str, tuple[object, ...]]:
    """The insert of one record, binding only its non-null columns."""
    columns: list[str] = []
    values: list[object] = []
    for name in RECORD_FIELDS:
        value = getattr(record, name)
        if value is not None:
            columns.append(name)
            values.append(value)
    return sql.insert_of(tuple(columns), record.unique_key is not None), tuple(values)


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
        self._idle: dict[_QueuesKey, tuple[int, float | None]] = {}
        # Cross-process wake-ups: sockets in "omniq.db-wakeup/" beside the database.
        self._wakeup = channel_for(self.path.with_name(self.path.name + "-wakeup"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def _forget_idle(self) -> None:
        self._idle.clear()

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

    @asynccontextmanager
    async def _transaction(self, operation: str) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction over several statements (the write lock taken up front)."""
        # One connection is shared by every caller of this storage object, so the
        # lock keeps their transactions from interleaving on it.
        async with self._db.locked(operation) as conn:
            self._idle.clear()  # this connection writes: the idle shortcut no longer holds
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(aiosqlite.Error):  # keep the error that got us here
                    await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def _write(
        self, operation: str, statement: str, params: Sequence[object]
    ) -> aiosqlite.Cursor:
        """One write statement, atomic on its own (autocommit).

        A write statement takes SQLite's write lock when it starts, waiting on the
        busy timeout, so it needs no BEGIN IMMEDIATE around it: one round-trip to
        the driver instead of three.
        """
        async with self._db.locked(operation) as conn:
            self._idle.clear()
            return await conn.execute(statement, params)

    async def add(self, records: Sequence[TaskRecord]) -> list[str]:
        """Insert new tasks, all or none; a task whose unique key is held is not inserted.

        A lone task without a unique key is one autocommit statement. Otherwise one
        transaction: consecutive tasks with the same columns go in one
        ``executemany``; a task with a unique key is inserted on its own, and when
        the unique index refuses it, the holder's id is read in the same
        transaction (under the write lock, so no race can slip in between).
        """
        if len(records) == 1 and records[0].unique_key is None:
            await self._write("add", *_insert(records[0]))
            self._wakeup.notify_due()
            return [records[0].id]
        async with self._transaction("add") as conn:
            ids = await self._add_in(conn, records)
        if any(task_id == record.id for task_id, record in zip(ids, records, strict=True)):
            self._wakeup.notify_due()
        return ids

    async def _add_in(self, conn: aiosqlite.Connection, records: Sequence[TaskRecord]) -> list[str]:
        """The inserts of :meth:`add`, in the caller's transaction."""
        inserts = [_insert(record) for record in records]
        ids = [record.id for record in records]
        position = 0
        while position < len(records):
            statement, values = inserts[position]
            key = records[position].unique_key
            if key is not None:
                cursor = await conn.execute(statement, values)
                if cursor.rowcount != 1:
                    ids[position] = await self._holder(conn, key)
                await cursor.close()
                position += 1
                continue
            run = position + 1
            while (
                run < len(records)
                and inserts[run][0] == statement
                and records[run].unique_key is None
            ):
                run += 1
            await conn.executemany(statement, [inserts[k][1] for k in range(position, run)])
            position = run
        return ids

    async def _holder(self, conn: aiosqlite.Connection, unique_key: str) -> str:
        cursor = await conn.execute(sql.HOLDER, (unique_key,))
        row = await cursor.fetchone()
        await cursor.close()
        if row is None:  # the index refused the key, so a holder exists in this transaction
            raise StorageError(f"unique key {unique_key!r} is held, but by no task")
        return str(row[0])

    async def _levels(
        self, conn: aiosqlite.Connection, queues: Sequence[str] | None
    ) -> list[tuple[str, int, float]]:
        """The (queue, priority, earliest eta) of every level with pending tasks."""
        if queues is None:
            cursor = await conn.execute(sql.ALL_LEVELS)
        else:
            cursor = await conn.execute(sql.levels_of(len(queues)), tuple(queues))
        rows = await cursor.fetchall()
        await cursor.close()
        return [(str(q), int(p), float(eta)) for q, p, eta in rows]

    async def _claim_in(
        self,
        conn: aiosqlite.Connection,
        now: float,
        lease_until: float,
        limit: int,
        queues: Sequence[str] | None,
        worker: str | None,
    ) -> list[TaskRecord]:
        """The claim, on a connection whose lock the caller holds."""
        levels = await self._levels(conn, queues)
        due = sorted(((q, p) for q, p, eta in levels if eta <= now), key=lambda level: -level[1])
        if not due:
            # Nothing due: remember (data_version, earliest eta) for the idle shortcut.
            # The version is read first and the levels again after it, so a commit in
            # between shows as a changed version and the shortcut cannot miss it.
            version = await scalar(conn, "PRAGMA data_version")
            etas = [eta for _, _, eta in await self._levels(conn, queues)]
            if all(eta > now for eta in etas):
                self._idle[_key(queues)] = (version, min(etas, default=None))
            return []
        params: list[object] = [uuid.uuid4().hex, lease_until, now, now, worker]
        for queue, priority in due:
            params.extend((queue, priority, now, limit))
        if len(due) > 1:
            params.append(limit)
        cursor = await conn.execute(sql.claim_of(len(due)), params)
        rows = await cursor.fetchall()
        await cursor.close()
        return _ordered(rows)

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
        # No BEGIN: the levels are read, then the UPDATE is atomic on its own and checks
        # again that each row is pending and due. A level that appears in between is
        # like a task enqueued just after this claim: the next claim takes it.
        async with self._db.locked("claim") as conn:
            self._idle.clear()
            return await self._claim_in(conn, now, lease_until, limit, queues, worker)

    async def finish(self, task_id: str, token: str, transition: Transition) -> bool:
        """Conditionally apply an outcome; insert the successor in the same transaction."""
        return (await self.finish_many([(task_id, token, transition)]))[0]

    async def finish_many(self, items: Sequence[tuple[str, str, Transition]]) -> list[bool]:
        """Apply several outcomes in one transaction: one disk sync for all of them."""
        if len(items) == 1 and items[0][2].successor is None:
            task_id, token, transition = items[0]
            cursor = await self._write(
                "finish_many", sql.FINISH, _finish_params(task_id, token, transition)
            )
            applied = [cursor.rowcount == 1]
        else:
            async with self._transaction("finish_many") as conn:
                applied = [await self._finish_one(conn, *item) for item in items]
        self._wakeup.notify_settled(items, applied)
        return applied

    async def _finish_one(
        self, conn: aiosqlite.Connection, task_id: str, token: str, transition: Transition
    ) -> bool:
        cursor = await conn.execute(sql.FINISH, _finish_params(task_id, token, transition))
        changed = cursor.rowcount == 1
        await cursor.close()
        if changed and transition.successor is not None:
            await self._insert_successor(conn, transition.successor)
        return changed

    async def _insert_successor(self, conn: aiosqlite.Connection, successor: TaskRecord) -> None:
        """The next run of an interval task; it keeps the unique key unless another holds it."""
        statement, values = _insert(successor)
        cursor = await conn.execute(statement, values)
        inserted = cursor.rowcount == 1
        await cursor.close()
        if not inserted:
            await conn.execute(*_insert(dataclasses.replace(successor, unique_key=None)))

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
        async with self._transaction("finish_and_claim") as conn:
            finished = [await self._finish_one(conn, *item) for item in items]
            claimed = await self._claim_in(conn, now, lease_until, limit, queues, worker)
        self._wakeup.notify_settled(items, finished)
        return finished, claimed

    async def release(
        self, task_id: str, token: str, now: float, history: str | None = None
    ) -> bool:
        """Put an unfinished task back to PENDING without spending an attempt."""
        cursor = await self._write("release", sql.RELEASE, (now, now, history, task_id, token))
        if cursor.rowcount != 1:
            return False
        self._wakeup.notify_due()
        return True

    async def heartbeat(self, leases: Sequence[tuple[str, str]], lease_until: float) -> list[str]:
        """Extend leases still held; report the ones lost."""
        lost: list[str] = []
        async with self._transaction("heartbeat") as conn:
            for task_id, token in leases:
                cursor = await conn.execute(sql.HEARTBEAT, (lease_until, task_id, token))
                if cursor.rowcount != 1:
                    lost.append(task_id)
                await cursor.close()
        return lost

    async def expired(self, now: float, limit: int) -> list[TaskRecord]:
        """RUNNING tasks whose lease has run out."""
        return await self._select(sql.EXPIRED, (now, limit))

    async def get(self, task_id: str) -> TaskRecord | None:
        """The task with this id, or ``None``."""
        rows = await self._select(sql.GET, (task_id,))
        return rows[0] if rows else None

    async def next_eta(self, queues: Sequence[str] | None = None) -> float | None:
        """The earliest pending eta: the first entry of each level of the due index."""
        async with self._db.locked("read") as conn:
            levels = await self._levels(conn, queues)
        return min((eta for _, _, eta in levels), default=None)

    async def _still_idle(self, now: float, queues: Sequence[str] | None) -> bool:
        """Whether the last empty claim still holds: nothing committed since, nothing due."""
        idle = self._idle.get(_key(queues))
        if idle is None:
            return False
        async with self._db.locked("read") as conn:
            version = await scalar(conn, "PRAGMA data_version")
        if version != idle[0] or self._idle.get(_key(queues)) is not idle:
            return False
        next_eta = idle[1]
        return next_eta is None or now < next_eta

    async def cancel(self, task_id: str, now: float) -> bool:
        """Cancel a PENDING task."""
        cursor = await self._write("cancel", sql.CANCEL, (now, now, task_id))
        if cursor.rowcount != 1:
            return False
        self._wakeup.notify_finished([task_id])
        return True

    async def list_tasks(
        self, status: str | None, limit: int, offset: int = 0, queue: str | None = None
    ) -> list[TaskRecord]:
        """Tasks, newest change first, optionally of one status and one queue."""
        params = [value for value in (status, queue) if value is not None]
        statement = sql.list_of(status is not None, queue is not None)
        return await self._select(statement, (*params, limit, offset))

    async def count_by_queue(self) -> dict[str, dict[str, int]]:
        """Per queue, how many tasks are in each status (zeros included)."""
        async with self._db.locked("read") as conn:
            cursor = await conn.execute(sql.COUNT_BY_QUEUE)
            rows = await cursor.fetchall()
            await cursor.close()
        counts: dict[str, dict[str, int]] = {}
        for queue, status, count in rows:
            per_queue = counts.setdefault(str(queue), dict.fromkeys(STATUSES, 0))
            per_queue[str(status)] = int(count)
        return counts

    async def requeue(self, task_id: str, now: float) -> bool:
        """A FAILED or CANCELLED task back to PENDING, due now, with a fresh budget."""
        cursor = await self._write("requeue", sql.REQUEUE, (now, now, task_id))
        if cursor.rowcount != 1:
            return False
        self._wakeup.notify_due()
        return True

    async def purge(self, before: float, statuses: Sequence[str], limit: int | None = None) -> int:
        """Delete finished tasks of ``statuses`` that finished before ``before``."""
        final = tuple(sorted(status for status in set(statuses) if status in FINAL_STATUSES))
        if not final:
            return 0
        params: tuple[object, ...] = (before,) if limit is None else (before, limit)
        cursor = await self._write("purge", sql.purge_of(final, limit is not None), params)
        return int(cursor.rowcount)

    async def find_tasks(self, query: TaskFilter, limit: int, offset: int = 0) -> list[TaskRecord]:
        """Tasks matching ``query``, newest change first (one query)."""
        values = (query.status, query.queue, query.func_contains, query.id_contains)
        params = [value for value in (*values, query.parent_id) if value is not None]
        statement = sql.find_of(*(value is not None for value in (*values, query.parent_id)))
        return await self._select(statement, (*params, limit, offset))

    async def count_finished(self, since: float, width: float) -> list[tuple[int, str, str, int]]:
        """Finished tasks per time slot, queue and status (a range of the finished index)."""
        rows = await self._rows(sql.COUNT_FINISHED, (since, width, since))
        return [(int(slot), str(queue), str(status), int(n)) for slot, queue, status, n in rows]

    async def earliest_pending(self, queues: Sequence[str]) -> dict[str, float]:
        """The earliest pending eta per queue: the first entry of each level of the due index."""
        if not queues:
            return {}
        async with self._db.locked("read") as conn:
            levels = await self._levels(conn, queues)
        earliest: dict[str, float] = {}
        for queue, _, eta in levels:
            earliest[queue] = min(eta, earliest.get(queue, eta))
        return earliest

    async def _select(self, statement: str, params: Sequence[object]) -> list[TaskRecord]:
        return [TaskRecord(*row) for row in await self._rows(statement, params)]

    async def put_state(self, kind: str, name: str, data: str, now: float) -> None:
        """Create or replace a named record's data (its mark is kept)."""
        await self._write("put_state", sql.PUT_STATE, (kind, name, data, now))

    async def get_state(self, kind: str, name: str) -> StateRecord | None:
        """The named record, or ``None``."""
        rows = await self._rows(sql.GET_STATE, (kind, name))
        return StateRecord(*rows[0]) if rows else None

    async def list_state(self, kind: str) -> list[StateRecord]:
        """Every record of ``kind``, by name."""
        return [StateRecord(*row) for row in await self._rows(sql.LIST_STATE, (kind,))]

    async def delete_state(self, kind: str, name: str) -> bool:
        """Delete a named record."""
        cursor = await self._write("delete_state", sql.DELETE_STATE, (kind, name))
        return cursor.rowcount == 1

    async def advance_state(
        self, kind: str, name: str, mark: float, records: Sequence[TaskRecord]
    ) -> bool:
        """Move the mark forward and add the records in one transaction (under the write lock)."""
        async with self._transaction("advance_state") as conn:
            cursor = await conn.execute(sql.ADVANCE_STATE, (mark, kind, name, mark))
            advanced = cursor.rowcount == 1
            await cursor.close()
            if advanced:
                await self._add_in(conn, records)
        if advanced and records:
            self._wakeup.notify_due()
        return advanced

    async def _rows(self, statement: str, params: Sequence[object]) -> list[Any]:
        async with self._db.locked("read") as conn:
            cursor = await conn.execute(statement, params)
            rows = await cursor.fetchall()
            await cursor.close()
        return list(rows)


def _key(queues: Sequence[str] | None) -> _QueuesKey:
    return None if queues is None else tuple(queues)
