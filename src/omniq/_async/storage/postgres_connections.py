"""PostgreSQL connections for the storage: the pool, the schema migration, deadlines.

Every connection omniq opens (the pool's, the listeners', the migration's) gets TCP
keepalives and ``tcp_user_timeout`` unless the DSN sets them, so the kernel drops a
connection whose peer vanished (lost NAT or firewall state, a migrated VM) instead
of waiting on it forever. Every storage call has a deadline: the server's
``statement_timeout`` (for a live server: slow queries, lock waits), and on the
client side a watch (:class:`AsyncDeadlineWatch`) that shuts down the socket of a
call the server has not answered in time (a half-open connection, a server that
hangs), so the call fails with a :class:`~omniq.exceptions.StorageError` and the
pool replaces the connection. Both are logged as errors when they happen.

Fork safety: a child forked after the store was used must not touch its parent's
connections (closing one would send the server the parent's goodbye). On first use
in a new process the inherited pool is abandoned (``omniq._inherited``) and a pool
of the child's own is opened.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from omniq import _postgres_schema as schema
from omniq import logging as omniq_logging
from omniq._concurrency import AsyncEvent, AsyncHandle, AsyncLock, AsyncThreadGuard, ajoin, aspawn
from omniq._inherited import abandon_after_fork
from omniq._postgres_sql import channel_name
from omniq._secrets import redact
from omniq.exceptions import StorageError

# libpq parameters set on every connection unless the DSN sets them: a dead peer is
# found within about keepalives_idle + keepalives_interval * keepalives_count seconds
# when idle, and within tcp_user_timeout when data waits for an acknowledgement.
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "15", "keepalives_interval": "5"}
KEEPALIVES_COUNT = "3"
CONNECT_TIMEOUT = 10  # seconds, for one connection attempt (libpq's connect_timeout)

PgConnection = psycopg.AsyncConnection[TupleRow]


def describe_dsn(dsn: str) -> str:
    """``dsn`` without its password, for messages and ``repr``."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparsable dsn>"
    params.pop("password", None)
    return " ".join(f"{key}={value}" for key, value in params.items())


def connection_info(dsn: str, timeout: float) -> str:
    """``dsn`` with omniq's keepalive, user-timeout and connect-timeout defaults added.

    A parameter the DSN sets keeps the DSN's value; an unparsable ``dsn`` is kept as
    it is, so that connecting reports it.
    """
    try:
        params: dict[str, Any] = conninfo_to_dict(dsn)
    except psycopg.Error:  # connecting will say what is wrong with it
        return dsn
    defaults = {
        **KEEPALIVES,
        "keepalives_count": KEEPALIVES_COUNT,
        "tcp_user_timeout": str(math.ceil(timeout * 1000)),
        "connect_timeout": str(CONNECT_TIMEOUT),
    }
    for key, value in defaults.items():
        params.setdefault(key, value)
    return make_conninfo("", **params)


def _sever(conn: PgConnection) -> None:
    """Shut the connection's socket down, so that a call waiting on it fails at once.

    Shutdown, not close: libpq keeps its file descriptor, sees the end of the
    stream, marks the connection broken and raises in the waiting call.
    """
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:  # already closed
        return
    with contextlib.suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(fd))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()


@dataclass
class WatchedCall:
    """A storage call in flight: what it is, on which connection, until when."""

    what: str
    conn: PgConnection
    deadline: float  # time.monotonic()
    seconds: float
    expired: bool = False


