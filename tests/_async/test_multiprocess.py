"""Several OS processes draining one store: every task runs exactly once, none is lost."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections import Counter

from conftest import TESTS_DIR, requires_persistence
from processes import environment
from task_functions import lines

from omniq import AsyncOmniQ, Settings

TWIN = "async" if inspect.iscoroutinefunction(AsyncOmniQ.enqueue) else "sync"
PROCESSES = 4
TASKS = 5000


@requires_persistence()
async def test_processes_drain_one_store_exactly_once(
    omniq: AsyncOmniQ, settings: Settings, out: str
) -> None:
    ids_set = set(
        await omniq.enqueue_many(
            {"func_path": "task_functions.record", "args": [out, i]} for i in range(TASKS)
        )
    )
    workers = [
        subprocess.Popen(
            [sys.executable, str(TESTS_DIR / "worker_process.py"), TWIN, "--concurrency", "4"],
            env=environment(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    processed = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr
        processed.append(int(stdout.strip().splitlines()[-1]))
    executions = Counter(int(value) for value in lines(out))
    assert sum(processed) == TASKS
    assert sum(1 for count in processed if count > 0) >= 2, processed  # they did compete
    assert sorted(executions) == list(range(TASKS))  # none lost
    assert set(executions.values()) == {1}  # none run twice
    stats = await omniq.stats()
    assert (stats["completed"], stats["running"], stats["pending"]) == (TASKS, 0, 0)
    for task in await omniq.list_tasks(limit=TASKS):
        assert task["id"] in ids_set and task["attempts"] == 1
