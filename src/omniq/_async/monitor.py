"""Read a store's numbers for monitoring: :func:`collect_metrics` takes one snapshot.

Each number comes from a bounded question to the store, never from loading every
task: counts per queue and status, the tasks finished in the last hour counted per
minute (a range of the finished-time index where the store has one), the earliest
pending eta per queue (one index seek per queue and priority on SQLite), and the
worker and schedule records. :func:`omniq.monitoring.build_metrics` puts them
together.
"""

from __future__ import annotations

import time

from omniq._async.queue import AsyncTaskQueue
from omniq.monitoring import (
    SCHEDULE_KIND,
    WORKER_KIND,
    Metrics,
    build_metrics,
    throughput_since,
)


async def collect_metrics(queue: AsyncTaskQueue) -> Metrics:
    """A snapshot of ``queue``'s store (see :class:`~omniq.monitoring.Metrics`)."""
    storage = queue.storage
    now = time.time()
    per_queue = await storage.count_by_queue()
    finished = await storage.count_finished(throughput_since(now), 60.0)
    waiting = [name for name, counts in per_queue.items() if counts.get("pending")]
    earliest = await storage.earliest_pending(sorted(waiting))
    workers = await storage.list_state(WORKER_KIND)
    schedules = await storage.list_state(SCHEDULE_KIND)
    return build_metrics(now, per_queue, finished, earliest, workers, schedules)
