"""PostgreSQL schema v2: the migration of a 0.1.0 store, claims by level under
SKIP LOCKED, unique keys settled by the index (also across processes and in
``requeue``), history, bounded purges and the claim's plan.

Runs on both twins when ``OMNIQ_TEST_BACKEND=postgres``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import subprocess
import sys
import time

import pytest
from conftest import BACKEND, TESTS_DIR

if BACKEND != "postgres":
    pytest.skip("PostgreSQL-only tests (OMNIQ_TEST_BACKEND=postgres)", allow_module_level=True)

import psycopg

from omniq import AsyncOmniQ, AsyncTaskQueue, Settings, TaskStatus
from omniq._concurrency import AsyncEvent, ajoin, asleep, aspawn
from omniq._postgres_sql import claim as claim_statement
from omniq.exceptions import StorageError, TaskFailed
from omniq.storage.postgres import AsyncPostgresStorage

TWIN = "async" if inspect.iscoroutinefunction(AsyncOmniQ.enqueue) else "sync"
V1_FIXTURE = TESTS_DIR / "fixtures" / "v1" / "postgres.sql"


async def admin(settings: Settings) -> psycopg.AsyncConnection:
    """A plain connection to the test's schema, outside omniq."""
    assert settings.dsn is not None
    return await psycopg.AsyncConnection.connect(settings.dsn, autocommit=True)


async def rows(conn: psycopg.AsyncConnection, query: str, params: object = None) -> list[tuple]:
    cursor = await conn.execute(query, params)  # type: ignore[arg-type]
    return await cursor.fetchall()


def _in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


# ---------------------------------------------------------------------- migration


async def test_a_store_written_by_0_1_0_is_migrated_and_keeps_every_task(
    settings: Settings,
) -> None:
    conn = await admin(settings)
    try:
        await conn.execute(V1_FIXTURE.read_text())
        ids = dict(await rows(conn, "SELECT status, id FROM omniq_tasks WHERE status <> 'pending'"))
        pending = dict(
            await rows(conn, "SELECT payload, id FROM omniq_tasks WHERE status = 'pending'")
        )
    finally:
        await conn.close()
    later = pending.pop('{"args":[5,5],"kwargs":{}}')
    due = [pending[f'{{"args":[{i},100],"kwargs":{{}}}}'] for i in range(3)]

    async with AsyncOmniQ(settings) as omniq:
        stats = await omniq.stats()
        assert [stats[s] for s in ("pending", "running", "completed", "failed", "cancelled")] == [
            4,
            1,
            1,
            1,
            1,
        ]
        assert set(stats["queues"]) == {"default"}
        assert await omniq.get_result(ids["completed"]) == 42
        with pytest.raises(TaskFailed, match="this task always fails"):
            await omniq.get_result(ids["failed"])
        cancelled = await omniq.get_task(ids["cancelled"])
        assert cancelled is not None and cancelled.status == TaskStatus.CANCELLED
        assert (cancelled.queue, cancelled.priority, cancelled.unique_key) == ("default", 0, None)
        assert cancelled.attempts_history == []
        # A v2 worker runs the pending tasks and takes over the dead v1 worker's one.
        async with omniq.worker_pool(concurrency=2, handle_signals=False) as workers:
            await workers.process_tasks(limit=10)
        assert [await omniq.get_result(task_id) for task_id in due] == [100, 101, 102]
        assert await omniq.get_result(ids["running"]) == 14
        recovered = await omniq.get_task(ids["running"])
        assert recovered is not None and recovered.attempts == 2
        assert [entry.outcome for entry in recovered.attempts_history] == ["lost", "completed"]
        waiting = await omniq.get_task(later)
        assert waiting is not None and waiting.status == TaskStatus.PENDING
        # New tasks line up behind the migrated ones and use the new columns.
        fresh = await omniq.enqueue("task_functions.add", args=[1, 1], queue="q", unique_key="k")
        assert await omniq.enqueue("task_functions.add", args=[2, 2], unique_key="k") == fresh
    conn = await admin(settings)
    try:
        assert [row[0] for row in await rows(conn, "SELECT version FROM omniq_schema_version")] == [
            1,
            2,
            3,
        ]
        (seq_of_fresh,) = await rows(conn, "SELECT seq FROM omniq_tasks WHERE id = %s", (fresh,))
        assert seq_of_fresh[0] > 8  # the identity continues after the v1 rows
    finally:
        await conn.close()


