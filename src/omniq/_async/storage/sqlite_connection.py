"""The SQLite store's one connection: opened lazily, schema checked, kept healthy.

:class:`AsyncSQLiteConnection` owns the connection a storage object shares between its
callers (with a lock, since one connection runs one transaction at a time) and keeps
three promises the storage relies on:

* **Errors are** :class:`~omniq.exceptions.StorageError`, never a raw driver error, and
  a store that cannot be opened now (a read-only or full disk, a locked file) is tried
  again at the next call: a worker waits with back-off and serves once it is back.
* **A replaced database is noticed**: at most once a second the path's device and inode
  are compared with the open file's; if the file was deleted or replaced (a restore, a
  deploy that recreated it), the change is logged and the connection reopened on the
  new file, instead of serving a ghost forever.
* **Fork-safe**: a connection never crosses ``fork()``. A child process that inherited
  one leaves it untouched (closing it could disturb the parent's) and opens its own.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from omniq import _sqlite_sql as sql
from omniq import logging as omniq_logging
from omniq._concurrency import AsyncLock, adaemon_sqlite, arun_blocking, arun_sqlite
from omniq._fs import ensure_private_file
from omniq._inherited import abandon_after_fork
from omniq.exceptions import StorageError

DB_FILENAME = "omniq.db"
REPLACED_CHECK_EVERY = 1.0  # seconds between two looks at the database file's identity
T = TypeVar("T")


class AsyncSQLiteConnection:
    """The lazily opened, shared connection to one database file (see the module)."""

    def __init__(
        self,
        path: Path,
        durability: str,
        busy_timeout: float,
        on_open: Callable[[], None] = lambda: None,
    ) -> None:
        # on_open: called on every (re)open, for state tied to the old connection
        # (the storage's idle shortcut reads the connection's data_version).
        self.on_open = on_open
        self.path = path
        self.durability = durability
        self.busy_timeout = busy_timeout
        self.lock = AsyncLock()
        self._conn: aiosqlite.Connection | None = None
        self._pid = os.getpid()
        self._identity: tuple[int, int] | None = None
        self._checked_at = 0.0

    @property
    def is_open(self) -> bool:
        """Whether a connection of this process is open."""
        return self._conn is not None and self._pid == os.getpid()

    async def get(self) -> aiosqlite.Connection:
        """The connection, opened (or reopened) first if needed; ``StorageError`` if not."""
        if self._pid != os.getpid():
            self._after_fork()
        conn = self._conn
        if conn is not None and time.monotonic() - self._checked_at >= REPLACED_CHECK_EVERY:
            conn = await self._check_identity(conn)
        if conn is None:
            await self.open()
            conn = self._conn
            assert conn is not None
        return conn

    @asynccontextmanager
    async def locked(self, operation: str) -> AsyncIterator[aiosqlite.Connection]:
        """The connection under the lock; a driver error becomes a ``StorageError``."""
        conn = await self.get()
        async with self.lock:
            try:
                yield conn
            except aiosqlite.Error as error:
                raise StorageError(f"SQLite {operation} failed on {self.path}: {error}") from error

    async def run(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(sqlite3_connection, *args)`` under the lock, whole on the connection's
        thread (see ``omniq._sqlite_ops``); a driver error becomes a ``StorageError``."""
        async with self.locked(operation) as conn:
            return await arun_sqlite(conn, fn, *args)

    async def open(self) -> None:
        """Open the database, switch it to WAL, and create, migrate or check the schema."""
        if self._pid != os.getpid():
            self._after_fork()
        if self._conn is not None:
            return
        async with self.lock:
            if self._conn is not None:
                return
            try:
                # The directory that holds omniq.db is a store directory (Settings.base_dir):
                # omniq's, so checked and made private; another file's is the user's.
                await arun_blocking(ensure_private_file, self.path, self.path.name == DB_FILENAME)
                conn = await adaemon_sqlite(
                    aiosqlite.connect(
                        str(self.path),
                        timeout=self.busy_timeout,
                        isolation_level=None,
                        check_same_thread=False,
                        cached_statements=256,
                    )
                )
            except (OSError, aiosqlite.Error) as error:
                raise StorageError(f"cannot open SQLite database {self.path}: {error}") from error
            try:
                await self._configure(conn)
                self._identity = _identity(self.path)
            except aiosqlite.Error as error:
                await conn.close()
                raise StorageError(f"cannot open SQLite database {self.path}: {error}") from error
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
            self._checked_at = time.monotonic()
            self.on_open()

    async def close(self) -> None:
        """Close the connection (a child's inherited one is only forgotten)."""
        if self._pid != os.getpid():
            self._after_fork()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        # A closed store may be opened again from another event loop (a second app
        # start-up, a second test client): the lock must not stay tied to this one.
        self.lock = AsyncLock()

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's connection and lock, never use them."""
        abandon_after_fork(self._conn)
        self._conn = None
        self.lock = AsyncLock()  # another thread of the parent may have held it at fork
        self._pid = os.getpid()

    async def _check_identity(self, conn: aiosqlite.Connection) -> aiosqlite.Connection | None:
        """The connection, or ``None`` after closing it if its file was replaced or deleted."""
        self._checked_at = time.monotonic()
        try:
            current: tuple[int, int] | None = _identity(self.path)
        except OSError:
            current = None
        if current is not None and current == self._identity:
            return conn
        what = "deleted" if current is None else "replaced by another file"
        omniq_logging.log_storage_error(
            "open",
            f"the SQLite database {self.path} was {what} while in use: reopening it "
            "(tasks written to the old file are not in the new one)",
        )
        async with self.lock:
            if self._conn is conn:
                self._conn = None
                with contextlib.suppress(aiosqlite.Error):
                    await conn.close()
        return None

    async def _configure(self, conn: aiosqlite.Connection) -> None:
        synchronous = "FULL" if self.durability == "full" else "NORMAL"
        await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute(f"PRAGMA synchronous = {synchronous}")
        # Under the write lock, so that many workers starting at once migrate once.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            version = await _scalar(conn, "PRAGMA user_version")
            columns = await _table_columns(conn)
            if version > sql.SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path} has schema version {version}, newer than this omniq "
                    f"understands ({sql.SCHEMA_VERSION}): upgrade omniq"
                )
            if version == 0 and not columns:
                for statement in sql.CREATE:
                    await conn.execute(statement)
            elif version == 1 and columns == sql.V1_TABLE_COLUMNS:
                for statement in sql.MIGRATE_FROM_V1:
                    await conn.execute(statement)
            elif version != sql.SCHEMA_VERSION or columns != sql.V2_TABLE_COLUMNS:
                # Never adopt a table omniq did not make: every enqueue would fail later.
                raise StorageError(
                    f"{self.path} has a table {sql.TABLE} that omniq did not create (schema "
                    f"version {version}, columns {sorted(columns)}); use another database "
                    "file or base_dir"
                )
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")


async def _scalar(conn: aiosqlite.Connection, query: str) -> int:
    """The first column of the first row of ``query``, as an int (0 for no row)."""
    cursor = await conn.execute(query)
    row = await cursor.fetchone()
    await cursor.close()
    return int(row[0]) if row else 0


async def _table_columns(conn: aiosqlite.Connection) -> frozenset[str]:
    cursor = await conn.execute(f"PRAGMA table_info({sql.TABLE})")
    rows = await cursor.fetchall()
    await cursor.close()
    return frozenset(str(row[1]) for row in rows)


def _identity(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino
