"""Tasks declared with ``@task`` for the declared-task, hook and schedule tests."""

from __future__ import annotations

import asyncio
from typing import Any

from task_functions import _append

from omniq import current_task, task


@task(queue="emails", priority=5, max_retries=5, timeout=30)
def send_email(to: str, subject: str = "hello") -> str:
    return f"sent {subject!r} to {to}"


@task
async def resize(image_id: int) -> int:
    await asyncio.sleep(0)
    return image_id * 2


@task
def whoami() -> dict[str, Any]:
    """What ``current_task()`` says inside a plain task."""
    context = current_task()
    assert context is not None
    return {
        "id": context.id,
        "func_path": context.func_path,
        "queue": context.queue,
        "attempt": context.attempt,
        "max_retries": context.max_retries,
        "correlation_id": context.correlation_id,
        "worker": context.worker,
        "eta": context.eta.isoformat(),
    }


@task
async def async_whoami() -> dict[str, Any]:
    """What ``current_task()`` says inside a coroutine task."""
    await asyncio.sleep(0)
    context = current_task()
    assert context is not None
    return {"id": context.id, "attempt": context.attempt, "worker": context.worker}


@task
def note(path: str, value: str) -> str:
    _append(path, value)
    return value
