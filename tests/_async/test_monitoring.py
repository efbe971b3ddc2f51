"""Monitoring reads: the metrics snapshot, task search, and retrying failed tasks per queue.

Written once for both twins and run on every backend (``OMNIQ_TEST_BACKEND``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time

import pytest

from omniq import AsyncOmniQ, TaskStatus
from omniq._async.storage.base import AsyncBaseStorage
from omniq.monitoring import THROUGHPUT_MINUTES
from omniq.records import TaskFilter


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def fill(omniq: AsyncOmniQ, out: str) -> dict[str, str]:
    """One task in each state, spread over two queues; their ids by state."""
    ids = {
        "completed": await omniq.enqueue("task_functions.add", args=[1, 2], queue="emails"),
        "failed": await omniq.enqueue(
            "task_functions.fail_always", args=[out], max_retries=1, queue="emails"
        ),
    }
    async with omniq.worker_pool() as pool:
        await pool.process_tasks(limit=2)
    ids["cancelled"] = await omniq.enqueue("task_functions.add", args=[0, 0])
    assert await omniq.cancel(ids["cancelled"])
    ids["pending"] = await omniq.enqueue(
        "task_functions.add", args=[5, 5], eta=utcnow() - dt.timedelta(seconds=30)
    )
    ids["later"] = await omniq.enqueue(
        "task_functions.add", args=[6, 6], queue="later", eta=utcnow() + dt.timedelta(hours=1)
    )
    return ids


async def test_metrics_count_every_queue_and_status(omniq: AsyncOmniQ, out: str) -> None:
    await fill(omniq, out)
    metrics = await omniq.metrics()
    assert metrics.counts == {
        "pending": 2,
        "running": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
    }
    assert metrics.total == 5
    queues = {queue.name: queue for queue in metrics.queues}
    assert list(queues) == ["default", "emails", "later"]
    assert queues["emails"].counts["completed"] == 1 and queues["emails"].counts["failed"] == 1
    assert (queues["emails"].completed_last_hour, queues["emails"].failed_last_hour) == (1, 1)
    assert queues["default"].counts["cancelled"] == 1
    # The oldest due task of "default" has waited about 30 s; "later" has none due yet.
    assert 25 <= queues["default"].oldest_due_age < 3600
    assert queues["later"].oldest_due_age == 0.0
    assert queues["later"].oldest_pending_eta is not None
    assert queues["emails"].oldest_pending_eta is None


async def test_throughput_has_sixty_minutes_with_this_one_last(omniq: AsyncOmniQ, out: str) -> None:
    await fill(omniq, out)
    throughput = (await omniq.metrics()).throughput
    assert len(throughput) == THROUGHPUT_MINUTES
    starts = [minute.minute for minute in throughput]
    assert starts == sorted(starts)
    assert all(b - a == dt.timedelta(minutes=1) for a, b in itertools.pairwise(starts))
    assert starts[-1] <= utcnow() < starts[-1] + dt.timedelta(minutes=2)
    assert sum(minute.completed for minute in throughput) == 1
    assert sum(minute.failed for minute in throughput) == 1


async def test_metrics_show_workers_and_schedules(omniq: AsyncOmniQ) -> None:
    await omniq.schedule("nightly", "task_functions.add", cron="0 3 * * *", args=[1, 2])
    await omniq.queue.storage.put_state("schedule", "broken", "{", time.time())
    async with omniq.worker_pool(name="watched", schedules=False):
        metrics = await omniq.metrics()
    assert [worker.name for worker in metrics.workers] == ["watched"]
    assert (metrics.workers_alive, metrics.workers_lost) == (1, 0)
    nightly, broken = metrics.schedules
    assert nightly.name == "nightly" and nightly.func_path == "task_functions.add"
    assert nightly.spec == "cron 0 3 * * * (UTC)"
    assert nightly.last_fire is not None and nightly.last_fire <= utcnow()  # its creation
    assert nightly.next_fire is not None and nightly.next_fire.hour == 3
    assert utcnow() < nightly.next_fire <= utcnow() + dt.timedelta(days=1)
    assert broken.name == "broken" and broken.problem and broken.next_fire is None


async def test_metrics_as_json(omniq: AsyncOmniQ, out: str) -> None:
    await fill(omniq, out)
    data = (await omniq.metrics()).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["total"] == 5 and data["counts"]["failed"] == 1
    assert data["queues"]["emails"]["failed_last_hour"] == 1
    assert data["workers_alive"] == 0 and len(data["throughput"]) == THROUGHPUT_MINUTES


async def test_an_empty_store(omniq: AsyncOmniQ) -> None:
    metrics = await omniq.metrics()
    assert metrics.total == 0 and metrics.queues == () and metrics.workers == ()
    assert sum(minute.completed + minute.failed for minute in metrics.throughput) == 0


# ---------------------------------------------------------------------- searching tasks


async def test_list_tasks_finds_text_in_the_function_and_the_id(
    omniq: AsyncOmniQ, out: str
) -> None:
    ids = await fill(omniq, out)
    failing = await omniq.list_tasks(function="fail_")
    assert [task.id for task in failing] == [ids["failed"]]
    assert len(await omniq.list_tasks(function="task_functions.add")) == 4
    assert await omniq.list_tasks(function="nothing.like.this") == []
    piece = ids["pending"][-12:]
    assert [task.id for task in await omniq.list_tasks(id_contains=piece)] == [ids["pending"]]
    both = await omniq.list_tasks(TaskStatus.PENDING, function="add", queue="later")
    assert [task.id for task in both] == [ids["later"]]
    assert await omniq.list_tasks(TaskStatus.FAILED, function="add") == []
    assert len(await omniq.list_tasks(function="")) == 5  # empty text: no condition


async def test_search_pages(omniq: AsyncOmniQ) -> None:
    ids = [await omniq.enqueue("task_functions.echo", args=[i]) for i in range(7)]
    await omniq.enqueue("task_functions.add", args=[1, 1])
    pages = [
        [task.id for task in await omniq.list_tasks(function="echo", limit=3, offset=offset)]
        for offset in (0, 3, 6)
    ]
    assert [len(page) for page in pages] == [3, 3, 1]
    assert sorted(task_id for page in pages for task_id in page) == sorted(ids)


async def test_the_next_runs_of_an_interval_task(omniq: AsyncOmniQ) -> None:
    first = await omniq.enqueue("task_functions.add", args=[1, 1], interval=3600)
    async with omniq.worker_pool() as pool:
        await pool.process_tasks(limit=1)
    (successor,) = await omniq.list_tasks(parent_id=first)
    assert successor.parent_id == first and successor.status == TaskStatus.PENDING
    assert await omniq.list_tasks(parent_id=successor.id) == []


async def test_bad_search_input(omniq: AsyncOmniQ) -> None:
    with pytest.raises(TypeError, match="function"):
        await omniq.list_tasks(function=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="id_contains"):
        await omniq.list_tasks(id_contains="x" * 300)
    with pytest.raises(ValueError, match="NUL"):
        await omniq.list_tasks(function="a\x00b")
    with pytest.raises(ValueError, match="queue"):
        await omniq.retry_failed(queue="no spaces allowed")


async def test_retry_failed_of_one_queue(omniq: AsyncOmniQ, out: str) -> None:
    emails = await omniq.enqueue(
        "task_functions.fail_always", args=[out], max_retries=1, queue="emails"
    )
    other = await omniq.enqueue("task_functions.fail_always", args=[out], max_retries=1)
    async with omniq.worker_pool() as pool:
        await pool.process_tasks(limit=2)
    assert await omniq.retry_failed(queue="emails") == 1
    first, second = await omniq.get_task(emails), await omniq.get_task(other)
    assert first is not None and first.status == TaskStatus.PENDING
    assert second is not None and second.status == TaskStatus.FAILED
    assert await omniq.retry_failed() == 1


async def test_retry_failed_skips_a_task_whose_unique_key_is_taken(
    omniq: AsyncOmniQ, out: str
) -> None:
    failed = await omniq.enqueue(
        "task_functions.fail_always", args=[out], max_retries=1, unique_key="only-one"
    )
    async with omniq.worker_pool() as pool:
        await pool.process_tasks(limit=1)
    holder = await omniq.enqueue("task_functions.add", args=[1, 1], unique_key="only-one")
    assert holder != failed
    assert await omniq.retry_failed() == 0  # returns: the failed one cannot take the key
    task = await omniq.get_task(failed)
    assert task is not None and task.status == TaskStatus.FAILED


async def test_the_contract_defaults_agree_with_the_store(omniq: AsyncOmniQ, out: str) -> None:
    """The defaults of the optional monitoring reads (what a store without its own
    queries answers, through list_tasks and next_eta) give the store's own answers."""
    await fill(omniq, out)
    for value in range(7):
        await omniq.enqueue("task_functions.echo", args=[value], queue="emails")
    storage = omniq.queue.storage
    base = AsyncBaseStorage
    for query in (
        TaskFilter(func_contains="echo"),
        TaskFilter(func_contains="add", status="pending"),
        TaskFilter(queue="emails", id_contains="-"),
    ):
        for limit, offset in ((3, 0), (3, 3), (100, 0)):
            own = [record.id for record in await storage.find_tasks(query, limit, offset)]
            default = [record.id for record in await base.find_tasks(storage, query, limit, offset)]
            assert sorted(own) == sorted(default) and len(own) == len(default), query
    since = time.time() - 3600
    own_rows = sorted(await storage.count_finished(since, 60.0))
    assert own_rows == sorted(await base.count_finished(storage, since, 60.0))
    assert sum(row[3] for row in own_rows) == 3  # completed, failed, cancelled
    queues = ["default", "emails", "later", "empty"]
    assert await storage.earliest_pending(queues) == await base.earliest_pending(storage, queues)
