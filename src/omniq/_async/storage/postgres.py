"""PostgreSQL storage: the same contract for workers spread over many machines.

Connections come from a ``psycopg_pool`` pool, in autocommit mode: most operations
are one statement, hence one round-trip and one transaction. The claim is one
``UPDATE ... FROM`` over a walk of the due index by (queue, priority) level whose
rows are taken ``FOR UPDATE SKIP LOCKED``: concurrent claimers skip each other's
rows instead of queueing behind them (see ``omniq._postgres_sql``). Unique keys are
settled by a unique partial index, inside the insert. Leases and due checks use the
database clock (``statement_timestamp()``), so workers whose clocks disagree still
agree on when a task is due and when a lease has run out; the storage keeps the
lease lengths and retry delays the queue asks for and stamps them on that clock.
Times are stored as epoch seconds (``double precision``), as every backend returns
them. Tables live in the connection's current schema (``search_path``).

Wake-ups use ``LISTEN/NOTIFY`` (``postgres_listener``): every write that makes a task
pending notifies, in the same transaction, and so does every write that finishes
tasks, on a second channel. Connections, deadlines and the schema migration are in
``postgres_connections``: every driver error comes out as a ``StorageError``, and a
call the server does not answer in time fails instead of hanging.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

try:
    import psycopg
    from psycopg_pool import AsyncConnectionPool  # noqa: F401  (the extra's second half)
except ImportError as _missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the PostgreSQL backend needs psycopg 3 and psycopg_pool, which are not installed: "
        'pip install "omniq[postgres]"'
    ) from _missing

from omniq import _postgres_sql as sql
from omniq._async.storage.base import AsyncBaseStorage
from omniq._async.storage.postgres_connections import (
    AsyncPostgresConnections,
    PgConnection,
    describe_dsn,
)
from omniq._async.storage.postgres_listener import AsyncPostgresWakeups
from omniq._postgres_schema import FINAL, MIGRATION_LOCK_CLASS
from omniq._wakeup import FinishedCallback
from omniq.exceptions import StorageError
from omniq.records import STATUSES, StateRecord, TaskFilter, TaskRecord, Transition

__all__ = ["MIGRATION_LOCK_CLASS", "AsyncPostgresStorage", "describe_dsn"]

_DEADLOCK_RETRIES = 3  # an add whose unique keys cross a concurrent one's is run again


class AsyncPostgresStorage(AsyncBaseStorage):
    """Tasks in a PostgreSQL table, shared by workers on any number of machines.

    * ``dsn``: a libpq connection string or URL. Its libpq parameters win over
      omniq's defaults (TCP keepalives, ``tcp_user_timeout``, ``connect_timeout``).
    * ``durability``: ``"full"`` (default); ``"fast"`` turns ``synchronous_commit``
      off for omniq's sessions: a commit is acknowledged before it is flushed, so a
      server crash may lose the last few hundred milliseconds of changes.
    * ``min_size``/``max_size``: the bounds of the connection pool. Each listener
      uses one connection more, outside the pool.
    * ``connect_timeout``: how long a call waits for a pooled connection.
    * ``timeout``: the deadline of each call, in seconds. The server cancels a
      statement that runs longer (``statement_timeout``, unless the DSN, role or
      database sets one); a call the server does not answer at all (a half-open
      connection) has its connection closed a little later. Either way the call
      raises ``StorageError`` and the problem is logged.
    """

    def __init__(
        self,
        dsn: str,
        *,
        durability: str = "full",
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 30.0,
        timeout: float = 30.0,
    ) -> None:
        self.dsn = dsn
        self.durability = durability
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._connections = AsyncPostgresConnections(
            dsn,
            durability=durability,
            min_size=min_size,
            max_size=max_size,
            connect_timeout=connect_timeout,
            timeout=timeout,
        )
        self._wakeups = AsyncPostgresWakeups(self._connections)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({describe_dsn(self.dsn)!r})"

    @property
    def _channel(self) -> str:
        return self._connections.channel

    async def open(self) -> None:
        """Create or upgrade the schema, then open the connection pool."""
        await self._connections.open()

    async def close(self) -> None:
        """Stop the listeners and close the pool."""
        await self._wakeups.close()
        await self._connections.close()

    @asynccontextmanager
    async def _connection(self, what: str = "call") -> AsyncIterator[PgConnection]:
        async with self._connections.connection(what) as conn:
            yield conn

    # ------------------------------------------------------------------ wake-ups

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a task is made pending, by any process."""
        self._wakeups.subscribe(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        self._wakeups.unsubscribe(callback)

    def subscribe_finished(self, callback: FinishedCallback) -> bool:
        """Call ``callback(task_ids)`` whenever tasks reach a final state, in any process."""
        self._wakeups.subscribe_finished(callback)
        return True

    def unsubscribe_finished(self, callback: FinishedCallback) -> None:
        """Stop calling ``callback``."""
        self._wakeups.unsubscribe_finished(callback)

    # ------------------------------------------------------------------ producing

    async def add(self, records: Sequence[TaskRecord]) -> list[str]:
        """Insert new tasks and notify listeners, in one statement (all or none).

        A record whose unique key a pending or running task holds is not stored:
        the holder's id stands for it. Between records of one call the first with a
        key wins (the later ones are not sent).
        """
        if not records:
            return []
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                return await self._add(records)
            except StorageError as error:
                deadlock = isinstance(error.__cause__, psycopg.errors.DeadlockDetected)
                if not deadlock or attempt == _DEADLOCK_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _add(self, records: Sequence[TaskRecord]) -> list[str]:
        if len(records) == 1:
            record = records[0]
            async with self._connection("enqueue") as conn:
                if record.unique_key is None:
                    await conn.execute(sql.INSERT_ONE, (*sql.record_row(record), self._channel))
                    return [record.id]
                cursor = await conn.execute(
                    sql.INSERT_ONE_UNIQUE, (*sql.record_row(record), record.id, self._channel)
                )
                row = await cursor.fetchone()
            if row is None:
                raise StorageError(f"unique key {record.unique_key!r} is held, but by no task")
            return [str(row[0])]
        if len(records) >= sql.COPY_MIN and all(r.unique_key is None for r in records):
            await self._copy_in([records])
            return [record.id for record in records]
        arrays = sql.column_arrays(sql.first_of_each_key(records))
        async with self._connection("enqueue") as conn:
            params: dict[str, Any] = {**arrays, "channel": self._channel}
            cursor = await conn.execute(sql.INSERT_MANY, params)
            rows = await cursor.fetchall()
        holders = {str(key): str(task_id) for task_id, key, _ in rows if key is not None}
        return [
            record.id if record.unique_key is None else holders[record.unique_key]
            for record in records
        ]

    async def add_stream(self, chunks: Iterable[Sequence[TaskRecord]]) -> list[str]:
        """One COPY for every chunk: the server ingests a chunk while the next is built.

        The records are built (about 5 µs each) in this process while the server, in its
        own, inserts the rows already sent: a 10,000-task batch on a fresh table runs at
        about 76k tasks/s instead of 47k when every record was built first. A chunk that
        fails to build aborts the COPY, and its transaction stores nothing.
        """
        ids: list[str] = []

        def noting_ids() -> Iterator[Sequence[TaskRecord]]:
            for chunk in chunks:
                if any(record.unique_key is not None for record in chunk):
                    raise StorageError("a streamed batch holds a unique key")  # an omniq bug
                ids.extend(record.id for record in chunk)
                yield chunk

        await self._copy_in(noting_ids())
        return ids

    async def _copy_in(self, chunks: Iterable[Sequence[TaskRecord]]) -> None:
        """Stream batches without unique keys in with COPY, and the wake-up, in one transaction."""
        async with self._connection("enqueue") as conn, conn.transaction():
            async with conn.cursor() as cursor, cursor.copy(sql.COPY_IN) as copy:
                copy.set_types(sql.COPY_TYPES)
                for chunk in chunks:
                    for record in chunk:
                        await copy.write_row(sql.record_row(record))
            await conn.execute(sql.NOTIFY, (self._channel,))

    # ------------------------------------------------------------------ consuming

    async def claim(
        self,
        now: float,
        lease_until: float,
        limit: int,
        queues: Sequence[str] | None = None,
        worker: str | None = None,
    ) -> list[TaskRecord]:
        """Claim up to ``limit`` due tasks (by the database clock) in one statement.

        The lease is ``lease_until - now`` seconds from the database's now.
        """
        async with self._connection("claim") as conn:
            return await self._claim_on(conn, now, lease_until, limit, queues, worker)

    async def _claim_on(
        self,
        conn: PgConnection,
        now: float,
        lease_until: float,
        limit: int,
        queues: Sequence[str] | None,
        worker: str | None,
    ) -> list[TaskRecord]:
        if limit <= 0 or (queues is not None and not queues):
            return []
        params: dict[str, Any] = {
            "token": uuid.uuid4().hex,
            "lease": lease_until - now,
            "worker": worker,
        }
        if queues is not None:
            params["queues"] = sorted(set(queues))
        cursor = await conn.execute(sql.claim(queues is not None, limit), params)
        return sql.claimed_records(await cursor.fetchall())

    async def finish(self, task_id: str, token: str, transition: Transition) -> bool:
        """Conditionally apply an outcome; insert the successor in the same transaction.

        A retry's eta keeps the delay the queue chose, and a recovery's
        ``expired_before`` its offset from ``now``, both counted on the database clock.
        """
        return (await self.finish_many([(task_id, token, transition)]))[0]

    async def finish_many(self, items: Sequence[tuple[str, str, Transition]]) -> list[bool]:
        """Apply several outcomes in one transaction: one commit for all of them."""
        if not items:
            return []
        async with self._connection("finish") as conn:
            return await self._finish_on(conn, items)

    async def finish_and_claim(
        self,
        items: Sequence[tuple[str, str, Transition]],
        now: float,
        lease_until: float,
        limit: int,
        queues: Sequence[str] | None = None,
        worker: str | None = None,
    ) -> tuple[list[bool], list[TaskRecord]]:
        """Record outcomes, then claim, on one pooled connection (two statements).

        The claim runs after the outcomes commit, so a worker's retried task may
        come straight back to it, as on every backend.
        """
        async with self._connection("finish_and_claim") as conn:
            finished = await self._finish_on(conn, items) if items else []
            claimed = await self._claim_on(conn, now, lease_until, limit, queues, worker)
        return finished, claimed

    async def _finish_on(
        self, conn: PgConnection, items: Sequence[tuple[str, str, Transition]]
    ) -> list[bool]:
        ids = [task_id for task_id, _, _ in items]
        if len(set(ids)) == len(ids) and all(t.successor is None for _, _, t in items):
            # Without successors: one statement for the lot.
            params = sql.finish_many_params(items, self._channel)
            cursor = await conn.execute(sql.FINISH_MANY, params)
            held = {row[0] for row in await cursor.fetchall()}
            return [task_id in held for task_id in ids]
        results: list[bool] = []
        async with conn.transaction():
            for task_id, token, transition in items:
                cursor = await conn.execute(
                    sql.FINISH, sql.finish_params(task_id, token, transition)
                )
                changed = cursor.rowcount == 1
                if changed and transition.successor is not None:
                    await self._insert_successor(conn, transition.successor)
                results.append(changed)
            settled = list(zip(results, items, strict=True))
            if any(changed and sql.wakes(transition) for changed, (_, _, transition) in settled):
                await conn.execute("SELECT pg_notify(%s, '')", (self._channel,))
            finished = [task_id for changed, (task_id, _, t) in settled if changed and t.is_final]
            for payload in sql.finished_payloads(finished):
                await conn.execute(
                    "SELECT pg_notify(%s, %s)", (sql.finished_channel(self._channel), payload)
                )
        return results

    async def _insert_successor(self, conn: PgConnection, successor: TaskRecord) -> None:
        """The next run of an interval task; it keeps the unique key unless another holds it."""
        if successor.unique_key is not None:
            cursor = await conn.execute(sql.INSERT_UNLESS_HELD, sql.record_row(successor))
            if cursor.rowcount == 1:
                return
            successor = dataclasses.replace(successor, unique_key=None)
        await conn.execute(sql.INSERT, sql.record_row(successor))

    async def release(
        self, task_id: str, token: str, now: float, history: str | None = None
    ) -> bool:
        """Put an unfinished task back to PENDING, due now, without spending an attempt."""
        async with self._connection("release") as conn:
            params = {"id": task_id, "token": token, "history": history, "channel": self._channel}
            cursor = await conn.execute(sql.RELEASE, params)
            return cursor.rowcount == 1

    async def heartbeat(self, leases: Sequence[tuple[str, str]], lease_until: float) -> list[str]:
        """Extend leases still held, in one statement; report the ones lost.

        The lease is ``lease_until`` minus this host's time, from the database's now.
        """
        if not leases:
            return []
        ids = [task_id for task_id, _ in leases]
        tokens = [token for _, token in leases]
        async with self._connection("heartbeat") as conn:
            cursor = await conn.execute(sql.HEARTBEAT, (lease_until - time.time(), ids, tokens))
            held = {row[0] for row in await cursor.fetchall()}
        return [task_id for task_id in ids if task_id not in held]

    async def expired(self, now: float, limit: int) -> list[TaskRecord]:
        """RUNNING tasks whose lease ran out by the database clock."""
        return await self._select("expired", sql.EXPIRED, (limit,))

    # ------------------------------------------------------------------ inspecting

    async def get(self, task_id: str) -> TaskRecord | None:
        """The task with this id, or ``None``."""
        rows = await self._select("get", sql.GET, (task_id,))
        return rows[0] if rows else None

    async def next_eta(self, queues: Sequence[str] | None = None) -> float | None:
        """The earliest pending eta: the first entry of each level of the due index."""
        if queues is not None and not queues:
            return None
        params = {} if queues is None else {"queues": sorted(set(queues))}
        async with self._connection("next_eta") as conn:
            cursor = await conn.execute(sql.next_eta(queues is not None), params)
            row = await cursor.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    async def cancel(self, task_id: str, now: float) -> bool:
        """Cancel a PENDING task."""
        async with self._connection("cancel") as conn:
            cursor = await conn.execute(sql.CANCEL, (task_id, sql.finished_channel(self._channel)))
            return cursor.rowcount == 1

    async def list_tasks(
        self, status: str | None, limit: int, offset: int = 0, queue: str | None = None
    ) -> list[TaskRecord]:
        """Tasks (of ``status`` and ``queue``, or all), most recently changed first."""
        return await self.find_tasks(TaskFilter(status=status, queue=queue), limit, offset)

    async def find_tasks(self, query: TaskFilter, limit: int, offset: int = 0) -> list[TaskRecord]:
        """Tasks matching ``query``, newest change first (one query)."""
        params: dict[str, Any] = {
            "status": query.status,
            "queue": query.queue,
            "func": query.func_contains,
            "id": query.id_contains,
            "parent": query.parent_id,
        }
        wanted = frozenset(name for name, value in params.items() if value is not None)
        params.update(limit=limit, offset=offset)
        return await self._select("list", sql.find_tasks(wanted), params)

    async def count_finished(self, since: float, width: float) -> list[tuple[int, str, str, int]]:
        """Finished tasks per time slot, queue and status (a range of the finished index)."""
        async with self._connection("count_finished") as conn:
            cursor = await conn.execute(sql.COUNT_FINISHED, {"since": since, "width": width})
            rows = await cursor.fetchall()
        return [(int(slot), str(queue), str(status), int(n)) for slot, queue, status, n in rows]

    async def earliest_pending(self, queues: Sequence[str]) -> dict[str, float]:
        """The earliest pending eta per queue: the first entry of each level of the due index."""
        if not queues:
            return {}
        async with self._connection("earliest_pending") as conn:
            cursor = await conn.execute(sql.EARLIEST_PENDING, {"queues": sorted(set(queues))})
            rows = await cursor.fetchall()
        return {str(queue): float(eta) for queue, eta in rows}

    async def count_by_queue(self) -> dict[str, dict[str, int]]:
        """Per queue, how many tasks are in each status (zeros included)."""
        counts: dict[str, dict[str, int]] = {}
        async with self._connection("count") as conn:
            cursor = await conn.execute(sql.COUNT_BY_QUEUE)
            for queue, status, count in await cursor.fetchall():
                per_queue = counts.setdefault(str(queue), dict.fromkeys(STATUSES, 0))
                per_queue[str(status)] = int(count)
        return counts

    async def requeue(self, task_id: str, now: float) -> bool:
        """A FAILED or CANCELLED task back to PENDING, due now, with a fresh budget.

        False when another pending or running task holds its unique key, also one
        that commits while this runs (the unique index refuses the row).
        """
        try:
            async with self._connection("requeue") as conn:
                cursor = await conn.execute(sql.REQUEUE, {"id": task_id, "channel": self._channel})
                return cursor.rowcount == 1
        except StorageError as error:
            if isinstance(error.__cause__, psycopg.errors.UniqueViolation):
                return False
            raise

    async def purge(self, before: float, statuses: Sequence[str], limit: int | None = None) -> int:
        """Delete finished tasks in ``statuses`` (final ones only) finished before ``before``.

        With ``limit``, one batch of at most that many, oldest first, in one short
        statement.
        """
        final = sorted(set(statuses).intersection(FINAL))
        if not final or (limit is not None and limit <= 0):
            return 0
        params = {"statuses": final, "before": before, "limit": limit}
        async with self._connection("purge") as conn:
            cursor = await conn.execute(sql.PURGE if limit is None else sql.PURGE_BATCH, params)
            return max(cursor.rowcount, 0)

    # ------------------------------------------------------------------ state records

    async def put_state(self, kind: str, name: str, data: str, now: float) -> None:
        """Create or replace a named record's data (its mark is kept)."""
        async with self._connection("put_state") as conn:
            await conn.execute(sql.PUT_STATE, (kind, name, data, now))

    async def get_state(self, kind: str, name: str) -> StateRecord | None:
        """The named record, or ``None``."""
        found = await self._state_rows("get_state", sql.GET_STATE, (kind, name))
        return found[0] if found else None

    async def list_state(self, kind: str) -> list[StateRecord]:
        """Every record of ``kind``, by name."""
        return await self._state_rows("list_state", sql.LIST_STATE, (kind,))

    async def delete_state(self, kind: str, name: str) -> bool:
        """Delete a named record."""
        async with self._connection("delete_state") as conn:
            cursor = await conn.execute(sql.DELETE_STATE, (kind, name))
            return cursor.rowcount == 1

    async def advance_state(
        self, kind: str, name: str, mark: float, records: Sequence[TaskRecord]
    ) -> bool:
        """Move the mark forward and add the records, in one statement (see ``ADVANCE_STATE``).

        Of any number of callers advancing to one mark, exactly one stores the records;
        they follow :meth:`add`'s unique-key rule.
        """
        arrays = sql.column_arrays(sql.first_of_each_key(records))
        async with self._connection("advance_state") as conn:
            params = {**arrays, "kind": kind, "name": name, "mark": mark, "channel": self._channel}
            cursor = await conn.execute(sql.ADVANCE_STATE, params)
            row = await cursor.fetchone()
        return row is not None and int(row[0]) == 1

    async def _state_rows(
        self, what: str, statement: str, params: Sequence[object]
    ) -> list[StateRecord]:
        async with self._connection(what) as conn:
            cursor = await conn.execute(statement, params)
            rows = await cursor.fetchall()
        return [StateRecord(str(k), str(n), str(d), float(u), m) for k, n, d, u, m in rows]

    async def _select(
        self, what: str, statement: str, params: Sequence[object] | dict[str, Any]
    ) -> list[TaskRecord]:
        async with self._connection(what) as conn:
            cursor = await conn.execute(statement, params)
            rows = await cursor.fetchall()
        return [TaskRecord(*row) for row in rows]
