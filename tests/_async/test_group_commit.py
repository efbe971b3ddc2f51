"""Group commit: concurrent enqueues share commits; each caller gets its own ids and errors."""

from __future__ import annotations

from collections.abc import Sequence

from omniq import AsyncOmniQ, Settings, StorageError
from omniq._concurrency import ajoin, aspawn
from omniq.records import TaskRecord
from omniq.storage.memory import AsyncMemoryStorage

PRODUCERS = 16
EACH = 10


class CountingStorage(AsyncMemoryStorage):
    """Counts calls of ``add`` and refuses any batch holding a poisoned record."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.largest = 0

    async def add(self, records: Sequence[TaskRecord]) -> list[str]:
        self.calls += 1
        self.largest = max(self.largest, len(records))
        if any(record.func_path == "task_functions.echo_value" for record in records):
            raise StorageError("this store refuses echo_value")
        return await super().add(records)


async def test_concurrent_producers_share_commits_and_get_their_own_ids(
    omniq: AsyncOmniQ,
) -> None:
    results: dict[int, list[str]] = {}

    async def produce(number: int) -> None:
        ids = []
        for index in range(EACH):
            ids.append(await omniq.enqueue("task_functions.add", args=[number, index]))
        results[number] = ids

    handles = [aspawn(produce, number) for number in range(PRODUCERS)]
    assert await ajoin(handles, 120) == 0
    assert len(results) == PRODUCERS
    every = [task_id for ids in results.values() for task_id in ids]
    assert len(set(every)) == PRODUCERS * EACH  # each enqueue, its own task and id
    for number, ids in results.items():
        for index, task_id in enumerate(ids):
            task = await omniq.get_task(task_id)
            assert task is not None and task["args"] == (number, index)
    assert (await omniq.stats())["pending"] == PRODUCERS * EACH


async def test_unique_keys_are_settled_in_arrival_order_across_callers(
    omniq: AsyncOmniQ,
) -> None:
    answers: list[str] = []

    async def produce() -> None:
        answers.append(await omniq.enqueue("task_functions.add", args=[1, 1], unique_key="k"))

    handles = [aspawn(produce) for _ in range(PRODUCERS)]
    assert await ajoin(handles, 120) == 0
    assert len(set(answers)) == 1
    assert (await omniq.stats())["total"] == 1


async def test_one_bad_entry_fails_only_its_own_caller() -> None:
    storage = CountingStorage()
    omniq = AsyncOmniQ(Settings(backend="memory", task_modules=["task_functions"]), storage=storage)
    outcomes: dict[int, object] = {}

    async def produce(number: int) -> None:
        func = "task_functions.echo_value" if number == 3 else "task_functions.add"
        args = [number] if number == 3 else [number, number]
        try:
            outcomes[number] = await omniq.enqueue(func, args=args)
        except StorageError as error:
            outcomes[number] = error

    handles = [aspawn(produce, number) for number in range(PRODUCERS)]
    assert await ajoin(handles, 120) == 0
    assert isinstance(outcomes[3], StorageError)
    assert all(isinstance(outcomes[n], str) for n in outcomes if n != 3)
    assert (await omniq.stats())["pending"] == PRODUCERS - 1
