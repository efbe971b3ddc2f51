"""Cross-process wake-ups: an idle worker elsewhere starts a task at once, a waiting
``get_result`` returns as soon as it finished, and polling still works without them.

The worker runs in another OS process with ``poll_interval=30`` and a lease of 600 s
(so neither its poll nor its heartbeat cycle can explain a start within seconds), and
``get_result``'s safety poll is raised to 30 s: only a wake-up can make a task start,
or a result arrive, within ``PROMPT`` seconds. A lost wake-up fails the test.
"""

from __future__ import annotations

import inspect
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import BACKEND, requires_persistence
from processes import environment, finish, start_worker
from task_functions import lines

import omniq._async.core as core_module
from omniq import AsyncOmniQ, AsyncTaskQueue, Settings, TaskCancelled, TaskFailed, TaskStatus
from omniq._concurrency import asleep
from omniq.records import Transition

TWIN = "async" if inspect.iscoroutinefunction(AsyncOmniQ.enqueue) else "sync"
SLOW_POLL = "30"
PROMPT = 10.0  # seconds: far less than the 30 s polls, far more than a wake-up takes
ROUNDS = 200
CANCEL_SOON = """
import sys, time
from omniq import OmniQ, Settings
time.sleep(0.3)
with OmniQ(Settings.from_env()) as omniq:
    assert omniq.cancel(sys.argv[1])
"""


def idle_worker(settings: Settings, poll: str = SLOW_POLL) -> subprocess.Popen[str]:
    """A serving worker process that polls every ``poll`` seconds and renews rarely."""
    return start_worker(
        settings, TWIN, "--mode", "serve", "--poll", poll, "--lease", "600", "--concurrency", "2"
    )


def stop(worker: subprocess.Popen[str]) -> None:
    worker.send_signal(signal.SIGTERM)
    code, _, stderr = finish(worker)
    assert code == 0, stderr


@requires_persistence()
async def test_an_idle_worker_in_another_process_starts_each_task_at_once(
    omniq: AsyncOmniQ, settings: Settings, out: str
) -> None:
    await omniq.open()
    worker = idle_worker(settings)
    try:
        for number in range(ROUNDS):
            enqueued = time.time()
            task_id = await omniq.enqueue("task_functions.record", args=[out, number])
            # Watch by reading, not with get_result: only the workers' wake-up is tested here.
            deadline = time.monotonic() + 60
            task = await omniq.get_task(task_id)
            while task is not None and task["status"] != TaskStatus.COMPLETED:
                assert time.monotonic() < deadline, f"task {number} never ran"
                await asleep(0.005)
                task = await omniq.get_task(task_id)
            assert task is not None and task["started_at"] is not None
            waited = task["started_at"].timestamp() - enqueued
            assert waited < PROMPT, f"task {number} started {waited:.1f}s after its enqueue"
    finally:
        stop(worker)
    assert sorted(int(line) for line in lines(out)) == list(range(ROUNDS))


@requires_persistence()
async def test_get_result_returns_when_a_worker_in_another_process_finishes(
    omniq: AsyncOmniQ, settings: Settings, out: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core_module, "RESULT_SAFETY_POLL", float(SLOW_POLL))
    worker = idle_worker(settings)
    try:
        for number in range(50):
            task_id = await omniq.enqueue("task_functions.add", args=[number, 1])
            # A lost "finished" wake-up would leave it asleep for 30 s: TimeoutError.
            assert await omniq.get_result(task_id, wait=True, timeout=PROMPT) == number + 1
        failing = await omniq.enqueue("task_functions.fail_always", args=[out], max_retries=1)
        with pytest.raises(TaskFailed):
            await omniq.get_result(failing, wait=True, timeout=PROMPT)
    finally:
        stop(worker)


