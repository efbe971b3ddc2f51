"""Schema v2 in the contract: queues, priorities, unique keys, retention, attempt history.

Written once for both twins and run on every backend (``OMNIQ_TEST_BACKEND``).
"""

from __future__ import annotations

import datetime as dt
import inspect
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TESTS_DIR, requires_persistence
from processes import environment

from omniq import AsyncOmniQ, AsyncTaskQueue, AsyncWorkerPool, Settings, TaskStatus
from omniq._async.queue import STREAM_CHUNK, STREAM_MIN
from omniq._concurrency import ajoin, asleep, aspawn
from omniq.models import AttemptOutcome

TWIN = "async" if inspect.iscoroutinefunction(AsyncOmniQ.enqueue) else "sync"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def run_order(omniq: AsyncOmniQ, out: str, **pool_options: object) -> list[str]:
    """Drain due tasks one at a time; the values they recorded, in the order they ran."""
    options: dict[str, object] = {"concurrency": 1, "prefetch": 0, **pool_options}
    async with omniq.worker_pool(**options) as workers:
        await workers.process_tasks(limit=100)
    return Path(out).read_text().splitlines() if Path(out).exists() else []


# ---------------------------------------------------------------------- the task's fields


async def test_queue_priority_and_key_are_stored_and_default(omniq: AsyncOmniQ) -> None:
    plain = await omniq.enqueue("task_functions.add", args=[1, 2])
    chosen = await omniq.enqueue(
        "task_functions.add", args=[1, 2], queue="reports", priority=10, unique_key="report:42"
    )
    first, second = await omniq.get_task(plain), await omniq.get_task(chosen)
    assert first is not None and second is not None
    assert (first["queue"], first["priority"], first["unique_key"]) == ("default", 0, None)
    assert (second["queue"], second["priority"], second["unique_key"]) == (
        "reports",
        10,
        "report:42",
    )
    assert first["attempts_history"] == [] and first["worker"] is None


async def test_enqueue_many_and_the_bare_queue_take_the_same_options(
    omniq: AsyncOmniQ, settings: Settings
) -> None:
    ids = await omniq.enqueue_many(
        [
            {"func_path": "task_functions.add", "args": [1, 1], "queue": "a", "priority": -5},
            {"func_path": "task_functions.add", "args": [2, 2], "unique_key": "k"},
        ]
    )
    tasks = [await omniq.get_task(task_id) for task_id in ids]
    assert [(t["queue"], t["priority"], t["unique_key"]) for t in tasks if t] == [
        ("a", -5, None),
        ("default", 0, "k"),
    ]
    queue = AsyncTaskQueue(omniq.queue.storage)
    task_id = await queue.enqueue("task_functions.add", [3, 3], queue="b", priority=100)
    task = await queue.get_task(task_id)
    assert task is not None and (task["queue"], task["priority"]) == ("b", 100)


async def test_a_batch_keeps_the_options_its_first_item_leaves_out(omniq: AsyncOmniQ) -> None:
    # The first item sets no option; later ones set what it left None (a store may
    # choose its columns from the first record: it must notice the others).
    later = utcnow() + dt.timedelta(hours=1)
    ids = await omniq.enqueue_many(
        [
            {"func_path": "task_functions.add", "args": [1, 1]},
            {"func_path": "task_functions.add", "args": [2, 2], "timeout": 5, "eta": later},
            {"func_path": "task_functions.add", "args": [3, 3], "interval": 60, "max_retries": 2},
            *({"func_path": "task_functions.add", "args": [i, i]} for i in range(100)),
        ]
    )
    first, timed, repeating = [await omniq.get_task(task_id) for task_id in ids[:3]]
    assert first is not None and timed is not None and repeating is not None
    assert (first.timeout, first.interval) == (None, None)
    assert timed.timeout == 5 and abs((timed.eta - later).total_seconds()) < 0.001
    assert repeating.interval == dt.timedelta(seconds=60) and repeating.max_retries == 2
    assert [(await omniq.get_task(task_id)).args for task_id in ids[3:5]] == [(0, 0), (1, 1)]


