"""``current_task()``: which task the running code belongs to, for the task's own code.

The executor runs each execution inside :func:`running_task`, which sets a
contextvar. Context variables follow the code: into coroutines awaited from the
task, into asyncio tasks it creates, and onto omniq's own threads (the blocking pool
and the threads plain functions run on copy the submitter's context, see
:mod:`omniq._threads`). A thread the task starts itself with ``threading.Thread`` does
not copy it (use ``contextvars.copy_context().run`` there); outside a task
``current_task()`` is ``None``.
"""

from __future__ import annotations

import contextvars
import datetime as dt
from dataclasses import dataclass
from types import TracebackType

from omniq.models import Task

DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class TaskContext:
    """The running execution of a task, as ``omniq.current_task()`` gives it.

    ``attempt`` counts executions, the first being 1; ``max_retries`` is the task's
    budget of executions (``None`` when neither the task nor the pool sets one);
    ``worker`` is the pool's name; ``eta`` when the task was due (UTC).
    """

    id: str
    func_path: str
    queue: str
    attempt: int
    max_retries: int | None
    correlation_id: str
    worker: str
    eta: dt.datetime

    @classmethod
    def from_task(
        cls, task: Task, *, worker: str, default_max_retries: int | None = None
    ) -> TaskContext:
        """The context of a claimed ``task`` run by ``worker``.

        ``default_max_retries`` is the budget of a task stored without one (the pool's).
        """
        return cls(
            id=task.id,
            func_path=task.func_path,
            # Tasks carry a queue from store schema v2 on; before, all are in "default".
            queue=getattr(task, "queue", None) or DEFAULT_QUEUE,
            attempt=task.attempts,
            max_retries=task.max_retries if task.max_retries is not None else default_max_retries,
            correlation_id=task.correlation_id or task.id,
            worker=worker,
            eta=task.eta,
        )


_CURRENT: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "omniq_current_task", default=None
)


def current_task() -> TaskContext | None:
    """The task whose execution this code runs in, or ``None`` outside a task."""
    return _CURRENT.get()


class running_task:
    """``with running_task(context):`` makes ``current_task()`` return ``context`` inside.

    Nested scopes restore the outer one on exit. A class rather than
    ``@contextmanager`` (hence the lowercase name, as ``contextlib.suppress``): it wraps
    every execution, so it stays cheap.
    """

    __slots__ = ("_context", "_token")

    def __init__(self, context: TaskContext) -> None:
        if not isinstance(context, TaskContext):
            raise TypeError(f"running_task needs a TaskContext, got {context!r}")
        self._context = context
        self._token: contextvars.Token[TaskContext | None] | None = None

    def __enter__(self) -> TaskContext:
        self._token = _CURRENT.set(self._context)
        return self._context

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None