class AsyncDeadlineWatch:
    """Fails calls the server does not answer in time by shutting their socket down.

    One loop per storage wakes every ``tick`` seconds while it runs and checks the
    calls in flight; registering a call is a dict insert, so the hot path pays
    nothing else. Started on first use, stopped by :meth:`stop`.
    """

    def __init__(self, server: str) -> None:
        self.server = server
        self._calls: dict[int, WatchedCall] = {}
        self._guard = AsyncThreadGuard()
        self._tick = 1.0
        self._handle: AsyncHandle | None = None
        self._stop: AsyncEvent | None = None

    @contextlib.contextmanager
    def watch(self, conn: PgConnection, what: str, seconds: float) -> Iterator[WatchedCall]:
        """Watch the call made inside the block: sever ``conn`` after ``seconds``."""
        call = WatchedCall(what, conn, time.monotonic() + seconds, seconds)
        with self._guard:
            self._calls[id(call)] = call
            self._tick = min(self._tick, max(seconds / 4, 0.05))
            if self._handle is None:
                self._stop = AsyncEvent()
                self._handle = aspawn(self._run, self._stop, name="omniq-postgres-deadlines")
        try:
            yield call
        finally:
            with self._guard:
                self._calls.pop(id(call), None)

    async def stop(self) -> None:
        """End the loop (it starts again on the next watched call)."""
        with self._guard:
            handle, stop = self._handle, self._stop
            self._handle = self._stop = None
        if handle is not None and stop is not None:
            stop.set()
            await ajoin([handle], 5.0)

    async def _run(self, stop: AsyncEvent) -> None:
        while not await stop.wait(self._tick):
            self.expire(time.monotonic())

    def expire(self, now: float) -> None:
        """Sever the connections of the calls whose deadline has passed by ``now``."""
        with self._guard:
            late = [c for c in self._calls.values() if not c.expired and c.deadline <= now]
            for call in late:
                call.expired = True
        for call in late:
            omniq_logging.log_storage_error(
                call.what,
                f"PostgreSQL ({self.server}) has not answered for {call.seconds:g}s: closing "
                "the connection so the call fails and is retried on a new one (a half-open "
                "connection, a network partition, or a server that hangs)",
            )
            _sever(call.conn)


