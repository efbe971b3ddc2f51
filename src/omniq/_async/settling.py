"""``AsyncSettler``: write a pool's outcomes (with its next claim) to a store that may fail.

A worker pool's dispatcher hands over the outcomes gathered since its last write
and the number of tasks it wants; the settler makes the one storage call that
records the first and claims the second. When the store fails it backs off (a
growing, jittered delay, see :mod:`omniq._backoff`), reports the failure without
flooding the log, and gives the outcomes back to be written on the next try. One
outcome the store refuses must not hold back the others forever: after a refused
batch the outcomes are recorded one by one, and one refused twice on its own, while
others went through, is failed alone (:func:`omniq.outcomes.unrecordable`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from omniq._async.queue import AsyncTaskQueue
from omniq._backoff import Backoff, FailureReport
from omniq._concurrency import AsyncCancelled
from omniq.models import Task
from omniq.records import Outcome

STORE_BACKOFF_CAP = 5.0  # longest wait between two tries of a failing store
_REFUSALS_BEFORE_FAILING = 2  # an outcome refused this often on its own is poison


@dataclass
class Settled:
    """What one :meth:`AsyncSettler.settle` came to.

    ``claimed``: the tasks claimed; ``unrecorded``: the outcomes to write again on the
    next call (in order); ``retry_in``: when the store failed, seconds to back off.
    """

    claimed: list[Task] = field(default_factory=list)
    unrecorded: list[Outcome] = field(default_factory=list)
    retry_in: float | None = None


class AsyncSettler:
    """Records a pool's outcomes and claims its next tasks, backing off while the store fails.

    ``recorded(outcomes, held)`` is called for every outcome the store took, right
    after its write, with whether each attempt still held its task. The other
    arguments are the pool's: its queue, name (the worker in the attempt history),
    lease, execution budget and the queues it serves.
    """

    def __init__(
        self,
        queue: AsyncTaskQueue,
        worker: str,
        lease_timeout: float,
        max_retries: int | None,
        queues: Sequence[str] | None,
        recorded: Callable[[Sequence[Outcome], Sequence[bool]], None],
    ) -> None:
        self.queue = queue
        self.worker = worker
        self.lease_timeout = lease_timeout
        self.max_retries = max_retries
        self.queues = queues
        self._recorded = recorded
        self._backoff = Backoff(first=0.05, cap=STORE_BACKOFF_CAP)
        self._report = FailureReport("finish_and_claim", worker=worker)
        self._alone = False  # after a refused batch: record outcomes one by one
        self._refused: dict[str, int] = {}  # task id -> times its outcome alone was refused

    def failed(self, error: Exception) -> float:
        """Report a failure of the store outside :meth:`settle`; return the back-off delay."""
        retry_in = self._backoff.failed()
        self._report.failed(error, retry_in)
        return retry_in

    def _succeeded(self) -> None:
        self._backoff.succeeded()
        self._report.succeeded()

    async def settle(self, outcomes: list[Outcome], wanted: int) -> Settled:
        """Record ``outcomes`` and claim up to ``wanted`` tasks, in one storage call.

        If the write fails the outcomes come back as ``unrecorded``; the tasks stay in
        flight (leases renewed) meanwhile, so nothing is lost; a crash before the write
        leaves them RUNNING until their lease ends, then they run again.
        """
        if self._alone and outcomes:
            return await self._settle_one_by_one(outcomes)
        try:
            held, tasks = await self.queue.settle_and_claim(
                outcomes, wanted, self.lease_timeout, self.max_retries, self.worker, self.queues
            )
        except AsyncCancelled:
            raise
        except Exception as error:  # a busy or broken store: log, back off, try again
            # One outcome the store refuses must not hold back the others forever:
            # the next try records them one by one, and fails a refused one alone.
            self._alone = bool(outcomes)
            return Settled(unrecorded=outcomes, retry_in=self.failed(error))
        self._succeeded()
        self._took(outcomes, held)
        return Settled(claimed=tasks)

    def _took(self, outcomes: Sequence[Outcome], held: Sequence[bool]) -> None:
        self._recorded(outcomes, held)
        for outcome in outcomes:
            self._refused.pop(outcome.task.id, None)

    async def _settle_one_by_one(self, outcomes: list[Outcome]) -> Settled:
        """Record each outcome in a call of its own, after a batch the store refused.

        An outcome refused twice on its own, while others went through, is poison:
        its task fails alone with the reason. The result has a back-off delay if the
        store still refuses everything.
        """
        kept: list[Outcome] = []
        error: Exception | None = None
        for outcome in outcomes:
            try:
                held = await self.queue.record_outcomes([outcome], self.max_retries, self.worker)
            except AsyncCancelled:
                raise
            except Exception as failure:
                error = failure
                refusals = self._refused.get(outcome.task.id, 0) + 1
                self._refused[outcome.task.id] = refusals
                if refusals < _REFUSALS_BEFORE_FAILING or not await self._fail_alone(
                    outcome, failure
                ):
                    kept.append(outcome)
                continue
            self._took([outcome], held)
        if not kept:
            self._alone = False
        if error is None or len(kept) < len(outcomes):
            self._succeeded()
            return Settled(unrecorded=kept)
        return Settled(unrecorded=kept, retry_in=self.failed(error))

    async def _fail_alone(self, outcome: Outcome, failure: Exception) -> bool:
        """Fail one task whose outcome the store refuses; False if that fails too."""
        try:
            held = await self.queue.fail_unrecordable(outcome, failure, self.worker)
        except AsyncCancelled:
            raise
        except Exception:
            return False
        self._took([outcome], [held])
        return True
