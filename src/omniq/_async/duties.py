"""A worker pool's background duties: small supervised loops beside the dispatcher.

Each duty (renewing leases, recovering tasks of dead workers, pruning finished
tasks, and more to come: schedules, the worker registry) implements
:class:`AsyncDuty`: ``start``, ``tick`` (one round of work, returning how long to
wait before the next) and ``stop``. :class:`AsyncDuties` runs each on a unit of
concurrency of its own (an asyncio task here, a thread in the blocking twin), so a
slow duty never holds up the dispatcher or the others. A tick that raises is
logged (the first error at once, then a summary now and then), retried after a
growing delay, and never ends the loop: a duty recovers by itself when its store
does. Oban's plugins (Lifeline, Pruner, Cron) are the model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from omniq import logging as omniq_logging
from omniq._async.queue import AsyncTaskQueue
from omniq._backoff import Backoff, FailureReport
from omniq._concurrency import AsyncCancelled, AsyncEvent, AsyncHandle, ajoin, aspawn
from omniq.models import Task


class AsyncDuty(ABC):
    """One background duty of a worker pool.

    ``name`` names it in logs; ``interval`` is its usual pause between ticks and the
    cap of its back-off after errors; ``tick_at_start`` makes the pool run one tick
    before it starts serving (lease recovery does, so a restarted worker takes over
    its dead predecessor's tasks at once).
    """

    name: str = "duty"
    interval: float = 60.0
    tick_at_start: bool = False

    async def start(self) -> None:  # noqa: B027  (optional hook)
        """Prepare (called once, before the first tick)."""

    @abstractmethod
    async def tick(self) -> float:
        """Do one round of work; return the seconds until the next round."""

    async def stop(self) -> None:  # noqa: B027  (optional hook)
        """Release what :meth:`start` took (called once, after the last tick)."""


class AsyncDuties:
    """Runs duties, each in a supervised loop of its own, until :meth:`stop`."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._duties: list[AsyncDuty] = []
        self._handles: list[AsyncHandle] = []
        self._stop: AsyncEvent | None = None

    async def start(self, duties: Sequence[AsyncDuty]) -> None:
        """Start each duty (running a first tick now for those that ask) and its loop."""
        self._stop = AsyncEvent()  # created here, so it belongs to the running loop
        self._duties = list(duties)
        for duty in self._duties:
            try:
                await duty.start()
            except AsyncCancelled:
                raise
            except Exception as error:  # its ticks will meet the trouble again, and retry
                omniq_logging.log_storage_error(f"{duty.name} start", error, worker=self.owner)
        for duty in self._duties:
            backoff = Backoff(first=min(0.5, duty.interval), cap=duty.interval)
            report = FailureReport(duty.name, worker=self.owner)
            first = await self._tick(duty, backoff, report) if duty.tick_at_start else 0.0
            self._handles.append(
                aspawn(
                    self._loop, duty, first, backoff, report, name=f"omniq-{self.owner}-{duty.name}"
                )
            )

    async def stop(self, timeout: float = 5.0) -> None:
        """End every loop (a tick in progress may finish), then stop each duty."""
        if self._stop is None:
            return
        self._stop.set()
        handles, self._handles = self._handles, []
        await ajoin(handles, timeout)
        for duty in self._duties:
            try:
                await duty.stop()
            except Exception as error:
                omniq_logging.log_storage_error(f"{duty.name} stop", error, worker=self.owner)
        self._duties = []

    async def _loop(
        self, duty: AsyncDuty, delay: float, backoff: Backoff, report: FailureReport
    ) -> None:
        assert self._stop is not None
        while not await self._stop.wait(delay):
            delay = await self._tick(duty, backoff, report)

    async def _tick(self, duty: AsyncDuty, backoff: Backoff, report: FailureReport) -> float:
        """One tick; after an error, the back-off delay (capped by the duty's interval)."""
        try:
            delay = await duty.tick()
        except AsyncCancelled:
            raise
        except Exception as error:
            retry_in = backoff.failed()
            report.failed(error, retry_in)
            return retry_in
        backoff.succeeded()
        report.succeeded()
        return delay


# ---------------------------------------------------------------------- the duties


class AsyncLeaseKeeper(AsyncDuty):
    """Renews the leases of the pool's claimed tasks every third of the lease.

    ``held`` gives the tasks the pool holds now; ``lost`` is told the ids whose
    lease another worker took over (the pool drops those it has not started).
    """

    name = "lease-keeper"

    def __init__(
        self,
        queue: AsyncTaskQueue,
        lease_timeout: float,
        held: Callable[[], list[Task]],
        lost: Callable[[list[str]], None],
    ) -> None:
        self.queue = queue
        self.lease_timeout = lease_timeout
        self.interval = lease_timeout / 3
        self.held = held
        self.lost = lost

    async def tick(self) -> float:
        """Renew every held lease; report the lost ones."""
        tasks = self.held()
        if tasks:
            lost = await self.queue.heartbeat(tasks, self.lease_timeout)
            if lost:
                self.lost(lost)
        return self.interval


class AsyncLeaseRecovery(AsyncDuty):
    """Makes the tasks of dead workers (lease ran out) claimable again, or fails them."""

    name = "lease-recovery"
    tick_at_start = True

    def __init__(
        self, queue: AsyncTaskQueue, interval: float, default_max_retries: int | None
    ) -> None:
        self.queue = queue
        self.interval = interval
        self.default_max_retries = default_max_retries

    async def tick(self) -> float:
        """Recover what has expired (in batches) and wait one interval."""
        await self.queue.recover_expired(self.default_max_retries)
        return self.interval


class AsyncPruner(AsyncDuty):
    """Deletes finished tasks older than the retention, once at start and every minute.

    In bounded batches (see :meth:`AsyncTaskQueue.prune`), so the store's write lock
    is never held for long, whatever the backlog of history.
    """

    name = "pruner"
    interval = 60.0

    def __init__(self, queue: AsyncTaskQueue, retention: float, owner: str) -> None:
        self.queue = queue
        self.retention = retention
        self.owner = owner

    async def tick(self) -> float:
        """Delete one round of expired history; log how much went."""
        deleted = await self.queue.prune(self.retention)
        if deleted:
            omniq_logging.log_tasks_pruned(deleted, self.retention, worker=self.owner)
        return self.interval