async def test_a_large_batch_stores_every_item_once_and_claims_them_in_order(
    omniq: AsyncOmniQ,
) -> None:
    # 223 = chunks of 200 and 20 plus 3 rows: a store that inserts in chunks must
    # neither drop, repeat nor reorder the rows at a chunk's edge.
    items = [{"func_path": "task_functions.add", "args": [i, 1]} for i in range(223)]
    ids = await omniq.enqueue_many(items)
    assert len(set(ids)) == 223
    claimed = await omniq.queue.dequeue_many(300)
    assert [task.id for task in claimed] == ids
    assert [task.args for task in claimed] == [(i, 1) for i in range(223)]


async def test_a_batch_built_in_chunks_stores_every_item_once_in_order(omniq: AsyncOmniQ) -> None:
    # Past STREAM_MIN items the queue builds the batch a chunk at a time while the
    # store takes it: the chunks' edges must neither drop, repeat nor reorder an item.
    count = STREAM_MIN + STREAM_CHUNK // 2 + 3
    ids = await omniq.enqueue_many(
        [{"func_path": "task_functions.add", "args": [i, 1]} for i in range(count)]
    )
    assert len(set(ids)) == count
    claimed = await omniq.queue.dequeue_many(count + 10)
    assert [task.id for task in claimed] == ids
    assert [task.args for task in claimed] == [(i, 1) for i in range(count)]


async def test_a_bad_item_deep_in_a_chunked_batch_stores_none_and_is_named(
    omniq: AsyncOmniQ,
) -> None:
    items: list[dict[str, object]] = [
        {"func_path": "task_functions.add", "args": [i, 1]} for i in range(STREAM_MIN + 100)
    ]
    bad = STREAM_MIN + 50  # in a chunk built after others went to the store
    items[bad] = {"func_path": "task_functions.add", "colour": "red"}
    with pytest.raises(TypeError, match=f"enqueue_many item {bad} "):
        await omniq.enqueue_many(items)
    assert await omniq.queue.dequeue_many(10) == []


# ---------------------------------------------------------------------- claim order


async def test_higher_priority_runs_first_then_eta_then_enqueue_order(
    omniq: AsyncOmniQ, out: str
) -> None:
    now = utcnow()
    await omniq.enqueue("task_functions.record", args=[out, "low"], priority=-10)
    await omniq.enqueue("task_functions.record", args=[out, "zero-1"])
    await omniq.enqueue("task_functions.record", args=[out, "high-late"], priority=50)
    await omniq.enqueue(
        "task_functions.record",
        args=[out, "high-early"],
        priority=50,
        eta=now - dt.timedelta(seconds=30),
    )
    await omniq.enqueue("task_functions.record", args=[out, "zero-2"])
    await omniq.enqueue("task_functions.record", args=[out, "top"], priority=100, queue="other")
    assert await run_order(omniq, out) == [
        "top",
        "high-early",  # same priority: the earlier eta first
        "high-late",
        "zero-1",  # same priority and due: enqueue order
        "zero-2",
        "low",
    ]


async def test_a_task_not_yet_due_waits_whatever_its_priority(omniq: AsyncOmniQ, out: str) -> None:
    later = await omniq.enqueue(
        "task_functions.record",
        args=[out, "later"],
        priority=100,
        eta=utcnow() + dt.timedelta(hours=1),
    )
    await omniq.enqueue("task_functions.record", args=[out, "now"], priority=-100)
    assert await run_order(omniq, out) == ["now"]
    task = await omniq.get_task(later)
    assert task is not None and task["status"] == TaskStatus.PENDING


async def test_a_retried_task_keeps_its_priority(
    omniq: AsyncOmniQ, out: str, tmp_path: Path, no_backoff: None
) -> None:
    flaky = str(tmp_path / "flaky")
    await omniq.enqueue("task_functions.fail_times", args=[flaky, 1], priority=9, max_retries=3)
    await omniq.enqueue("task_functions.record", args=[out, "ordinary"])
    async with omniq.worker_pool(concurrency=1, prefetch=0) as workers:
        await workers.process_tasks(limit=1)  # the flaky one: fails, retry due at once
        await workers.process_tasks(limit=1)  # its retry goes before the ordinary task
    tasks = await omniq.list_tasks(status="completed")
    assert [task["func_path"] for task in tasks] == ["task_functions.fail_times"]


# ---------------------------------------------------------------------- routing


