"""Eager mode (``Settings(eager=True)``, for tests): ``enqueue`` runs the task inline.

The task is validated as the queue's ``enqueue`` validates it, then claimed and run
on a scratch store of its own (so concurrent eager runs never take each other's
tasks) until it completes or its budget is spent; retries do not wait for their
backoff. The finished task is then stored where ``get_task``/``get_result`` find it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from omniq._async.executor import execute
from omniq._async.queue import AsyncTaskQueue
from omniq._async.storage.memory import AsyncMemoryStorage
from omniq._validation import normalize_eta
from omniq.records import Transition, to_epoch

EAGER_WORKER = "eager"


class _InlineStorage(AsyncMemoryStorage):
    """The scratch store of one eager run: a retry is due at once, with no backoff."""

    async def finish(self, task_id: str, token: str, transition: Transition) -> bool:
        if transition.eta is not None:
            transition = dataclasses.replace(transition, eta=transition.now)
        return await super().finish(task_id, token, transition)


def _scratch_queue(queue: AsyncTaskQueue) -> AsyncTaskQueue:
    # The allow-list is the real queue's: a path enqueued eagerly was enqueued by it.
    return AsyncTaskQueue(
        _InlineStorage(),
        queue.serializer,
        max_retries=queue.max_retries,
        lease_timeout=queue.lease_timeout,
        max_payload_bytes=queue.max_payload_bytes,
        allow=queue.allow,
    )


async def run_inline(
    task_queue: AsyncTaskQueue,
    func_path: Callable[..., Any] | str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    eta: dt.datetime | None = None,
    interval: dt.timedelta | float | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    *,
    default_timeout: float | None = None,
    queue: str | None = None,
    priority: int | None = None,
    unique_key: str | None = None,
) -> str:
    """Enqueue a task and run it now, retries included; store the outcome on ``task_queue``.

    The task is validated as the queue's ``enqueue`` validates it, then
    claimed and executed on a scratch store of its own (so concurrent eager runs
    never take each other's tasks) until it completes or its budget is spent;
    retries do not wait for their backoff. ``eta`` and ``interval`` are kept on
    the stored task but otherwise ignored: it runs once, at once, and no next run
    is scheduled. The finished task is then added to ``task_queue``'s storage, where
    ``get_task``/``get_result`` find it. Returns the task's id.
    """
    requested_eta = normalize_eta(eta)  # validated here: the run itself ignores it
    scratch = _scratch_queue(task_queue)
    task_id = await scratch.enqueue(
        func_path,
        args,
        kwargs,
        None,
        interval,
        max_retries,
        timeout,
        queue=queue,
        priority=priority,
        unique_key=unique_key,
    )
    while True:
        claimed = await scratch.dequeue()
        if claimed is None or claimed.id != task_id:  # finished (an interval's next run)
            break
        run_timeout = claimed.timeout if claimed.timeout is not None else default_timeout
        await execute(
            scratch,
            claimed,
            timeout=run_timeout,
            default_max_retries=task_queue.max_retries,
            worker=EAGER_WORKER,
        )
    record = await scratch.storage.get(task_id)
    assert record is not None  # a scratch store loses nothing
    if requested_eta is not None:
        record = dataclasses.replace(record, eta=to_epoch(requested_eta))
    await task_queue.storage.add([record])  # the interval's next run stays behind, unrun
    return task_id


async def run_many_inline(
    queue: AsyncTaskQueue,
    items: Iterable[Mapping[str, Any]],
    *,
    default_timeout: float | None = None,
) -> list[str]:
    """:func:`run_inline` for each item, in order, after validating every item first."""
    chosen = list(items)
    await _scratch_queue(queue).enqueue_many(chosen)  # one bad item: nothing runs
    ids: list[str] = []
    for item in chosen:
        ids.append(
            await run_inline(
                queue,
                item["func_path"],
                item.get("args"),
                item.get("kwargs"),
                item.get("eta"),
                item.get("interval"),
                item.get("max_retries"),
                item.get("timeout"),
                default_timeout=default_timeout,
                queue=item.get("queue"),
                priority=item.get("priority"),
                unique_key=item.get("unique_key"),
            )
        )
    return ids
