"""SQLite storage: the embedded default, safe across threads and OS processes.

WAL mode, so readers never block the writer; ``synchronous=FULL`` by default, so
an acknowledged enqueue survives an OS crash (``durability="fast"`` uses NORMAL:
it survives a crash of the process only). Every write runs in a ``BEGIN
IMMEDIATE`` transaction, which takes the write lock up front, so concurrent
claims queue on SQLite's busy timeout instead of failing half-way. The claim is
one ``UPDATE ... RETURNING`` over a partial index of due PENDING tasks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from omniq._async.storage.base import AsyncBaseStorage
from omniq._concurrency import AsyncLock, arun_blocking
from omniq._fs import ensure_private_file
from omniq._wakeup import FinishedCallback, channel_for
from omniq.exceptions import StorageError
from omniq.records import FINAL_STATUSES, RECORD_FIELDS, STATUSES, TaskRecord, Transition

SCHEMA_VERSION = 1
DB_FILENAME = "omniq.db"
TABLE = "omniq_tasks"
_COLUMNS = ", ".join(RECORD_FIELDS)
_PLACEHOLDERS = ", ".join("?" for _ in RECORD_FIELDS)
_ETA_COLUMN = 1 + RECORD_FIELDS.index("eta")  # in claim rows, which start with seq

_SCHEMA = (
    f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        func_path TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_retries INTEGER,
        eta REAL NOT NULL,
        interval REAL,
        timeout REAL,
        result TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        lease_until REAL,
        attempt_token TEXT,
        correlation_id TEXT,
        parent_id TEXT
    )
    """,
    # The claim reads this index in order and stops after LIMIT rows: its cost does
    # not grow with the backlog. Partial, so finished tasks do not bloat it.
    # The claim names it (INDEXED BY): the planner would otherwise pick the status
    # index below and sort the whole backlog.
    f"CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (eta, seq) WHERE status = 'pending'",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_lease ON {TABLE} (lease_until) WHERE status = 'running'",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_status ON {TABLE} (status, updated_at)",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

_CLAIM = f"""
    UPDATE {TABLE}
    SET status = 'running', attempts = attempts + 1, attempt_token = ?,
        lease_until = ?, started_at = ?, updated_at = ?
    WHERE seq IN (
        SELECT seq FROM {TABLE} INDEXED BY {TABLE}_due
        WHERE status = 'pending' AND eta <= ?
        ORDER BY eta, seq LIMIT ?
    )
    RETURNING seq, {_COLUMNS}
"""

_FINISH = f"""
    UPDATE {TABLE}
    SET status = ?, result = ?, error = ?, eta = COALESCE(?, eta), updated_at = ?,
        finished_at = ?, lease_until = NULL, attempt_token = NULL
    WHERE id = ? AND status = 'running' AND attempt_token = ?
        AND (? IS NULL OR lease_until < ?)
"""

_INSERT = f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES ({_PLACEHOLDERS})"

_RELEASE = f"""
    UPDATE {TABLE}
    SET status = 'pending', attempts = MAX(attempts - 1, 0), eta = ?, updated_at = ?,
        lease_until = NULL, attempt_token = NULL
    WHERE id = ? AND status = 'running' AND attempt_token = ?
"""


def _finish_params(task_id: str, token: str, transition: Transition) -> tuple[object, ...]:
    finished_at = transition.now if transition.is_final else None
    return (
        transition.status,
        transition.result,
        transition.error,
        transition.eta,
        transition.now,
        finished_at,
        task_id,
        token,
        transition.expired_before,
        transition.expired_before,
    )


