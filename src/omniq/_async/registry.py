"""The worker registry: each pool keeps a state record of itself in the store.

:class:`AsyncWorkerRegistry` is one of a pool's duties. It writes the pool's record
(name, host, pid, queues, concurrency, executor, start time, heartbeat, executions)
when the pool starts and every third of its lease, deletes it when the pool stops,
and deletes the records of pools that have been lost for
:data:`~omniq.monitoring.PRUNE_AFTER_LEASES` leases (any pool may: there is no
leader). After each heartbeat written it touches the pool's health file, if it
has one, so a container's liveness probe can watch the file's age.
:func:`read_workers` lists the records as :class:`~omniq.monitoring.WorkerInfo`.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from omniq import logging as omniq_logging
from omniq._async.duties import AsyncDuty
from omniq._async.storage.base import AsyncBaseStorage
from omniq._concurrency import arun_blocking
from omniq.monitoring import (
    PRUNE_AFTER_LEASES,
    WORKER_KIND,
    WorkerInfo,
    is_prunable,
    worker_data,
    worker_key,
    workers_from_states,
)


class PoolFacts(Protocol):
    """What the registry reads from its pool (a worker pool has all of it)."""

    name: str
    concurrency: int
    lease_timeout: float
    health_file: Path | None

    @property
    def queues(self) -> Sequence[str] | None: ...

    @property
    def processed(self) -> int: ...

    @property
    def failed(self) -> int: ...

    @property
    def executor(self) -> object: ...


def executor_kind(executor: object) -> str:
    """A short name of a pool's executor: its ``kind``, else its class name."""
    kind = getattr(executor, "kind", None)
    return kind if isinstance(kind, str) and kind else type(executor).__name__


def touch(path: Path) -> None:
    """Create ``path`` or set its modification time to now."""
    path.touch()  # an existing file gets the current time


class AsyncWorkerRegistry(AsyncDuty):
    """Keeps the pool's record in the store's worker registry (see the module docstring)."""

    name = "worker-registry"
    tick_at_start = True  # registered before it serves

    def __init__(self, storage: AsyncBaseStorage, pool: PoolFacts, kind: str) -> None:
        self.storage = storage
        self.pool = pool
        self.kind = kind  # the pool's twin, e.g. its class name
        self.interval = pool.lease_timeout / 3
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.instance = uuid.uuid4().hex[:8]
        self.key = worker_key(pool.name, self.host, self.pid, self.instance)
        self.started_at = time.time()

    @classmethod
    def for_pool(cls, storage: AsyncBaseStorage, pool: PoolFacts) -> AsyncWorkerRegistry:
        """The registry duty of ``pool``, on ``storage``."""
        return cls(storage, pool, type(pool).__name__)

    async def start(self) -> None:
        """Note the start time (the record is written by the first tick)."""
        self.started_at = time.time()
        self.pid = os.getpid()  # a pool started in a forked child is that child
        self.key = worker_key(self.pool.name, self.host, self.pid, self.instance)

    async def tick(self) -> float:
        """Write the heartbeat, touch the health file, prune long-lost pools."""
        now = time.time()
        pool = self.pool
        data = worker_data(
            name=pool.name,
            host=self.host,
            pid=self.pid,
            queues=pool.queues,
            concurrency=pool.concurrency,
            executor=f"{self.kind}/{executor_kind(pool.executor)}",
            started_at=self.started_at,
            heartbeat_at=now,
            processed=pool.processed,
            failed=pool.failed,
            lease_timeout=pool.lease_timeout,
        )
        await self.storage.put_state(WORKER_KIND, self.key, data, now)
        if pool.health_file is not None:
            await arun_blocking(touch, pool.health_file)
        await self._prune(now)
        return self.interval

    async def _prune(self, now: float) -> None:
        for record in await self.storage.list_state(WORKER_KIND):
            if (
                record.name != self.key
                and is_prunable(record, now, self.pool.lease_timeout)
                and await self.storage.delete_state(WORKER_KIND, record.name)
            ):
                omniq_logging.get_logger().info(
                    f"{self.pool.name} removed the lost worker {record.name} from the "
                    f"registry (no heartbeat for {PRUNE_AFTER_LEASES} leases)"
                )

    async def stop(self) -> None:
        """Leave the registry: the pool stopped."""
        await self.storage.delete_state(WORKER_KIND, self.key)


async def read_workers(storage: AsyncBaseStorage) -> list[WorkerInfo]:
    """Every registered pool, alive ones first, then by name (damaged records left out)."""
    return workers_from_states(await storage.list_state(WORKER_KIND), time.time())