async def test_a_pool_serves_only_its_queues(omniq: AsyncOmniQ, out: str) -> None:
    await omniq.enqueue("task_functions.record", args=[out, "a"], queue="a")
    b_task = await omniq.enqueue("task_functions.record", args=[out, "b"], queue="b")
    await omniq.enqueue("task_functions.record", args=[out, "default"])
    assert sorted(await run_order(omniq, out, queues=["a", "default"])) == ["a", "default"]
    task = await omniq.get_task(b_task)
    assert task is not None and task["status"] == TaskStatus.PENDING
    async with omniq.worker_pool(queues=["b"], concurrency=1) as workers:
        assert await workers.process_tasks(limit=10) == 1
    assert await omniq.get_result(b_task) == "b"


async def test_a_pool_without_queues_serves_every_queue(omniq: AsyncOmniQ) -> None:
    for name in ("a", "b", "reports.daily", "default"):
        await omniq.enqueue("task_functions.add", args=[1, 1], queue=name)
    async with omniq.worker_pool() as workers:
        assert workers.queues is None
        assert await workers.process_tasks(limit=10) == 4


async def test_next_eta_and_idle_waits_follow_the_served_queues(omniq: AsyncOmniQ) -> None:
    soon = utcnow() + dt.timedelta(seconds=60)
    await omniq.enqueue("task_functions.add", args=[1, 1], queue="a", eta=soon)
    await omniq.enqueue("task_functions.add", args=[1, 1], queue="b", eta=soon + dt.timedelta(1))
    eta_a = await omniq.queue.next_eta(["a"])
    eta_b = await omniq.queue.next_eta(["b"])
    assert eta_a is not None and eta_b is not None
    assert abs((eta_a - soon).total_seconds()) < 0.01
    assert eta_b > eta_a
    assert await omniq.queue.next_eta(["nothing-here"]) is None


# ---------------------------------------------------------------------- unique keys


async def test_a_unique_key_is_held_while_pending_and_running(omniq: AsyncOmniQ) -> None:
    first = await omniq.enqueue("task_functions.add", args=[1, 1], unique_key="k")
    again = await omniq.enqueue("task_functions.add", args=[9, 9], unique_key="k", queue="x")
    assert again == first
    assert (await omniq.stats())["total"] == 1
    claimed = await omniq.queue.dequeue()
    assert claimed is not None and claimed.id == first  # running now
    assert await omniq.enqueue("task_functions.add", args=[2, 2], unique_key="k") == first
    assert await omniq.queue.complete_task(first, 2, claimed)
    fresh = await omniq.enqueue("task_functions.add", args=[3, 3], unique_key="k")
    assert fresh != first  # completed: the key is free again
    other = await omniq.enqueue("task_functions.add", args=[3, 3], unique_key="other")
    assert other not in (first, fresh)


async def test_failure_and_cancel_free_the_key_and_retries_keep_it(
    omniq: AsyncOmniQ, tmp_path: Path, no_backoff: None
) -> None:
    failing = await omniq.enqueue(
        "task_functions.fail_always", args=[str(tmp_path / "x")], unique_key="k", max_retries=2
    )
    async with omniq.worker_pool(concurrency=1, prefetch=0) as workers:
        await workers.process_tasks(limit=1)  # failed once, pending for its retry
        assert await omniq.enqueue("task_functions.add", args=[1, 1], unique_key="k") == failing
        await workers.process_tasks(limit=1)  # failed for good
    task = await omniq.get_task(failing)
    assert task is not None and task["status"] == TaskStatus.FAILED
    after_failure = await omniq.enqueue("task_functions.add", args=[1, 1], unique_key="k")
    assert after_failure != failing
    assert await omniq.cancel(after_failure)
    after_cancel = await omniq.enqueue("task_functions.add", args=[1, 1], unique_key="k")
    assert after_cancel not in (failing, after_failure)
    # The failed task cannot be retried while another task holds its key.
    assert not await omniq.retry(failing)
    assert await omniq.cancel(after_cancel)
    assert await omniq.retry(failing)
    assert await omniq.enqueue("task_functions.add", args=[1, 1], unique_key="k") == failing


