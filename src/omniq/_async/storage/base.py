"""The storage contract every backend implements, in both twins.

A storage keeps :class:`~omniq.records.TaskRecord` rows and offers a handful of
atomic operations. It holds no queue logic: the retry budget, backoff, interval
rescheduling and serialization belong to the queue. Every method that changes a
RUNNING task is conditional on the attempt token issued by :meth:`claim`, so a
worker whose lease was taken over can never overwrite the newer attempt.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType

from omniq.records import TaskRecord, Transition


class AsyncBaseStorage(ABC):
    """Abstract storage: persistence for tasks, with an atomic claim."""

    async def open(self) -> None:  # noqa: B027  (optional hook: not every store needs it)
        """Create what the store needs (schema, directories). Idempotent."""

    async def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections and handles. Idempotent."""

    async def __aenter__(self) -> AsyncBaseStorage:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abstractmethod
    async def add(self, records: Sequence[TaskRecord]) -> None:
        """Store new PENDING tasks, all or none, durably before returning."""

    @abstractmethod
    async def claim(self, now: float, lease_until: float, limit: int) -> list[TaskRecord]:
        """Atomically take up to ``limit`` due PENDING tasks, oldest first.

        Due means ``eta <= now``; oldest means by eta, then enqueue order. Each
        claimed task becomes RUNNING with ``attempts`` one higher, a fresh
        ``attempt_token`` and ``lease_until`` set. No two claims, from any thread
        or process, ever return the same attempt.
        """

    @abstractmethod
    async def finish(self, task_id: str, token: str, transition: Transition) -> bool:
        """Apply ``transition`` to a RUNNING task if ``token`` is still its attempt token.

        Returns False (and changes nothing) when the task is no longer held by
        that attempt. The successor, if any, is inserted in the same transaction.
        """

    @abstractmethod
    async def release(self, task_id: str, token: str, now: float) -> bool:
        """Put a RUNNING task back to PENDING, due now, without spending an attempt.

        Used at shutdown for tasks that did not finish. Conditional on ``token``.
        """

    @abstractmethod
    async def heartbeat(self, leases: Sequence[tuple[str, str]], lease_until: float) -> list[str]:
        """Extend the leases of ``(task_id, token)`` pairs; return the ids no longer held."""

    @abstractmethod
    async def expired(self, now: float, limit: int) -> list[TaskRecord]:
        """RUNNING tasks whose lease ended before ``now`` (their worker is presumed dead)."""

    @abstractmethod
    async def get(self, task_id: str) -> TaskRecord | None:
        """The task with this id, in any state, or ``None``."""

    async def next_eta(self) -> float | None:
        """The earliest eta of a PENDING task, or ``None`` (none, or not known).

        Lets an idle worker sleep exactly until the next task is due. A store that
        cannot answer cheaply keeps this default, and workers fall back to polling.
        """
        return None

    @abstractmethod
    async def cancel(self, task_id: str, now: float) -> bool:
        """Mark a PENDING task CANCELLED; False if it is not pending (or unknown)."""
