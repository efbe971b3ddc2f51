"""What only the PostgreSQL backend promises: SKIP LOCKED claims, NOTIFY wake-ups,
safe concurrent migrations, the database clock, and a clear error without the extra.

Runs on both twins when ``OMNIQ_TEST_BACKEND=postgres``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import BACKEND

if BACKEND != "postgres":
    pytest.skip("PostgreSQL-only tests (OMNIQ_TEST_BACKEND=postgres)", allow_module_level=True)

import psycopg

from omniq import AsyncOmniQ, AsyncTaskQueue, Settings, TaskStatus
from omniq._async.storage.factory import storage_from_settings
from omniq._async.storage.postgres import MIGRATION_LOCK_CLASS
from omniq._concurrency import AsyncEvent, ajoin, asleep, aspawn
from omniq.exceptions import StorageError
from omniq.records import TaskRecord, Transition
from omniq.storage.postgres import AsyncPostgresStorage

TWIN = "async" if inspect.iscoroutinefunction(AsyncOmniQ.enqueue) else "sync"


async def admin(settings: Settings) -> psycopg.AsyncConnection:
    """A plain connection to the test's schema, outside omniq."""
    assert settings.dsn is not None
    return await psycopg.AsyncConnection.connect(settings.dsn, autocommit=True)


async def scalar(conn: psycopg.AsyncConnection, query: str) -> object:
    cursor = await conn.execute(query)
    row = await cursor.fetchone()
    return None if row is None else row[0]


async def wait_for(event: AsyncEvent, timeout: float, what: str) -> None:
    if not await event.wait(timeout):
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ---------------------------------------------------------------------- claims


async def test_a_claim_skips_rows_another_transaction_holds(settings: Settings) -> None:
    assert settings.dsn is not None
    storage = AsyncPostgresStorage(settings.dsn)
    queue = AsyncTaskQueue(storage)
    ids = [await queue.enqueue("task_functions.add", [i, i]) for i in range(6)]
    holder = await admin(settings)
    try:
        async with holder.transaction():
            # Another session locks the three oldest tasks and keeps its transaction open.
            await holder.execute("SELECT id FROM omniq_tasks ORDER BY eta, seq LIMIT 3 FOR UPDATE")
            started = time.monotonic()
            claimed = await storage.claim(time.time(), time.time() + 30, 10)
            assert time.monotonic() - started < 2  # skipped, not waited for
            assert [record.id for record in claimed] == ids[3:]
        claimed = await storage.claim(time.time(), time.time() + 30, 10)
        assert [record.id for record in claimed] == ids[:3]
    finally:
        await holder.close()
        await storage.close()


async def test_concurrent_claimers_take_each_task_exactly_once(settings: Settings) -> None:
    assert settings.dsn is not None
    claimers, tasks = 8, 400
    producer = AsyncTaskQueue(AsyncPostgresStorage(settings.dsn))
    ids = await producer.enqueue_many(
        {"func_path": "task_functions.add", "args": [i, i]} for i in range(tasks)
    )
    await producer.close()
    storages = [AsyncPostgresStorage(settings.dsn) for _ in range(claimers)]
    for storage in storages:
        await storage.open()
    taken: list[list[str]] = [[] for _ in range(claimers)]

    async def claim_until_empty(index: int) -> None:
        # Each claimer has its own pool: its own connections, like another machine.
        while True:
            now = time.time()
            batch = await storages[index].claim(now, now + 30, 1 + index % 4)
            if not batch:
                return
            taken[index].extend(record.id for record in batch)
            assert all(record.attempts == 1 for record in batch)

    try:
        handles = [aspawn(claim_until_empty, i, name=f"claimer-{i}") for i in range(claimers)]
        assert await ajoin(handles, 60) == 0
    finally:
        for storage in storages:
            await storage.close()
    counts = Counter(task_id for batch in taken for task_id in batch)
    assert set(counts) == set(ids)  # none left behind
    assert set(counts.values()) == {1}  # none claimed twice
    assert sum(1 for batch in taken if batch) >= 2  # they did compete


