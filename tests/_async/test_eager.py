"""Eager mode (``Settings(eager=True)``): ``enqueue`` runs the task inline, for tests.

Generated into ``tests/_sync`` by ``scripts/unasync.py``. Eager mode ignores the
backend under test (its store is always in memory), so these tests set up their
own settings.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from task_functions import lines

from omniq import AsyncOmniQ, Settings, TaskStatus
from omniq._concurrency import ajoin, aspawn
from omniq.exceptions import TaskFailed
from omniq.storage.memory import AsyncMemoryStorage


def eager_settings(tmp_path: Path, **overrides: object) -> Settings:
    options: dict[str, object] = {"eager": True, "base_dir": tmp_path / "unused-store"}
    options.update(overrides)
    return Settings(**options)  # type: ignore[arg-type]


async def test_enqueue_runs_the_task_before_returning(tmp_path: Path) -> None:
    async with AsyncOmniQ(eager_settings(tmp_path)) as omniq:
        task_id = await omniq.enqueue("task_functions.add", args=[2, 3])
        task = await omniq.get_task(task_id)
        assert task is not None
        assert task.status == TaskStatus.COMPLETED
        assert task.result == 5
        assert task.attempts == 1
        assert task.finished_at is not None
        assert await omniq.get_result(task_id) == 5


async def test_coroutine_functions_run_too(tmp_path: Path) -> None:
    async with AsyncOmniQ(eager_settings(tmp_path)) as omniq:
        task_id = await omniq.enqueue("task_functions.async_add", args=[4, 5])
        assert await omniq.get_result(task_id) == 9


async def test_the_store_is_in_memory_whatever_the_backend(tmp_path: Path) -> None:
    omniq = AsyncOmniQ(eager_settings(tmp_path, backend="sqlite"))
    assert isinstance(omniq.queue.storage, AsyncMemoryStorage)
    async with omniq:
        await omniq.enqueue("task_functions.add", args=[1, 1])
    assert not (tmp_path / "unused-store").exists()


async def test_an_eager_facade_takes_no_storage(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="eager"):
        AsyncOmniQ(eager_settings(tmp_path), storage=AsyncMemoryStorage())


async def test_retries_run_inline_up_to_the_budget_without_waiting(
    tmp_path: Path, out: str
) -> None:
    async with AsyncOmniQ(eager_settings(tmp_path)) as omniq:
        started = time.monotonic()
        task_id = await omniq.enqueue("task_functions.fail_always", args=[out], max_retries=3)
        assert time.monotonic() - started < 0.9  # the backoff would be 1 s, then 2 s
        assert lines(out) == ["run"] * 3
        task = await omniq.get_task(task_id)
        assert task is not None
        assert task.status == TaskStatus.FAILED
        assert task.attempts == 3
        assert task.error is not None
        assert task.error.error_type == "runtime"
        assert task.error.retry_count == 3
        assert "this task always fails" in (task.error.traceback or "")
        with pytest.raises(TaskFailed):
            await omniq.get_result(task_id)


async def test_a_retry_can_succeed(tmp_path: Path, out: str) -> None:
    async with AsyncOmniQ(eager_settings(tmp_path)) as omniq:
        task_id = await omniq.enqueue("task_functions.fail_times", args=[out, 2], max_retries=3)
        assert await omniq.get_result(task_id) == "finally"
        task = await omniq.get_task(task_id)
        assert task is not None
        assert task.attempts == 3


async def test_the_default_budget_comes_from_the_settings(tmp_path: Path, out: str) -> None:
    async with AsyncOmniQ(eager_settings(tmp_path, max_retries=2)) as omniq:
        await omniq.enqueue("task_functions.fail_always", args=[out])
    assert lines(out) == ["run"] * 2


async def test_import_and_argument_errors_are_not_retried(tmp_path: Path) -> None:
    async with AsyncOmniQ(eager_settings(tmp_path)) as omniq:
        missing = await omniq.get_task(await omniq.enqueue("task_functions.no_such_function"))
        wrong = await omniq.get_task(await omniq.enqueue("task_functions.add", args=[1]))
    assert missing is not None and missing.error is not None
    assert (missing.status, missing.attempts, missing.error.error_type) == ("failed", 1, "import")
    assert wrong is not None and wrong.error is not None
    assert (wrong.status, wrong.attempts, wrong.error.error_type) == ("failed", 1, "arguments")


async def test_the_timeout_applies(tmp_path: Path) -> None:
    async with AsyncOmniQ(eager_settings(tmp_path, task_timeout=0.1)) as omniq:
        task_id = await omniq.enqueue("task_functions.async_sleep_for", args=[5], max_retries=1)
        task = await omniq.get_task(task_id)
    assert task is not None and task.error is not None
    assert (task.status, task.error.error_type) == ("failed", "timeout")


async def test_eta_and_interval_are_kept_but_the_task_runs_once_now(tmp_path: Path) -> None:
    tomorrow = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    async with AsyncOmniQ(eager_settings(tmp_path)) as omniq:
        task_id = await omniq.enqueue(
            "task_functions.add", args=[1, 2], eta=tomorrow, interval=dt.timedelta(hours=1)
        )
        task = await omniq.get_task(task_id)
        assert task is not None
        assert task.status == TaskStatus.COMPLETED
        assert abs((task.eta - tomorrow).total_seconds()) < 0.001
        assert task.interval == dt.timedelta(hours=1)
        stats = await omniq.stats()
        assert (stats["total"], stats["pending"]) == (1, 0)  # no next run was scheduled


async def test_bad_input_raises_at_enqueue_and_runs_nothing(tmp_path: Path) -> None:
    async with AsyncOmniQ(eager_settings(tmp_path)) as omniq:
        with pytest.raises(ValueError):
            await omniq.enqueue("not a path")
        with pytest.raises(TypeError):
            await omniq.enqueue("task_functions.add", args=[object()])
        with pytest.raises(TypeError):
            await omniq.enqueue("task_functions.add", eta="tomorrow")  # type: ignore[arg-type]
        assert (await omniq.stats())["total"] == 0


async def test_enqueue_many_runs_each_in_order_after_checking_all(tmp_path: Path, out: str) -> None:
    async with AsyncOmniQ(eager_settings(tmp_path)) as omniq:
        with pytest.raises(ValueError):
            await omniq.enqueue_many(
                [
                    {"func_path": "task_functions.record", "args": [out, "first"]},
                    {"func_path": "bad path"},
                ]
            )
        assert lines(out) == []
        ids = await omniq.enqueue_many(
            {"func_path": "task_functions.record", "args": [out, i]} for i in range(3)
        )
        assert lines(out) == ["0", "1", "2"]
        assert [await omniq.get_result(task_id) for task_id in ids] == [0, 1, 2]


async def test_concurrent_eager_runs_keep_to_their_own_tasks(tmp_path: Path) -> None:
    results: dict[int, object] = {}
    async with AsyncOmniQ(eager_settings(tmp_path)) as omniq:

        async def produce(number: int) -> None:
            task_id = await omniq.enqueue(
                "task_functions.fail_times", args=[str(tmp_path / f"out-{number}"), 1]
            )
            results[number] = await omniq.get_result(task_id)

        handles = [aspawn(produce, number) for number in range(8)]
        assert await ajoin(handles, 30) == 0
        assert results == dict.fromkeys(range(8), "finally")
        assert (await omniq.stats())["completed"] == 8


async def test_a_worker_pool_on_an_eager_facade_finds_nothing_to_do(tmp_path: Path) -> None:
    async with AsyncOmniQ(eager_settings(tmp_path)) as omniq:
        await omniq.enqueue("task_functions.add", args=[1, 1])
        async with omniq.worker_pool(poll_interval=0.05) as workers:
            assert await workers.process_tasks(limit=5) == 0


def test_eager_from_the_environment() -> None:
    assert Settings.from_env({"OMNIQ_EAGER": "1"}).eager is True
    assert Settings.from_env({"OMNIQ_EAGER": "off"}).eager is False
    assert Settings.from_env({}).eager is False
    with pytest.raises(ValueError, match="OMNIQ_EAGER"):
        Settings.from_env({"OMNIQ_EAGER": "maybe"})
    with pytest.raises(TypeError):
        Settings(eager="yes")  # type: ignore[arg-type]
