"""Named state records beside the tasks (schedules, the worker registry), every backend."""

from __future__ import annotations

import time

from omniq import AsyncOmniQ
from omniq._concurrency import ajoin, aspawn
from omniq.models import new_task_id
from omniq.records import TaskRecord


def task_record(unique_key: str | None = None) -> TaskRecord:
    now = time.time()
    return TaskRecord(
        id=new_task_id(),
        func_path="task_functions.add",
        payload='{"args":[1,1],"kwargs":{}}',
        status="pending",
        attempts=0,
        max_retries=3,
        eta=now,
        interval=None,
        timeout=None,
        result=None,
        error=None,
        created_at=now,
        updated_at=now,
        unique_key=unique_key,
    )


async def test_put_get_list_and_delete(omniq: AsyncOmniQ) -> None:
    storage = omniq.queue.storage
    await storage.put_state("schedule", "b", '{"v": 1}', 10.0)
    await storage.put_state("schedule", "a", '{"v": 2}', 11.0)
    await storage.put_state("worker", "w1", "{}", 12.0)
    record = await storage.get_state("schedule", "b")
    assert record is not None
    assert (record.kind, record.name, record.data, record.updated_at, record.mark) == (
        "schedule",
        "b",
        '{"v": 1}',
        10.0,
        None,
    )
    assert [r.name for r in await storage.list_state("schedule")] == ["a", "b"]
    await storage.put_state("schedule", "b", '{"v": 3}', 13.0)  # replaced, not added
    replaced = await storage.get_state("schedule", "b")
    assert replaced is not None and replaced.data == '{"v": 3}' and replaced.updated_at == 13.0
    assert len(await storage.list_state("schedule")) == 2
    assert await storage.delete_state("schedule", "b")
    assert not await storage.delete_state("schedule", "b")
    assert await storage.get_state("schedule", "b") is None
    assert [r.name for r in await storage.list_state("worker")] == ["w1"]


async def test_advance_moves_the_mark_forward_only_and_adds_the_tasks(omniq: AsyncOmniQ) -> None:
    storage = omniq.queue.storage
    assert not await storage.advance_state("schedule", "missing", 1.0, [task_record()])
    await storage.put_state("schedule", "s", "{}", 1.0)
    first = task_record()
    assert await storage.advance_state("schedule", "s", 100.0, [first])
    assert not await storage.advance_state("schedule", "s", 100.0, [task_record()])  # same
    assert not await storage.advance_state("schedule", "s", 50.0, [task_record()])  # behind
    assert await storage.advance_state("schedule", "s", 101.0, [])
    record = await storage.get_state("schedule", "s")
    assert record is not None and record.mark == 101.0
    await storage.put_state("schedule", "s", '{"changed": true}', 2.0)
    kept = await storage.get_state("schedule", "s")
    assert kept is not None and kept.mark == 101.0  # a new definition keeps the mark
    stats = await omniq.stats()
    assert stats["total"] == 1
    assert await omniq.get_task(first.id) is not None


async def test_concurrent_advances_to_one_mark_store_once(omniq: AsyncOmniQ) -> None:
    storage = omniq.queue.storage
    await storage.put_state("schedule", "race", "{}", 1.0)
    won: list[bool] = []

    async def advance() -> None:
        won.append(await storage.advance_state("schedule", "race", 7.0, [task_record()]))

    handles = [aspawn(advance) for _ in range(8)]
    assert await ajoin(handles, 30) == 0
    assert sorted(won) == [False] * 7 + [True]
    assert (await omniq.stats())["total"] == 1