def _ordered(rows: Iterable[Sequence[Any]]) -> list[TaskRecord]:
    """Claimed rows as records in claim order.

    RETURNING gives rows in no promised order: restore (eta, enqueue order).
    """
    ordered = sorted(rows, key=lambda row: (row[_ETA_COLUMN], row[0]))
    return [TaskRecord(*row[1:]) for row in ordered]


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
        self._conn: aiosqlite.Connection | None = None
        self._lock = AsyncLock()
        # After an empty claim: (data_version, earliest pending eta) at that moment.
        self._idle: tuple[int, float | None] | None = None
        # Cross-process wake-ups: sockets in "omniq.db-wakeup/" beside the database.
        self._wakeup = channel_for(self.path.with_name(self.path.name + "-wakeup"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    async def open(self) -> None:
        """Open the database, switch it to WAL, and create or check the schema."""
        if self._conn is not None:
            return
        async with self._lock:
            if self._conn is not None:
                return
            try:
                await arun_blocking(ensure_private_file, self.path)
                conn = await aiosqlite.connect(
                    str(self.path),
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except (OSError, aiosqlite.Error) as error:
                raise StorageError(f"cannot open SQLite database {self.path}: {error}") from error
            try:
                await self._configure(conn)
            except BaseException:
                await conn.close()
                raise
            self._conn = conn

    async def _configure(self, conn: aiosqlite.Connection) -> None:
        synchronous = "FULL" if self.durability == "full" else "NORMAL"
        await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute(f"PRAGMA synchronous = {synchronous}")
        await conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = await conn.execute("PRAGMA user_version")
            row = await cursor.fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path} has schema version {version}, newer than this omniq "
                    f"understands ({SCHEMA_VERSION}): upgrade omniq"
                )
            if version < SCHEMA_VERSION:
                for statement in _SCHEMA:
                    await conn.execute(statement)
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")

    async def close(self) -> None:
        """Close the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

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

    async def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            await self.open()
        assert self._conn is not None
        return self._conn

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction over several statements (the write lock taken up front)."""
        # One connection is shared by every caller of this storage object, so the
        # lock keeps their transactions from interleaving on it.
        conn = await self._connection()
        async with self._lock:
            self._idle = None  # this connection writes: the idle shortcut no longer holds
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def _write(self, sql: str, params: Sequence[object]) -> aiosqlite.Cursor:
        """One write statement, atomic on its own (autocommit).

        A write statement takes SQLite's write lock when it starts, waiting on the
        busy timeout, so it needs no BEGIN IMMEDIATE around it: one round-trip to
        the driver instead of three.
        """
        conn = await self._connection()
        async with self._lock:
            self._idle = None
            return await conn.execute(sql, params)

    async def add(self, records: Sequence[TaskRecord]) -> None:
        """Insert new tasks, all or none."""
        rows = [tuple(getattr(record, name) for name in RECORD_FIELDS) for record in records]
        if len(rows) == 1:
            await self._write(_INSERT, rows[0])
        else:
            async with self._transaction() as conn:
                await conn.executemany(_INSERT, rows)
        self._wakeup.notify_due()

    async def claim(self, now: float, lease_until: float, limit: int) -> list[TaskRecord]:
        """Claim up to ``limit`` due tasks with one ``UPDATE ... RETURNING``.

        After a claim that found nothing, the next ones skip the write transaction
        while nothing changed: no other connection committed (``PRAGMA
        data_version``, answered from memory) and the earliest pending eta is still
        ahead. So idle workers poll without taking SQLite's write lock.
        """
        if self._idle is not None and await self._still_idle(now):
            return []
        token = uuid.uuid4().hex
        conn = await self._connection()
        async with self._lock:
            self._idle = None
            cursor = await conn.execute(_CLAIM, (token, lease_until, now, now, now, limit))
            rows = await cursor.fetchall()
            if not rows:
                # Read data_version before the earliest eta: a commit in between then
                # shows as a changed version, so the shortcut cannot miss it.
                version = await self._data_version(conn)
                self._idle = (version, await self._earliest_eta(conn))
        return _ordered(rows)

    async def finish(self, task_id: str, token: str, transition: Transition) -> bool:
        """Conditionally apply an outcome; insert the successor in the same transaction."""
        return (await self.finish_many([(task_id, token, transition)]))[0]

    async def finish_many(self, items: Sequence[tuple[str, str, Transition]]) -> list[bool]:
        """Apply several outcomes in one transaction: one disk sync for all of them."""
        if len(items) == 1 and items[0][2].successor is None:
            task_id, token, transition = items[0]
            cursor = await self._write(_FINISH, _finish_params(task_id, token, transition))
            applied = [cursor.rowcount == 1]
        else:
            async with self._transaction() as conn:
                applied = [await self._finish_one(conn, *item) for item in items]
        self._wakeup.notify_settled(items, applied)
        return applied

    async def _finish_one(
        self, conn: aiosqlite.Connection, task_id: str, token: str, transition: Transition
    ) -> bool:
        cursor = await conn.execute(_FINISH, _finish_params(task_id, token, transition))
        changed = cursor.rowcount == 1
        if changed and transition.successor is not None:
            successor = transition.successor
            await conn.execute(_INSERT, tuple(getattr(successor, name) for name in RECORD_FIELDS))
        return bool(changed)

    async def finish_and_claim(
        self,
        items: Sequence[tuple[str, str, Transition]],
        now: float,
        lease_until: float,
        limit: int,
    ) -> tuple[list[bool], list[TaskRecord]]:
        """Record outcomes and claim the next tasks in one transaction (one disk sync)."""
        if not items or limit <= 0:
            return await super().finish_and_claim(items, now, lease_until, limit)
        token = uuid.uuid4().hex
        async with self._transaction() as conn:
            finished = [await self._finish_one(conn, *item) for item in items]
            cursor = await conn.execute(_CLAIM, (token, lease_until, now, now, now, limit))
            rows = await cursor.fetchall()
        self._wakeup.notify_settled(items, finished)
        return finished, _ordered(rows)

    async def release(self, task_id: str, token: str, now: float) -> bool:
        """Put an unfinished task back to PENDING without spending an attempt."""
        cursor = await self._write(_RELEASE, (now, now, task_id, token))
        if cursor.rowcount != 1:
            return False
        self._wakeup.notify_due()
        return True

    async def heartbeat(self, leases: Sequence[tuple[str, str]], lease_until: float) -> list[str]:
        """Extend leases still held; report the ones lost."""
        lost: list[str] = []
        async with self._transaction() as conn:
            for task_id, token in leases:
                cursor = await conn.execute(
                    f"UPDATE {TABLE} SET lease_until = ? "
                    "WHERE id = ? AND status = 'running' AND attempt_token = ?",
                    (lease_until, task_id, token),
                )
                if cursor.rowcount != 1:
                    lost.append(task_id)
                await cursor.close()
        return lost

    async def expired(self, now: float, limit: int) -> list[TaskRecord]:
        """RUNNING tasks whose lease has run out."""
        return await self._select(
            f"SELECT {_COLUMNS} FROM {TABLE} WHERE status = 'running' AND lease_until < ? "
            "ORDER BY lease_until LIMIT ?",
            (now, limit),
        )

    async def get(self, task_id: str) -> TaskRecord | None:
        """The task with this id, or ``None``."""
        rows = await self._select(f"SELECT {_COLUMNS} FROM {TABLE} WHERE id = ?", (task_id,))
        return rows[0] if rows else None

    async def next_eta(self) -> float | None:
        """The earliest pending eta: the first entry of the claim index."""
        conn = await self._connection()
        async with self._lock:
            return await self._earliest_eta(conn)

    async def _earliest_eta(self, conn: aiosqlite.Connection) -> float | None:
        cursor = await conn.execute(
            f"SELECT eta FROM {TABLE} INDEXED BY {TABLE}_due "
            "WHERE status = 'pending' ORDER BY eta, seq LIMIT 1"
        )
        row = await cursor.fetchone()
        await cursor.close()
        return None if row is None else float(row[0])

    async def _data_version(self, conn: aiosqlite.Connection) -> int:
        cursor = await conn.execute("PRAGMA data_version")
        row = await cursor.fetchone()
        await cursor.close()
        return int(row[0]) if row else -1

    async def _still_idle(self, now: float) -> bool:
        """Whether the last empty claim still holds: nothing committed since, nothing due."""
        conn = await self._connection()
        async with self._lock:
            version = await self._data_version(conn)
        idle = self._idle
        if idle is None or version != idle[0]:
            return False
        next_eta = idle[1]
        return next_eta is None or now < next_eta

    async def cancel(self, task_id: str, now: float) -> bool:
        """Cancel a PENDING task."""
        cursor = await self._write(
            f"UPDATE {TABLE} SET status = 'cancelled', updated_at = ?, finished_at = ? "
            "WHERE id = ? AND status = 'pending'",
            (now, now, task_id),
        )
        if cursor.rowcount != 1:
            return False
        self._wakeup.notify_finished([task_id])
        return True

    async def list_tasks(self, status: str | None, limit: int, offset: int = 0) -> list[TaskRecord]:
        """Tasks, newest change first, optionally of one status."""
        where = "" if status is None else "WHERE status = ?"
        params: tuple[object, ...] = () if status is None else (status,)
        return await self._select(
            f"SELECT {_COLUMNS} FROM {TABLE} {where} "
            "ORDER BY updated_at DESC, seq DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )

    async def count_by_status(self) -> dict[str, int]:
        """How many tasks are in each status (zeros included)."""
        conn = await self._connection()
        async with self._lock:
            cursor = await conn.execute(f"SELECT status, COUNT(*) FROM {TABLE} GROUP BY status")
            rows = await cursor.fetchall()
            await cursor.close()
        counts = dict.fromkeys(STATUSES, 0)
        counts.update({str(status): int(count) for status, count in rows})
        return counts

    async def requeue(self, task_id: str, now: float) -> bool:
        """A FAILED or CANCELLED task back to PENDING, due now, with a fresh budget."""
        cursor = await self._write(
            f"UPDATE {TABLE} SET status = 'pending', attempts = 0, eta = ?, updated_at = ?, "
            "error = NULL, result = NULL, finished_at = NULL, started_at = NULL "
            "WHERE id = ? AND status IN ('failed', 'cancelled')",
            (now, now, task_id),
        )
        if cursor.rowcount != 1:
            return False
        self._wakeup.notify_due()
        return True

    async def purge(self, before: float, statuses: Sequence[str]) -> int:
        """Delete finished tasks of ``statuses`` that finished before ``before``."""
        final = [status for status in statuses if status in FINAL_STATUSES]
        if not final:
            return 0
        marks = ", ".join("?" for _ in final)
        cursor = await self._write(
            f"DELETE FROM {TABLE} WHERE status IN ({marks}) AND finished_at < ?",
            (*final, before),
        )
        return int(cursor.rowcount)

    async def _select(self, sql: str, params: Sequence[object]) -> list[TaskRecord]:
        conn = await self._connection()
        async with self._lock:
            cursor = await conn.execute(sql, params)
            rows = await cursor.fetchall()
            await cursor.close()
        return [TaskRecord(*row) for row in rows]