async def test_a_tasks_table_omniq_did_not_make_is_refused(settings: Settings) -> None:
    conn = await admin(settings)
    try:
        await conn.execute("CREATE TABLE omniq_tasks (id text PRIMARY KEY, payload bytea)")
    finally:
        await conn.close()
    assert settings.dsn is not None
    with pytest.raises(StorageError, match="omniq did not create"):
        await AsyncPostgresStorage(settings.dsn).open()


# ---------------------------------------------------------------------- claims


async def test_claims_take_priority_then_eta_then_enqueue_order_across_queues(
    settings: Settings,
) -> None:
    assert settings.dsn is not None
    storage = AsyncPostgresStorage(settings.dsn)
    queue = AsyncTaskQueue(storage)
    try:
        past = _in(-60)
        low = await queue.enqueue("task_functions.add", [0, 0], queue="a", priority=-5)
        b_early = await queue.enqueue("task_functions.add", [1, 1], queue="b", priority=5, eta=past)
        a_first = await queue.enqueue("task_functions.add", [2, 2], queue="a", priority=5)
        a_second = await queue.enqueue("task_functions.add", [3, 3], queue="a", priority=5)
        top = await queue.enqueue("task_functions.add", [4, 4], queue="c", priority=9)
        await queue.enqueue("task_functions.add", [5, 5], queue="b", priority=100, eta=_in(3600))
        now = time.time()
        claimed = await storage.claim(now, now + 30, 10, worker="pool-1")
        assert [r.id for r in claimed] == [top, b_early, a_first, a_second, low]
        assert {r.worker for r in claimed} == {"pool-1"}
        assert {r.status for r in claimed} == {"running"}
        assert await storage.claim(now, now + 30, 10) == []  # the future task stays
    finally:
        await storage.close()


async def test_a_claim_of_some_queues_never_takes_another_queues_task(settings: Settings) -> None:
    assert settings.dsn is not None
    storage = AsyncPostgresStorage(settings.dsn)
    queue = AsyncTaskQueue(storage)
    try:
        other = [await queue.enqueue("task_functions.add", [i, i], queue="b") for i in range(3)]
        mine = [await queue.enqueue("task_functions.add", [i, i], queue="a") for i in range(2)]
        now = time.time()
        assert await storage.next_eta(["c"]) is None
        assert await storage.next_eta(["a"]) is not None
        claimed = await storage.claim(now, now + 30, 10, queues=["a", "c"])
        assert [record.id for record in claimed] == mine
        assert await storage.claim(now, now + 30, 10, queues=["a"]) == []
        rest = await storage.claim(now, now + 30, 10, queues=["b", "a"])
        assert [record.id for record in rest] == other
    finally:
        await storage.close()


async def test_claim_skips_locked_rows_in_every_level(settings: Settings) -> None:
    assert settings.dsn is not None
    storage = AsyncPostgresStorage(settings.dsn)
    queue = AsyncTaskQueue(storage)
    high = [await queue.enqueue("task_functions.add", [i, i], priority=1) for i in range(2)]
    low = [await queue.enqueue("task_functions.add", [i, i], queue="z") for i in range(2)]
    holder = await admin(settings)
    try:
        async with holder.transaction():
            # Another session holds the first task of each level.
            await holder.execute(
                "SELECT id FROM omniq_tasks WHERE id = ANY(%s) FOR UPDATE", ([high[0], low[0]],)
            )
            now = time.time()
            claimed = await storage.claim(now, now + 30, 10)
            assert [record.id for record in claimed] == [high[1], low[1]]
        now = time.time()
        assert [r.id for r in await storage.claim(now, now + 30, 10)] == [high[0], low[0]]
    finally:
        await holder.close()
        await storage.close()


