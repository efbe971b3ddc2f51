"""A user's file: declared tasks enqueued with their own signatures (checked by mypy --strict).

The ``types`` nox session type-checks this file; ``tests/shared/test_typing_files.py``
also runs it, so it stays a working program.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Coroutine
from typing import Any

from typing_extensions import assert_type

from omniq import AsyncOmniQ, OmniQ, Settings, task
from omniq.tasks import AsyncBoundTask, BoundTask, DeclaredTask


@task(max_retries=5, timeout=30)
def send_email(to: str, subject: str, *, urgent: bool = False) -> bool:
    return bool(to and subject) or urgent


@task
async def resize(image_id: int) -> int:
    await asyncio.sleep(0)
    return image_id * 2


@task(every=dt.timedelta(minutes=10))
def cleanup() -> None:
    return None


def blocking(omniq: OmniQ) -> list[str]:
    declared: DeclaredTask[..., bool] = send_email
    bound: BoundTask[...] = send_email.using(omniq)
    assert declared.path.endswith("send_email") and bound.task is declared
    in_place: bool = send_email("a@b.c", "hi")  # runs here and now
    assert in_place
    first = send_email.using(omniq).enqueue("a@b.c", "hi")
    second = send_email.using(omniq, max_retries=2).enqueue("a@b.c", subject="hi", urgent=True)
    third = resize.using(omniq).enqueue(7)  # an async task, enqueued from blocking code
    assert_type(first, str)
    return [first, second, third]


async def asynchronous(aomniq: AsyncOmniQ) -> list[str]:
    bound: AsyncBoundTask[...] = resize.using(aomniq, eta=dt.datetime.now(dt.timezone.utc))
    pending: Coroutine[Any, Any, str] = bound.enqueue(7)
    first = await pending
    assert_type(first, str)
    second = await send_email.using(aomniq).enqueue("a@b.c", "hi")
    doubled: int = await resize(21)  # in place: the coroutine function itself
    assert doubled == 42
    return [first, second]


def main() -> None:
    with OmniQ(Settings(backend="memory")) as omniq:
        ids = blocking(omniq)
        with omniq.worker_pool() as workers:
            workers.process_tasks(limit=len(ids))
        assert [omniq.get_result(task_id) for task_id in ids] == [True, True, 14]

    async def run() -> None:
        async with AsyncOmniQ(Settings(backend="memory")) as aomniq:
            ids = await asynchronous(aomniq)
            async with aomniq.worker_pool() as workers:
                await workers.process_tasks(limit=len(ids))
            assert [await aomniq.get_result(task_id) for task_id in ids] == [14, True]

    asyncio.run(run())
    print("ok")


if __name__ == "__main__":
    main()
