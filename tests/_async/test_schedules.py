"""Schedules declared in code: stored by name, fired by worker pools, each fire once.

Written once for both twins and run on every backend (``OMNIQ_TEST_BACKEND``).
"""

from __future__ import annotations

import datetime as dt
import inspect
import itertools
import signal
import time
from collections import Counter

import pytest
from conftest import requires_persistence
from declared_tasks import note
from processes import finish, start_worker

from omniq import AsyncOmniQ, Settings, TaskStatus
from omniq._async.scheduler import KIND, AsyncScheduler
from omniq._concurrency import asleep
from omniq.schedules import Schedule

TWIN = "async" if inspect.iscoroutinefunction(AsyncOmniQ.enqueue) else "sync"
UTC = dt.timezone.utc


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


async def stored_from(omniq: AsyncOmniQ, schedule: Schedule, mark: dt.datetime) -> None:
    """Store ``schedule`` as if it had last fired at ``mark``."""
    storage = omniq.queue.storage
    data = omniq.queue.serializer.dumps(schedule.to_dict())
    await storage.put_state(KIND, schedule.name, data, mark.timestamp())
    assert await storage.advance_state(KIND, schedule.name, mark.timestamp(), [])


async def fired(omniq: AsyncOmniQ, name: str) -> list[dt.datetime]:
    """The fire times of ``name`` enqueued so far (the etas of its tasks), oldest first."""
    tasks = await omniq.list_tasks(limit=1000)
    prefix = f"schedule:{name}:"
    return sorted(
        task["eta"]
        for task in tasks
        if task["unique_key"] is not None and task["unique_key"].startswith(prefix)
    )


async def test_declaring_a_name_again_updates_it_and_never_adds_a_series(
    omniq: AsyncOmniQ, out: str
) -> None:
    for _ in range(3):  # three start-ups of an app
        await omniq.schedule("cleanup", note, every=600, args=[out, "clean"])
    (stored,) = await omniq.list_schedules()
    assert stored.schedule.name == "cleanup" and stored.schedule.every == dt.timedelta(minutes=10)
    assert stored.schedule.func_path == "declared_tasks.note"
    await omniq.schedule("cleanup", note, cron="0 7 * * mon-fri", tz="Europe/Berlin", args=[out])
    (changed,) = await omniq.list_schedules()
    assert changed.schedule.cron == "0 7 * * mon-fri" and changed.schedule.every is None
    next_fire = changed.next_fire()
    assert next_fire is not None and next_fire > dt.datetime.now(UTC) - dt.timedelta(days=1)
    assert await omniq.unschedule("cleanup")
    assert not await omniq.unschedule("cleanup")
    assert await omniq.list_schedules() == []


async def test_an_every_second_schedule_fires_while_a_pool_runs(
    omniq: AsyncOmniQ, out: str
) -> None:
    await omniq.schedule("tick", note, every=1, args=[out, "tick"])
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(duration=3.5)
    times = await fired(omniq, "tick")
    assert 2 <= len(times) <= 4, times
    assert len(set(times)) == len(times)  # each fire time once
    steps = {(b - a).total_seconds() for a, b in itertools.pairwise(times)}
    assert steps <= {1.0}, times  # whole seconds, none skipped while the pool ran
    assert all(t.microsecond == 0 for t in times)
    assert (await omniq.stats())["completed"] >= 1


async def test_misfires_fire_once_or_catch_up(omniq: AsyncOmniQ, out: str) -> None:
    start = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    once = Schedule(name="once", func_path="declared_tasks.note", every=dt.timedelta(minutes=1))
    every = Schedule(
        name="every",
        func_path="declared_tasks.note",
        every=dt.timedelta(minutes=1),
        catch_up=True,
        max_catch_up=10,
    )
    await stored_from(omniq, once, start)
    await stored_from(omniq, every, start)
    clock = FakeClock(start + dt.timedelta(minutes=3, seconds=30))  # no worker ran for 3.5 min
    scheduler = AsyncScheduler(omniq.queue, "fake", clock=clock)
    await scheduler.tick()
    assert await fired(omniq, "once") == [start + dt.timedelta(minutes=3)]  # the latest only
    assert await fired(omniq, "every") == [start + dt.timedelta(minutes=m) for m in (1, 2, 3)]
    await scheduler.tick()  # nothing new is due: nothing is fired twice
    assert len(await fired(omniq, "every")) == 3
    clock.now = start + dt.timedelta(hours=2)
    await scheduler.tick()
    assert len(await fired(omniq, "every")) == 13  # the latest max_catch_up (10) of 117


