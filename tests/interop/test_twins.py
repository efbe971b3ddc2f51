"""The two twins share one store format, and the blocking twin stays blocking."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import BACKEND, make_settings

from omniq import AsyncOmniQ, AsyncTaskQueue, OmniQ, TaskQueue, TaskStatus
from omniq.storage.memory import MemoryStorage
from omniq.storage.sqlite import AsyncSQLiteStorage, SQLiteStorage


def pair(base_dir: Path) -> tuple[OmniQ, AsyncOmniQ]:
    """A blocking and an async facade on the same store."""
    settings = make_settings(base_dir)
    if BACKEND == "memory":
        shared = MemoryStorage()  # the async facade reaches it through the adapter
        return OmniQ(settings, storage=shared), AsyncOmniQ(settings, storage=shared)
    return OmniQ(settings), AsyncOmniQ(settings)


def test_blocking_enqueue_async_worker(base_dir: Path) -> None:
    blocking, asynchronous = pair(base_dir)
    plain = blocking.enqueue("task_functions.add", args=[1, 2])
    coro = blocking.enqueue("task_functions.async_add", args=[3, 4])

    async def work() -> int:
        async with asynchronous.worker_pool() as pool:
            done = await pool.process_tasks(limit=10)
        await asynchronous.close()
        return done

    assert asyncio.run(work()) == 2
    assert blocking.get_result(plain) == 3
    assert blocking.get_result(coro) == 7
    blocking.close()


def test_async_enqueue_blocking_worker(base_dir: Path) -> None:
    blocking, asynchronous = pair(base_dir)

    async def produce() -> list[str]:
        ids = [
            await asynchronous.enqueue("task_functions.add", args=[5, 5]),
            await asynchronous.enqueue("task_functions.async_add", args=[6, 6]),
        ]
        await asynchronous.close()
        return ids

    plain, coro = asyncio.run(produce())
    with blocking.worker_pool() as pool:
        assert pool.process_tasks(limit=10) == 2
    assert blocking.get_result(plain) == 10
    assert blocking.get_result(coro) == 12
    blocking.close()


def test_blocking_twin_creates_no_event_loop_for_plain_functions(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the blocking twin created an event loop")

    omniq = OmniQ(make_settings(base_dir))
    monkeypatch.setattr(asyncio, "new_event_loop", forbidden)
    monkeypatch.setattr(asyncio, "run", forbidden)
    task_id = omniq.enqueue("task_functions.add", args=[1, 1])
    with omniq.worker_pool() as pool:
        pool.process_tasks(limit=1)
    assert omniq.get_result(task_id) == 2
    assert omniq.get_task(task_id)["status"] == TaskStatus.COMPLETED  # type: ignore[index]
    omniq.close()


def test_one_blocking_facade_shared_by_many_threads(base_dir: Path) -> None:
    omniq = OmniQ(make_settings(base_dir))
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def producer(offset: int) -> None:
        try:
            for i in range(25):
                task_id = omniq.enqueue("task_functions.add", args=[offset, i])
                assert omniq.get_task(task_id) is not None
                with lock:
                    ids.append(task_id)
        except BaseException as error:  # collected: a thread's failure must fail the test
            errors.append(error)

    threads = [threading.Thread(target=producer, args=(n * 100,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 200
    with omniq.worker_pool(concurrency=4) as pool:
        assert pool.process_tasks(limit=500) == 200
    results = sorted(omniq.get_result(task_id) for task_id in ids)
    assert results == sorted(n * 100 + i for n in range(8) for i in range(25))
    omniq.close()


def test_spec_style_async_queue_on_a_blocking_storage(tmp_path: Path) -> None:
    async def scenario() -> None:
        queue = AsyncTaskQueue(SQLiteStorage(tmp_path / "db"))
        task_id = await queue.enqueue(func_path="task_functions.add", args=[1, 2])
        task = await queue.dequeue()
        assert task is not None and task.id == task_id
        assert await queue.complete_task(task_id, result=3, task=task)
        assert (await queue.get_task(task_id))["result"] == 3  # type: ignore[index]
        await queue.close()

    asyncio.run(scenario())


def test_blocking_queue_refuses_an_async_storage(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="storage must be an omniq storage"):
        TaskQueue(AsyncSQLiteStorage(tmp_path / "db"))  # type: ignore[arg-type]
