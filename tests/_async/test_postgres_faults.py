"""PostgreSQL under faults: half-open connections, deadlines, and driver errors.

A TCP proxy (``tests/tcp_proxy.py``) between the storage and the server is frozen
(nothing is forwarded, nothing is closed: to the client the server is silent on an
open socket, as behind a half-open connection), then thawed or cut. Workers must
notice, say so in the log, and regain service. Runs on both twins when
``OMNIQ_TEST_BACKEND=postgres``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import BACKEND, POSTGRES_DSN

if BACKEND != "postgres":
    pytest.skip("PostgreSQL-only tests (OMNIQ_TEST_BACKEND=postgres)", allow_module_level=True)

import psycopg
from psycopg.conninfo import make_conninfo
from tcp_proxy import TcpProxy

from omniq import AsyncTaskQueue, AsyncWorkerPool, Settings, TaskStatus
from omniq import logging as omniq_logging
from omniq._concurrency import AsyncEvent, ajoin, asleep, aspawn
from omniq.allowlist import AllowList
from omniq.exceptions import StorageError
from omniq.storage.postgres import AsyncPostgresStorage


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """A proxy to the test server; closed after the test."""
    server = psycopg.conninfo.conninfo_to_dict(POSTGRES_DSN)
    forwarder = TcpProxy(str(server.get("host", "127.0.0.1")), int(server.get("port", 5432)))
    yield forwarder
    forwarder.close()


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """omniq's log lines (JSON), from every thread."""
    lines: list[str] = []
    omniq_logging.configure(level="INFO", mode="PROD", sink=lines.append)
    yield lines
    omniq_logging.reset()


def through(proxy: TcpProxy, settings: Settings) -> str:
    """The test store's DSN, reached through ``proxy``."""
    assert settings.dsn is not None
    return make_conninfo(settings.dsn, host="127.0.0.1", port=str(proxy.port), connect_timeout="2")


async def eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asleep(0.05)


