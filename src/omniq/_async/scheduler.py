"""Schedules: stored by name in the store, fired by every worker pool, each fire once.

A schedule (``omniq.schedules.Schedule``: cron or every, a task and its arguments) is
a state record of kind ``"schedule"`` named after it, whose data is the schedule and
whose *mark* is the time of its last fire. Declaring a name again (every start-up of
every process) replaces the data and keeps the mark, so a series is never doubled.

Every pool runs :class:`AsyncScheduler` as one of its duties; there is no leader. To
fire a due time, a pool asks the store to advance the schedule's mark to that time
*and* store the task, atomically (``advance_state``): of any number of pools on any
machines, exactly one succeeds for each time. When no worker ran for a while, a
schedule fires once for the latest missed time, or with ``catch_up`` once per missed
time up to its bound (``omniq.schedules.due_fires``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from omniq import logging as omniq_logging
from omniq._async.duties import AsyncDuty
from omniq._async.queue import AsyncTaskQueue
from omniq.records import StateRecord
from omniq.schedules import Schedule, declared_schedules, due_fires, next_fire

KIND = "schedule"
LONGEST_SLEEP = 30.0  # schedules added by other processes are seen within this
SHORTEST_SLEEP = 0.01


def utcnow() -> dt.datetime:
    """The current time as an aware UTC datetime."""
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class StoredSchedule:
    """A schedule as the store keeps it: the definition, and its last fire (if any)."""

    schedule: Schedule
    last_fire: dt.datetime | None
    updated_at: dt.datetime

    def next_fire(self) -> dt.datetime | None:
        """When it fires next: the first fire time after its last fire (or its creation).

        A time already past means the fire is overdue: no worker has run since.
        """
        return next_fire(self.schedule, self.last_fire or self.updated_at)


async def store_schedule(queue: AsyncTaskQueue, schedule: Schedule) -> None:
    """Create or update ``schedule`` by name; a new one starts counting from now."""
    now = time.time()
    data = queue.serializer.dumps(schedule.to_dict())
    await queue.storage.put_state(KIND, schedule.name, data, now)
    # A new schedule gets a first mark (now), so the fires it owes start after its
    # creation. advance_state moves only an unset or older mark: re-declaring keeps it.
    record = await queue.storage.get_state(KIND, schedule.name)
    if record is not None and record.mark is None:
        await queue.storage.advance_state(KIND, schedule.name, now, [])


def decode(queue: AsyncTaskQueue, record: StateRecord) -> StoredSchedule:
    """A stored schedule; ``ValueError``/``TypeError`` if its record cannot be read."""
    schedule = Schedule.from_dict(queue.serializer.loads(record.data))
    last = None if record.mark is None else dt.datetime.fromtimestamp(record.mark, dt.timezone.utc)
    updated = dt.datetime.fromtimestamp(record.updated_at, dt.timezone.utc)
    return StoredSchedule(schedule, last, updated)


async def load_schedules(queue: AsyncTaskQueue) -> list[StoredSchedule]:
    """Every stored schedule that can be read, by name (the others are logged)."""
    found: list[StoredSchedule] = []
    for record in await queue.storage.list_state(KIND):
        try:
            found.append(decode(queue, record))
        except (TypeError, ValueError, KeyError) as error:
            omniq_logging.log_serialization_error("schedule", str(error), schedule=record.name)
    return found


class AsyncScheduler(AsyncDuty):
    """The duty that fires due schedules; it sleeps until the next fire (30 s at most)."""

    name = "scheduler"
    interval = LONGEST_SLEEP
    tick_at_start = True  # declared schedules are in the store once the pool has started

    def __init__(
        self, queue: AsyncTaskQueue, owner: str, clock: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self.queue = queue
        self.owner = owner
        self.clock = clock
        self._published = False

    async def tick(self) -> float:
        """Fire what is due; return the seconds until the next fire.

        The first tick also stores the schedules declared in this process
        (``@task(cron=...)``), by name; a tick that fails (the store is busy) is tried
        again by the duty's supervisor, declarations included.
        """
        if not self._published:
            for schedule in declared_schedules():
                await store_schedule(self.queue, schedule)
            self._published = True
        now = self.clock()
        soonest = LONGEST_SLEEP
        for stored in await load_schedules(self.queue):
            try:
                await self._fire_due(stored, now)
            except (TypeError, ValueError) as error:  # this schedule's fires cannot be built
                omniq_logging.log_serialization_error(
                    "schedule", str(error), schedule=stored.schedule.name, worker=self.owner
                )
            upcoming = next_fire(stored.schedule, now)
            if upcoming is not None:
                soonest = min(soonest, (upcoming - now).total_seconds())
        return max(soonest, SHORTEST_SLEEP)

    async def _fire_due(self, stored: StoredSchedule, now: dt.datetime) -> None:
        schedule = stored.schedule
        since = stored.last_fire or stored.updated_at
        for fire_time in due_fires(schedule, since, now):
            records = self.queue.records_for([schedule.enqueue_item(fire_time)], check_paths=False)
            fired = await self.queue.storage.advance_state(
                KIND, schedule.name, fire_time.timestamp(), records
            )
            if fired:
                self.queue.notify()
                omniq_logging.log_schedule_fired(
                    schedule.name, fire_time.isoformat(), records[0].id, worker=self.owner
                )