async def test_leases_and_due_checks_use_the_database_clock(settings: Settings) -> None:
    assert settings.dsn is not None
    storage = AsyncPostgresStorage(settings.dsn)
    queue = AsyncTaskQueue(storage)
    try:
        await queue.enqueue("task_functions.add", [1, 1], eta=_in(60))
        skewed = time.time() + 3600  # a host whose clock is an hour ahead
        assert await storage.claim(skewed, skewed + 10, 10) == []  # not due by the db clock
        due = await queue.enqueue("task_functions.add", [2, 2])
        (record,) = await storage.claim(skewed, skewed + 10, 10)
        assert record.id == due
        assert record.lease_until is not None
        assert abs(record.lease_until - (time.time() + 10)) < 2  # 10 s from the db's now
        assert await storage.expired(skewed + 60, 10) == []  # the db clock says: not yet
    finally:
        await storage.close()


def _in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


async def test_finish_many_applies_what_is_still_held_in_one_go(settings: Settings) -> None:
    assert settings.dsn is not None
    storage = AsyncPostgresStorage(settings.dsn)
    queue = AsyncTaskQueue(storage)
    try:
        ids = [await queue.enqueue("task_functions.add", [i, i]) for i in range(4)]
        done, retried, lost, repeated = ids
        claimed = {record.id: record for record in await storage.claim(time.time(), _soon(), 4)}
        now = time.time()
        # Without successors: one statement for the lot.
        results = await storage.finish_many(
            [
                (done, claimed[done].attempt_token or "", _outcome("completed", now)),
                (retried, claimed[retried].attempt_token or "", _outcome("pending", now)),
                (lost, "not-its-token", _outcome("completed", now)),
            ]
        )
        assert results == [True, True, False]
        # With a successor (an interval task's next run): inserted in the same transaction.
        successor = dataclasses.replace(claimed[repeated], id="next-run", status="pending")
        results = await storage.finish_many(
            [
                (lost, "not-its-token", _outcome("failed", now)),
                (
                    repeated,
                    claimed[repeated].attempt_token or "",
                    _outcome("completed", now, successor),
                ),
            ]
        )
        assert results == [False, True]
        records = [await storage.get(task_id) for task_id in [*ids, "next-run"]]
        assert [record.status if record else None for record in records] == [
            "completed",
            "pending",
            "running",
            "completed",
            "pending",
        ]
        assert records[0] is not None and records[0].finished_at is not None
        assert records[1] is not None and records[1].eta >= now + 59  # the retry's delay
        assert records[1].finished_at is None and records[1].attempt_token is None
        assert await storage.finish_many([]) == []
    finally:
        await storage.close()


def _soon() -> float:
    return time.time() + 30


def _outcome(status: str, now: float, successor: TaskRecord | None = None) -> Transition:
    eta = now + 60 if status == "pending" else None
    return Transition(status=status, now=now, result="1", eta=eta, successor=successor)


# ---------------------------------------------------------------------- LISTEN/NOTIFY


async def test_notify_wakes_a_subscriber_of_another_connection(settings: Settings) -> None:
    assert settings.dsn is not None
    listening = AsyncPostgresStorage(settings.dsn)
    producer = AsyncTaskQueue(AsyncPostgresStorage(settings.dsn))
    woken = AsyncEvent()
    try:
        await listening.open()
        listening.subscribe(woken.set)
        await wait_for(woken, 10, "the listener to connect")  # it wakes once on connect
        woken.clear()
        started = time.monotonic()
        await producer.enqueue("task_functions.add", [1, 1])
        await wait_for(woken, 5, "the notification")
        assert time.monotonic() - started < 1.0
        # Retries and releases make tasks due too, and notify as well.
        woken.clear()
        task = await producer.dequeue()
        assert task is not None and await producer.release(task)
        await wait_for(woken, 5, "the notification of a release")
        woken.clear()
        task = await producer.dequeue()
        assert task is not None and await producer.fail_task(task.id, "again", task)
        await wait_for(woken, 5, "the notification of a retry")
        # An unsubscribed callback is not called any more.
        listening.unsubscribe(woken.set)
        woken.clear()
        await producer.enqueue("task_functions.add", [2, 2])
        assert not await woken.wait(0.5)
    finally:
        await producer.close()
        await listening.close()


