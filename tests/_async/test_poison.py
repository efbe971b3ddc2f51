"""One task that cannot be settled fails alone; its batch-mates are recorded as usual."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omniq import AsyncOmniQ, Settings, TaskStatus
from omniq.records import TaskRecord, Transition
from omniq.serialization import DEFAULT_SERIALIZER
from omniq.storage.memory import AsyncMemoryStorage

POISON = "poison"


class PoisonResult:
    """A codec that breaks, in a way omniq cannot foresee, on one result."""

    def dumps(self, obj: Any) -> str:
        if obj == POISON:
            raise RuntimeError("the codec broke on this result")
        return DEFAULT_SERIALIZER.dumps(obj)

    def loads(self, text: str) -> Any:
        return DEFAULT_SERIALIZER.loads(text)


class RefusesOneOutcome(AsyncMemoryStorage):
    """A store that refuses to record one task as completed (a poison row for it)."""

    def __init__(self) -> None:
        super().__init__()
        self.poisoned: str | None = None
        self.refusals = 0

    def _check(self, items: Sequence[tuple[str, str, Transition]]) -> None:
        for task_id, _, transition in items:
            if task_id == self.poisoned and transition.status == "completed":
                self.refusals += 1
                raise RuntimeError("the store refuses this row")

    async def finish_many(self, items: Sequence[tuple[str, str, Transition]]) -> list[bool]:
        self._check(items)
        return await super().finish_many(items)

    async def finish_and_claim(
        self,
        items: Sequence[tuple[str, str, Transition]],
        now: float,
        lease_until: float,
        limit: int,
        queues: Sequence[str] | None = None,
        worker: str | None = None,
    ) -> tuple[list[bool], list[TaskRecord]]:
        self._check(items)
        return await super().finish_and_claim(items, now, lease_until, limit, queues, worker)


async def test_an_outcome_that_cannot_be_planned_fails_its_task_alone(tmp_path: Any) -> None:
    settings = Settings(backend="memory", task_modules=["task_functions"])
    omniq = AsyncOmniQ(settings, serializer=PoisonResult())
    ids = [await omniq.enqueue("task_functions.echo_value", args=[v]) for v in ("a", POISON, "b")]
    async with omniq.worker_pool(concurrency=3) as workers:
        assert await workers.process_tasks(limit=3) == 3
    assert await omniq.get_result(ids[0]) == "a"
    assert await omniq.get_result(ids[2]) == "b"
    poisoned = await omniq.get_task(ids[1])
    assert poisoned is not None and poisoned["status"] == TaskStatus.FAILED
    assert "could not record" in poisoned["error"].message
    assert "the codec broke" in poisoned["error"].message


async def test_a_row_the_store_refuses_fails_alone_and_the_pool_goes_on() -> None:
    storage = RefusesOneOutcome()
    settings = Settings(backend="memory", task_modules=["task_functions"])
    omniq = AsyncOmniQ(settings, storage=storage)
    ids = [await omniq.enqueue("task_functions.echo_value", args=[v]) for v in range(4)]
    storage.poisoned = ids[1]
    async with omniq.worker_pool(concurrency=4, poll_interval=0.05) as workers:
        done = await workers.process_tasks(limit=4)
    assert done == 4
    for position in (0, 2, 3):
        assert await omniq.get_result(ids[position]) == position
    refused = await omniq.get_task(ids[1])
    assert refused is not None and refused["status"] == TaskStatus.FAILED
    assert "the store refuses this row" in refused["error"].message
    assert storage.refusals >= 2  # refused in the batch, then alone: then failed alone
