"""How a worker pool batches its store writes: how far it claims ahead, when it writes.

A pool records the outcomes of finished tasks together with its next claim, in one
transaction: one disk sync for the whole batch. For short tasks the sync, not the
task, is the cost, so bigger batches are the gain. Two rules make them:

* **Adaptive prefetch.** With the default ``prefetch`` (``None``) the pool keeps
  about :data:`QUEUED_WORK` seconds of work per slot claimed ahead, judged by a
  moving average of task durations: ``concurrency`` tasks for slow tasks, up to
  :data:`MAX_FACTOR` times ``concurrency`` for tasks of a millisecond or less. A
  number given by the user is kept as it is (``0`` for long tasks that other workers
  should rather take).
* **Settle when the batch fills or the pool would otherwise wait.** While claimed
  tasks are queued for a slot (no slot idles), short tasks' outcomes wait until
  there are as many as the pool would claim, for :data:`MAX_DELAY` seconds at most.

Neither weakens a guarantee: a written outcome is as durable as before, and a crash
before the write runs the finished tasks again after their lease (at-least-once).
"""

from __future__ import annotations

QUEUED_WORK = 0.005  # seconds of work per slot that adaptive prefetch keeps claimed ahead
MAX_FACTOR = 8  # adaptive prefetch: at most this many times concurrency
MAX_DELAY = 0.01  # seconds the oldest unwritten outcome may wait for its batch to fill
_ALPHA = 0.1  # weight of the newest duration in the moving average


class Batching:
    """A pool's batching state; call it under the pool's lock."""

    def __init__(self, concurrency: int, prefetch: int | None) -> None:
        self.concurrency = concurrency
        self.fixed = prefetch  # None: adapt to task durations
        self.mean_duration: float | None = None
        self._oldest: float | None = None  # when the oldest unwritten outcome arrived

    def prefetch(self) -> int:
        """Claimed tasks to keep ready beyond those running."""
        if self.fixed is not None:
            return self.fixed
        mean = self.mean_duration
        if mean is None:
            return self.concurrency
        ahead = int(self.concurrency * QUEUED_WORK / max(mean, 1e-6))
        return max(self.concurrency, min(ahead, MAX_FACTOR * self.concurrency))

    def finished(self, duration: float | None, now: float) -> None:
        """A task finished after ``duration`` seconds (None: unknown); its outcome waits."""
        mean = self.mean_duration
        if duration is not None:
            self.mean_duration = duration if mean is None else mean + _ALPHA * (duration - mean)
        if self._oldest is None:
            self._oldest = now

    def written(self) -> None:
        """The unwritten outcomes were taken for a write."""
        self._oldest = None

    def delay(self, unwritten: int, ready: int, now: float) -> float | None:
        """How long the pool may wait before writing ``unwritten`` outcomes; None: now.

        Only while ``ready`` claimed tasks wait for a slot (so no slot idles), only
        for short tasks, and only until as many outcomes as a batch holds are in.
        """
        mean, oldest = self.mean_duration, self._oldest
        if unwritten == 0 or ready == 0 or oldest is None or mean is None or mean > MAX_DELAY:
            return None
        if unwritten >= self.concurrency + self.prefetch():
            return None
        left = oldest + MAX_DELAY - now
        return left if left > 0 else None
