"""PostgreSQL storage: the same contract for workers spread over many machines.

Connections come from a ``psycopg_pool`` pool, in autocommit mode: most operations
are one statement, hence one round-trip and one transaction. The claim is one
``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)``: concurrent claimers skip
each other's rows instead of queueing behind them. Leases and due checks use the
database clock (``statement_timestamp()``), so workers whose clocks disagree still
agree on when a task is due and when a lease has run out; the storage keeps the
lease lengths and retry delays the queue asks for and stamps them on that clock.
Times are stored as epoch seconds (``double precision``), as every backend returns
them. Tables live in the connection's current schema (``search_path``).

Wake-ups use ``LISTEN/NOTIFY``: every write that makes a task pending sends a
notification on a channel named after the schema, in the same transaction, and
:meth:`subscribe` starts a listener on a dedicated connection that calls the
subscribers. A task reaching a final state is named on a second channel, which a
second listener follows while a ``get_result`` waits (:meth:`subscribe_finished`).
The schema is created on first use and versioned; the migration runs under a
transaction-scoped advisory lock, so many workers may start at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.rows import TupleRow
    from psycopg_pool import AsyncConnectionPool
except ImportError as _missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the PostgreSQL backend needs psycopg 3 and psycopg_pool, which are not installed: "
        'pip install "omniq[postgres]"'
    ) from _missing

from omniq import logging as omniq_logging
from omniq._async.storage.base import AsyncBaseStorage
from omniq._concurrency import (
    AsyncEvent,
    AsyncHandle,
    AsyncLock,
    AsyncThreadGuard,
    acancel,
    ajoin,
    aspawn,
)
from omniq._postgres_sql import (
    CLAIM,
    COLUMNS,
    ETA_COLUMN,
    FINAL,
    FINISH,
    FINISH_MANY,
    HEARTBEAT,
    INSERT,
    INSERT_ONE,
    LISTEN_SLICE,
    MIGRATION_LOCK_CLASS,
    MIGRATIONS,
    NOW,
    RECONNECT_MAX,
    RECONNECT_MIN,
    RELEASE,
    REQUEUE,
    SCHEMA_VERSION,
    TABLE,
    VERSION_TABLE,
    channel_name,
    expiry,
    finish_params,
    finished_channel,
    finished_payloads,
    wakes,
)
from omniq._secrets import redact
from omniq._wakeup import DONE, DUE, LINGER, FinishedCallback
from omniq.exceptions import StorageError
from omniq.models import TaskStatus
from omniq.records import RECORD_FIELDS, TaskRecord, Transition


def describe_dsn(dsn: str) -> str:
    """``dsn`` without its password, for messages and ``repr``."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparsable dsn>"
    params.pop("password", None)
    return " ".join(f"{key}={value}" for key, value in params.items())


