"""Bad input is refused at the call, and bad stored data never escapes as a crash.

One rule for every backend (the bounds of ``omniq.limits``): out-of-range durations,
times and counts, too deeply nested or undecodable text in arguments, malformed
task ids. And a damaged record in the store is failed alone by a worker, still
listed and shown with what can be decoded, never a ``RecursionError`` or an
``OverflowError`` out of ``list_tasks``, ``get_task`` or ``stats``.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import pytest
from conftest import BACKEND
from damaged import DEEP_PAYLOAD, YEAR_10000, record

from omniq import AsyncOmniQ, AsyncTaskQueue, TaskStatus, limits
from omniq.exceptions import StorageError, TaskNotFound
from omniq.models import ErrorType
from omniq.records import Transition

UTC = dt.timezone.utc
CENTURY = limits.MAX_DURATION_SECONDS


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


OUT_OF_RANGE = {
    "interval 10**30": ({"interval": 10**30}, ValueError, "interval"),
    "interval 1e12": ({"interval": 1e12}, ValueError, "100 years"),
    "interval 1e-7": ({"interval": 1e-7}, ValueError, "at least 0.001"),
    "interval timedelta.max": ({"interval": dt.timedelta.max}, ValueError, "interval"),
    "interval 1 microsecond": ({"interval": dt.timedelta(microseconds=1)}, ValueError, "0.001"),
    "timeout 1e12": ({"timeout": 1e12}, ValueError, "timeout"),
    "timeout 10**400": ({"timeout": 10**400}, ValueError, "too large"),
    "timeout inf": ({"timeout": math.inf}, ValueError, "finite"),
    "eta datetime.max": ({"eta": dt.datetime.max}, ValueError, "eta must be between"),
    "eta aware max": ({"eta": dt.datetime.max.replace(tzinfo=UTC)}, ValueError, "9000"),
    "eta year 9001": ({"eta": dt.datetime(9001, 1, 1, tzinfo=UTC)}, ValueError, "9000"),
    "eta datetime.min": ({"eta": dt.datetime.min}, ValueError, "1970"),
    "eta 1969": ({"eta": dt.datetime(1969, 12, 31, tzinfo=UTC)}, ValueError, "1970"),
    "max_retries 2**31": ({"max_retries": 2**31}, ValueError, "2147483648"),
    "max_retries 2**63": ({"max_retries": 2**63}, ValueError, "at most 2147483647"),
    "args 150 deep": ({"args": [nested(150)]}, ValueError, "nested more than 100 levels"),
    "args 2000 deep": ({"args": [nested(2000)]}, ValueError, "nested more than 100 levels"),
    "kwargs 500 deep": ({"kwargs": {"a": nested(500)}}, ValueError, "nested more than 100"),
    "surrogate in args": ({"args": ["caf\udce9"]}, ValueError, "lone surrogate '\\udce9'"),
    "surrogate deep in args": ({"args": [{"k": ["x\ud800"]}]}, ValueError, "lone surrogate"),
    "surrogate in a key": ({"args": [{"k\udc80": 1}]}, ValueError, "dict key"),
    "surrogate in kwargs": ({"kwargs": {"name": "\udfff"}}, ValueError, "lone surrogate"),
    "func_path newline": ({"func_path": "task_functions.add\n"}, ValueError, "dotted path"),
}


@pytest.mark.parametrize(("options", "exc", "fragment"), OUT_OF_RANGE.values(), ids=OUT_OF_RANGE)
async def test_out_of_range_input_is_refused_at_enqueue_and_stores_nothing(
    omniq: AsyncOmniQ, options: dict[str, Any], exc: type[Exception], fragment: str
) -> None:
    call: dict[str, Any] = {"func_path": "task_functions.add", "args": [1, 2], **options}
    with pytest.raises(exc) as raised:
        await omniq.enqueue(**call)
    assert fragment in str(raised.value)
    with pytest.raises(exc):
        await omniq.enqueue_many([{"func_path": "task_functions.add"}, call])
    assert (await omniq.stats())["total"] == 0


async def test_values_at_the_bounds_are_kept_by_every_backend(omniq: AsyncOmniQ) -> None:
    first = await omniq.enqueue(
        "task_functions.add",
        args=[nested(90)],
        eta=limits.MAX_ETA,
        interval=limits.MIN_INTERVAL_SECONDS,
        timeout=limits.MAX_WAIT_SECONDS,
        max_retries=limits.MAX_RETRIES,
    )
    second = await omniq.enqueue(
        "task_functions.add",
        kwargs={"text": "caf\u00e9 \U0001f600"},
        eta=limits.MIN_ETA,
        interval=dt.timedelta(seconds=CENTURY),
        max_retries=0,
    )
    task = await omniq.get_task(first)
    assert task is not None and task.error is None
    assert task.args == (nested(90),)
    assert task.eta == limits.MAX_ETA
    assert task.interval == dt.timedelta(milliseconds=1)
    assert task.timeout == limits.MAX_WAIT_SECONDS
    assert task.max_retries == 2**31 - 1
    other = await omniq.get_task(second)
    assert other is not None and other.error is None
    assert other.kwargs == {"text": "caf\u00e9 \U0001f600"}
    assert other.eta == limits.MIN_ETA
    assert other.interval == dt.timedelta(seconds=CENTURY)
    stats = await omniq.stats()
    assert stats["pending"] == 2 and stats["next_eta"] == limits.MIN_ETA


async def test_tasks_at_the_bounds_run_and_schedule_their_next_run(omniq: AsyncOmniQ) -> None:
    # The longest timeout is one the blocking twin's thread join can wait for, and the
    # shortest and longest intervals give a next run that every store can hold.
    longest_wait = await omniq.enqueue(
        "task_functions.add", args=[1, 2], timeout=limits.MAX_WAIT_SECONDS
    )
    every_ms = await omniq.enqueue(
        "task_functions.add", args=[2, 2], interval=limits.MIN_INTERVAL_SECONDS
    )
    every_century = await omniq.enqueue(
        "task_functions.add", args=[3, 3], interval=CENTURY, max_retries=limits.MAX_RETRIES
    )
    async with omniq.worker_pool() as workers:
        assert await workers.process_tasks(limit=3) == 3
    assert await omniq.get_result(longest_wait) == 3
    assert await omniq.get_result(every_ms) == 4
    assert await omniq.get_result(every_century) == 6
    successors = {task.parent_id: task for task in await omniq.list_tasks(status="pending")}
    assert set(successors) == {every_ms, every_century}
    now = dt.datetime.now(UTC)
    assert successors[every_ms].eta <= now + dt.timedelta(seconds=1)
    assert successors[every_century].eta > now + dt.timedelta(days=36_000)


# ---------------------------------------------------------------------- task ids

MALFORMED_IDS = {
    "NUL": ("abc\x00def", ValueError, "NUL"),
    "lone surrogate": ("abc\udcff", ValueError, "lone surrogate"),
    "empty": ("", ValueError, "empty"),
    "too long": ("x" * 256, ValueError, "over the limit of 255"),
    "an int": (42, TypeError, "int"),
    "None": (None, TypeError, "NoneType"),
    "bytes": (b"abc", TypeError, "bytes"),
}


@pytest.mark.parametrize(("task_id", "exc", "fragment"), MALFORMED_IDS.values(), ids=MALFORMED_IDS)
async def test_malformed_task_ids_are_refused_before_the_store(
    omniq: AsyncOmniQ, task_id: Any, exc: type[Exception], fragment: str
) -> None:
    for call in (omniq.get_task, omniq.cancel, omniq.retry, omniq.get_result):
        with pytest.raises(exc) as raised:
            await call(task_id)
        assert fragment in str(raised.value), call
        assert "task id" in str(raised.value)


@pytest.mark.parametrize(
    "task_id",
    ["no-such-task", "x" * 255, "9b2f6c1e-4d3a-4f5b-8c7d-0e1f2a3b4c5d", "t\u00e2che \U0001f600"],
)
async def test_well_formed_unknown_ids_are_simply_not_found(
    omniq: AsyncOmniQ, task_id: str
) -> None:
    assert await omniq.get_task(task_id) is None
    assert await omniq.cancel(task_id) is False
    assert await omniq.retry(task_id) is False
    with pytest.raises(TaskNotFound):
        await omniq.get_result(task_id)


# ---------------------------------------------------------------------- other bounds


async def test_list_limit_and_offset_are_bounded(omniq: AsyncOmniQ) -> None:
    await omniq.enqueue("task_functions.add", args=[1, 2])
    for limit in (0, 2**31, 10**20):
        with pytest.raises(ValueError, match="limit"):
            await omniq.list_tasks(limit=limit)
    for offset in (-1, 2**31):
        with pytest.raises(ValueError, match="offset"):
            await omniq.list_tasks(offset=offset)
    with pytest.raises(TypeError, match="limit"):
        await omniq.list_tasks(limit=1e20)  # type: ignore[arg-type]
    assert len(await omniq.list_tasks(limit=2**31 - 1, offset=0)) == 1
    assert await omniq.list_tasks(offset=2**31 - 1) == []


async def test_pools_queues_and_waits_are_bounded(omniq: AsyncOmniQ) -> None:
    bad_pools: list[dict[str, Any]] = [
        {"max_retries": 2**31},
        {"poll_interval": 1e12},
        {"lease_timeout": 1e12},
        {"default_timeout": 1e12},
        {"shutdown_timeout": -1},
        {"shutdown_timeout": math.nan},
        {"concurrency": 2**31},
    ]
    for options in bad_pools:
        with pytest.raises(ValueError, match=next(iter(options))):
            omniq.worker_pool(**options)
    with pytest.raises(ValueError, match="max_retries"):
        AsyncTaskQueue(omniq.queue.storage, max_retries=2**31)
    with pytest.raises(ValueError, match="lease_timeout"):
        AsyncTaskQueue(omniq.queue.storage, lease_timeout=0)
    task_id = await omniq.enqueue("task_functions.add", args=[1, 2])
    with pytest.raises(ValueError, match="timeout"):
        await omniq.get_result(task_id, wait=True, timeout=math.nan)
    for age in (math.nan, math.inf, -1, 1e12):
        with pytest.raises(ValueError, match="older_than"):
            await omniq.purge(age)
    with pytest.raises(TypeError, match="older_than"):
        await omniq.purge("1d")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("func_path", "args"),
    [("task_functions.lone_surrogate_result", []), ("task_functions.nested_result", [500])],
)
async def test_a_result_no_store_can_keep_fails_its_task_alone(
    omniq: AsyncOmniQ, func_path: str, args: list[Any]
) -> None:
    bad = await omniq.enqueue(func_path, args=args, max_retries=3)
    good = await omniq.enqueue("task_functions.add", args=[1, 1])
    async with omniq.worker_pool() as workers:
        assert await workers.process_tasks(limit=2) == 2
    task = await omniq.get_task(bad)
    assert task is not None and task.status == TaskStatus.FAILED
    assert task.error is not None and task.error.error_type == ErrorType.SERIALIZATION
    assert "result cannot be serialized" in task.error.message
    assert task.attempts == 1 and task.error.is_retryable is False
    assert await omniq.get_result(good) == 2


# ---------------------------------------------------------------------- damaged records


async def test_a_deeply_nested_stored_payload_is_listed_shown_and_failed_alone(
    omniq: AsyncOmniQ,
) -> None:
    bad = record(payload=DEEP_PAYLOAD)
    await omniq.queue.storage.add([bad])
    good = await omniq.enqueue("task_functions.add", args=[2, 2])

    listed = {task.id: task for task in await omniq.list_tasks()}
    assert set(listed) == {bad.id, good}
    shown = listed[bad.id]
    assert shown.status == TaskStatus.PENDING and shown.args == () and shown.kwargs == {}
    assert shown.error is not None and shown.error.error_type == ErrorType.SERIALIZATION
    assert "arguments cannot be decoded (RecursionError" in shown.error.message

    async with omniq.worker_pool() as workers:
        assert await workers.process_tasks(limit=5) == 1
    assert await omniq.get_result(good) == 4
    failed = await omniq.get_task(bad.id)
    assert failed is not None and failed.status == TaskStatus.FAILED
    assert failed.error is not None and failed.error.error_type == ErrorType.SERIALIZATION
    assert "cannot be decoded" in failed.error.message
    assert failed.func_path == "task_functions.add" and failed.attempts == 1
    assert [task.id for task in await omniq.list_tasks(status="failed")] == [bad.id]


async def test_a_stored_time_past_year_9999_breaks_nothing(omniq: AsyncOmniQ) -> None:
    far = record(eta=YEAR_10000)
    await omniq.queue.storage.add([far])
    stats = await omniq.stats()  # the only pending eta cannot be a datetime
    assert stats["pending"] == 1 and stats["next_eta"] is None
    (listed,) = await omniq.list_tasks()
    assert listed.id == far.id and listed.args == (1, 2)
    assert listed.error is not None and "eta cannot be decoded" in listed.error.message
    shown = await omniq.get_task(far.id)
    assert shown is not None and shown.eta == limits.EPOCH


@pytest.mark.parametrize(
    "changes",
    [
        {"interval": 0.0},
        {"interval": 1e-9},
        {"interval": 1e300},
        {"timeout": 1e300},
        {"eta": -1e300},
        {"created_at": 1e300},
        {"error": "[[["},
    ],
    ids=str,
)
async def test_a_due_record_out_of_bounds_is_failed_alone(
    omniq: AsyncOmniQ, changes: dict[str, Any]
) -> None:
    poison = record(**changes)
    await omniq.queue.storage.add([poison])
    good = await omniq.enqueue("task_functions.add", args=[3, 3])
    async with omniq.worker_pool() as workers:
        assert await workers.process_tasks(limit=5) == 1
    assert await omniq.get_result(good) == 6
    failed = await omniq.get_task(poison.id)
    assert failed is not None and failed.status == TaskStatus.FAILED
    assert failed.error is not None and failed.error.error_type == ErrorType.SERIALIZATION
    assert (await omniq.stats())["failed"] == 1


async def test_a_completed_task_whose_result_cannot_be_decoded(omniq: AsyncOmniQ) -> None:
    task_id = await omniq.enqueue("task_functions.add", args=[1, 2])
    claimed = await omniq.queue.dequeue()
    assert claimed is not None and claimed.attempt_token is not None
    done = Transition(status="completed", now=time.time(), result=DEEP_PAYLOAD)
    assert await omniq.queue.storage.finish(task_id, claimed.attempt_token, done)
    task = await omniq.get_task(task_id)
    assert task is not None and task.status == TaskStatus.COMPLETED
    assert task.args == (1, 2) and task.result is None
    assert task.error is not None and "result cannot be decoded" in task.error.message
    with pytest.raises(StorageError, match="result cannot be decoded"):
        await omniq.get_result(task_id)


@pytest.mark.skipif(BACKEND != "postgres", reason="PostgreSQL's integer column")
async def test_postgres_takes_the_largest_max_retries_every_backend_takes(
    omniq: AsyncOmniQ,
) -> None:
    task_id = await omniq.enqueue("task_functions.add", args=[1, 2], max_retries=2**31 - 1)
    task = await omniq.get_task(task_id)
    assert task is not None and task.max_retries == 2**31 - 1


# ---------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app:hunter2@[broken/db",  # libpq quotes the whole URL back
        "postgresql://app:hunt%zzer2@127.0.0.1/db",  # and a bad percent-escape token
        "host=127.0.0.1 password='hunter2",  # an unterminated quote
    ],
)
async def test_no_message_or_log_line_shows_the_dsn_password(dsn: str) -> None:
    pytest.importorskip("psycopg")
    from omniq import Settings
    from omniq import logging as omniq_logging

    lines: list[str] = []
    omniq_logging.configure(level="DEBUG", mode="PROD", sink=lines.append)
    try:
        facade = AsyncOmniQ(Settings(backend="postgres", dsn=dsn))
        with pytest.raises(StorageError) as raised:
            await facade.enqueue("task_functions.add", args=[1, 2])
        await facade.close()
    finally:
        omniq_logging.reset()
    shown = [str(raised.value), repr(facade), repr(facade.settings), *lines]
    for text in shown:
        assert "hunter2" not in text and "hunt%zzer2" not in text, text
    assert "cannot connect to PostgreSQL" in str(raised.value)
    assert raised.value.__cause__ is None or "hunter2" not in str(raised.value.__cause__)
