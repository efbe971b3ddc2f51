"""A producer and worker processes running at once, with failures: the counts add up."""

from __future__ import annotations

import inspect
import itertools
import signal
from collections import defaultdict

from conftest import requires_persistence
from processes import finish, start_worker
from task_functions import lines

from omniq import AsyncOmniQ, Settings, TaskStatus
from omniq import retry as retry_policy
from omniq._concurrency import asleep

TWIN = "async" if inspect.iscoroutinefunction(AsyncOmniQ.enqueue) else "sync"
TASKS = 150
FAILURE_PERCENT = 30
BUDGET = 3

pytestmark = requires_persistence()


async def test_producer_and_workers_with_random_failures(
    omniq: AsyncOmniQ, settings: Settings, out: str
) -> None:
    workers = [start_worker(settings, TWIN, "--mode", "serve") for _ in range(2)]
    ids = []
    for number in range(TASKS):  # produce while the workers consume
        ids.append(
            await omniq.enqueue(
                "task_functions.flaky_record",
                args=[out, f"task{number}", FAILURE_PERCENT],
                max_retries=BUDGET,
            )
        )
        if number % 10 == 0:
            await asleep(0.01)
    final: dict[str, TaskStatus] = {}
    for _ in range(1200):  # the longest retry chain waits 1 + 2 s (+25 %)
        for task_id in ids:
            if task_id not in final:
                task = await omniq.get_task(task_id)
                assert task is not None
                if task["status"].is_final:
                    final[task_id] = task["status"]
        if len(final) == TASKS:
            break
        await asleep(0.05)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert finish(worker)[0] == 0
    assert len(final) == TASKS, f"{TASKS - len(final)} tasks never finished"

    completed = [task_id for task_id, status in final.items() if status == TaskStatus.COMPLETED]
    failed = [task_id for task_id, status in final.items() if status == TaskStatus.FAILED]
    assert len(completed) + len(failed) == TASKS
    assert failed, "with 30 % failures and 3 executions some tasks must fail for good"
    assert completed

    executions: dict[str, list[float]] = defaultdict(list)
    for line in lines(out):
        key, moment = line.split()
        executions[key].append(float(moment))
    for number, task_id in enumerate(ids):
        task = await omniq.get_task(task_id)
        assert task is not None
        runs = sorted(executions[f"task{number}"])
        assert len(runs) == task["attempts"]  # every execution counted, none twice
        assert 1 <= len(runs) <= BUDGET
        if task["status"] == TaskStatus.FAILED:
            assert len(runs) == BUDGET and task["error"].retry_count == BUDGET
        for attempt, (earlier, later) in enumerate(itertools.pairwise(runs), start=1):
            low, _ = retry_policy.delay_bounds(attempt)
            assert later - earlier >= low, f"task{number} retried too early"
