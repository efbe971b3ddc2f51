"""The book of a worker pool's claimed tasks, from the claim to the recorded outcome.

A claimed task is *ready* (waiting for a slot), *running* (on a slot) or *finished*
(its outcome waits for the next write); it stays *held* (its lease renewed) until
that write. :class:`AsyncClaimedTasks` keeps those sets and the count of running
tasks consistent under one guard, and decides which ready task a free slot takes:
the pool's dispatcher, its slots and its lease keeper only ask it. In the async twin
every caller runs on the event loop (the guard is a no-op); in the blocking twin the
slots are threads and the guard a lock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from omniq._concurrency import AsyncHandle, AsyncThreadGuard
from omniq.batching import Batching
from omniq.models import Task
from omniq.records import Outcome


@dataclass
class Claimed:
    """A task the pool holds: ready to start, running (``handle``), or finished."""

    task: Task
    handle: AsyncHandle | None = None
    started_at: float | None = None  # epoch seconds, for the attempt history


class AsyncClaimedTasks:
    """What a pool holds, and how many of its ``concurrency`` slots run (see the module).

    ``batching`` is told when tasks finish and when their outcomes are taken for a
    write, and says how many tasks to claim ahead.
    """

    def __init__(self, concurrency: int, batching: Batching) -> None:
        self.concurrency = concurrency
        self.batching = batching
        self.guard = AsyncThreadGuard()
        self.running = 0
        self._held: dict[str, Claimed] = {}  # claimed, outcome not yet recorded
        self._ready: deque[Task] = deque()  # claimed, waiting for a free slot
        self._finished: list[Outcome] = []  # run, outcome not yet recorded

    def __bool__(self) -> bool:
        """Whether the pool holds any task (ready, running or with an unwritten outcome)."""
        return bool(self._held)

    def wanted(self) -> int:
        """How many more tasks to claim: free slots plus the prefetch, less those held."""
        with self.guard:  # finished tasks leave in the same write as the claim
            held = len(self._held) - len(self._finished)
            return self.concurrency + self.batching.prefetch() - held

    def take_outcomes(self) -> list[Outcome]:
        """The outcomes waiting for a write, taken for one."""
        with self.guard:
            outcomes, self._finished = self._finished, []
            self.batching.written()
        return outcomes

    def settled(self, unrecorded: Sequence[Outcome], claimed: Sequence[Task]) -> None:
        """After a write: outcomes it could not record wait again; newly claimed tasks queue."""
        with self.guard:
            self._finished[:0] = unrecorded
            for task in claimed:
                self._held[task.id] = Claimed(task)
                self._ready.append(task)

    def write_delay(self) -> float | None:
        """How long the unwritten outcomes may wait for more (see ``omniq.batching``)."""
        with self.guard:
            return self.batching.delay(len(self._finished), len(self._ready), time.monotonic())

    def recorded(self, outcomes: Sequence[Outcome]) -> None:
        """Forget the tasks whose outcomes were written."""
        with self.guard:
            for outcome in outcomes:
                self._held.pop(outcome.task.id, None)

    def stale_ready(self, horizon: float) -> list[Task]:
        """Ready tasks whose lease ends before ``horizon`` (epoch seconds), if a slot is free."""
        with self.guard:
            if not self._ready or self.running >= self.concurrency:
                return []
            return [
                task
                for task in self._ready
                if task.lease_until is None or task.lease_until.timestamp() < horizon
            ]

    def renewed(self, task_ids: set[str], lease_until: dt.datetime) -> None:
        """The leases of these ready tasks now last until ``lease_until``."""
        with self.guard:
            self._ready = deque(
                dataclasses.replace(task, lease_until=lease_until) if task.id in task_ids else task
                for task in self._ready
            )

    def start_ready(self, spawn: Callable[[Task], AsyncHandle]) -> None:
        """Start ready tasks on ``spawn`` while fewer than ``concurrency`` run."""
        with self.guard:
            while (taken := self._take_ready()) is not None:
                task, claimed = taken
                claimed.handle = spawn(task)

    def _take_ready(self, fresh_after: float | None = None) -> tuple[Task, Claimed] | None:
        """The next ready task, counted as running, if a slot is free (under the guard).

        With ``fresh_after`` (epoch seconds), only a task whose lease lasts beyond it:
        a slot that goes on by itself must leave stale leases to the pool's renewal.
        """
        while self._ready and self.running < self.concurrency:
            task = self._ready[0]
            if fresh_after is not None and (
                task.lease_until is None or task.lease_until.timestamp() < fresh_after
            ):
                return None
            self._ready.popleft()
            claimed = self._held.get(task.id)
            if claimed is None:  # dropped: its lease was lost before it started
                continue
            self.running += 1
            claimed.task = task
            claimed.started_at = time.time()
            return task, claimed
        return None

    def finished(self, outcome: Outcome, go_on_after: float | None) -> Task | None:
        """A running task finished: its outcome waits for the write, its slot is free.

        With ``go_on_after`` (epoch seconds) the slot goes on by itself: the next ready
        task whose lease lasts beyond it is returned, counted as running on the same
        handle (stopping it stops both).
        """
        with self.guard:
            self.running -= 1
            self._finished.append(outcome)
            self.batching.finished(outcome.duration, time.monotonic())
            this = self._held.get(outcome.task.id)
            if go_on_after is None or this is None:
                return None
            taken = self._take_ready(fresh_after=go_on_after)
            if taken is None:
                return None
            taken[1].handle = this.handle
            return taken[0]

    def stopped(self) -> None:
        """A running task was cancelled: its slot is free."""
        with self.guard:
            self.running -= 1

    def released(self, task_id: str) -> Claimed | None:
        """A running task was given up unfinished: its slot is free; what to put back."""
        with self.guard:
            self.running -= 1
            return self._held.pop(task_id, None)

    def held_tasks(self) -> list[Task]:
        """Every task the pool holds a lease on (for the lease keeper)."""
        with self.guard:
            return [claimed.task for claimed in self._held.values()]

    def drop_lost(self, task_ids: Sequence[str]) -> None:
        """Forget tasks whose lease another worker took over, unless they run."""
        with self.guard:
            for task_id in task_ids:
                claimed = self._held.get(task_id)
                if claimed is not None and claimed.handle is None:
                    del self._held[task_id]
                    self._ready = deque(task for task in self._ready if task.id != task_id)

    def stop_starting(self) -> list[AsyncHandle]:
        """Start no ready task any more; the handles of the running ones."""
        with self.guard:
            self._ready.clear()
            return [c.handle for c in self._held.values() if c.handle is not None]

    def unfinished(self) -> list[Claimed]:
        """What the pool still holds (each to be put back)."""
        with self.guard:
            return list(self._held.values())

    def forget(self, unfinished: Sequence[Claimed]) -> None:
        """Let go of tasks put back, and of outcomes that can no longer be written."""
        with self.guard:
            for claimed in unfinished:
                self._held.pop(claimed.task.id, None)
            self._finished.clear()
