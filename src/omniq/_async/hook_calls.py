"""Calling a worker pool's lifecycle hooks, each stage with its own rule for failures.

The hooks themselves are registered on :class:`omniq.hooks.Hooks` (shared by both
twins); this module runs them: ``worker_start`` hooks let a failure stop the pool,
``worker_stop`` and ``after_task`` hooks have theirs logged, and a failing
``before_task`` hook fails the task it was called for, which then does not run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from omniq import logging as omniq_logging
from omniq._concurrency import AsyncCancelled, acall_hook
from omniq.models import ErrorType, Task, TaskError
from omniq.records import Outcome

Hook = Callable[..., Any]


async def run_start_hooks(hooks: Sequence[Hook]) -> None:
    """Run the ``worker_start`` hooks in order; what one raises propagates."""
    for hook in hooks:
        await acall_hook(hook)


async def run_stop_hooks(hooks: Sequence[Hook], worker: str) -> None:
    """Run every ``worker_stop`` hook; what one raises is logged, the next still runs."""
    for hook in hooks:
        try:
            await acall_hook(hook)
        except Exception as error:
            omniq_logging.log_hook_error("on_worker_stop", error, worker=worker)


async def run_before_task_hooks(hooks: Sequence[Hook], task: Task) -> Outcome | None:
    """Run the ``before_task`` hooks; the outcome of a failed one (the task does not run)."""
    for hook in hooks:
        try:
            await acall_hook(hook, task)
        except AsyncCancelled:
            raise
        except Exception as error:
            omniq_logging.log_hook_error(
                "before_task", error, task_id=task.id, correlation_id=task.correlation_id
            )
            failure = TaskError.from_exception(error, ErrorType.HOOK)
            return Outcome(task, error=failure, started_at=time.time(), duration=0.0)
    return None


async def run_after_task_hooks(hooks: Sequence[Hook], task: Task, outcome: Outcome) -> None:
    """Run the ``after_task`` hooks; what they raise is logged, the outcome stands."""
    for hook in hooks:
        try:
            await acall_hook(hook, task, outcome)
        except AsyncCancelled:
            raise
        except Exception as error:
            omniq_logging.log_hook_error(
                "after_task", error, task_id=task.id, correlation_id=task.correlation_id
            )
