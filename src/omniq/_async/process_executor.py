"""``AsyncProcessExecutor``: a worker pool's tasks in reused child processes.

The pool keeps every store connection, claim, lease and heartbeat; the children
(``omniq._process.ProcessPool``) only import task functions, run them and answer. So a
task that hangs in C code is killed at its timeout (SIGTERM, then SIGKILL after
``kill_grace``) and fails as ``timeout``; a child that crashes fails only its own task,
as ``crashed``; both are retried per the task's budget, and the child is replaced. A
child is recycled after ``max_tasks_per_child`` tasks, or when a task leaves it above
``max_memory_per_child`` MiB. Arguments and results cross as the store's JSON.

The allow-list is checked here, before a job is sent (a refused path fails as
``forbidden`` and no child sees it); the child imports the function and, for a path
allowed by a pattern only, checks the function's own module too
(``omniq._process.allowed``). Children import the allow-list's task modules when they
start, so the tasks those declare register there as well.
"""

from __future__ import annotations

import sys
import time

from omniq._async.executor import TaskReleased
from omniq._concurrency import aresolve_future, arun_blocking
from omniq._process import DEFAULT_KILL_GRACE, ProcessPool, job_for_task
from omniq._process.allowed import ChildResolver, ChildSetup
from omniq._process.jobs import check_grace
from omniq.allowlist import AllowList, TaskForbidden, pattern_modules
from omniq.models import ErrorType, Task, TaskError
from omniq.records import Outcome
from omniq.serialization import DEFAULT_SERIALIZER, Serializer


class AsyncProcessExecutor:
    """Runs each claimed task in one of ``processes`` long-lived child processes.

    * ``allow``: the queue's allow-list (checked here, and under its patterns in the
      child).
    * ``default_max_retries``: the budget ``current_task()`` shows for a task stored
      without one.
    * ``max_tasks_per_child`` / ``max_memory_per_child`` (MiB): recycle a child after
      that many tasks, or when a task left it above that much resident memory.
    * ``kill_grace``: seconds from SIGTERM to SIGKILL for a task past its timeout, and
      for the tasks still running at the end of a shutdown's grace; at most half of
      ``lease_timeout``, the lease a running task is sure to have left (it is renewed
      every third of it), so no other worker can take the task over while its child
      may still run.
    * ``serializer``: the queue's codec; children decode arguments and encode results
      with it, so it must be importable by name (a module-level object).
    """

    name = "process"
    stops_tasks = True  # stopping kills the children: their runs come back RELEASED

    def __init__(
        self,
        allow: AllowList,
        default_max_retries: int | None = None,
        *,
        processes: int,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: float | None = None,
        kill_grace: float = DEFAULT_KILL_GRACE,
        lease_timeout: float = 30.0,
        serializer: Serializer | None = None,
        name: str | None = None,
    ) -> None:
        self.allow = allow
        self.default_max_retries = default_max_retries
        self.serializer = serializer or DEFAULT_SERIALIZER
        self._processes = processes
        self._max_tasks_per_child = max_tasks_per_child
        self._max_memory_per_child = max_memory_per_child
        self._kill_grace = min(check_grace("kill_grace", kill_grace), lease_timeout / 2)
        self._name = name
        self._pool = self._new_pool()  # checks every option now, at the caller's call
        self.kill_grace: float = self._pool.kill_grace

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._pool!r})"

    @property
    def processes(self) -> int:
        """How many child processes run tasks."""
        return self._pool.processes

    def child_pids(self) -> list[int]:
        """The process ids of the children alive now."""
        return self._pool.child_pids()

    def _new_pool(self) -> ProcessPool:
        patterns = self.allow.patterns
        return ProcessPool(
            self._processes,
            max_tasks_per_child=self._max_tasks_per_child,
            max_memory_per_child=self._max_memory_per_child,
            kill_grace=self._kill_grace,
            initializer=ChildSetup(pattern_modules(patterns), patterns, sys.path),
            resolve=ChildResolver(patterns),
            # The default codec is what children use anyway: nothing to send.
            serializer=None if self.serializer is DEFAULT_SERIALIZER else self.serializer,
            name=self._name,
        )

    async def start(self) -> None:
        """Start the children and wait until each is ready (again after a :meth:`stop`).

        ``omniq._process.ChildStartError`` if one cannot start (a task module that
        fails to import in it, say).
        """
        if self._pool.closing:
            self._pool = self._new_pool()
        await arun_blocking(self._pool.start)

    async def run(self, task: Task, timeout: float | None, worker: str) -> Outcome:
        """Run one claimed attempt of ``task`` in a child; its outcome.

        Raises :class:`~omniq._async.executor.TaskReleased` when the executor stopped
        before the task could finish (or start).
        """
        started_at = time.time()
        started = time.monotonic()
        rule = self.allow.rule_for(task.func_path)
        if rule is None:  # refused here: no child ever sees the path
            refusal = TaskForbidden(self.allow.check(task.func_path) or task.func_path)
            error = TaskError.from_exception(refusal, ErrorType.FORBIDDEN, is_retryable=False)
            return Outcome(task, error=error, duration=0.0, started_at=started_at)
        max_retries = task.max_retries if task.max_retries is not None else self.default_max_retries
        job = job_for_task(
            task,
            self.serializer,
            timeout=timeout,
            worker=worker,
            kill_grace=self.kill_grace,
            context={"allowed_by": rule, "max_retries": max_retries},
        )
        pool = self._pool
        try:
            future = pool.submit(job)
        except RuntimeError:
            if pool.closing:  # stopped between the claim and now
                raise TaskReleased(task.id) from None
            raise
        result = await aresolve_future(future)
        if result.released:
            raise TaskReleased(task.id)
        duration = result.duration if result.duration is not None else time.monotonic() - started
        if not result.completed:
            return Outcome(task, error=result.error, duration=duration, started_at=started_at)
        try:
            value = result.decode_result(self.serializer)
        except (TypeError, ValueError) as failure:  # a codec that cannot read its own text
            error = TaskError(
                ErrorType.SERIALIZATION,
                f"the task's result from its child process cannot be decoded: {failure}",
                is_retryable=False,
            )
            return Outcome(task, error=error, duration=duration, started_at=started_at)
        return Outcome(task, result=value, duration=duration, started_at=started_at)

    async def stop(self, grace: float) -> None:
        """Stop the children: running tasks get ``grace`` seconds, then are killed and come
        back as released. Returns once every child is gone."""
        await arun_blocking(self._pool.shutdown, grace)
