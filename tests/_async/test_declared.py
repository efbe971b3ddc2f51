"""Declared tasks, the allow-list, task context and hooks, through the facades.

Written once for both twins and run on every backend (``OMNIQ_TEST_BACKEND``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import declared_tasks
import pytest
from declared_tasks import async_whoami, note, resize, send_email, whoami
from task_functions import lines, record

from omniq import AsyncOmniQ, Settings, TaskStatus, current_task
from omniq.records import Outcome

TWIN = "async" if inspect.iscoroutinefunction(AsyncOmniQ.enqueue) else "sync"


# ---------------------------------------------------------------------- declared tasks


async def test_a_declared_task_enqueues_with_its_declared_options(omniq: AsyncOmniQ) -> None:
    task_id = await omniq.enqueue(send_email, args=["a@b.c", "hi"])
    task = await omniq.get_task(task_id)
    assert task is not None
    assert task["func_path"] == "declared_tasks.send_email"
    assert (task["queue"], task["priority"], task["max_retries"], task["timeout"]) == (
        "emails",
        5,
        5,
        30.0,
    )
    explicit = await omniq.enqueue(send_email, args=["x@y.z"], queue="bulk", priority=-3)
    again = await omniq.get_task(explicit)
    assert again is not None and (again["queue"], again["priority"]) == ("bulk", -3)
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(limit=2)
    assert await omniq.get_result(task_id) == "sent 'hi' to a@b.c"


async def test_using_binds_a_facade_and_keeps_the_signature(omniq: AsyncOmniQ) -> None:
    first = await send_email.using(omniq).enqueue("a@b.c", subject="hi")
    second = await resize.using(omniq, unique_key="img:7", priority=9).enqueue(7)
    assert await resize.using(omniq, unique_key="img:7").enqueue(7) == second
    with pytest.raises(TypeError):
        await send_email.using(omniq).enqueue()  # type: ignore[call-arg]  # 'to' is missing
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(limit=5)
    assert await omniq.get_result(first) == "sent 'hi' to a@b.c"
    assert await omniq.get_result(second) == 14
    with pytest.raises(TypeError, match="facade"):
        send_email.using("not a facade")  # type: ignore[call-overload]


async def test_a_declared_task_still_runs_in_place_and_a_plain_callable_enqueues(
    omniq: AsyncOmniQ, out: str
) -> None:
    assert send_email("a@b.c") == "sent 'hello' to a@b.c"
    assert current_task() is None  # outside any task
    task_id = await omniq.enqueue(record, args=[out, "direct"])  # undecorated: its path
    task = await omniq.get_task(task_id)
    assert task is not None and task["func_path"] == "task_functions.record"
    with pytest.raises(ValueError):
        await omniq.enqueue(lambda: None)


# ---------------------------------------------------------------------- the allow-list


async def test_a_task_written_by_someone_else_is_forbidden_and_runs_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    open_settings = settings.replace(task_modules=())
    pwned = tmp_path / "pwned"
    writer = AsyncOmniQ(open_settings)  # anyone who can write to the store
    attack = await writer.enqueue("os.system", args=[f"echo PWNED > {pwned}"])
    honest = await writer.enqueue(note, args=[str(tmp_path / "notes"), "ok"])
    # Another facade (as in another process or machine) on the same store.
    worker = AsyncOmniQ(open_settings, storage=writer.queue.storage)
    async with worker.worker_pool() as workers:
        assert await workers.process_tasks(limit=5) == 2
    task = await worker.get_task(attack)
    assert task is not None and task["status"] == TaskStatus.FAILED
    assert task["error"].error_type == "forbidden" and task["attempts"] == 1
    assert "'os.system'" in task["error"].message and "task_modules" in task["error"].message
    assert not pwned.exists()
    assert await worker.get_result(honest) == "ok"  # declared: allowed anywhere
    await writer.close()


async def test_task_modules_allow_a_module_but_no_walk_out_of_it(
    settings: Settings, out: str
) -> None:
    writer = AsyncOmniQ(settings.replace(task_modules=()))
    allowed = await writer.enqueue("task_functions.record", args=[out, "allowed"])
    walk = await writer.enqueue("task_functions.os.getpid")  # os, imported by task_functions
    worker = AsyncOmniQ(
        settings.replace(task_modules=("task_functions.*",)), storage=writer.queue.storage
    )
    async with worker.worker_pool() as workers:
        await workers.process_tasks(limit=5)
    assert await worker.get_result(allowed) == "allowed"
    refused = await worker.get_task(walk)
    assert refused is not None and refused["error"].error_type == "forbidden"
    assert "outside the allowed modules" in refused["error"].message
    await writer.close()


async def test_a_producer_with_task_modules_refuses_a_typo_at_enqueue(
    settings: Settings,
) -> None:
    producer = AsyncOmniQ(settings.replace(task_modules=("task_functions",)))
    with pytest.raises(ValueError, match=r"task_functions\.no_such_thing"):
        await producer.enqueue("task_functions.no_such_thing")
    with pytest.raises(ValueError, match=r"os\.system"):
        await producer.enqueue("os.system", args=["true"])
    assert (await producer.stats())["total"] == 0
    await producer.close()


async def test_a_batch_resolves_each_function_once_and_keeps_each_items_options(
    settings: Settings,
) -> None:
    producer = AsyncOmniQ(settings.replace(task_modules=("task_functions",)))
    ids = await producer.enqueue_many(
        [
            {"func_path": send_email, "args": ["a@b.c"]},
            {"func_path": "task_functions.add", "args": [1, 2]},
            {"func_path": send_email, "args": ["d@e.f"], "priority": -1},
            {"func_path": "task_functions.add", "args": [3, 4], "queue": "math"},
        ]
    )
    tasks = [await producer.get_task(task_id) for task_id in ids]
    assert [(t["func_path"], t["queue"], t["priority"]) for t in tasks if t] == [
        ("declared_tasks.send_email", "emails", 5),
        ("task_functions.add", "default", 0),
        ("declared_tasks.send_email", "emails", -1),
        ("task_functions.add", "math", 0),
    ]
    # A refused path late in a batch stores none of it, though earlier items of that
    # function were already resolved.
    with pytest.raises(ValueError, match=r"os\.system"):
        await producer.enqueue_many(
            [{"func_path": "task_functions.add", "args": [1, 1]}] * 3
            + [{"func_path": "os.system", "args": ["true"]}]
        )
    assert (await producer.stats())["total"] == 4
    await producer.close()


# ---------------------------------------------------------------------- task context


@pytest.mark.parametrize("declared", [whoami, async_whoami])
async def test_current_task_inside_plain_and_coroutine_tasks(
    omniq: AsyncOmniQ, declared: Any
) -> None:
    task_id = await omniq.enqueue(declared, queue="ctx", max_retries=4)
    async with omniq.worker_pool(name="ctx-pool") as workers:
        await workers.process_tasks(limit=1)
    seen = await omniq.get_result(task_id)
    assert seen["id"] == task_id and seen["attempt"] == 1 and seen["worker"] == "ctx-pool"
    if declared is whoami:
        task = await omniq.get_task(task_id)
        assert task is not None
        assert seen["func_path"] == "declared_tasks.whoami" and seen["queue"] == "ctx"
        assert seen["max_retries"] == 4 and seen["correlation_id"] == task_id
        assert seen["eta"] == task["eta"].isoformat()


# ---------------------------------------------------------------------- hooks


async def test_hooks_run_around_every_execution_and_once_per_pool(
    omniq: AsyncOmniQ, tmp_path: Path
) -> None:
    events: list[str] = []
    omniq.on_worker_start(lambda: events.append("facade start"))
    omniq.on_worker_stop(lambda: events.append("facade stop"))
    omniq.before_task(lambda task: events.append(f"before {task.func_path}"))

    def after(task: Any, outcome: Outcome) -> None:
        events.append(f"after {task.func_path} {outcome.result}")

    omniq.after_task(after)
    await omniq.enqueue(note, args=[str(tmp_path / "n"), "x"])
    workers = omniq.worker_pool(concurrency=1)
    workers.on_worker_start(lambda: events.append("pool start"))
    async with workers:
        await workers.process_tasks(limit=1)
    assert events == [
        "facade start",
        "pool start",
        "before declared_tasks.note",
        "after declared_tasks.note x",
        "facade stop",
    ]


async def test_a_failing_before_task_fails_that_task_and_not_the_pool(
    omniq: AsyncOmniQ, tmp_path: Path
) -> None:
    notes = str(tmp_path / "notes")

    def refuse_the_first(task: Any) -> None:
        if task.args[1] == "refused":
            raise ConnectionError("the database is not there")

    def explode(task: Any, outcome: Outcome) -> None:
        raise RuntimeError("after_task blew up")

    omniq.before_task(refuse_the_first)
    omniq.after_task(explode)
    refused = await omniq.enqueue(note, args=[notes, "refused"], max_retries=1)
    fine = await omniq.enqueue(note, args=[notes, "fine"])
    async with omniq.worker_pool(concurrency=1) as workers:
        assert await workers.process_tasks(limit=2) == 2
    task = await omniq.get_task(refused)
    assert task is not None and task["status"] == TaskStatus.FAILED
    assert task["error"].error_type == "hook"
    assert "the database is not there" in task["error"].message
    assert await omniq.get_result(fine) == "fine"  # after_task raised: logged, outcome stands
    assert lines(notes) == ["fine"]  # the refused task never ran


async def test_coroutine_hooks_are_awaited(omniq: AsyncOmniQ, tmp_path: Path) -> None:
    seen: list[str] = []

    async def before(task: Any) -> None:
        seen.append(task.id)

    omniq.before_task(before)
    task_id = await omniq.enqueue(note, args=[str(tmp_path / "n"), "y"])
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(limit=1)
    assert seen == [task_id]


async def test_a_failing_start_hook_stops_the_pool_from_starting(omniq: AsyncOmniQ) -> None:
    def broken() -> None:
        raise RuntimeError("cannot set up")

    workers = omniq.worker_pool()
    workers.on_worker_start(broken)
    with pytest.raises(RuntimeError, match="cannot set up"):
        await workers.start()
    assert declared_tasks.send_email.path == "declared_tasks.send_email"
