"""Lease recovery makes progress past rows it cannot recover (issue 13, A.6).

Runs on the backends that keep rows a foreign writer can damage: memory, SQLite and
PostgreSQL (the file backend keeps running tasks as files in ``running/``, which its
own suite covers).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conftest import BACKEND

from omniq import AsyncOmniQ, TaskStatus
from omniq import logging as omniq_logging
from omniq._concurrency import asleep
from omniq.models import new_task_id
from omniq.records import TaskRecord

pytestmark = pytest.mark.skipif(
    BACKEND == "file", reason="the file backend keeps running tasks as files in running/"
)


@pytest.fixture
def logged() -> Iterator[list[str]]:
    lines: list[str] = []
    omniq_logging.configure(level="INFO", mode="PROD", sink=lines.append)
    yield lines
    omniq_logging.reset()


def _garbage(lease_until: float) -> TaskRecord:
    """A RUNNING row no claim made: its lease is over and it has no attempt token."""
    now = time.time()
    return TaskRecord(
        id=new_task_id(),
        func_path="task_functions.add",
        payload='{"args":[1,1],"kwargs":{}}',
        status="running",
        attempts=1,
        max_retries=3,
        eta=now - 3600,
        interval=None,
        timeout=None,
        result=None,
        error=None,
        created_at=now - 3600,
        updated_at=now - 3600,
        started_at=now - 3600,
        lease_until=lease_until,
        attempt_token=None,
    )


async def test_garbage_at_the_head_of_recovery_does_not_hide_a_dead_workers_task(
    omniq: AsyncOmniQ, logged: list[str]
) -> None:
    queue = omniq.queue
    real = await queue.enqueue("task_functions.add", [2, 3])
    (claimed,) = await queue.dequeue_many(1, lease_timeout=0.05)  # and its worker dies
    assert claimed.id == real
    # 100 rows expired long before it: the whole first batch of expired().
    long_ago = time.time() - 3600
    garbage = [_garbage(long_ago - i) for i in range(100)]
    assert await queue.storage.add(garbage) == [record.id for record in garbage]
    await asleep(0.1)  # the real lease runs out
    assert [r.id for r in await queue.storage.expired(time.time(), 100)] == [
        record.id for record in reversed(garbage)
    ]

    assert await queue.recover_expired() == 101
    recovered = await omniq.get_task(real)
    assert recovered is not None and recovered.status == TaskStatus.PENDING
    assert recovered.error is not None and recovered.error.error_type == "worker_lost"
    for record in garbage[:3]:
        failed = await omniq.get_task(record.id)
        assert failed is not None and failed.status == TaskStatus.FAILED
        assert failed.error is not None and failed.error.error_type == "serialization"
        assert "without an attempt token" in failed.error.message
    assert sum("without an attempt token" in line for line in logged) == 100
    assert await queue.recover_expired() == 0  # nothing is left to step over
    async with omniq.worker_pool(handle_signals=False) as workers:
        await workers.process_tasks(limit=1)
    assert await omniq.get_result(real) == 5
    stats = await omniq.stats()
    assert (stats["failed"], stats["completed"], stats["running"]) == (100, 1, 0)
