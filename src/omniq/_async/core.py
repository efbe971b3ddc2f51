"""``AsyncOmniQ``: the facade most applications use.

It builds the storage and queue that ``Settings`` describe and hands out worker
pools configured from the same settings. One instance may be shared by every
coroutine of an application (and, in the blocking twin, by every thread).

With ``Settings(eager=True)`` (for tests) the store is a fresh in-memory one and
``enqueue`` runs each task inline before returning (see ``omniq._async.executor``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from omniq._async.eager import run_inline, run_many_inline
from omniq._async.monitor import collect_metrics
from omniq._async.queue import AsyncTaskQueue
from omniq._async.registry import read_workers
from omniq._async.scheduler import KIND as SCHEDULE_KIND
from omniq._async.scheduler import StoredSchedule, load_schedules, store_schedule
from omniq._async.storage.base import AsyncBaseStorage
from omniq._async.storage.factory import storage_from_settings
from omniq._async.storage.memory import AsyncMemoryStorage
from omniq._async.worker import AsyncWorkerPool
from omniq._concurrency import AsyncEvent
from omniq._validation import non_negative_number, normalize_executor, normalize_interval
from omniq.allowlist import AllowList
from omniq.blocking_storage import BlockingStorage
from omniq.config import Settings
from omniq.exceptions import StorageError, TaskCancelled, TaskFailed, TaskNotFound
from omniq.hooks import F, Hooks
from omniq.models import Task, TaskStatus
from omniq.monitoring import Metrics, WorkerInfo
from omniq.schedules import Schedule, check_schedule_name
from omniq.serialization import Serializer
from omniq.tasks import func_path_of

_RESULT_POLL_START = 0.01
_RESULT_POLL_MAX = 0.5
# With wake-ups from the store, a waiting get_result still looks this often: the
# safety net for a wake-up lost (a full socket queue, a listener reconnecting).
RESULT_SAFETY_POLL = 2.0


class AsyncOmniQ:
    """Enqueue tasks, inspect them and start workers, all configured by ``Settings``."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        storage: AsyncBaseStorage | BlockingStorage | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        if self.settings.eager:
            # Eager tasks live in this instance's memory, so no worker elsewhere can take one.
            if storage is not None:
                raise ValueError("eager mode keeps tasks in memory: do not pass a storage")
            storage = AsyncMemoryStorage()
        self.queue = AsyncTaskQueue(
            storage if storage is not None else storage_from_settings(self.settings),
            serializer,
            max_retries=self.settings.max_retries,
            lease_timeout=self.settings.lease_timeout,
            max_payload_bytes=self.settings.max_payload_bytes,
            allow=AllowList.from_settings(self.settings),
        )
        self.hooks = Hooks()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.queue.storage!r})"

    async def open(self) -> None:
        """Open the store now (it is also opened on first use)."""
        await self.queue.open()

    async def close(self) -> None:
        """Close the store."""
        await self.queue.close()

    async def __aenter__(self) -> AsyncOmniQ:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def enqueue(
        self,
        func_path: Callable[..., Any] | str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        eta: dt.datetime | None = None,
        interval: dt.timedelta | float | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
    ) -> str:
        """Store a task for ``func_path`` and return its id.

        ``func_path`` is a task declared with ``@task`` (its declared options are the
        defaults), any importable function, or its ``"module.function"`` path.

        See :meth:`AsyncTaskQueue.enqueue` for the options: ``queue`` routes it,
        a higher ``priority`` runs it earlier, and while a task with the same
        ``unique_key`` is pending or running that task's id is returned instead.
        ``max_retries`` defaults to ``Settings.max_retries`` (the total number of
        executions). In eager mode the task has run (retries included) when this
        returns.
        """
        if self.settings.eager:
            return await run_inline(
                self.queue,
                func_path,
                args,
                kwargs,
                eta,
                interval,
                max_retries,
                timeout,
                default_timeout=self.settings.task_timeout,
                queue=queue,
                priority=priority,
                unique_key=unique_key,
            )
        return await self.queue.enqueue(
            func_path,
            args,
            kwargs,
            eta,
            interval,
            max_retries,
            timeout,
            queue=queue,
            priority=priority,
            unique_key=unique_key,
        )

    async def enqueue_many(self, items: Iterable[Mapping[str, Any]]) -> list[str]:
        """Store many tasks in one transaction; each item holds :meth:`enqueue`'s arguments.

        Every item is validated first, so one bad item stores none. Returns the ids
        in order. ``max_retries`` defaults to ``Settings.max_retries``. In eager
        mode the tasks run one after the other, in order, before this returns.
        """
        if self.settings.eager:
            return await run_many_inline(
                self.queue, items, default_timeout=self.settings.task_timeout
            )
        return await self.queue.enqueue_many(items)

    async def get_task(self, task_id: str) -> Task | None:
        """The task (a mapping: ``task["status"]``, ``task.get("error")``) or ``None``."""
        return await self.queue.get_task(task_id)

    async def get_result(
        self, task_id: str, *, wait: bool = False, timeout: float | None = None
    ) -> Any:
        """The task's result once it has completed.

        Without ``wait`` an unfinished task gives ``None``. With ``wait=True`` the
        call waits for the task to finish, at most ``timeout`` seconds (then
        ``TimeoutError``); the store wakes it when the task finishes in any process
        where it can (SQLite, files, PostgreSQL), else it polls. A failed task
        raises :class:`~omniq.exceptions.TaskFailed`, a cancelled one
        :class:`~omniq.exceptions.TaskCancelled`, an unknown id
        :class:`~omniq.exceptions.TaskNotFound`, a completed task whose stored result
        cannot be decoded :class:`~omniq.exceptions.StorageError`.
        """
        timeout = None if timeout is None else non_negative_number("timeout", timeout)
        if not wait:
            return _result_of(task_id, await self.queue.get_task(task_id))[1]
        deadline = None if timeout is None else time.monotonic() + timeout
        finished = AsyncEvent()

        def on_finished(task_ids: Collection[str] | None) -> None:
            if task_ids is None or task_id in task_ids:
                finished.set()

        # Subscribed before the first look, so a finish in between still wakes us.
        pushed = self.queue.storage.subscribe_finished(on_finished)
        pause = RESULT_SAFETY_POLL if pushed else _RESULT_POLL_START
        try:
            while True:
                finished.clear()
                done, result = _result_of(task_id, await self.queue.get_task(task_id))
                if done:
                    return result
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"task {task_id} did not finish within {timeout}s")
                step = pause
                if deadline is not None:
                    step = min(step, max(deadline - time.monotonic(), 0))
                await finished.wait(step)
                if not pushed:
                    pause = min(pause * 2, _RESULT_POLL_MAX)
        finally:
            self.queue.storage.unsubscribe_finished(on_finished)

    async def cancel(self, task_id: str) -> bool:
        """Cancel a pending task; False if it already runs, has finished or is unknown."""
        return await self.queue.cancel(task_id)

    async def list_tasks(
        self,
        status: TaskStatus | str | None = None,
        limit: int = 100,
        offset: int = 0,
        queue: str | None = None,
        *,
        function: str | None = None,
        id_contains: str | None = None,
        parent_id: str | None = None,
    ) -> list[Task]:
        """Tasks, most recently changed first, optionally only those of ``status``/``queue``.

        ``function``/``id_contains``: only tasks whose function path/id contains that
        text; ``parent_id``: the next runs of that interval task.
        """
        return await self.queue.list_tasks(
            status,
            limit,
            offset,
            queue,
            function=function,
            id_contains=id_contains,
            parent_id=parent_id,
        )

    async def retry(self, task_id: str) -> bool:
        """Run a FAILED or CANCELLED task again with a fresh budget; False otherwise."""
        return await self.queue.retry(task_id)

    async def retry_failed(self, queue: str | None = None) -> int:
        """Run every FAILED task (of ``queue``, or of every queue) again; return how many."""
        return await self.queue.retry_failed(queue)

    async def purge(
        self,
        older_than: dt.timedelta | float,
        statuses: Sequence[TaskStatus | str] = (
            TaskStatus.COMPLETED,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
        ),
    ) -> int:
        """Delete finished tasks older than ``older_than``; return how many."""
        return await self.queue.purge(older_than, statuses)

    async def stats(self) -> dict[str, Any]:
        """Counts per status, ``total``, ``next_eta``, and per queue its counts (``queues``)."""
        return await self.queue.stats()

    async def workers(self) -> list[WorkerInfo]:
        """The worker pools registered in the store (any process, any machine).

        Alive ones first (``alive``: a heartbeat within their lease), then lost ones,
        whose records are deleted after ten leases without a heartbeat.
        """
        return await read_workers(self.queue.storage)

    async def metrics(self) -> Metrics:
        """A snapshot for monitoring: counts per queue and status, tasks finished per
        minute over the last hour, the wait of each queue's oldest due task, the
        registered workers and the stored schedules (see :class:`omniq.monitoring.Metrics`)."""
        return await collect_metrics(self.queue)

    # ------------------------------------------------------------------ schedules

    async def schedule(
        self,
        name: str,
        func_path: Callable[..., Any] | str,
        *,
        cron: str | None = None,
        every: dt.timedelta | float | None = None,
        tz: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        catch_up: bool = False,
    ) -> Schedule:
        """Store the schedule ``name`` (or update it: declaring a name again never adds a
        second series). Worker pools fire it; each fire time is enqueued once.

        Exactly one of ``cron`` (five fields, or six with seconds; in ``tz``) and
        ``every`` (a ``timedelta`` or seconds, at least one second). Bad values raise
        ``ValueError``/``TypeError`` here.
        """
        declared = Schedule(
            name=name,
            func_path=func_path_of(func_path),
            cron=cron,
            every=normalize_interval(every, "every"),
            tz=tz,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            queue=queue,
            priority=priority,
            max_retries=max_retries,
            timeout=timeout,
            catch_up=catch_up,
        )
        await store_schedule(self.queue, declared)
        return declared

    async def unschedule(self, name: str) -> bool:
        """Remove the schedule ``name``; False if there is none. Its queued fires stay."""
        return await self.queue.storage.delete_state(SCHEDULE_KIND, check_schedule_name(name))

    async def list_schedules(self) -> list[StoredSchedule]:
        """Every stored schedule with its last fire and (``next_fire()``) its next one."""
        return await load_schedules(self.queue)

    # ------------------------------------------------------------------ hooks

    def on_worker_start(self, fn: F) -> F:
        """Run ``fn()`` once in every pool of this facade as it starts (e.g. ``django.setup``)."""
        return self.hooks.on_worker_start(fn)

    def on_worker_stop(self, fn: F) -> F:
        """Run ``fn()`` once in every pool of this facade as it stops."""
        return self.hooks.on_worker_stop(fn)

    def before_task(self, fn: F) -> F:
        """Run ``fn(task)`` before every execution; if it raises, that task fails."""
        return self.hooks.before_task(fn)

    def after_task(self, fn: F) -> F:
        """Run ``fn(task, outcome)`` after every execution; what it raises is logged."""
        return self.hooks.after_task(fn)

    def worker_pool(self, **overrides: Any) -> AsyncWorkerPool:
        """A worker pool on this queue; keyword arguments override the settings.

        Accepted: ``concurrency``, ``poll_interval``, ``max_retries``,
        ``default_timeout``, ``lease_timeout``, ``shutdown_timeout``, ``prefetch``,
        ``handle_signals``, ``name``, ``queues`` (the queues served; default every
        queue), ``retention`` (default ``Settings.retention``), ``schedules`` (whether it
        fires schedules; default True), ``health_file``, and ``executor`` (``"inline"`` or
        ``"process"``, default ``Settings.executor``) with, for the process executor,
        ``processes``, ``max_tasks_per_child``, ``max_memory_per_child`` and
        ``kill_grace`` (defaults from the settings). With the process executor,
        ``concurrency`` defaults to ``processes``. The pool runs this facade's hooks.
        """
        settings = self.settings
        options: dict[str, Any] = {
            "concurrency": settings.concurrency,
            "poll_interval": settings.poll_interval,
            "max_retries": settings.max_retries,
            "default_timeout": settings.task_timeout,
            "retention": settings.retention,
            "hooks": self.hooks,
            "executor": settings.executor,
        }
        if normalize_executor(overrides.get("executor", settings.executor)) == "process":
            processes = overrides.get("processes", settings.processes)
            options.update(
                processes=processes,
                max_tasks_per_child=settings.max_tasks_per_child,
                max_memory_per_child=settings.max_memory_per_child,
                kill_grace=settings.kill_grace,
            )
            if processes is not None:  # tasks in flight = children, unless told otherwise
                options["concurrency"] = processes
        options.update(overrides)
        return AsyncWorkerPool(queue=self.queue, **options)


def _result_of(task_id: str, task: Task | None) -> tuple[bool, Any]:
    """``(True, result)`` for a completed task, ``(False, None)`` for an unfinished one.

    A failed task raises ``TaskFailed``, a cancelled one ``TaskCancelled``, an
    unknown id ``TaskNotFound``, a completed one whose result cannot be decoded
    ``StorageError``.
    """
    if task is None:
        raise TaskNotFound(task_id)
    if task.status == TaskStatus.COMPLETED:
        if task.error is not None:  # only set when the stored result is unreadable
            raise StorageError(f"task {task_id} completed, but {task.error.message}")
        return True, task.result
    if task.status == TaskStatus.FAILED:
        raise TaskFailed(task_id, task.error)
    if task.status == TaskStatus.CANCELLED:
        raise TaskCancelled(task_id)
    return False, None
