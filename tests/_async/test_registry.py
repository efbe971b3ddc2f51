"""The worker registry: pools record themselves, heartbeat, leave, and lost ones go.

Written once for both twins and run on every backend (``OMNIQ_TEST_BACKEND``).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omniq import AsyncOmniQ
from omniq._concurrency import asleep
from omniq.monitoring import WORKER_KIND, WorkerInfo, worker_data

WAIT = 30.0  # generous: a busy 2-core machine


async def wait_for_workers(
    omniq: AsyncOmniQ, condition: Callable[[list[WorkerInfo]], bool]
) -> list[WorkerInfo]:
    """Poll ``omniq.workers()`` until ``condition`` holds (fails after WAIT seconds)."""
    deadline = time.monotonic() + WAIT
    while True:
        workers = await omniq.workers()
        if condition(workers):
            return workers
        assert time.monotonic() < deadline, f"condition never held; last: {workers}"
        await asleep(0.02)


def stale_record(name: str, heartbeat_age: float, lease: float = 1.0) -> str:
    now = time.time()
    return worker_data(
        name=name,
        host="elsewhere",
        pid=4242,
        queues=["emails"],
        concurrency=2,
        executor="WorkerPool/InlineExecutor",
        started_at=now - heartbeat_age - 60,
        heartbeat_at=now - heartbeat_age,
        processed=7,
        failed=1,
        lease_timeout=lease,
    )


async def test_a_started_pool_is_registered_and_a_stopped_one_leaves(omniq: AsyncOmniQ) -> None:
    assert await omniq.workers() == []
    async with omniq.worker_pool(
        name="reporter", queues=["reports", "default"], concurrency=3
    ) as pool:
        (entry,) = await omniq.workers()
        assert entry.name == "reporter" and entry["name"] == "reporter"
        assert entry.host == socket.gethostname() and entry.pid == os.getpid()
        assert entry.queues == ("reports", "default")
        assert entry.concurrency == 3
        assert entry.lease_timeout == pool.lease_timeout
        assert entry.executor.startswith(type(pool).__name__ + "/")
        assert entry.alive and not entry.lost
        assert entry.started_at <= entry.heartbeat_at
        assert (entry.processed, entry.failed) == (0, 0)
        assert entry.to_dict()["queues"] == ["reports", "default"]
    assert await omniq.workers() == []


async def test_a_pool_serving_every_queue_has_no_queue_list(omniq: AsyncOmniQ) -> None:
    async with omniq.worker_pool():
        (entry,) = await omniq.workers()
        assert entry.queues is None


async def test_heartbeats_carry_the_executions_and_failures(omniq: AsyncOmniQ, out: str) -> None:
    for value in range(3):
        await omniq.enqueue("task_functions.add", args=[value, 1])
    await omniq.enqueue("task_functions.fail_always", args=[out], max_retries=1)
    async with omniq.worker_pool(lease_timeout=0.6) as pool:
        assert await pool.process_tasks(limit=4) == 4
        assert (pool.processed, pool.failed) == (4, 1)
        (entry,) = await wait_for_workers(omniq, lambda found: bool(found) and found[0].processed)
        assert (entry.processed, entry.failed) == (4, 1)


async def test_two_pools_of_one_name_are_two_entries(omniq: AsyncOmniQ) -> None:
    async with omniq.worker_pool(name="same"), omniq.worker_pool(name="same"):
        found = await omniq.workers()
        assert [entry.name for entry in found] == ["same", "same"]
        assert len({entry.key for entry in found}) == 2
    assert await omniq.workers() == []


async def test_a_silent_pool_is_lost_after_its_lease_and_pruned_after_ten(
    omniq: AsyncOmniQ,
) -> None:
    storage = omniq.queue.storage
    now = time.time()
    await storage.put_state(WORKER_KIND, "recent@elsewhere:1", stale_record("recent", 0.0), now)
    await storage.put_state(WORKER_KIND, "silent@elsewhere:2", stale_record("silent", 3.0), now)
    await storage.put_state(WORKER_KIND, "gone@elsewhere:3", stale_record("gone", 11.0), now)
    found = {entry.name: entry for entry in await omniq.workers()}
    assert found["recent"].alive
    assert found["silent"].lost and found["gone"].lost
    assert (found["silent"].processed, found["silent"].failed) == (7, 1)
    assert [entry.name for entry in await omniq.workers()] == ["recent", "gone", "silent"]
    # A running pool prunes the long-lost one (10 leases), and keeps the others.
    async with omniq.worker_pool(name="pruner"):
        names = {entry.name for entry in await omniq.workers()}
    assert names == {"recent", "silent", "pruner"}
    assert {entry.name for entry in await omniq.workers()} == {"recent", "silent"}


async def test_damaged_records_are_left_out(omniq: AsyncOmniQ) -> None:
    storage = omniq.queue.storage
    await storage.put_state(WORKER_KIND, "junk", "not json", time.time())
    await storage.put_state(WORKER_KIND, "half", json.dumps({"name": "half"}), time.time())
    assert await omniq.workers() == []


async def test_the_health_file_is_touched_on_every_heartbeat(
    omniq: AsyncOmniQ, tmp_path: Path
) -> None:
    health = tmp_path / "alive"
    async with omniq.worker_pool(lease_timeout=0.6, health_file=health) as pool:
        assert pool.health_file == health
        assert health.exists()  # the first heartbeat is written before the pool serves
        os.utime(health, (0, 0))  # so a later touch shows, whatever the clock's grain
        deadline = time.monotonic() + WAIT
        while health.stat().st_mtime == 0:
            assert time.monotonic() < deadline, "the health file was not touched again"
            await asleep(0.02)
    assert health.stat().st_mtime > time.time() - WAIT


async def test_the_entry_is_a_read_only_mapping(omniq: AsyncOmniQ) -> None:
    async with omniq.worker_pool(name="mapping"):
        (entry,) = await omniq.workers()
    data: dict[str, Any] = dict(entry)
    assert data["name"] == "mapping" and data["alive"] is True
    assert set(entry.to_dict()) == set(data)
