"""Faults with real OS processes: SIGTERM, a second signal, SIGKILL, leases and heartbeats.

Run on both twins and on every backend that outlives a process.
"""

from __future__ import annotations

import inspect
import signal
from collections import Counter

import pytest
from conftest import requires_persistence
from processes import finish, start_worker, wait_for_lines, wait_for_stderr, wait_until
from task_functions import lines

from omniq import AsyncOmniQ, Settings, TaskStatus
from omniq._concurrency import asleep

TWIN = "async" if inspect.iscoroutinefunction(AsyncOmniQ.enqueue) else "sync"

pytestmark = requires_persistence()


async def status_of(omniq: AsyncOmniQ, task_id: str) -> tuple[TaskStatus, int]:
    task = await omniq.get_task(task_id)
    assert task is not None
    return task["status"], task["attempts"]


async def test_sigterm_lets_the_running_task_finish(
    omniq: AsyncOmniQ, settings: Settings, out: str
) -> None:
    task_id = await omniq.enqueue("task_functions.record_then_sleep", args=[out, 1.0])
    worker = start_worker(settings, TWIN, "--mode", "serve", "--grace", "30")
    wait_for_lines(out, 1)  # the task has started
    worker.send_signal(signal.SIGTERM)
    code, stdout, stderr = finish(worker)
    assert code == 0, stderr
    assert [line.split()[0] for line in lines(out)] == ["start", "end"]
    assert await status_of(omniq, task_id) == (TaskStatus.COMPLETED, 1)
    assert stdout.split()[-1] == "1"


async def test_sigterm_puts_back_what_does_not_finish_within_the_grace(
    omniq: AsyncOmniQ, settings: Settings, out: str
) -> None:
    task_id = await omniq.enqueue("task_functions.record_then_sleep", args=[out, 30])
    worker = start_worker(settings, TWIN, "--mode", "serve", "--grace", "0.3")
    wait_for_lines(out, 1)
    worker.send_signal(signal.SIGTERM)
    code, _, stderr = finish(worker, timeout=20)
    assert code == 0, stderr
    # Put back as PENDING without spending an attempt: the next worker runs it afresh.
    assert await status_of(omniq, task_id) == (TaskStatus.PENDING, 0)


async def test_a_second_signal_stops_at_once(
    omniq: AsyncOmniQ, settings: Settings, out: str
) -> None:
    task_id = await omniq.enqueue("task_functions.record_then_sleep", args=[out, 60])
    worker = start_worker(settings, TWIN, "--mode", "serve", "--grace", "600", "--log")
    wait_for_lines(out, 1)
    worker.send_signal(signal.SIGINT)
    wait_for_stderr(worker, "signal again to stop now")  # the first signal was handled
    worker.send_signal(signal.SIGINT)
    code, _, stderr = finish(worker, timeout=20)  # far sooner than the 600 s grace
    assert code == 0, stderr
    assert await status_of(omniq, task_id) == (TaskStatus.PENDING, 0)


async def test_sigkill_mid_task_runs_it_again_after_the_lease(
    omniq: AsyncOmniQ, settings: Settings, out: str
) -> None:
    task_id = await omniq.enqueue("task_functions.record_then_sleep", args=[out, 0.5])
    doomed = start_worker(settings, TWIN, "--mode", "serve", "--lease", "1")
    wait_for_lines(out, 1)
    doomed.kill()
    finish(doomed)
    assert await status_of(omniq, task_id) == (TaskStatus.RUNNING, 1)  # stranded, for now
    # The rescuer takes the task once the dead worker's 1 s lease is over; its own
    # lease is longer, so that a heartbeat late on a loaded machine cannot lose it the
    # run it is here for (its recovery would put that run's task back as pending).
    rescuer = start_worker(settings, TWIN, "--mode", "serve", "--lease", "3")
    wait_until(lambda: "end" in " ".join(lines(out)), 30, "the task to run again")
    rescuer.send_signal(signal.SIGTERM)
    assert finish(rescuer)[0] == 0
    events = Counter(line.split()[0] for line in lines(out))
    # Started twice (the killed run and the rescue), its side effect completed once.
    assert events == {"start": 2, "end": 1}
    status, attempts = await status_of(omniq, task_id)
    assert (status, attempts) == (TaskStatus.COMPLETED, 2)
    task = await omniq.get_task(task_id)
    assert task is not None and task.get("error") is None


async def test_worker_lost_with_the_budget_spent_fails_the_task(
    omniq: AsyncOmniQ, settings: Settings, out: str
) -> None:
    task_id = await omniq.enqueue("task_functions.record_then_sleep", args=[out, 30], max_retries=1)
    doomed = start_worker(settings, TWIN, "--mode", "serve", "--lease", "0.5")
    wait_for_lines(out, 1)
    doomed.kill()
    finish(doomed)
    rescuer = start_worker(settings, TWIN, "--mode", "serve", "--lease", "0.5")

    for _ in range(600):
        if (await status_of(omniq, task_id))[0] == TaskStatus.FAILED:
            break
        await asleep(0.05)
    # The rescuer may fail the task while starting up, before it serves (and handles
    # signals): its own exit is not what this test is about.
    rescuer.kill()
    finish(rescuer)
    task = await omniq.get_task(task_id)
    assert task is not None and task["status"] == TaskStatus.FAILED
    assert task["error"].error_type == "worker_lost"
    assert task["attempts"] == 1
    assert len(lines(out)) == 1  # never started again


@pytest.mark.parametrize("workers", [2])
async def test_heartbeat_keeps_a_long_task_from_running_twice(
    omniq: AsyncOmniQ, settings: Settings, out: str, workers: int
) -> None:
    # The task runs four times longer than the lease; the heartbeat renews the lease,
    # so the other worker (polling all along) never takes it over.
    task_id = await omniq.enqueue("task_functions.record_then_sleep", args=[out, 2.0])
    processes = [
        start_worker(settings, TWIN, "--mode", "serve", "--lease", "0.5") for _ in range(workers)
    ]
    wait_until(lambda: "end" in " ".join(lines(out)), 30, "the task to finish")
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        code, _, stderr = finish(process)
        assert code == 0, stderr
    assert [line.split()[0] for line in lines(out)] == ["start", "end"]
    assert await status_of(omniq, task_id) == (TaskStatus.COMPLETED, 1)