async def test_enqueue_many_applies_the_rule_per_item(omniq: AsyncOmniQ) -> None:
    held = await omniq.enqueue("task_functions.add", args=[0, 0], unique_key="held")
    ids = await omniq.enqueue_many(
        [
            {"func_path": "task_functions.add", "args": [1, 1], "unique_key": "new"},
            {"func_path": "task_functions.add", "args": [2, 2], "unique_key": "new"},
            {"func_path": "task_functions.add", "args": [3, 3], "unique_key": "held"},
            {"func_path": "task_functions.add", "args": [4, 4]},
        ]
    )
    assert ids[1] == ids[0]  # within one call, the first item with the key wins
    assert ids[2] == held
    assert len({ids[0], ids[3], held}) == 3
    assert (await omniq.stats())["total"] == 3
    first = await omniq.get_task(ids[0])
    assert first is not None and first["args"] == (1, 1)


async def test_an_interval_series_keeps_its_key(omniq: AsyncOmniQ) -> None:
    first = await omniq.enqueue(
        "task_functions.add", args=[1, 1], interval=3600, unique_key="hourly"
    )
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(limit=1)
    successor = await omniq.enqueue("task_functions.add", args=[1, 1], unique_key="hourly")
    assert successor != first
    task = await omniq.get_task(successor)
    assert task is not None and task["parent_id"] == first  # the series' next run holds it
    assert (await omniq.stats())["pending"] == 1