async def test_the_claim_reads_only_the_levels_it_needs(settings: Settings) -> None:
    # The plan: a walk of the levels, and an incremental sort that stops at the first
    # priority holding enough due tasks (lower levels are not read, nor locked). Also
    # as a generic plan (what a prepared statement may get), which must not scan the
    # table for the rows to update.
    assert settings.dsn is not None
    queue = AsyncTaskQueue(AsyncPostgresStorage(settings.dsn))
    await queue.enqueue_many(
        {"func_path": "task_functions.add", "args": [i, i], "queue": q, "priority": p}
        for i in range(300)
        for q in ("a", "b")
        for p in range(5)
    )
    await queue.close()
    statement = claim_statement(False, 4)
    for number, name in enumerate(("token", "lease", "worker"), 1):
        statement = statement.replace(f"%({name})s", f"${number}")
    conn = await admin(settings)
    plans: dict[str, str] = {}
    try:
        await conn.execute("ANALYZE omniq_tasks")
        await conn.execute(f"PREPARE claim(text, float8, text) AS {statement}")
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            async with conn.transaction(force_rollback=True):
                found = await rows(conn, "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE claim('t', 30, 'w')")
            plans[mode] = "\n".join(row[0] for row in found)
    finally:
        await conn.close()
    for plan in plans.values():
        assert "Recursive Union" in plan and "Incremental Sort" in plan, plan
        assert "Seq Scan" not in plan, plan
        # The LockRows under the LATERAL ran for the 2 levels of priority 4 and 1 more.
        lock_rows = next(line for line in plan.splitlines() if "LockRows" in line)
        assert "loops=3)" in lock_rows, plan


async def test_each_write_adds_entries_only_to_the_keys_and_its_states_index(
    settings: Settings,
) -> None:
    # Schema v3: besides the keys (id, seq), every index is partial on the states a
    # task passes through, so an enqueue, a claim and a finish each add 3 entries.
    async with AsyncOmniQ(settings) as omniq:
        task_id = await omniq.enqueue("task_functions.add", args=[1, 2])
        conn = await admin(settings)
        try:
            found = await rows(
                conn,
                "SELECT indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = current_schema() AND tablename = 'omniq_tasks'",
            )
            options = await rows(
                conn, "SELECT reloptions FROM pg_class WHERE oid = 'omniq_tasks'::regclass"
            )
        finally:
            await conn.close()
        definitions = dict(found)
        assert set(definitions) == {
            "omniq_tasks_pkey",
            "omniq_tasks_seq_key",
            "omniq_tasks_due",
            "omniq_tasks_lease",
            "omniq_tasks_finished",
            "omniq_tasks_unique",
        }
        for name, definition in definitions.items():
            assert name.endswith(("_pkey", "_seq_key")) or " WHERE " in definition, definition
        assert "autovacuum_vacuum_scale_factor=0.02" in options[0][0]
        # The task list still finds the newest change first without its old index.
        async with omniq.worker_pool(handle_signals=False) as workers:
            await workers.process_tasks(limit=1)
        later = await omniq.enqueue("task_functions.add", args=[3, 4])
        listed = await omniq.list_tasks(limit=2)
        assert [task.id for task in listed] == [later, task_id]
        assert [task.id for task in await omniq.list_tasks(status="completed")] == [task_id]


# ---------------------------------------------------------------------- unique keys

_PRODUCER = """
import sys
from omniq import AsyncOmniQ, OmniQ, Settings
twin, dsn, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
settings = Settings(backend="postgres", dsn=dsn)
print("ready", flush=True)
sys.stdin.readline()
if twin == "async":
    import asyncio
    async def main():
        async with AsyncOmniQ(settings) as omniq:
            return [await omniq.enqueue("task_functions.add", args=[i, i], unique_key="race")
                    for i in range(count)]
    ids = asyncio.run(main())
else:
    with OmniQ(settings) as omniq:
        ids = [omniq.enqueue("task_functions.add", args=[i, i], unique_key="race")
               for i in range(count)]
print(" ".join(sorted(set(ids))), flush=True)
"""


