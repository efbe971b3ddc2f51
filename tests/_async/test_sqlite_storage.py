"""SQLite specifics: lock contention, garbage rows, schema version, the claim's query plan."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from omniq import AsyncOmniQ, Settings, StorageError, TaskStatus
from omniq import _sqlite_ops as ops
from omniq import _sqlite_sql as sql
from omniq._concurrency import Event, ajoin, asleep, aspawn
from omniq._sqlite_idle import IdleShortcut
from omniq.storage.sqlite import AsyncSQLiteStorage


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another connection takes SQLite's write lock and keeps it until COMMIT."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


async def release_after(conn: sqlite3.Connection, seconds: float) -> None:
    await asleep(seconds)
    conn.execute("COMMIT")
    conn.close()


@pytest.fixture
async def omniq(tmp_path: Path) -> AsyncOmniQ:
    facade = AsyncOmniQ(Settings(backend="sqlite", base_dir=tmp_path / "store"))
    await facade.open()
    yield facade  # type: ignore[misc]
    await facade.close()


async def test_a_locked_database_is_waited_for_not_failed(omniq: AsyncOmniQ) -> None:
    locker = hold_write_lock(omniq.settings.sqlite_path)
    releaser = aspawn(release_after, locker, 0.5)
    task_id = await omniq.enqueue("task_functions.add", args=[1, 2])  # waits for the lock
    assert await ajoin([releaser], 5) == 0
    task = await omniq.get_task(task_id)
    assert task is not None and task["status"] == TaskStatus.PENDING


async def test_a_lock_held_past_the_busy_timeout_is_a_clear_error(tmp_path: Path) -> None:
    storage = AsyncSQLiteStorage(tmp_path / "db", busy_timeout=0.2)
    omniq = AsyncOmniQ(Settings(base_dir=tmp_path), storage=storage)
    first = await omniq.enqueue("task_functions.add", args=[1, 1])
    locker = hold_write_lock(storage.path)
    with pytest.raises(StorageError, match=r"could not store the task: .*database is locked"):
        await omniq.enqueue("task_functions.add", args=[2, 2])
    async with omniq.worker_pool(poll_interval=0.05) as workers:
        # The worker's claims fail while the lock is held: logged, not fatal.
        assert await workers.process_tasks(duration=0.3) == 0
        locker.execute("COMMIT")
        locker.close()
        assert await workers.process_tasks(limit=5) == 1
    assert await omniq.get_result(first) == 2
    await omniq.close()


@pytest.mark.parametrize(
    ("column", "value"),
    [("payload", "{not json"), ("payload", '{"args": 1, "kwargs": {}}'), ("error", "[[[")],
)
async def test_garbage_rows_fail_their_task_and_the_pool_goes_on(
    omniq: AsyncOmniQ, column: str, value: str
) -> None:
    bad = await omniq.enqueue("task_functions.add", args=[1, 1])
    good = await omniq.enqueue("task_functions.add", args=[2, 2])
    conn = sqlite3.connect(omniq.settings.sqlite_path, isolation_level=None)
    conn.execute(f"UPDATE omniq_tasks SET {column} = ? WHERE id = ?", (value, bad))
    conn.close()
    async with omniq.worker_pool() as workers:
        assert await workers.process_tasks(limit=5) == 1
    assert await omniq.get_result(good) == 4
    conn = sqlite3.connect(omniq.settings.sqlite_path)
    status, error = conn.execute(
        "SELECT status, error FROM omniq_tasks WHERE id = ?", (bad,)
    ).fetchone()
    conn.close()
    assert status == "failed"
    assert "serialization" in error and "cannot be decoded" in error


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db"
    storage = AsyncSQLiteStorage(path)
    await storage.open()
    await storage.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StorageError, match="schema version 99"):
        await AsyncSQLiteStorage(path).open()


async def test_the_claim_seeks_the_due_index_and_never_scans(tmp_path: Path) -> None:
    storage = AsyncSQLiteStorage(tmp_path / "db")
    await storage.open()
    await storage.close()
    conn = sqlite3.connect(storage.path)

    def plan(statement: str, parameters: tuple[object, ...]) -> str:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
        return " | ".join(str(row[3]) for row in rows)

    levels = plan(sql.ALL_LEVELS, ())
    named = plan(sql.levels_of(2), ("a", "b"))
    one = plan(sql.claim_of(1), ("token", 1.0, 0.0, 0.0, "w", "default", 0, 0.0, 4))
    three = plan(sql.claim_of(3), ("t", 1.0, 0.0, 0.0, "w", *(("q", 0, 0.0, 4) * 3), 4))
    conn.close()
    for text in (levels, named, one, three):
        assert "USING INDEX omniq_tasks_due" in text, text
        # Seeks, and ordered walks of the due index that stop at their LIMIT: never a
        # walk of the table, nor of another index.
        assert not re.search(r"SCAN omniq_tasks(?! USING INDEX omniq_tasks_due)", text), text
    assert "(queue=? AND priority=? AND eta<?)" in one
    assert "TEMP B-TREE" not in one  # one level: the index gives the order


async def test_wal_and_full_synchronous_by_default(tmp_path: Path) -> None:
    storage = AsyncSQLiteStorage(tmp_path / "db")
    await storage.open()
    await storage.close()
    conn = sqlite3.connect(storage.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_idle_claims_take_no_write_lock(tmp_path: Path) -> None:
    storage = AsyncSQLiteStorage(tmp_path / "db", busy_timeout=0.2)
    assert await storage.claim(0.0, 1.0, 4) == []  # empty: remembers data_version
    locker = hold_write_lock(storage.path)
    try:
        # Nothing was committed since: no transaction, so no "database is locked".
        for _ in range(3):
            assert await storage.claim(1.0, 2.0, 4) == []
    finally:
        locker.execute("COMMIT")
        locker.close()
    other = AsyncSQLiteStorage(storage.path)
    facade = AsyncOmniQ(Settings(base_dir=tmp_path), storage=other)
    task_id = await facade.enqueue("task_functions.add", args=[1, 1])
    await facade.close()
    claimed = await storage.claim(9e9, 9e9 + 1, 4)  # another connection committed: noticed
    assert [record.id for record in claimed] == [task_id]
    await storage.close()


async def test_an_enqueue_during_an_empty_claim_is_claimed_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The enqueue commits on the claim's own connection (no data_version change) after
    # the claim read "nothing pending": the claim must not remember "idle" over it.
    storage = AsyncSQLiteStorage(tmp_path / "db")
    facade = AsyncOmniQ(Settings(base_dir=tmp_path), storage=storage)
    claim_read, enqueue_began = Event(), Event()  # set from the connection's thread
    real_claim, real_write_begins = ops.claim, IdleShortcut.write_begins

    def slow_claim(*args: object) -> object:
        found = real_claim(*args)  # type: ignore[arg-type]
        claim_read.set()
        enqueue_began.wait(10)
        return found

    def write_begins(self: IdleShortcut) -> int:
        generation = real_write_begins(self)
        if claim_read.is_set():
            enqueue_began.set()
        return generation

    monkeypatch.setattr(ops, "claim", slow_claim)
    monkeypatch.setattr(IdleShortcut, "write_begins", write_begins)
    first: list[object] = []

    async def claim_once() -> None:
        first.append(await storage.claim(9e9, 9e9 + 1, 4))

    claimer = aspawn(claim_once)
    for _ in range(1000):
        if claim_read.is_set():
            break
        await asleep(0.01)
    task_id = await facade.enqueue("task_functions.add", args=[1, 1])  # waits for the claim
    assert await ajoin([claimer], 10) == 0
    assert first == [[]] and enqueue_began.is_set()
    monkeypatch.setattr(ops, "claim", real_claim)
    claimed = await storage.claim(9e9, 9e9 + 1, 4)
    assert [record.id for record in claimed] == [task_id]
    await facade.close()


FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "v1"


async def test_a_v1_store_is_migrated_in_place_and_keeps_every_task(tmp_path: Path) -> None:
    # tests/fixtures/v1/sqlite/omniq.db was written by omniq 0.1.0 (schema v1).
    manifest = json.loads((FIXTURES / "manifest.json").read_text())["sqlite"]
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    shutil.copy(FIXTURES / "sqlite" / "omniq.db", store / "omniq.db")
    (store / "omniq.db").chmod(0o600)
    settings = Settings(backend="sqlite", base_dir=store, task_modules=["task_functions"])
    async with AsyncOmniQ(settings) as omniq:
        assert await omniq.get_result(manifest["completed"]) == 42
        failed = await omniq.get_task(manifest["failed"])
        assert failed is not None and failed["status"] == TaskStatus.FAILED
        assert failed["error"] is not None and failed["error"].message == "this task always fails"
        cancelled = await omniq.get_task(manifest["cancelled"])
        assert cancelled is not None and cancelled["status"] == TaskStatus.CANCELLED
        later = await omniq.get_task(manifest["later"])
        assert later is not None and later["queue"] == "default" and later["priority"] == 0
        async with omniq.worker_pool(retention=None) as workers:
            assert await workers.process_tasks(limit=10) == 3  # the three due v1 tasks
        results = [await omniq.get_result(task_id) for task_id in manifest["pending"]]
        assert results == [100, 101, 102]
        stats = await omniq.stats()
        assert (stats["pending"], stats["completed"], stats["total"]) == (1, 4, 7)
        await omniq.enqueue("task_functions.add", args=[1, 1], queue="new", priority=3)
    conn = sqlite3.connect(store / "omniq.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()


async def test_a_foreign_table_is_refused_not_adopted(tmp_path: Path) -> None:
    path = tmp_path / "db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE omniq_tasks (id TEXT, something_else TEXT)")
    conn.close()
    with pytest.raises(StorageError, match="omniq did not create"):
        await AsyncSQLiteStorage(path).open()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0  # left as it was
    conn.close()