class AsyncPostgresStorage(AsyncBaseStorage):
    """Tasks in a PostgreSQL table, shared by workers on any number of machines.

    * ``dsn``: a libpq connection string or URL.
    * ``durability``: ``"full"`` (default); ``"fast"`` turns ``synchronous_commit``
      off for omniq's sessions: a commit is acknowledged before it is flushed, so a
      server crash may lose the last few hundred milliseconds of changes.
    * ``min_size``/``max_size``: the bounds of the connection pool. The listener
      uses one connection more, outside the pool.
    """

    def __init__(
        self,
        dsn: str,
        *,
        durability: str = "full",
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 30.0,
    ) -> None:
        self.dsn = dsn
        self.durability = durability
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] | None = None
        self._channel = ""
        self._lock = AsyncLock()
        self._guard = AsyncThreadGuard()
        self._callbacks: list[Callable[[], None]] = []
        self._listener: AsyncHandle | None = None
        self._listener_stop: AsyncEvent | None = None
        # The finished channel's listener runs while someone waits, and LINGER s after.
        self._finished_callbacks: list[FinishedCallback] = []
        self._finished_listener: AsyncHandle | None = None
        self._finished_stop: AsyncEvent | None = None
        self._finished_idle_since: float | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({describe_dsn(self.dsn)!r})"

    # ------------------------------------------------------------------ connections

    async def open(self) -> None:
        """Create or upgrade the schema, then open the connection pool."""
        if self._pool is not None:
            return
        async with self._lock:
            if self._pool is not None:
                return
            self._channel = await self._migrate()
            pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] = AsyncConnectionPool(
                self.dsn,
                kwargs={"autocommit": True},
                min_size=self.min_size,
                max_size=self.max_size,
                configure=self._configure,
                timeout=self.connect_timeout,
                name="omniq",
                open=False,
            )
            await pool.open()
            self._pool = pool

    async def _configure(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        if self.durability == "fast":
            await conn.execute("SET synchronous_commit = off")

    async def _connect(self) -> psycopg.AsyncConnection[TupleRow]:
        try:
            return await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        except psycopg.Error as error:
            message = f"cannot connect to PostgreSQL ({describe_dsn(self.dsn)}): {error}"
            safe = redact(message, self.dsn)
            if safe != message:  # the driver quoted the password: keep its error out too
                raise StorageError(safe) from None
            raise StorageError(message) from error

    async def _migrate(self) -> str:
        """Bring the schema to ``SCHEMA_VERSION``; return the notification channel."""
        conn = await self._connect()
        try:
            async with conn.transaction():
                schema = await self._current_schema(conn)
                # Serializes the check-and-create of concurrent first starts; released
                # at commit. Other schemas use other keys and do not wait.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (MIGRATION_LOCK_CLASS, schema)
                )
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
                    "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cursor = await conn.execute(
                    f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}"
                )
                row = await cursor.fetchone()
                version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise StorageError(
                        f"schema {schema!r} has omniq schema version {version}, newer than "
                        f"this omniq understands ({SCHEMA_VERSION}): upgrade omniq"
                    )
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[target]:
                        await conn.execute(statement)
                    await conn.execute(
                        f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s)", (target,)
                    )
        except psycopg.Error as error:
            raise StorageError(f"cannot prepare the omniq tables: {error}") from error
        finally:
            await conn.close()
        return channel_name(schema)

    async def _current_schema(self, conn: psycopg.AsyncConnection[TupleRow]) -> str:
        cursor = await conn.execute("SELECT current_schema()")
        row = await cursor.fetchone()
        if row is None or row[0] is None:
            raise StorageError(
                "no schema to keep omniq's tables in: the search_path of "
                f"{describe_dsn(self.dsn)} names no existing schema"
            )
        return str(row[0])

    async def close(self) -> None:
        """Stop the listeners and close the pool."""
        with self._guard:
            listeners = [
                (self._listener, self._listener_stop, self._channel),
                (self._finished_listener, self._finished_stop, finished_channel(self._channel)),
            ]
            self._listener = self._listener_stop = None
            self._finished_listener = self._finished_stop = None
        for listener, stop, channel in listeners:
            if listener is not None and stop is not None:
                stop.set()
                acancel(listener)
                if self._pool is not None:  # the listener may be waiting for a notification
                    await self._notify_now(channel)
                await ajoin([listener], 5.0)
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        if self._pool is None:
            await self.open()
        assert self._pool is not None
        async with self._pool.connection() as conn:
            yield conn

    async def _notify_now(self, channel: str) -> None:
        try:
            async with self._connection() as conn:
                await conn.execute("SELECT pg_notify(%s, '')", (channel,))
        except psycopg.Error as error:
            omniq_logging.log_storage_error("notify", error)

    # ------------------------------------------------------------------ wake-ups

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a task is made pending, by any process.

        The first subscription starts the listener: a connection of its own (not
        from the pool) that runs ``LISTEN`` and reconnects, with backoff, when the
        connection drops. It also calls the subscribers after each (re)connection,
        since a notification sent while it was not listening is lost.
        """
        with self._guard:
            self._callbacks.append(callback)
            if self._listener is None:
                stop = AsyncEvent()
                self._listener_stop = stop
                self._listener = aspawn(self._listen, stop, DUE, name="omniq-postgres-listener")

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback`` (the listener runs until :meth:`close`)."""
        with self._guard:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def subscribe_finished(self, callback: FinishedCallback) -> bool:
        """Call ``callback(task_ids)`` whenever tasks reach a final state, in any process.

        The first subscription starts a second listener, on the finished channel; it
        stops ``LINGER`` seconds after the last subscriber left. After each
        (re)connection it calls the subscribers with ``None`` (a notification sent
        while it was not listening is lost).
        """
        with self._guard:
            self._finished_callbacks.append(callback)
            self._finished_idle_since = None
            if self._finished_listener is None:
                stop = AsyncEvent()
                self._finished_stop = stop
                self._finished_listener = aspawn(
                    self._listen, stop, DONE, name="omniq-postgres-finished-listener"
                )
        return True

    def unsubscribe_finished(self, callback: FinishedCallback) -> None:
        """Stop calling ``callback``."""
        with self._guard:
            if callback in self._finished_callbacks:
                self._finished_callbacks.remove(callback)
            if not self._finished_callbacks:
                self._finished_idle_since = time.monotonic()

    def _retire_finished_listener(self, stop: AsyncEvent) -> bool:
        """Whether the finished listener should stop: nobody has waited for ``LINGER`` s."""
        with self._guard:
            idle = self._finished_idle_since
            if idle is None or time.monotonic() - idle < LINGER:
                return False
            if self._finished_stop is stop:
                self._finished_listener = self._finished_stop = None
        stop.set()
        return True

    def _wake_subscribers(self) -> None:
        with self._guard:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception as error:  # one bad subscriber must not stop the listener
                omniq_logging.log_storage_error("notify subscriber", error)

    def _wake(self, topic: str, payload: str | None = None) -> None:
        """Call the subscribers of ``topic``; a finished task's id is the ``payload``."""
        if topic == DUE:
            self._wake_subscribers()
            return
        with self._guard:
            callbacks = list(self._finished_callbacks)
        ids = payload.split(",") if payload else None  # none: unknown which (a reconnection)
        for callback in callbacks:
            try:
                callback(ids)
            except Exception as error:
                omniq_logging.log_storage_error("notify subscriber", error)

    async def _listen(self, stop: AsyncEvent, topic: str) -> None:
        delay = RECONNECT_MIN
        while not stop.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
            except Exception as error:
                omniq_logging.log_storage_error(
                    "listen", redact(f"{error} (retrying in {delay:g}s)", self.dsn)
                )
                await stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            try:
                channel = channel_name(await self._current_schema(conn))
                if topic == DONE:
                    channel = finished_channel(channel)
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                delay = RECONNECT_MIN
                self._wake(topic)
                while not stop.is_set():
                    async for note in conn.notifies(timeout=LISTEN_SLICE):
                        if stop.is_set():
                            break
                        self._wake(topic, note.payload)
                    if topic == DONE and self._retire_finished_listener(stop):
                        break
            except Exception as error:  # the connection dropped: reconnect
                if not stop.is_set():
                    omniq_logging.log_storage_error(
                        "listen", redact(f"{error} (reconnecting in {delay:g}s)", self.dsn)
                    )
            finally:
                await conn.close()
            if not stop.is_set():
                await stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX)

    # ------------------------------------------------------------------ the contract

    async def add(self, records: Sequence[TaskRecord]) -> None:
        """Insert new tasks and notify listeners, in one transaction."""
        rows = [tuple(getattr(record, name) for name in RECORD_FIELDS) for record in records]
        if not rows:
            return
        async with self._connection() as conn:
            if len(rows) == 1:  # one statement: one round-trip, one transaction
                await conn.execute(INSERT_ONE, (*rows[0], self._channel))
                return
            async with conn.transaction():
                async with conn.cursor() as cursor:
                    await cursor.executemany(INSERT, rows)
                await conn.execute("SELECT pg_notify(%s, '')", (self._channel,))

    async def claim(self, now: float, lease_until: float, limit: int) -> list[TaskRecord]:
        """Claim up to ``limit`` due tasks (by the database clock) in one statement.

        The lease is ``lease_until - now`` seconds from the database's now.
        """
        params = {"token": uuid.uuid4().hex, "lease": lease_until - now, "limit": limit}
        async with self._connection() as conn:
            cursor = await conn.execute(CLAIM, params)
            rows = await cursor.fetchall()
        # RETURNING gives rows in no promised order: restore (eta, enqueue order).
        ordered = sorted(rows, key=lambda row: (row[ETA_COLUMN], row[0]))
        return [TaskRecord(*row[1:]) for row in ordered]

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
        ids = [task_id for task_id, _, _ in items]
        if len(set(ids)) == len(ids) and all(t.successor is None for _, _, t in items):
            return await self._finish_in_one_statement(items)
        results: list[bool] = []
        async with self._connection() as conn, conn.transaction():
            for task_id, token, transition in items:
                cursor = await conn.execute(FINISH, finish_params(task_id, token, transition))
                changed = cursor.rowcount == 1
                if changed and transition.successor is not None:
                    successor = transition.successor
                    await conn.execute(
                        INSERT, tuple(getattr(successor, name) for name in RECORD_FIELDS)
                    )
                results.append(changed)
            if any(
                changed and wakes(transition)
                for changed, (_, _, transition) in zip(results, items, strict=True)
            ):
                await conn.execute("SELECT pg_notify(%s, '')", (self._channel,))
            finished = [
                task_id
                for changed, (task_id, _, transition) in zip(results, items, strict=True)
                if changed and transition.is_final
            ]
            for payload in finished_payloads(finished):
                await conn.execute(
                    "SELECT pg_notify(%s, %s)", (finished_channel(self._channel), payload)
                )
        return results

    async def _finish_in_one_statement(
        self, items: Sequence[tuple[str, str, Transition]]
    ) -> list[bool]:
        transitions = [transition for _, _, transition in items]
        ids = [task_id for task_id, _, _ in items]
        params = {
            "ids": ids,
            "tokens": [token for _, token, _ in items],
            "statuses": [t.status for t in transitions],
            "results": [t.result for t in transitions],
            "errors": [t.error for t in transitions],
            "delays": [None if t.eta is None else t.eta - t.now for t in transitions],
            "finals": [t.is_final for t in transitions],
            "wakes": [wakes(t) for t in transitions],
            "expiries": [expiry(t) for t in transitions],
            "channel": self._channel,
            "finished_channel": finished_channel(self._channel),
        }
        async with self._connection() as conn:
            cursor = await conn.execute(FINISH_MANY, params)
            held = {row[0] for row in await cursor.fetchall()}
        return [task_id in held for task_id in ids]

    async def release(self, task_id: str, token: str, now: float) -> bool:
        """Put an unfinished task back to PENDING, due now, without spending an attempt."""
        return await self._update_and_notify(RELEASE, (task_id, token))

    async def heartbeat(self, leases: Sequence[tuple[str, str]], lease_until: float) -> list[str]:
        """Extend leases still held, in one statement; report the ones lost.

        The lease is ``lease_until`` minus this host's time, from the database's now.
        """
        if not leases:
            return []
        ids = [task_id for task_id, _ in leases]
        tokens = [token for _, token in leases]
        async with self._connection() as conn:
            cursor = await conn.execute(HEARTBEAT, (lease_until - time.time(), ids, tokens))
            held = {row[0] for row in await cursor.fetchall()}
        return [task_id for task_id in ids if task_id not in held]

    async def expired(self, now: float, limit: int) -> list[TaskRecord]:
        """RUNNING tasks whose lease ran out by the database clock."""
        return await self._select(
            f"SELECT {COLUMNS} FROM {TABLE} WHERE status = 'running' AND lease_until < {NOW} "
            "ORDER BY lease_until LIMIT %s",
            (limit,),
        )

    async def get(self, task_id: str) -> TaskRecord | None:
        """The task with this id, or ``None``."""
        rows = await self._select(f"SELECT {COLUMNS} FROM {TABLE} WHERE id = %s", (task_id,))
        return rows[0] if rows else None

    async def next_eta(self) -> float | None:
        """The earliest pending eta: the first entry of the claim index."""
        async with self._connection() as conn:
            cursor = await conn.execute(
                f"SELECT eta FROM {TABLE} WHERE status = 'pending' ORDER BY eta, seq LIMIT 1"
            )
            row = await cursor.fetchone()
        return None if row is None else float(row[0])

    async def cancel(self, task_id: str, now: float) -> bool:
        """Cancel a PENDING task."""
        async with self._connection() as conn:
            cursor = await conn.execute(
                f"WITH c AS (UPDATE {TABLE} SET status = 'cancelled', updated_at = {NOW}, "
                f"finished_at = {NOW} WHERE id = %s AND status = 'pending' RETURNING id) "
                "SELECT pg_notify(%s, id) FROM c",
                (task_id, finished_channel(self._channel)),
            )
            return cursor.rowcount == 1

    async def list_tasks(self, status: str | None, limit: int, offset: int = 0) -> list[TaskRecord]:
        """Tasks (of ``status``, or all), most recently changed first."""
        where = "" if status is None else "WHERE status = %(status)s "
        return await self._select(
            f"SELECT {COLUMNS} FROM {TABLE} {where}"
            "ORDER BY updated_at DESC, seq DESC LIMIT %(limit)s OFFSET %(offset)s",
            {"status": status, "limit": limit, "offset": offset},
        )

    async def count_by_status(self) -> dict[str, int]:
        """How many tasks are in each status (zeros included)."""
        counts = {status.value: 0 for status in TaskStatus}
        async with self._connection() as conn:
            cursor = await conn.execute(f"SELECT status, count(*) FROM {TABLE} GROUP BY status")
            for status, count in await cursor.fetchall():
                counts[str(status)] = int(count)
        return counts

    async def requeue(self, task_id: str, now: float) -> bool:
        """A FAILED or CANCELLED task back to PENDING, due now, with a fresh budget."""
        return await self._update_and_notify(REQUEUE, (task_id,))

    async def purge(self, before: float, statuses: Sequence[str]) -> int:
        """Delete finished tasks in ``statuses`` (final ones only) finished before ``before``."""
        final = [status for status in statuses if status in FINAL]
        if not final:
            return 0
        async with self._connection() as conn:
            cursor = await conn.execute(
                f"DELETE FROM {TABLE} WHERE status = ANY(%s) AND finished_at < %s",
                (final, before),
            )
            return max(cursor.rowcount, 0)

    # ------------------------------------------------------------------ helpers

    async def _update_and_notify(self, statement: str, params: Sequence[object]) -> bool:
        async with self._connection() as conn, conn.transaction():
            cursor = await conn.execute(statement, params)
            changed = cursor.rowcount == 1
            if changed:
                await conn.execute("SELECT pg_notify(%s, '')", (self._channel,))
        return changed

    async def _select(
        self, statement: str, params: Sequence[object] | dict[str, Any]
    ) -> list[TaskRecord]:
        async with self._connection() as conn:
            cursor = await conn.execute(statement, params)
            rows = await cursor.fetchall()
        return [TaskRecord(*row) for row in rows]