async def test_listener_reconnects_when_its_connection_drops(settings: Settings) -> None:
    assert settings.dsn is not None
    listening = AsyncPostgresStorage(settings.dsn)
    producer = AsyncTaskQueue(AsyncPostgresStorage(settings.dsn))
    woken = AsyncEvent()
    killer = await admin(settings)
    try:
        listening.subscribe(woken.set)
        await wait_for(woken, 10, "the listener to connect")
        woken.clear()
        await killer.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%' AND datname = current_database() "
            "AND application_name = current_setting('application_name') "
            "AND pid <> pg_backend_pid()"
        )
        await wait_for(woken, 10, "the listener to reconnect")
        woken.clear()
        await producer.enqueue("task_functions.add", [1, 1])
        await wait_for(woken, 5, "a notification after the reconnection")
    finally:
        await killer.close()
        await producer.close()
        await listening.close()


async def test_close_stops_the_listener_promptly(settings: Settings) -> None:
    assert settings.dsn is not None
    listening = AsyncPostgresStorage(settings.dsn)
    woken = AsyncEvent()
    await listening.open()
    listening.subscribe(woken.set)
    await wait_for(woken, 10, "the listener to connect")
    started = time.monotonic()
    await listening.close()
    assert time.monotonic() - started < 2.0
    watcher = await admin(settings)
    try:
        for _ in range(100):
            listeners = await scalar(
                watcher,
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' "
                "AND application_name = current_setting('application_name') "
                "AND pid <> pg_backend_pid()",
            )
            if listeners == 0:
                break
            await asleep(0.05)
        assert listeners == 0
    finally:
        await watcher.close()


async def test_idle_worker_starts_a_task_enqueued_elsewhere_at_once(settings: Settings) -> None:
    # Polling every 30 s: only the notification can start the task within seconds.
    consumer = AsyncOmniQ(settings.replace(poll_interval=30.0))
    producer = AsyncOmniQ(settings)
    workers = consumer.worker_pool(handle_signals=False)
    try:
        await workers.start()
        runner = aspawn(workers.run)
        await asleep(0.5)  # the pool is idle, waiting
        started = time.monotonic()
        task_id = await producer.enqueue("task_functions.add", args=[2, 3])
        assert await producer.get_result(task_id, wait=True, timeout=5) == 5
        assert time.monotonic() - started < 3
        workers.stop()
        assert await ajoin([runner], 10) == 0
    finally:
        await workers.shutdown()
        await producer.close()
        await consumer.close()


# ---------------------------------------------------------------------- schema


_CHILD = """
import sys
from omniq.storage.postgres import AsyncPostgresStorage, PostgresStorage
twin, dsn = sys.argv[1], sys.argv[2]
if twin == "async":
    import asyncio
    async def main():
        storage = AsyncPostgresStorage(dsn)
        await storage.open()
        await storage.close()
    asyncio.run(main())
else:
    storage = PostgresStorage(dsn)
    storage.open()
    storage.close()
print("ok")
"""

_MIGRATION_LOCK = "%s, hashtext(current_schema())"


async def test_concurrent_first_starts_create_the_schema_once(settings: Settings) -> None:
    assert settings.dsn is not None
    starts = 6
    gate = await admin(settings)
    try:
        # Hold the migration lock, so that every process reaches it on an empty schema,
        # then let them all go at once.
        await gate.execute(f"SELECT pg_advisory_lock({_MIGRATION_LOCK})", (MIGRATION_LOCK_CLASS,))
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, TWIN, settings.dsn],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(starts)
        ]
        deadline = time.monotonic() + 60
        waiting = 0
        running = processes
        while waiting < starts and running and time.monotonic() < deadline:
            await asleep(0.05)
            waiting = await scalar(  # type: ignore[assignment]
                gate,
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND NOT l.granted "
                "AND a.application_name = current_setting('application_name')",
            )
            running = [process for process in processes if process.poll() is None]
        assert waiting == starts, "the processes did not all wait for the migration lock"
        await gate.execute(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK})", (MIGRATION_LOCK_CLASS,))
        for process in processes:
            stdout, stderr = process.communicate(timeout=60)
            assert process.returncode == 0, stderr
            assert stdout.strip() == "ok"
        cursor = await gate.execute("SELECT version FROM omniq_schema_version")
        assert [row[0] for row in await cursor.fetchall()] == [1, 2, 3]
        assert await scalar(gate, "SELECT count(*) FROM omniq_tasks") == 0
    finally:
        await gate.close()


