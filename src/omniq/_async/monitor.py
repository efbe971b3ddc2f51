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
from omniq._async.scheduler import KIND as SCHEDULE_KIND
from omniq._async.scheduler import decode
from omniq.monitoring import (
    WORKER_KIND,
    Metrics,
    ScheduleInfo,
    build_metrics,
    throughput_since,
)
from omniq.records import StateRecord


async def collect_metrics(queue: AsyncTaskQueue) -> Metrics:
    """A snapshot of ``queue``'s store (see :class:`~omniq.monitoring.Metrics`)."""
    storage = queue.storage
    now = time.time()
    per_queue = await storage.count_by_queue()
    finished = await storage.count_finished(throughput_since(now), 60.0)
    waiting = [name for name, counts in per_queue.items() if counts.get("pending")]
    earliest = await storage.earliest_pending(sorted(waiting))
    workers = await storage.list_state(WORKER_KIND)
    schedules = [
        _schedule_info(queue, record) for record in await storage.list_state(SCHEDULE_KIND)
    ]
    return build_metrics(now, per_queue, finished, earliest, workers, schedules)


def _schedule_info(queue: AsyncTaskQueue, record: StateRecord) -> ScheduleInfo:
    """What a schedule record says; an unreadable one is kept, with its ``problem``."""
    try:
        stored = decode(queue, record)
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        return ScheduleInfo(record.name, None, None, None, None, None, f"unreadable: {error}")
    schedule = stored.schedule
    return ScheduleInfo(
        name=schedule.name,
        func_path=schedule.func_path,
        spec=schedule.spec,
        queue=schedule.queue,
        last_fire=stored.last_fire,
        next_fire=stored.next_fire(),
    )
