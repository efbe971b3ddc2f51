"""The contract every backend honours, written once and run on both twins.

Generated into ``tests/_sync`` by ``scripts/unasync.py``; the nox matrix runs it
on every backend (``OMNIQ_TEST_BACKEND``).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
from conftest import make_settings, requires_persistence
from task_functions import lines

from omniq import AsyncOmniQ, AsyncTaskQueue, Settings, TaskStatus
from omniq import retry as retry_policy
from omniq._concurrency import ajoin, asleep, aspawn
from omniq.exceptions import TaskCancelled, TaskFailed, TaskNotFound
from omniq.models import TaskError, get_error_message, has_error, is_failed
from omniq.records import Transition


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# ---------------------------------------------------------------------- lifecycle


async def test_enqueue_returns_id_and_stores_pending_task(omniq: AsyncOmniQ) -> None:
    task_id = await omniq.enqueue("task_functions.add", args=[1, 2], kwargs={})
    task = await omniq.get_task(task_id)
    assert task is not None
    assert task["id"] == task_id
    assert task["func_path"] == "task_functions.add"
    assert task["args"] == (1, 2)
    assert task["kwargs"] == {}
    assert task["status"] == TaskStatus.PENDING == "pending"
    assert task["attempts"] == 0
    assert task["max_retries"] == 3
    assert task["interval"] is None
    assert task["result"] is None
    assert task.get("error") is None


async def test_task_runs_to_completion_with_its_result(omniq: AsyncOmniQ) -> None:
    task_id = await omniq.enqueue("task_functions.add", args=[2, 3])
    async with omniq.worker_pool() as workers:
        assert await workers.process_tasks(limit=10) == 1
    task = await omniq.get_task(task_id)
    assert task is not None
    assert task["status"] == TaskStatus.COMPLETED
    assert task["result"] == 5
    assert task["attempts"] == 1
    assert task["finished_at"] is not None
    assert await omniq.get_result(task_id) == 5


async def test_coroutine_and_plain_functions_both_run(omniq: AsyncOmniQ) -> None:
    plain = await omniq.enqueue("task_functions.add", args=[1, 1])
    coro = await omniq.enqueue("task_functions.async_add", args=[2, 2])
    nested = await omniq.enqueue("task_functions.Nested.method", args=[21])
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(limit=3)
    assert await omniq.get_result(plain) == 2
    assert await omniq.get_result(coro) == 4
    assert await omniq.get_result(nested) == 42


async def test_rich_arguments_and_results_round_trip(omniq: AsyncOmniQ) -> None:
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    task_id = await omniq.enqueue(
        "task_functions.echo",
        args=[moment, b"\x00\xff", dt.timedelta(seconds=90)],
        kwargs={"nested": {"tuple": (1, 2), "set": {3}}},
    )
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(limit=1)
    result = await omniq.get_result(task_id)
    assert result == {
        "args": [moment, b"\x00\xff", dt.timedelta(seconds=90)],
        "kwargs": {"nested": {"tuple": (1, 2), "set": {3}}},
    }


async def test_get_result_waits_for_the_outcome(omniq: AsyncOmniQ) -> None:
    task_id = await omniq.enqueue("task_functions.add", args=[4, 4])
    assert await omniq.get_result(task_id) is None  # not run yet, no wait
    with pytest.raises(TimeoutError):
        await omniq.get_result(task_id, wait=True, timeout=0.05)
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(limit=1)
    assert await omniq.get_result(task_id, wait=True, timeout=5) == 8


async def test_get_result_raises_for_failed_cancelled_and_unknown(
    omniq: AsyncOmniQ, out: str
) -> None:
    failing = await omniq.enqueue("task_functions.fail_always", args=[out], max_retries=1)
    cancelled = await omniq.enqueue("task_functions.add", args=[1, 1])
    assert await omniq.cancel(cancelled) is True
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(limit=5)
    with pytest.raises(TaskFailed) as failure:
        await omniq.get_result(failing)
    assert isinstance(failure.value.error, TaskError)
    with pytest.raises(TaskCancelled):
        await omniq.get_result(cancelled)
    with pytest.raises(TaskNotFound):
        await omniq.get_result("no-such-task")


async def test_unknown_task_id(omniq: AsyncOmniQ) -> None:
    assert await omniq.get_task("no-such-task") is None
    assert await omniq.cancel("no-such-task") is False


async def test_cancel_only_pending_tasks(omniq: AsyncOmniQ, out: str) -> None:
    task_id = await omniq.enqueue("task_functions.record", args=[out, "x"])
    assert await omniq.cancel(task_id) is True
    assert await omniq.cancel(task_id) is False
    async with omniq.worker_pool() as workers:
        assert await workers.process_tasks(limit=5) == 0
    task = await omniq.get_task(task_id)
    assert task is not None and task["status"] == TaskStatus.CANCELLED
    assert lines(out) == []


# ---------------------------------------------------------------------- ordering and eta


async def test_dequeue_claims_oldest_due_first(omniq: AsyncOmniQ) -> None:
    queue = omniq.queue
    now = utcnow()
    late = await queue.enqueue("task_functions.add", [0, 0], eta=now - dt.timedelta(seconds=1))
    first = await queue.enqueue("task_functions.add", [1, 1])
    second = await queue.enqueue("task_functions.add", [2, 2])
    earliest = await queue.enqueue("task_functions.add", [3, 3], eta=now - dt.timedelta(seconds=60))
    order = []
    for _ in range(4):
        task = await queue.dequeue()
        assert task is not None
        assert task.status == TaskStatus.RUNNING
        assert task.attempts == 1
        order.append(task.id)
    assert order == [earliest, late, first, second]
    assert await queue.dequeue() is None


async def test_same_eta_keeps_enqueue_order(omniq: AsyncOmniQ) -> None:
    eta = utcnow() - dt.timedelta(seconds=5)
    ids = [await omniq.enqueue("task_functions.add", [i, i], eta=eta) for i in range(10)]
    claimed = [task.id for task in await omniq.queue.dequeue_many(10)]
    assert claimed == ids


async def test_eta_task_never_runs_early_and_runs_when_due(omniq: AsyncOmniQ, out: str) -> None:
    eta = utcnow() + dt.timedelta(seconds=1.0)
    task_id = await omniq.enqueue("task_functions.record", args=[out, "due"], eta=eta)
    async with omniq.worker_pool() as workers:
        assert await workers.process_tasks(limit=1) == 0  # nothing due: returns at once
        assert await omniq.queue.dequeue() is None
        deadline = time.monotonic() + 10
        while not lines(out) and time.monotonic() < deadline:
            await workers.process_tasks(duration=0.1)
    task = await omniq.get_task(task_id)
    assert task is not None and task["status"] == TaskStatus.COMPLETED
    assert task["started_at"] >= eta
    assert lines(out) == ["due"]


async def test_naive_eta_means_local_time(omniq: AsyncOmniQ) -> None:
    naive = dt.datetime.now() + dt.timedelta(hours=1)
    task_id = await omniq.enqueue("task_functions.add", [1, 1], eta=naive)
    task = await omniq.get_task(task_id)
    assert task is not None
    assert task["eta"].tzinfo is not None
    assert abs(task["eta"] - naive.astimezone(dt.timezone.utc)) < dt.timedelta(milliseconds=1)


async def test_eta_far_in_the_past_runs_first(omniq: AsyncOmniQ) -> None:
    now_id = await omniq.enqueue("task_functions.add", [1, 1])
    old_id = await omniq.enqueue(
        "task_functions.add", [2, 2], eta=dt.datetime(1999, 1, 1, tzinfo=dt.timezone.utc)
    )
    task = await omniq.queue.dequeue()
    assert task is not None and task.id == old_id
    task = await omniq.queue.dequeue()
    assert task is not None and task.id == now_id


# ---------------------------------------------------------------------- interval tasks


@pytest.mark.parametrize("interval", [dt.timedelta(seconds=0.3), 1])
async def test_interval_task_is_rescheduled_after_completion(
    omniq: AsyncOmniQ, out: str, interval: dt.timedelta | int
) -> None:
    task_id = await omniq.enqueue("task_functions.record", args=[out, "tick"], interval=interval)
    first = await omniq.get_task(task_id)
    assert first is not None
    step = dt.timedelta(seconds=interval) if isinstance(interval, int) else interval
    assert first["interval"] == step
    async with omniq.worker_pool() as workers:
        assert await workers.process_tasks(limit=1) == 1
        assert await workers.process_tasks(limit=1) == 0  # the next run is not due yet
        successor = await omniq.queue.dequeue()
        assert successor is None
        deadline = time.monotonic() + 10
        while len(lines(out)) < 2 and time.monotonic() < deadline:
            await workers.process_tasks(duration=0.1)
    assert lines(out) == ["tick", "tick"]
    done = await omniq.get_task(task_id)
    assert done is not None and done["status"] == TaskStatus.COMPLETED


async def test_interval_successor_is_a_new_task_due_one_interval_later(
    omniq: AsyncOmniQ,
) -> None:
    queue = omniq.queue
    task_id = await queue.enqueue("task_functions.add", [1, 2], interval=dt.timedelta(hours=1))
    task = await queue.dequeue()
    assert task is not None and task.id == task_id
    assert await queue.complete_task(task_id, 3, task) is True
    assert await queue.dequeue() is None  # the successor waits an hour
    original = await queue.get_task(task_id)
    assert original is not None and original["result"] == 3


# ---------------------------------------------------------------------- retries


async def test_max_retries_is_the_total_number_of_executions(
    omniq: AsyncOmniQ, out: str, no_backoff: None
) -> None:
    task_id = await omniq.enqueue("task_functions.fail_always", args=[out], max_retries=3)
    async with omniq.worker_pool() as workers:
        while (await omniq.get_task(task_id))["status"] != TaskStatus.FAILED:  # type: ignore[index]
            await workers.process_tasks(limit=1)
    assert len(lines(out)) == 3
    task = await omniq.get_task(task_id)
    assert task is not None
    assert task["attempts"] == 3
    assert is_failed(task)
    assert has_error(task)
    error = task["error"]
    assert isinstance(error, TaskError)
    assert error.error_type == "runtime"
    assert error.message == "this task always fails"
    assert error.retry_count == 3
    assert error.can_retry() is False
    assert get_error_message(task) == "this task always fails"
    assert "RuntimeError" in (error.traceback or "")


@pytest.mark.parametrize("budget", [0, 1])
async def test_budget_of_zero_or_one_means_a_single_execution(
    omniq: AsyncOmniQ, out: str, budget: int
) -> None:
    task_id = await omniq.enqueue("task_functions.fail_always", args=[out], max_retries=budget)
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(limit=5)
    task = await omniq.get_task(task_id)
    assert task is not None and task["status"] == TaskStatus.FAILED
    assert len(lines(out)) == 1


async def test_task_that_recovers_completes_within_budget(
    omniq: AsyncOmniQ, out: str, no_backoff: None
) -> None:
    task_id = await omniq.enqueue("task_functions.fail_times", args=[out, 2], max_retries=3)
    async with omniq.worker_pool() as workers:
        for _ in range(3):
            await workers.process_tasks(limit=1)
    task = await omniq.get_task(task_id)
    assert task is not None
    assert task["status"] == TaskStatus.COMPLETED
    assert task["result"] == "finally"
    assert task["attempts"] == 3
    assert task.get("error") is None


async def test_retry_is_scheduled_with_backoff_bounds(omniq: AsyncOmniQ) -> None:
    queue = omniq.queue
    task_id = await queue.enqueue("task_functions.add", [1, 1], max_retries=5)
    task = await queue.dequeue()
    assert task is not None
    before = utcnow()
    assert await queue.fail_task(task_id, "transient", task) is True
    after = utcnow()
    retried = await queue.get_task(task_id)
    assert retried is not None
    assert retried["status"] == TaskStatus.PENDING
    assert retried["attempts"] == 1
    low, high = retry_policy.delay_bounds(1)
    assert before + dt.timedelta(seconds=low) <= retried["eta"]
    assert retried["eta"] <= after + dt.timedelta(seconds=high)
    assert retried["error"] is not None and retried["error"].message == "transient"
    assert await queue.dequeue() is None  # not due before its backoff


async def test_fail_task_accepts_message_exception_or_task_error(omniq: AsyncOmniQ) -> None:
    queue = omniq.queue
    for error in ("plain text", KeyError("key"), TaskError("custom", "mine", is_retryable=False)):
        task_id = await queue.enqueue("task_functions.add", [1, 1], max_retries=1)
        task = await queue.dequeue()
        assert task is not None
        assert await queue.fail_task(task_id, error, task) is True
        failed = await queue.get_task(task_id)
        assert failed is not None and failed["status"] == TaskStatus.FAILED
        assert isinstance(failed["error"], TaskError)
    assert failed["error"].error_type == "custom"


async def test_non_retryable_error_fails_at_once(omniq: AsyncOmniQ) -> None:
    queue = omniq.queue
    task_id = await queue.enqueue("task_functions.add", [1, 1], max_retries=10)
    task = await queue.dequeue()
    assert task is not None
    error = TaskError(error_type="validation", message="bad input", is_retryable=False)
    assert await queue.fail_task(task_id, error, task) is True
    failed = await queue.get_task(task_id)
    assert failed is not None and failed["status"] == TaskStatus.FAILED
    assert failed["attempts"] == 1


async def test_outcome_of_a_stale_attempt_is_ignored(omniq: AsyncOmniQ) -> None:
    queue = omniq.queue
    task_id = await queue.enqueue("task_functions.add", [1, 1])
    task = await queue.dequeue()
    assert task is not None
    assert await queue.complete_task(task_id, 2, task) is True
    assert await queue.complete_task(task_id, 99, task) is False
    assert await queue.fail_task(task_id, "late", task) is False
    done = await queue.get_task(task_id)
    assert done is not None and done["result"] == 2 and done["status"] == TaskStatus.COMPLETED


# ---------------------------------------------------------------------- failures in the worker


@pytest.mark.parametrize(
    ("func_path", "args", "error_type"),
    [
        ("task_functions.missing_function", [], "import"),
        ("no_such_module_anywhere.func", [], "import"),
        ("task_functions.NOT_CALLABLE", [], "import"),
        ("task_functions.add", [1, 2, 3], "arguments"),
        ("task_functions.unserializable_result", [], "serialization"),
    ],
)
async def test_bad_task_fails_cleanly_without_stopping_the_pool(
    settings: Settings, func_path: str, args: list[int], error_type: str
) -> None:
    # No task_modules: the producer cannot check a path, so the worker meets the error.
    omniq = AsyncOmniQ(settings.replace(task_modules=()))
    bad = await omniq.enqueue(func_path, args=args, max_retries=3)
    good = await omniq.enqueue("task_functions.add", args=[1, 1])
    async with omniq.worker_pool() as workers:
        assert await workers.process_tasks(limit=2) == 2
    task = await omniq.get_task(bad)
    assert task is not None
    assert task["status"] == TaskStatus.FAILED
    assert task["attempts"] == 1  # not worth retrying
    assert task["error"].error_type == error_type
    assert task["error"].is_retryable is False
    assert await omniq.get_result(good) == 2
    await omniq.close()


@pytest.mark.parametrize(
    "func_path", ["task_functions.sleep_for", "task_functions.async_sleep_for"]
)
async def test_timeout_fails_the_task_and_frees_the_worker(
    omniq: AsyncOmniQ, func_path: str
) -> None:
    slow = await omniq.enqueue(func_path, args=[30], timeout=0.2, max_retries=1)
    fast = await omniq.enqueue("task_functions.add", args=[1, 1])
    async with omniq.worker_pool(concurrency=1, shutdown_timeout=0.1) as workers:
        assert await workers.process_tasks(limit=2) == 2
    task = await omniq.get_task(slow)
    assert task is not None
    assert task["status"] == TaskStatus.FAILED
    assert task["error"].error_type == "timeout"
    assert await omniq.get_result(fast) == 2


async def test_pool_default_timeout_applies_to_tasks_without_one(omniq: AsyncOmniQ) -> None:
    slow = await omniq.enqueue("task_functions.async_sleep_for", args=[30], max_retries=1)
    async with omniq.worker_pool(default_timeout=0.2) as workers:
        await workers.process_tasks(limit=1)
    task = await omniq.get_task(slow)
    assert task is not None and task["error"].error_type == "timeout"


# ---------------------------------------------------------------------- concurrency


@pytest.mark.parametrize(
    "func_path", ["task_functions.rendezvous", "task_functions.async_rendezvous"]
)
async def test_concurrency_runs_tasks_at_the_same_time(
    omniq: AsyncOmniQ, tmp_path: Path, func_path: str
) -> None:
    # Four tasks that each wait until all four are running: they can only all
    # complete if the pool really runs four at once (no timing assumptions).
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    ids = [
        await omniq.enqueue(func_path, args=[str(meeting), 4, 30], max_retries=1) for _ in range(4)
    ]
    async with omniq.worker_pool(concurrency=4) as workers:
        assert await workers.process_tasks(limit=4) == 4
    for task_id in ids:
        assert await omniq.get_result(task_id) == 4


async def test_what_a_task_sets_in_a_contextvar_never_reaches_the_next_task(
    omniq: AsyncOmniQ,
) -> None:
    # One slot runs both, one after the other (in the blocking twin on one thread).
    first = await omniq.enqueue("task_functions.set_mark", args=["first"])
    second = await omniq.enqueue("task_functions.read_mark")
    async with omniq.worker_pool(concurrency=1) as workers:
        assert await workers.process_tasks(limit=2) == 2
    assert await omniq.get_result(first) == "first"
    assert await omniq.get_result(second) == "unset"


async def test_limit_caps_claims_even_with_spare_concurrency(omniq: AsyncOmniQ, out: str) -> None:
    for i in range(10):
        await omniq.enqueue("task_functions.record", args=[out, i])
    async with omniq.worker_pool(concurrency=8) as workers:
        assert await workers.process_tasks(limit=3) == 3
        assert len(lines(out)) == 3
        assert await workers.process_tasks(limit=100) == 7
    assert sorted(int(x) for x in lines(out)) == list(range(10))


async def test_each_task_runs_once_under_concurrency(omniq: AsyncOmniQ, out: str) -> None:
    for i in range(60):
        await omniq.enqueue("task_functions.record", args=[out, i])
    async with omniq.worker_pool(concurrency=6) as workers:
        assert await workers.process_tasks(limit=1000) == 60
    assert sorted(int(x) for x in lines(out)) == list(range(60))


async def test_stop_ends_a_run_until_stopped(omniq: AsyncOmniQ, out: str) -> None:
    await omniq.enqueue("task_functions.record", args=[out, "one"])
    async with omniq.worker_pool() as workers:

        async def stop_after_first_task() -> None:
            while not lines(out):
                await asleep(0.01)
            workers.stop()

        stopper = aspawn(stop_after_first_task)
        await workers.run()
        assert await ajoin([stopper], 5) == 0
    assert lines(out) == ["one"]


# ---------------------------------------------------------------------- persistence


@requires_persistence()
async def test_tasks_survive_a_new_facade_on_the_same_store(settings: Settings) -> None:
    first = AsyncOmniQ(settings)
    task_id = await first.enqueue("task_functions.add", args=[20, 22])
    await first.close()
    second = AsyncOmniQ(settings)
    try:
        task = await second.get_task(task_id)
        assert task is not None and task["status"] == TaskStatus.PENDING
        async with second.worker_pool() as workers:
            await workers.process_tasks(limit=1)
        assert await second.get_result(task_id) == 42
    finally:
        await second.close()


async def test_queue_accepts_a_blocking_or_matching_storage(settings: Settings) -> None:
    facade = AsyncOmniQ(settings)
    queue = AsyncTaskQueue(facade.queue.storage)
    try:
        task_id = await queue.enqueue("task_functions.add", [1, 2])
        task = await queue.dequeue()
        assert task is not None and task.id == task_id
        assert await queue.complete_task(task_id, 3, task)
        assert (await queue.get_task(task_id))["result"] == 3  # type: ignore[index]
    finally:
        await facade.close()


async def test_base_dir_is_created_private(settings: Settings, backend: str) -> None:
    if backend not in ("sqlite", "file"):
        pytest.skip(f"the {backend} backend keeps nothing under base_dir")
    assert not settings.base_dir.exists()
    facade = AsyncOmniQ(settings)
    await facade.enqueue("task_functions.add", [1, 1])
    await facade.close()
    assert settings.base_dir.is_dir()
    assert os.stat(settings.base_dir).st_mode & 0o777 == 0o700
    if backend == "sqlite":
        assert os.stat(settings.base_dir / "omniq.db").st_mode & 0o777 == 0o600


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"func_path": "nodots"}, ValueError, "nodots"),
        ({"func_path": "bad path.x"}, ValueError, "bad path.x"),
        ({"func_path": 42}, TypeError, "42"),
        ({"func_path": "m.f", "args": "abc"}, TypeError, "abc"),
        ({"func_path": "m.f", "kwargs": [1]}, TypeError, "[1]"),
        ({"func_path": "m.f", "args": [object()]}, TypeError, "object"),
        ({"func_path": "m.f", "max_retries": -1}, ValueError, "-1"),
        ({"func_path": "m.f", "timeout": 0}, ValueError, "0"),
        ({"func_path": "m.f", "timeout": -5}, ValueError, "-5"),
        ({"func_path": "m.f", "interval": 0}, ValueError, "0"),
        ({"func_path": "m.f", "interval": dt.timedelta(seconds=-1)}, ValueError, "-1"),
        ({"func_path": "m.f", "eta": "tomorrow"}, TypeError, "tomorrow"),
        ({"func_path": "m.f", "args": [float("nan")]}, TypeError, "nan"),
    ],
)
async def test_bad_enqueue_input_raises_clearly_and_stores_nothing(
    omniq: AsyncOmniQ, kwargs: dict[str, object], exc: type[Exception], fragment: str
) -> None:
    with pytest.raises(exc, match=None) as raised:
        await omniq.enqueue(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(raised.value)
    assert await omniq.queue.dequeue() is None


async def test_huge_payload_is_refused_at_enqueue(base_dir: Path) -> None:
    facade = AsyncOmniQ(make_settings(base_dir, max_payload_bytes=1000))
    try:
        with pytest.raises(ValueError, match="over the limit of 1000"):
            await facade.enqueue("task_functions.echo", args=["x" * 2000])
        assert await facade.enqueue("task_functions.echo", args=["x" * 10])
    finally:
        await facade.close()


# ---------------------------------------------------------------------- inspection


async def test_list_stats_retry_and_purge(omniq: AsyncOmniQ, out: str) -> None:
    done = await omniq.enqueue("task_functions.add", args=[1, 1])
    failed = await omniq.enqueue("task_functions.fail_always", args=[out], max_retries=1)
    cancelled = await omniq.enqueue("task_functions.add", args=[2, 2])
    waiting = await omniq.enqueue(
        "task_functions.add", args=[3, 3], eta=utcnow() + dt.timedelta(hours=1)
    )
    assert await omniq.cancel(cancelled)
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(limit=10)

    stats = await omniq.stats()
    assert {key: stats[key] for key in ("pending", "running", "completed", "failed")} == {
        "pending": 1,
        "running": 0,
        "completed": 1,
        "failed": 1,
    }
    assert stats["cancelled"] == 1 and stats["total"] == 4
    assert stats["next_eta"] is not None
    assert abs(stats["next_eta"] - utcnow() - dt.timedelta(hours=1)) < dt.timedelta(minutes=1)

    assert [task.id for task in await omniq.list_tasks(status="failed")] == [failed]
    assert {task.id for task in await omniq.list_tasks()} == {done, failed, cancelled, waiting}
    assert len(await omniq.list_tasks(limit=2)) == 2

    assert await omniq.retry(done) is False  # only failed or cancelled tasks
    assert await omniq.retry(failed) is True
    again = await omniq.get_task(failed)
    assert again is not None and again["status"] == TaskStatus.PENDING and again["attempts"] == 0
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(limit=10)
    assert len(lines(out)) == 2  # ran once more
    assert await omniq.retry_failed() == 1

    with pytest.raises(ValueError, match="only finished tasks"):
        await omniq.purge(0, statuses=["pending"])
    assert await omniq.purge(dt.timedelta(hours=1)) == 0  # nothing that old
    assert await omniq.purge(0, statuses=["completed"]) == 1
    assert await omniq.get_task(done) is None
    assert await omniq.get_task(cancelled) is not None


async def test_recovery_never_takes_a_task_whose_lease_was_renewed(omniq: AsyncOmniQ) -> None:
    queue = omniq.queue
    task_id = await queue.enqueue("task_functions.add", [1, 1])
    (task,) = await queue.dequeue_many(1, lease_timeout=0.05)
    await asleep(0.1)
    looked_at = time.time()
    assert [record.id for record in await queue.storage.expired(looked_at, 10)] == [task_id]
    # The holder was only slow: it renews its lease before the recovery writes.
    assert await queue.heartbeat([task], lease_timeout=60) == []
    late_recovery = Transition(
        status="pending", now=looked_at, eta=looked_at, expired_before=looked_at
    )
    assert await queue.storage.finish(task_id, task.attempt_token or "", late_recovery) is False
    assert await queue.recover_expired() == 0
    assert await queue.complete_task(task_id, 2, task) is True  # the holder still owns it