async def test_producers_in_many_processes_store_one_task_per_unique_key(
    settings: Settings,
) -> None:
    assert settings.dsn is not None
    async with AsyncOmniQ(settings):
        pass  # the schema exists before the race
    producers = [
        subprocess.Popen(
            [sys.executable, "-c", _PRODUCER, TWIN, settings.dsn, "20"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for producer in producers:
        assert producer.stdout is not None and producer.stdout.readline().strip() == "ready"
    for producer in producers:
        assert producer.stdin is not None
        producer.stdin.write("go\n")
        producer.stdin.flush()
    answers = []
    for producer in producers:
        stdout, stderr = producer.communicate(timeout=120)
        assert producer.returncode == 0, stderr
        answers.append(stdout.strip())
    conn = await admin(settings)
    try:
        stored = await rows(conn, "SELECT id FROM omniq_tasks WHERE unique_key = 'race'")
    finally:
        await conn.close()
    assert len(stored) == 1
    assert set(answers) == {stored[0][0]}  # every producer was told the holder's id


async def test_enqueue_many_keeps_the_first_of_each_key(settings: Settings) -> None:
    async with AsyncOmniQ(settings) as omniq:
        held = await omniq.enqueue("task_functions.add", args=[0, 0], unique_key="held")
        ids = await omniq.enqueue_many(
            [
                {"func_path": "task_functions.add", "args": [1, 1], "unique_key": "k"},
                {"func_path": "task_functions.add", "args": [2, 2]},
                {"func_path": "task_functions.add", "args": [3, 3], "unique_key": "k"},
                {"func_path": "task_functions.add", "args": [4, 4], "unique_key": "held"},
            ]
        )
        assert ids[0] != ids[1] and ids[2] == ids[0] and ids[3] == held
        stats = await omniq.stats()
        assert stats["pending"] == 3


async def test_a_large_batch_is_stored_whole_in_order_and_wakes_another_connection(
    settings: Settings,
) -> None:
    # 500 tasks without unique keys stream in with COPY (at least COPY_MIN), one transaction.
    assert settings.dsn is not None
    listening = AsyncPostgresStorage(settings.dsn)
    woken = AsyncEvent()
    try:
        listening.subscribe(woken.set)
        assert await woken.wait(10), "the listener did not connect"  # it wakes once on connect
        woken.clear()
        async with AsyncOmniQ(settings) as omniq:
            items = [
                {"func_path": "task_functions.add", "args": [n, n], "priority": n % 3}
                for n in range(500)
            ]
            ids = await omniq.enqueue_many(items)
            assert len(set(ids)) == 500
            assert await woken.wait(5), "the batch did not notify"
            stats = await omniq.stats()
            assert stats["pending"] == 500
            queue = AsyncTaskQueue(AsyncPostgresStorage(settings.dsn))
            claimed = await queue.dequeue_many(500)
            await queue.close()
            # Claim order: priority first, then enqueue order (the batch's order).
            expected = sorted(range(500), key=lambda n: (-(n % 3), n))
            assert [task.id for task in claimed] == [ids[n] for n in expected]
            assert [task.args for task in claimed[:2]] == [(2, 2), (5, 5)]
    finally:
        await listening.close()


async def test_requeue_is_refused_when_a_holder_commits_during_it(settings: Settings) -> None:
    assert settings.dsn is not None
    storage = AsyncPostgresStorage(settings.dsn)
    queue = AsyncTaskQueue(storage)
    rival = await admin(settings)
    try:
        first = await queue.enqueue("task_functions.add", [1, 1], unique_key="k")
        assert await queue.cancel(first)
        template = await storage.get(first)
        assert template is not None
        results: list[bool] = []
        async with rival.transaction():
            # Another producer has inserted a holder of the key, not yet committed.
            await rival.execute(
                "INSERT INTO omniq_tasks (id, func_path, payload, status, eta, created_at, "
                "updated_at, unique_key) VALUES ('rival', 'task_functions.add', "
                "'{\"args\":[],\"kwargs\":{}}', 'pending', 0, 0, 0, 'k')"
            )

            async def requeue() -> None:
                results.append(await queue.retry(first))

            handle = aspawn(requeue)
            await asleep(0.5)  # the requeue waits on the rival's index entry
        assert await ajoin([handle], 30) == 0
        assert results == [False]  # refused, not an IntegrityError
        again = await storage.get(first)
        assert again is not None and again.status == "cancelled"
        assert await queue.retry(first) is False  # the holder is visible now
    finally:
        await rival.close()
        await storage.close()


async def test_an_interval_successor_keeps_the_unique_key(settings: Settings) -> None:
    async with AsyncOmniQ(settings) as omniq:
        first = await omniq.enqueue(
            "task_functions.add", args=[1, 2], interval=3600, unique_key="hourly"
        )
        async with omniq.worker_pool(handle_signals=False) as workers:
            await workers.process_tasks(limit=1)
        assert await omniq.get_result(first) == 3
        (successor,) = await omniq.list_tasks(status="pending")
        assert successor.unique_key == "hourly" and successor.parent_id == first
        assert await omniq.enqueue("task_functions.add", args=[1, 2], unique_key="hourly") == (
            successor.id
        )


# ---------------------------------------------------------------------- history, purge


async def test_history_is_stored_with_each_outcome_and_release(
    settings: Settings, out: str, no_backoff: None
) -> None:
    async with AsyncOmniQ(settings) as omniq:
        task_id = await omniq.enqueue("task_functions.fail_times", args=[out, 1], max_retries=3)
        async with omniq.worker_pool(handle_signals=False, name="pool-a") as workers:
            await workers.process_tasks(limit=2)
        task = await omniq.get_task(task_id)
        assert task is not None and task.status == TaskStatus.COMPLETED
        assert [(e.attempt, e.outcome, e.worker) for e in task.attempts_history] == [
            (1, "retry", "pool-a"),
            (2, "completed", "pool-a"),
        ]
        queue = omniq.queue
        other = await queue.enqueue("task_functions.add", [1, 1])
        (claimed,) = await queue.dequeue_many(1)
        assert claimed.id == other
        assert await queue.release(claimed, started_at=time.time(), worker="pool-b")
        released = await omniq.get_task(other)
        assert released is not None and released.status == TaskStatus.PENDING
        assert [(e.outcome, e.worker) for e in released.attempts_history] == [
            ("released", "pool-b")
        ]


async def test_purge_in_batches_deletes_the_oldest_finished_first(settings: Settings) -> None:
    assert settings.dsn is not None
    storage = AsyncPostgresStorage(settings.dsn)
    queue = AsyncTaskQueue(storage)
    try:
        ids = [await queue.enqueue("task_functions.add", [i, i]) for i in range(5)]
        for task_id in ids:
            assert await queue.cancel(task_id)
            await asleep(0.01)  # distinct finish times
        live = await queue.enqueue("task_functions.add", [9, 9])
        later = time.time() + 60
        assert await storage.purge(later, ["cancelled", "pending"], limit=2) == 2
        assert [await storage.get(task_id) is None for task_id in ids] == [
            True,
            True,
            False,
            False,
            False,
        ]
        assert await storage.purge(later, ["cancelled"], limit=0) == 0
        assert await queue.prune(0, batch=2) == 3
        assert await storage.get(live) is not None
        counts = await storage.count_by_queue()
        assert counts["default"]["pending"] == 1 and counts["default"]["cancelled"] == 0
    finally:
        await storage.close()


# ---------------------------------------------------------------------- state records


async def test_advances_from_many_connections_store_the_fire_once(settings: Settings) -> None:
    assert settings.dsn is not None
    storages = [AsyncPostgresStorage(settings.dsn) for _ in range(6)]
    for storage in storages:
        await storage.open()
    await storages[0].put_state("schedule", "hourly", "{}", time.time())
    (template,) = AsyncTaskQueue(storages[0]).records_for(
        [{"func_path": "task_functions.add", "args": [1, 1], "queue": "default", "priority": 0}]
    )
    won: list[bool] = []

    async def advance(index: int) -> None:
        # Each its own pool, like workers on other machines, each with its own task.
        record = dataclasses.replace(template, id=f"fire-{index}")
        won.append(await storages[index].advance_state("schedule", "hourly", 100.0, [record]))

    try:
        handles = [aspawn(advance, i) for i in range(len(storages))]
        assert await ajoin(handles, 60) == 0
        assert sorted(won) == [False] * (len(storages) - 1) + [True]
        state = await storages[0].get_state("schedule", "hourly")
        assert state is not None and state.mark == 100.0
        counts = await storages[0].count_by_queue()
        assert counts["default"]["pending"] == 1
        assert await storages[0].advance_state("schedule", "hourly", 100.0, []) is False
        assert await storages[0].advance_state("schedule", "missing", 1.0, []) is False
    finally:
        for storage in storages:
            await storage.close()