async def test_a_newer_schema_is_refused(settings: Settings) -> None:
    assert settings.dsn is not None
    storage = AsyncPostgresStorage(settings.dsn)
    await storage.open()
    await storage.close()
    conn = await admin(settings)
    try:
        await conn.execute("INSERT INTO omniq_schema_version (version) VALUES (99)")
    finally:
        await conn.close()
    with pytest.raises(StorageError, match="upgrade omniq"):
        await AsyncPostgresStorage(settings.dsn).open()


async def test_a_search_path_without_a_schema_is_reported(settings: Settings) -> None:
    assert settings.dsn is not None
    dsn = psycopg.conninfo.make_conninfo(settings.dsn, options="-csearch_path=no_such_schema")
    with pytest.raises(StorageError, match="search_path"):
        await AsyncPostgresStorage(dsn).open()


async def test_an_unreachable_server_is_a_clear_storage_error() -> None:
    storage = AsyncPostgresStorage("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(StorageError, match="cannot connect to PostgreSQL"):
        await storage.open()


async def test_fast_durability_turns_synchronous_commit_off(settings: Settings) -> None:
    storage = storage_from_settings(settings.replace(durability="fast"))
    assert isinstance(storage, AsyncPostgresStorage)
    try:
        async with storage._connection() as conn:
            assert await scalar(conn, "SHOW synchronous_commit") == "off"
    finally:
        await storage.close()


# ---------------------------------------------------------------------- inspection


async def test_list_count_requeue_purge_and_next_eta(settings: Settings) -> None:
    assert settings.dsn is not None
    storage = AsyncPostgresStorage(settings.dsn)
    queue = AsyncTaskQueue(storage)
    try:
        assert await storage.next_eta() is None
        assert await storage.count_by_status() == {status.value: 0 for status in TaskStatus}
        first = await queue.enqueue("task_functions.add", [1, 1], max_retries=1)
        second = await queue.enqueue("task_functions.add", [2, 2])
        later = await queue.enqueue("task_functions.add", [3, 3], eta=_in(3600))
        eta = await storage.next_eta()
        assert eta is not None and eta <= time.time()
        assert [r.id for r in await storage.list_tasks(None, 10)] == [later, second, first]
        assert [r.id for r in await storage.list_tasks("pending", 2, 1)] == [second, first]

        task = await queue.dequeue()
        assert task is not None and task.id == first
        assert await queue.fail_task(first, "boom", task)
        assert await queue.cancel(second)
        counts = await storage.count_by_status()
        assert (counts["failed"], counts["cancelled"], counts["pending"]) == (1, 1, 1)
        assert sum(counts.values()) == 3

        assert await storage.requeue(later, time.time()) is False  # still pending
        assert await storage.requeue(first, time.time()) is True
        requeued = await storage.get(first)
        assert requeued is not None
        assert (requeued.status, requeued.attempts, requeued.error) == ("pending", 0, None)
        assert requeued.finished_at is None and requeued.eta <= time.time() + 1

        future = time.time() + 60
        assert await storage.purge(future, ["pending", "running"]) == 0  # never live tasks
        assert await storage.purge(time.time() - 60, ["cancelled"]) == 0  # not that old
        assert await storage.purge(future, ["cancelled", "completed"]) == 1
        assert await storage.get(second) is None
    finally:
        await storage.close()


# ---------------------------------------------------------------------- the optional extra


_NO_PSYCOPG = """
import sys
sys.modules["psycopg"] = None  # as if the extra were not installed
sys.modules["psycopg_pool"] = None
import omniq
from omniq import OmniQ, Settings
try:
    import omniq.storage.postgres
except ImportError as error:
    print("module:", error)
try:
    OmniQ(Settings(backend="postgres", dsn="postgresql://localhost/db"))
except ImportError as error:
    print("facade:", error)
"""


def test_without_the_extra_the_error_names_it() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _NO_PSYCOPG],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["module", "facade"]
    for line in lines:
        assert 'pip install "omniq[postgres]"' in line