@requires_persistence()
async def test_get_result_wakes_when_the_task_is_cancelled_elsewhere(
    omniq: AsyncOmniQ, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core_module, "RESULT_SAFETY_POLL", float(SLOW_POLL))
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    task_id = await omniq.enqueue("task_functions.add", args=[1, 1], eta=later)
    # Another process cancels it a moment later, most likely while get_result waits.
    canceller = subprocess.Popen(
        [sys.executable, "-c", CANCEL_SOON, task_id], env=environment(settings)
    )
    try:
        with pytest.raises(TaskCancelled):
            await omniq.get_result(task_id, wait=True, timeout=PROMPT)
    finally:
        assert canceller.wait(60) == 0


@pytest.mark.skipif(
    BACKEND not in ("sqlite", "file"), reason="the wake-up channel of the stores on disk"
)
async def test_without_a_wakeup_channel_workers_and_waiters_poll(
    settings: Settings, base_dir: Path
) -> None:
    # Something that is not a directory where the channel's directory would be.
    blocker = base_dir / ("omniq.db-wakeup" if BACKEND == "sqlite" else "wakeup")
    base_dir.mkdir(mode=0o700, parents=True)
    blocker.write_text("not a directory")
    async with AsyncOmniQ(settings) as omniq:
        worker = idle_worker(settings, poll="0.05")
        try:
            for number in range(5):
                task_id = await omniq.enqueue("task_functions.add", args=[number, 2])
                assert await omniq.get_result(task_id, wait=True, timeout=60) == number + 2
        finally:
            stop(worker)
    assert blocker.read_text() == "not a directory"


async def test_a_dead_workers_task_goes_before_the_backlog(omniq: AsyncOmniQ) -> None:
    queue = omniq.queue
    first = await omniq.enqueue("task_functions.add", args=[0, 0])
    claimed = await queue.dequeue_many(1, lease_timeout=0.05)  # then its worker "dies"
    assert [task.id for task in claimed] == [first]
    backlog = [await omniq.enqueue("task_functions.add", args=[n, n]) for n in range(5)]
    deadline = time.monotonic() + 30
    while not await queue.recover_expired():
        assert time.monotonic() < deadline, "the lease never ran out"
        await asleep(0.02)
    recovered = await omniq.get_task(first)
    assert recovered is not None and recovered["status"] == TaskStatus.PENDING
    order = [task.id for task in await queue.dequeue_many(10)]
    assert order == [first, *backlog]


@pytest.mark.skipif(BACKEND != "postgres", reason="PostgreSQL's NOTIFY payloads")
async def test_postgres_names_the_finished_tasks_of_a_batch(settings: Settings) -> None:
    from omniq._async.storage.postgres import AsyncPostgresStorage

    storage = AsyncPostgresStorage(settings.dsn or "")
    calls: list[set[str] | None] = []
    queue = AsyncTaskQueue(storage)
    await queue.open()
    try:
        assert storage.subscribe_finished(
            lambda ids: calls.append(None if ids is None else set(ids))
        )
        await wait_for_calls(calls, 1)  # listening: it says so with an "unknown which" call
        for count in (3, 300):  # 300 ids are more than one NOTIFY payload holds
            calls.clear()
            ids = await queue.enqueue_many(
                {"func_path": "task_functions.add"} for _ in range(count)
            )
            now = time.time()
            claimed = await storage.claim(now, now + 60, count)
            done = Transition(status=TaskStatus.COMPLETED.value, now=now, result="null")
            applied = await storage.finish_many(
                [(r.id, r.attempt_token or "", done) for r in claimed]
            )
            assert all(applied) and len(applied) == count
            await wait_for_calls(calls, 1)
            assert calls == ([set(ids)] if count == 3 else [None])
    finally:
        await queue.close()


async def wait_for_calls(calls: list[set[str] | None], count: int) -> None:
    deadline = time.monotonic() + PROMPT
    while len(calls) < count:
        assert time.monotonic() < deadline, "no wake-up came"
        await asleep(0.01)
