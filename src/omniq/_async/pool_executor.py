"""The executor a worker pool's ``executor=`` names, built from the pool's options.

Nothing here awaits; it lives in the async core because it builds the twin's own
executors (``inline``: :class:`AsyncInlineExecutor`; ``process``:
:class:`AsyncProcessExecutor`). The options that only the process executor takes are
checked here, so a pool refuses a bad combination when it is made (``ValueError``
naming the option), not when it first runs a task.
"""

from __future__ import annotations

from omniq._async.executor import AsyncExecutor, AsyncInlineExecutor
from omniq._async.process_executor import AsyncProcessExecutor
from omniq._validation import non_negative_number, positive_int, positive_mib
from omniq.allowlist import AllowList
from omniq.config import DEFAULT_KILL_GRACE
from omniq.serialization import Serializer


def make_executor(
    kind: str,
    allow: AllowList,
    max_retries: int | None,
    concurrency: int,
    *,
    processes: int | None,
    max_tasks_per_child: int | None,
    max_memory_per_child: float | None,
    kill_grace: float | None,
    lease_timeout: float,
    serializer: Serializer,
    name: str,
) -> AsyncExecutor:
    """The executor ``kind`` (normalized) names, its options checked (``ValueError`` naming one).

    ``allow``, ``max_retries``, ``concurrency``, ``lease_timeout``, ``serializer`` and
    ``name`` are the pool's; ``processes`` defaults to ``concurrency``.
    """
    given = {
        "processes": processes,
        "max_tasks_per_child": max_tasks_per_child,
        "max_memory_per_child": max_memory_per_child,
        "kill_grace": kill_grace,
    }
    if kind == "inline":
        stray = [option for option, value in given.items() if value is not None]
        if stray:
            raise ValueError(
                f"{', '.join(stray)} apply to executor='process' only; this pool's "
                "executor is 'inline'"
            )
        return AsyncInlineExecutor(allow, max_retries)
    processes = concurrency if processes is None else processes
    if concurrency > processes:
        raise ValueError(
            f"concurrency ({concurrency}) may not exceed processes ({processes}) "
            "with executor='process': each running task has a child process of its own"
        )
    return AsyncProcessExecutor(
        allow,
        max_retries,
        processes=processes,
        max_tasks_per_child=(
            None
            if max_tasks_per_child is None
            else positive_int("max_tasks_per_child", max_tasks_per_child)
        ),
        max_memory_per_child=(
            None
            if max_memory_per_child is None
            else positive_mib("max_memory_per_child", max_memory_per_child)
        ),
        kill_grace=(
            DEFAULT_KILL_GRACE
            if kill_grace is None
            else non_negative_number("kill_grace", kill_grace)
        ),
        lease_timeout=lease_timeout,
        serializer=serializer,
        name=name,
    )
