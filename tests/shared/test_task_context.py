"""``current_task()``: set by ``running_task``, followed onto threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime as dt
import threading

import pytest

import omniq
from omniq import TaskContext, current_task
from omniq._concurrency import arun_callable, run_callable, spawn
from omniq._threads import THREADS
from omniq.models import create_task
from omniq.task_context import running_task

UTC = dt.timezone.utc


def context(task_id: str = "t-1", **changes: object) -> TaskContext:
    values: dict[str, object] = {
        "id": task_id,
        "func_path": "app.tasks.job",
        "queue": "default",
        "attempt": 1,
        "max_retries": 3,
        "correlation_id": task_id,
        "worker": "pool-1",
        "eta": dt.datetime(2025, 1, 1, tzinfo=UTC),
    }
    values.update(changes)
    return TaskContext(**values)  # type: ignore[arg-type]


def seen() -> TaskContext | None:
    return omniq.current_task()


async def seen_async() -> TaskContext | None:
    await asyncio.sleep(0)
    return current_task()


def test_outside_a_task_there_is_none() -> None:
    assert current_task() is None


def test_running_task_sets_and_restores_the_context() -> None:
    outer, inner = context("outer"), context("inner")
    with running_task(outer) as entered:
        assert entered is outer and current_task() is outer
        with running_task(inner):
            assert current_task() is inner
        assert current_task() is outer
    assert current_task() is None


def test_the_context_is_restored_when_the_task_raises() -> None:
    with pytest.raises(RuntimeError), running_task(context()):
        raise RuntimeError("boom")
    assert current_task() is None


def test_running_task_needs_a_task_context() -> None:
    with pytest.raises(TypeError, match="TaskContext"):
        running_task({"id": "x"})  # type: ignore[arg-type]


def test_the_context_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        context().attempt = 2  # type: ignore[misc]


def test_omniqs_threads_see_the_context_of_their_submitter() -> None:
    ctx = context()
    results: list[TaskContext | None] = []
    with running_task(ctx):
        spawn(lambda: results.append(current_task())).join(30)
        cached: list[TaskContext | None] = []
        THREADS.submit(lambda: cached.append(current_task())).join(30)
    assert results == [ctx] and cached == [ctx]
    after: list[TaskContext | None] = []
    spawn(lambda: after.append(current_task())).join(30)
    assert after == [None]


def test_a_bare_thread_does_not_copy_the_context_unless_asked() -> None:
    ctx = context()
    bare: list[TaskContext | None] = []
    copied: list[TaskContext | None] = []
    with running_task(ctx):
        thread = threading.Thread(target=lambda: bare.append(current_task()))
        thread.start()
        thread.join(30)
        snapshot = contextvars.copy_context()
        thread = threading.Thread(
            target=snapshot.run, args=(lambda: copied.append(current_task()),)
        )
        thread.start()
        thread.join(30)
    assert bare == [None] and copied == [ctx]


async def test_asyncio_tasks_created_inside_see_the_context() -> None:
    ctx = context()
    with running_task(ctx):
        child = asyncio.create_task(seen_async())
    assert await child is ctx  # created inside the scope: a copy of that context
    assert current_task() is None


async def test_concurrent_executions_each_see_their_own() -> None:
    async def execution(ctx: TaskContext) -> list[TaskContext | None]:
        observed: list[TaskContext | None] = []
        with running_task(ctx):
            for _ in range(5):
                await asyncio.sleep(0)  # interleave with the other execution
                observed.append(current_task())
        return observed

    first, second = context("first"), context("second")
    results = await asyncio.gather(execution(first), execution(second))
    assert results == [[first] * 5, [second] * 5]


@pytest.mark.parametrize("timeout", [None, 30.0])
async def test_the_async_twins_runner_passes_it_to_plain_and_coroutine_functions(
    timeout: float | None,
) -> None:
    ctx = context()
    with running_task(ctx):
        on_thread = await arun_callable(seen, (), {}, timeout)
        on_loop = await arun_callable(seen_async, (), {}, timeout)
    assert on_thread is ctx and on_loop is ctx


@pytest.mark.parametrize("timeout", [None, 30.0])
def test_the_blocking_twins_runner_passes_it_to_plain_and_coroutine_functions(
    timeout: float | None,
) -> None:
    ctx = context()
    with running_task(ctx):
        on_thread = run_callable(seen, (), {}, timeout)
        on_loop = run_callable(seen_async, (), {}, timeout)
    assert on_thread is ctx and on_loop is ctx


def test_from_task_describes_a_claimed_task() -> None:
    stored = create_task("app.tasks.job", args=[1], max_retries=None, correlation_id="req-7")
    claimed = dataclasses.replace(stored, attempts=2)
    ctx = TaskContext.from_task(claimed, worker="pool-1", default_max_retries=4)
    assert ctx == TaskContext(
        id=stored.id,
        func_path="app.tasks.job",
        queue="default",
        attempt=2,
        max_retries=4,
        correlation_id="req-7",
        worker="pool-1",
        eta=stored.eta,
    )
    budgeted = TaskContext.from_task(create_task("app.tasks.job", max_retries=2), worker="w")
    assert budgeted.max_retries == 2
    assert budgeted.correlation_id == budgeted.id  # a task is its own correlation by default