@requires_persistence()
async def test_producers_in_several_processes_store_one_task_per_key(
    omniq: AsyncOmniQ, settings: Settings, tmp_path: Path
) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    parties = 4
    producers = [
        subprocess.Popen(
            [
                sys.executable,
                str(TESTS_DIR / "producer_process.py"),
                TWIN,
                str(barrier),
                str(parties),
                "the-key",
                "25",
            ],
            env=environment(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(parties)
    ]
    answers: set[str] = set()
    for producer in producers:
        stdout, stderr = producer.communicate(timeout=120)
        assert producer.returncode == 0, stderr
        answers.update(stdout.split())
    assert len(answers) == 1  # 100 enqueues in 4 processes at once: one task, one id
    stats = await omniq.stats()
    assert stats["total"] == 1 and stats["pending"] == 1
    (task,) = await omniq.list_tasks()
    assert task["id"] in answers and task["unique_key"] == "the-key"


# ---------------------------------------------------------------------- retention


async def finish_some(omniq: AsyncOmniQ, tmp_path: Path) -> dict[str, str]:
    """A completed, a failed and a cancelled task, and one still pending."""
    ids = {
        "completed": await omniq.enqueue("task_functions.add", args=[1, 1]),
        "failed": await omniq.enqueue(
            "task_functions.fail_always", args=[str(tmp_path / "f")], max_retries=1
        ),
    }
    async with omniq.worker_pool(retention=None) as workers:
        await workers.process_tasks(limit=2)
    ids["cancelled"] = await omniq.enqueue("task_functions.add", args=[2, 2])
    await omniq.cancel(ids["cancelled"])
    ids["pending"] = await omniq.enqueue(
        "task_functions.add", args=[3, 3], eta=utcnow() + dt.timedelta(hours=1)
    )
    return ids


async def wait_for_gone(omniq: AsyncOmniQ, task_ids: list[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while any([await omniq.get_task(task_id) is not None for task_id in task_ids]):
        if time.monotonic() > deadline:
            raise AssertionError(f"{task_ids} were not pruned within {timeout}s")
        await asleep(0.05)


async def test_pools_prune_finished_tasks_past_the_retention(
    omniq: AsyncOmniQ, tmp_path: Path
) -> None:
    ids = await finish_some(omniq, tmp_path)
    await asleep(0.3)
    async with omniq.worker_pool(retention=0.2) as workers:  # prunes when it starts
        await wait_for_gone(omniq, [ids["completed"], ids["failed"], ids["cancelled"]])
        assert workers.retention == 0.2
    assert await omniq.get_task(ids["pending"]) is not None  # unfinished: never pruned


async def test_retention_none_keeps_everything_and_recent_tasks_stay(
    omniq: AsyncOmniQ, tmp_path: Path
) -> None:
    ids = await finish_some(omniq, tmp_path)
    await asleep(0.3)
    async with omniq.worker_pool(retention=None) as workers:
        await workers.process_tasks(duration=0.3)
    async with omniq.worker_pool(retention=3600) as workers:  # not old enough
        await workers.process_tasks(duration=0.3)
    for task_id in ids.values():
        assert await omniq.get_task(task_id) is not None


async def test_settings_retention_reaches_the_pool(settings: Settings) -> None:
    facade = AsyncOmniQ(settings.replace(retention=dt.timedelta(days=2)))
    assert facade.worker_pool().retention == 2 * 86_400
    assert AsyncOmniQ(settings.replace(retention=None)).worker_pool().retention is None
    assert AsyncOmniQ(settings).worker_pool().retention == 7 * 86_400  # the default
    await facade.close()


async def test_prune_deletes_in_batches_until_done(omniq: AsyncOmniQ, tmp_path: Path) -> None:
    ids = await omniq.enqueue_many(
        {"func_path": "task_functions.add", "args": [i, i]} for i in range(25)
    )
    for task_id in ids:
        await omniq.cancel(task_id)
    await asleep(0.2)
    assert await omniq.queue.prune(0.1, batch=10) == 25  # three batches: 10, 10, 5
    assert (await omniq.stats())["total"] == 0


# ---------------------------------------------------------------------- attempt history


async def test_history_has_one_entry_per_execution_oldest_first(
    omniq: AsyncOmniQ, tmp_path: Path, no_backoff: None
) -> None:
    flaky = str(tmp_path / "flaky")
    task_id = await omniq.enqueue("task_functions.fail_times", args=[flaky, 2], max_retries=3)
    async with omniq.worker_pool(concurrency=1, name="pool-one") as workers:
        await workers.process_tasks(limit=3)
    task = await omniq.get_task(task_id)
    assert task is not None and task["status"] == TaskStatus.COMPLETED
    history = task["attempts_history"]
    assert [entry["attempt"] for entry in history] == [1, 2, 3]
    assert [entry["outcome"] for entry in history] == [
        AttemptOutcome.RETRY,
        AttemptOutcome.RETRY,
        AttemptOutcome.COMPLETED,
    ]
    assert {entry["worker"] for entry in history} == {"pool-one"}
    assert task["worker"] == "pool-one"
    for entry in history:
        assert entry["started_at"] is not None
        assert entry["started_at"] <= entry["finished_at"]
    assert history[0]["finished_at"] <= history[1]["started_at"]
    assert history[0]["error"] is not None and "planned failure" in history[0]["error"].message
    assert history[2]["error"] is None


async def test_history_names_a_final_failure_and_a_timeout(
    omniq: AsyncOmniQ, tmp_path: Path
) -> None:
    failed = await omniq.enqueue(
        "task_functions.fail_always", args=[str(tmp_path / "always")], max_retries=1
    )
    slow = await omniq.enqueue(
        "task_functions.async_sleep_for", args=[5], timeout=0.05, max_retries=1
    )
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(limit=2)
    failed_task, slow_task = await omniq.get_task(failed), await omniq.get_task(slow)
    assert failed_task is not None and slow_task is not None
    assert [e["outcome"] for e in failed_task["attempts_history"]] == [AttemptOutcome.FAILED]
    assert [e["outcome"] for e in slow_task["attempts_history"]] == [AttemptOutcome.TIMEOUT]
    assert slow_task["attempts_history"][0]["error"].error_type == "timeout"


async def test_history_records_a_lost_attempt(omniq: AsyncOmniQ) -> None:
    task_id = await omniq.enqueue("task_functions.add", args=[1, 1], max_retries=3)
    (claimed,) = await omniq.queue.dequeue_many(1, lease_timeout=0.05)  # then "dies"
    await asleep(0.2)
    assert await omniq.queue.recover_expired() == 1
    task = await omniq.get_task(task_id)
    assert task is not None and task["status"] == TaskStatus.PENDING
    (entry,) = task["attempts_history"]
    assert entry["outcome"] == AttemptOutcome.LOST and entry["attempt"] == 1
    assert entry["error"].error_type == "worker_lost"
    assert claimed.attempts == 1


async def test_history_records_a_release_at_shutdown(omniq: AsyncOmniQ, tmp_path: Path) -> None:
    task_id = await omniq.enqueue("task_functions.async_sleep_for", args=[30])

    async def stop_soon(pool: AsyncWorkerPool) -> None:
        await asleep(0.3)
        pool.stop()

    async with omniq.worker_pool(shutdown_timeout=0.1, name="stopping") as workers:
        stopper = aspawn(stop_soon, workers)
        await workers.process_tasks()  # runs the task, then is stopped: it is put back
        await ajoin([stopper], 5)
    task = await omniq.get_task(task_id)
    assert task is not None and task["status"] == TaskStatus.PENDING and task["attempts"] == 0
    (entry,) = task["attempts_history"]
    assert entry["outcome"] == AttemptOutcome.RELEASED and entry["worker"] == "stopping"


# ---------------------------------------------------------------------- inspection


async def test_stats_and_listing_per_queue(omniq: AsyncOmniQ) -> None:
    await omniq.enqueue("task_functions.add", args=[1, 1], queue="a")
    await omniq.enqueue("task_functions.add", args=[1, 1], queue="a")
    b = await omniq.enqueue("task_functions.add", args=[1, 1], queue="b")
    await omniq.cancel(b)
    stats = await omniq.stats()
    assert stats["queues"]["a"]["pending"] == 2
    assert stats["queues"]["b"] == {
        "pending": 0,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 1,
    }
    assert sorted(stats["queues"]) == ["a", "b"]
    assert stats["pending"] == 2 and stats["cancelled"] == 1 and stats["total"] == 3
    assert [task["id"] for task in await omniq.list_tasks(queue="b")] == [b]
    assert len(await omniq.list_tasks(queue="a", status="pending")) == 2
    assert await omniq.list_tasks(queue="nothing") == []


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("options", "error", "named"),
    [
        ({"queue": ""}, ValueError, "''"),
        ({"queue": "-leading"}, ValueError, "'-leading'"),
        ({"queue": "has space"}, ValueError, "'has space'"),
        ({"queue": "x" * 65}, ValueError, "xxxx"),
        ({"queue": "trailing\n"}, ValueError, "'trailing\\n'"),
        ({"queue": 7}, TypeError, "7"),
        ({"priority": 101}, ValueError, "101"),
        ({"priority": -101}, ValueError, "-101"),
        ({"priority": True}, TypeError, "True"),
        ({"priority": 1.5}, TypeError, "1.5"),
        ({"priority": "5"}, TypeError, "'5'"),
        ({"unique_key": ""}, ValueError, "''"),
        ({"unique_key": "k" * 201}, ValueError, "kkkk"),
        ({"unique_key": 5}, TypeError, "5"),
    ],
)
async def test_bad_options_raise_naming_the_value_and_store_nothing(
    omniq: AsyncOmniQ, options: dict[str, object], error: type[Exception], named: str
) -> None:
    with pytest.raises(error) as raised:
        await omniq.enqueue("task_functions.add", args=[1, 1], **options)  # type: ignore[arg-type]
    assert named in str(raised.value)
    item = {"func_path": "task_functions.add", "args": [1, 1], **options}
    with pytest.raises(error):
        await omniq.enqueue_many([{"func_path": "task_functions.add"}, item])
    with pytest.raises(error):
        await omniq.queue.enqueue("task_functions.add", [1, 1], **options)  # type: ignore[arg-type]
    assert (await omniq.stats())["total"] == 0


@pytest.mark.parametrize(
    ("queues", "error"),
    [("reports", TypeError), ([], ValueError), (["ok", "not ok"], ValueError), ([3], TypeError)],
)
async def test_bad_queues_of_a_pool_raise(
    omniq: AsyncOmniQ, queues: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        omniq.worker_pool(queues=queues)
    with pytest.raises(error):
        AsyncWorkerPool(queue=omniq.queue, queues=queues)  # type: ignore[arg-type]


@pytest.mark.parametrize("retention", [0, -1, "7d", dt.timedelta(0)])
async def test_bad_retention_raises(settings: Settings, retention: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        settings.replace(retention=retention)
    with pytest.raises((ValueError, TypeError)):
        AsyncWorkerPool(storage=AsyncOmniQ(settings).queue.storage, retention=retention)  # type: ignore[arg-type]