async def test_cron_fires_once_on_dst_days(omniq: AsyncOmniQ) -> None:
    daily = Schedule(
        name="daily", func_path="declared_tasks.note", cron="30 2 * * *", tz="Europe/Berlin"
    )
    await stored_from(omniq, daily, dt.datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    clock = FakeClock(dt.datetime(2026, 3, 29, 12, 0, tzinfo=UTC))  # spring forward: no 02:30
    scheduler = AsyncScheduler(omniq.queue, "fake", clock=clock)
    await scheduler.tick()
    assert await fired(omniq, "daily") == [dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC)]  # 03:00
    clock.now = dt.datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    await scheduler.tick()  # a summer of no worker: the latest missed fire only
    clock.now = dt.datetime(2026, 10, 25, 12, 0, tzinfo=UTC)  # fall back: 02:30 twice
    await scheduler.tick()
    clock.now = dt.datetime(2026, 10, 25, 23, 0, tzinfo=UTC)
    await scheduler.tick()
    assert (await fired(omniq, "daily"))[1:] == [
        dt.datetime(2026, 10, 24, 0, 30, tzinfo=UTC),  # 02:30 CEST
        dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # the first 02:30, once
    ]


async def test_a_declared_schedule_is_stored_when_a_pool_starts(omniq: AsyncOmniQ) -> None:
    import scheduled_tasks  # declares @task(every=...) when imported

    async with omniq.worker_pool():
        names = [stored.schedule.name for stored in await omniq.list_schedules()]
    assert scheduled_tasks.heartbeat.path in names


async def test_a_schedule_of_a_missing_function_fails_each_fire_alone(
    omniq: AsyncOmniQ, out: str
) -> None:
    await omniq.schedule("ghost", "task_functions.no_longer_here", every=1)
    await omniq.schedule("alive", "task_functions.record", every=1, args=[out, "alive"])
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(duration=2.5)
    ghosts = [
        task
        for task in await omniq.list_tasks(limit=100)
        if task["func_path"] == "task_functions.no_longer_here"
    ]
    # A fire stored as the run ended may still wait, never run (on a busy machine):
    # every fire that ran failed at once, and none was retried.
    ran = [task for task in ghosts if task["status"] != TaskStatus.PENDING]
    assert ran and all(task["status"] == TaskStatus.FAILED for task in ran)
    assert all(task["attempts"] == 0 for task in ghosts if task["status"] == TaskStatus.PENDING)
    assert {task["error"].error_type for task in ran} <= {"import", "forbidden"}
    assert await fired(omniq, "alive")


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"cron": "61 * * * *"}, "61"),
        ({"cron": "0 7 * * mon-fri", "tz": "Mars/Olympus"}, "Mars/Olympus"),
        ({"every": 0}, "0"),
        ({"every": -5}, "-5"),
        ({}, "exactly one"),
        ({"cron": "* * * * *", "every": 60}, "exactly one"),
    ],
)
async def test_bad_schedules_raise_naming_the_value(
    omniq: AsyncOmniQ, options: dict[str, object], named: str
) -> None:
    with pytest.raises((ValueError, TypeError)) as raised:
        await omniq.schedule("bad", "task_functions.add", **options)  # type: ignore[arg-type]
    assert named in str(raised.value)
    assert await omniq.list_schedules() == []


@requires_persistence()
async def test_three_worker_processes_fire_each_second_exactly_once(
    omniq: AsyncOmniQ, settings: Settings, out: str
) -> None:
    await omniq.schedule("every-second", "task_functions.record", every=1, args=[out, "fire"])
    workers = [start_worker(settings, TWIN, "--mode", "serve") for _ in range(3)]
    started = time.monotonic()
    try:
        while time.monotonic() - started < 10:
            await asleep(0.25)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [finish(worker)[0] for worker in workers]
    assert codes == [0, 0, 0]
    times = await fired(omniq, "every-second")
    counts = Counter(times)
    assert counts and max(counts.values()) == 1  # no fire time enqueued twice
    assert len(times) >= 7, times  # ten seconds, minus start-up
    steps = {(b - a).total_seconds() for a, b in itertools.pairwise(times)}
    assert steps == {1.0}, times  # and none missed while they ran