class AsyncPostgresConnections:
    """The storage's connections: its pool, direct connections, and their deadlines.

    ``timeout`` is the deadline of every call (the server's ``statement_timeout``;
    the client severs the connection ``grace`` seconds later, when the server says
    nothing at all). ``durability="fast"`` turns ``synchronous_commit`` off.
    """

    def __init__(
        self,
        dsn: str,
        *,
        durability: str,
        min_size: int,
        max_size: int,
        connect_timeout: float,
        timeout: float,
    ) -> None:
        self.dsn = dsn
        self.conninfo = connection_info(dsn, timeout)
        self.durability = durability
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.deadline = timeout + min(timeout, 5.0)
        self.server = describe_dsn(dsn)
        self.channel = ""
        self.watch = AsyncDeadlineWatch(self.server)
        self._pool: AsyncConnectionPool[PgConnection] | None = None
        self._lock = AsyncLock()
        self._pid = os.getpid()

    def check_fork(self) -> None:
        """In a forked child: forget the parent's pool and watch, never close them."""
        if self._pid == os.getpid():
            return
        abandon_after_fork(self._pool)
        self._pool = None
        self._lock = AsyncLock()  # another thread of the parent may have held it at fork
        self.watch = AsyncDeadlineWatch(self.server)
        self._pid = os.getpid()

    async def open(self) -> None:
        """Create or upgrade the schema, then open the pool. Idempotent."""
        self.check_fork()
        if self._pool is not None:
            return
        async with self._lock:
            if self._pool is not None:
                return
            self.channel = await self._migrate()
            pool: AsyncConnectionPool[PgConnection] = AsyncConnectionPool(
                self.conninfo,
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

    async def close(self) -> None:
        """Close the pool and stop the deadline watch (a child's inherited pool is left)."""
        self.check_fork()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
        await self.watch.stop()

    async def _configure(self, conn: PgConnection) -> None:
        # The server-side deadline, unless the DSN, role or database chose one already.
        milliseconds = str(math.ceil(self.timeout * 1000))
        settings = [
            "CASE WHEN current_setting('statement_timeout') = '0' "
            "THEN set_config('statement_timeout', %(timeout)s, false) END",
            # A session stuck inside a transaction would hold its row locks: end it.
            "CASE WHEN current_setting('idle_in_transaction_session_timeout') = '0' "
            "THEN set_config('idle_in_transaction_session_timeout', %(idle)s, false) END",
        ]
        if self.durability == "fast":
            settings.append("set_config('synchronous_commit', 'off', false)")
        idle = str(math.ceil(self.deadline * 2000))
        await conn.execute(f"SELECT {', '.join(settings)}", {"timeout": milliseconds, "idle": idle})

    async def connect(self) -> PgConnection:
        """A new autocommit connection outside the pool (listeners, migrations)."""
        self.check_fork()
        try:
            return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        except psycopg.Error as error:
            message = f"cannot connect to PostgreSQL ({self.server}): {error}"
            safe = redact(message, self.dsn)
            if safe != message:  # the driver quoted the password: keep its error out too
                raise StorageError(safe) from None
            raise StorageError(message) from error

    @asynccontextmanager
    async def connection(self, what: str) -> AsyncIterator[PgConnection]:
        """A pooled connection for the call ``what``, watched by its deadline.

        Every driver error, from getting the connection to the last fetch, comes out
        as a :class:`StorageError` that names the call.
        """
        if self._pool is None or self._pid != os.getpid():
            await self.open()
        assert self._pool is not None
        call: WatchedCall | None = None
        try:
            async with self._pool.connection() as conn:
                with self.watch.watch(conn, what, self.deadline) as call:
                    yield conn
        except psycopg.Error as error:
            if call is not None and call.expired:
                raise StorageError(
                    f"PostgreSQL did not answer {what} within {self.deadline:g}s "
                    f"({self.server}); the connection was closed"
                ) from error
            raise StorageError(
                redact(f"PostgreSQL {what} failed ({self.server}): {error}", self.dsn)
            ) from error

    async def _migrate(self) -> str:
        """Bring the schema to ``SCHEMA_VERSION``; return the notification channel."""
        conn = await self.connect()
        try:
            async with conn.transaction():
                current = await self.current_schema(conn)
                # Serializes the check-and-create of concurrent first starts; released
                # at commit. Other schemas use other keys and do not wait.
                await conn.execute(schema.LOCK, (schema.MIGRATION_LOCK_CLASS, current))
                await conn.execute(schema.CREATE_VERSION_TABLE)
                version = int(str(await _scalar(conn, schema.CURRENT_VERSION) or 0))
                if version > schema.SCHEMA_VERSION:
                    raise StorageError(
                        f"schema {current!r} has omniq schema version {version}, newer than "
                        f"this omniq understands ({schema.SCHEMA_VERSION}): upgrade omniq"
                    )
                await self._check_columns(conn, current, version)
                for target in range(version + 1, schema.SCHEMA_VERSION + 1):
                    for statement in schema.MIGRATIONS[target]:
                        await conn.execute(statement)
                    await conn.execute(schema.RECORD_VERSION, (target,))
        except psycopg.Error as error:
            raise StorageError(f"cannot prepare the omniq tables: {error}") from error
        finally:
            await conn.close()
        return channel_name(current)

    async def _check_columns(self, conn: PgConnection, current: str, version: int) -> None:
        """Refuse a tasks table omniq did not make: every call would fail on it later."""
        cursor = await conn.execute(schema.TABLE_COLUMNS)
        columns = frozenset(str(row[0]) for row in await cursor.fetchall())
        expected = {
            0: frozenset(),
            1: schema.V2_COLUMNS - {"queue", "priority", "unique_key", "history", "worker"},
        }.get(version, schema.V2_COLUMNS)
        if columns != expected:
            raise StorageError(
                f"schema {current!r} has a table {schema.TABLE} that omniq did not create "
                f"(schema version {version}, columns {sorted(columns)}); point the DSN's "
                "search_path at another schema"
            )

    async def current_schema(self, conn: PgConnection) -> str:
        """The schema omniq's tables live in: the first existing one of ``search_path``."""
        found = await _scalar(conn, "SELECT current_schema()")
        if found is None:
            raise StorageError(
                "no schema to keep omniq's tables in: the search_path of "
                f"{self.server} names no existing schema"
            )
        return str(found)


async def _scalar(conn: PgConnection, query: str) -> object:
    cursor = await conn.execute(query)
    row = await cursor.fetchone()
    return None if row is None else row[0]