async def results_of(queue: AsyncTaskQueue, ids: list[str], timeout: float) -> list[object]:
    """The results of ``ids`` once every one has completed."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = [await queue.get_task(task_id) for task_id in ids]
        if all(task is not None and task.status == TaskStatus.COMPLETED for task in tasks):
            return [task.result for task in tasks if task is not None]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {[t and t.status for t in tasks]}")
        await asleep(0.1)


def mentions(lines: list[str], text: str) -> Callable[[], bool]:
    return lambda: any(text in line for line in lines)


# ---------------------------------------------------------------------- socket options


def _socket_options(conn: psycopg.AsyncConnection) -> tuple[int, int, int]:
    duplicate = socket.socket(fileno=os.dup(conn.pgconn.socket))
    try:
        return (
            duplicate.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            duplicate.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            duplicate.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        )
    finally:
        duplicate.close()


async def test_every_connection_has_keepalives_and_a_user_timeout(settings: Settings) -> None:
    assert settings.dsn is not None
    dsn = make_conninfo(settings.dsn, host="127.0.0.1")  # TCP, not a Unix socket
    storage = AsyncPostgresStorage(dsn, timeout=12)
    opened: list[psycopg.AsyncConnection] = []
    connect = storage._connections.connect

    async def spying_connect() -> psycopg.AsyncConnection:
        conn = await connect()
        opened.append(conn)
        return conn

    storage._connections.connect = spying_connect  # type: ignore[method-assign]
    woken = AsyncEvent()
    try:
        async with storage._connection() as conn:  # a pooled one
            assert _socket_options(conn) == (1, 15, 12_000)
            cursor = await conn.execute("SHOW statement_timeout")
            assert await cursor.fetchone() == ("12s",)
        storage.subscribe(woken.set)  # the listener's connection
        assert await woken.wait(10)
        listener = opened[-1]
        assert not listener.closed and _socket_options(listener) == (1, 15, 12_000)
    finally:
        await storage.close()
    # The DSN's own choice wins over omniq's defaults.
    mine = AsyncPostgresStorage(make_conninfo(dsn, keepalives_idle="7", tcp_user_timeout="900"))
    try:
        async with mine._connection() as conn:
            assert _socket_options(conn) == (1, 7, 900)
    finally:
        await mine.close()


# ---------------------------------------------------------------------- deadlines


async def test_the_server_cancels_a_call_past_its_deadline(settings: Settings) -> None:
    assert settings.dsn is not None
    storage = AsyncPostgresStorage(settings.dsn, timeout=1)
    queue = AsyncTaskQueue(storage)
    holder = await psycopg.AsyncConnection.connect(settings.dsn, autocommit=True)
    try:
        task_id = await queue.enqueue("task_functions.add", [1, 1])
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM omniq_tasks WHERE id = %s FOR UPDATE", (task_id,))
            with pytest.raises(StorageError, match="statement timeout"):
                await queue.cancel(task_id)  # waits on the row lock until the deadline
        assert await queue.cancel(task_id) is True
    finally:
        await holder.close()
        await storage.close()


async def test_a_call_the_server_never_answers_fails_and_is_logged(
    settings: Settings, proxy: TcpProxy, logged: list[str]
) -> None:
    storage = AsyncPostgresStorage(through(proxy, settings), timeout=1, connect_timeout=3)
    queue = AsyncTaskQueue(storage)
    try:
        task_id = await queue.enqueue("task_functions.add", [1, 1])
        proxy.freeze()
        with pytest.raises(StorageError, match="did not answer get within"):
            await queue.get_task(task_id)
        assert mentions(logged, "has not answered for")()
        proxy.thaw()
        task = await queue.get_task(task_id)  # on a new connection
        assert task is not None and task.id == task_id
    finally:
        proxy.thaw()
        await storage.close()


@pytest.mark.parametrize("recovery", ["thaw", "cut"])
async def test_a_worker_behind_a_dead_connection_regains_service(
    settings: Settings, proxy: TcpProxy, logged: list[str], recovery: str
) -> None:
    assert settings.dsn is not None
    producer = AsyncTaskQueue(AsyncPostgresStorage(settings.dsn))
    storage = AsyncPostgresStorage(through(proxy, settings), timeout=1, connect_timeout=3)
    # A call given up on may still reach the server once the proxy thaws (as across a
    # real partition): a claim it makes is a dead worker's, recovered when its lease
    # ends. A short lease keeps that short.
    workers = AsyncWorkerPool(
        queue=AsyncTaskQueue(storage, allow=AllowList.from_settings(settings)),
        concurrency=2,
        poll_interval=0.2,
        handle_signals=False,
        lease_timeout=3,
    )
    try:
        await workers.start()
        runner = aspawn(workers.run)
        first = await producer.enqueue("task_functions.add", [1, 1])
        await eventually(lambda: workers.processed >= 1, 30, "the first task")
        proxy.freeze()
        ids = [await producer.enqueue("task_functions.add", [i, i]) for i in range(5)]
        await eventually(mentions(logged, "has not answered for"), 60, "the deadline's log line")
        if recovery == "cut":
            proxy.cut()
        proxy.thaw()
        assert await results_of(producer, [first, *ids], 90) == [2, 0, 2, 4, 6, 8]
        workers.stop()
        assert await ajoin([runner], 30) == 0
    finally:
        proxy.thaw()
        await workers.shutdown()
        await storage.close()
        await producer.close()


async def test_a_listener_on_a_silent_connection_pings_and_reconnects(
    settings: Settings, proxy: TcpProxy, logged: list[str]
) -> None:
    assert settings.dsn is not None
    listening = AsyncPostgresStorage(through(proxy, settings), timeout=1, connect_timeout=3)
    producer = AsyncTaskQueue(AsyncPostgresStorage(settings.dsn))
    woken = AsyncEvent()
    try:
        listening.subscribe(woken.set)
        assert await woken.wait(10), "the listener did not connect"
        accepted = proxy.accepted
        proxy.freeze()
        await eventually(mentions(logged, "listen ping"), 60, "the failed ping's log line")
        woken.clear()
        proxy.thaw()
        await eventually(lambda: proxy.accepted > accepted, 60, "a new listener connection")
        assert await woken.wait(30), "no wake-up after the reconnection"
        woken.clear()
        await producer.enqueue("task_functions.add", [1, 1])
        assert await woken.wait(30), "no notification on the new connection"
    finally:
        proxy.thaw()
        await listening.close()
        await producer.close()


# ---------------------------------------------------------------------- driver errors


async def test_driver_errors_on_read_paths_are_storage_errors(settings: Settings) -> None:
    assert settings.dsn is not None
    storage = AsyncPostgresStorage(settings.dsn)
    queue = AsyncTaskQueue(storage)
    admin = await psycopg.AsyncConnection.connect(settings.dsn, autocommit=True)
    try:
        task_id = await queue.enqueue("task_functions.add", [1, 1])
        # A store damaged under the worker: every call now fails in the driver.
        await admin.execute("ALTER TABLE omniq_tasks RENAME COLUMN status TO status_gone")
        calls = {
            "get_task": lambda: queue.get_task(task_id),
            "cancel": lambda: queue.cancel(task_id),
            "list_tasks": lambda: queue.list_tasks(),
            "stats": lambda: queue.stats(),
            "next_eta": lambda: queue.next_eta(),
            "retry": lambda: queue.retry(task_id),
            "purge": lambda: queue.purge(0),
            "dequeue": lambda: queue.dequeue(),
            "enqueue": lambda: queue.enqueue("task_functions.add", [2, 2]),
        }
        for name, call in calls.items():
            with pytest.raises(StorageError) as raised:
                await call()
            assert "status" in str(raised.value), name  # the driver's reason is kept
    finally:
        await admin.close()
        await storage.close()
