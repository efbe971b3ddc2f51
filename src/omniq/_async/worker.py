"""``AsyncWorkerPool``: claim due tasks and run them, ``concurrency`` at a time.

One dispatcher loop claims tasks in batches (up to the free slots), hands each to
the pool's executor on its own unit of concurrency (an asyncio task here, a thread
in the blocking twin), records outcomes together with the next claim (backing off
while the store fails, see ``omniq._async.settling``), and sleeps on an event that a
finishing task, a same-process enqueue or ``stop()`` sets. Which claimed tasks are
ready, running or finished is kept by ``omniq._async.claimed``.
Background duties (lease renewal, recovery of dead workers' tasks, pruning of old
history) run beside it as supervised loops of their own (``omniq._async.duties``).
Both twins run coroutine functions and plain functions (see ``omniq._concurrency``).
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from omniq import logging as omniq_logging
from omniq._async.claimed import AsyncClaimedTasks, Claimed
from omniq._async.duties import (
    AsyncDuties,
    AsyncDuty,
    AsyncLeaseKeeper,
    AsyncLeaseRecovery,
    AsyncPruner,
)
from omniq._async.executor import AsyncExecutor, TaskReleased, log_lost
from omniq._async.hook_calls import (
    run_after_task_hooks,
    run_before_task_hooks,
    run_start_hooks,
    run_stop_hooks,
)
from omniq._async.pool_executor import make_executor
from omniq._async.queue import AsyncTaskQueue
from omniq._async.registry import AsyncWorkerRegistry
from omniq._async.scheduler import AsyncScheduler
from omniq._async.settling import AsyncSettler
from omniq._async.storage.base import AsyncBaseStorage
from omniq._concurrency import (
    ASYNC_SLOTS_GO_ON,
    AsyncCancelled,
    AsyncEvent,
    AsyncHandle,
    acancel,
    ainstall_signal_handlers,
    ajoin,
    arun_isolated,
    aspawn,
)
from omniq._validation import (
    non_negative_int,
    non_negative_number,
    normalize_executor,
    normalize_max_retries,
    normalize_queues,
    normalize_retention,
    normalize_timeout,
    positive_int,
    positive_number,
)
from omniq.batching import Batching
from omniq.blocking_storage import BlockingStorage
from omniq.config import DEFAULT_RETENTION
from omniq.exceptions import StorageError
from omniq.hooks import F, Hooks
from omniq.models import Task, TaskError
from omniq.records import Outcome
from omniq.serialization import Serializer

DEFAULT_SHUTDOWN_TIMEOUT = 30.0
DEFAULT_CONCURRENCY = 4
# After a stopped executor: how long its runs get to come back (they do at once;
# generous for a busy machine).
_STOPPED_RUNS_WAIT = 30.0


class AsyncWorkerPool:
    """Runs due tasks from a queue, ``concurrency`` at a time.

    * ``storage``/``serializer`` or ``queue``: where the tasks come from.
    * ``concurrency``: how many tasks run at once (default 4; with the process
      executor, ``processes``).
    * ``poll_interval``: how often an idle pool looks for tasks from other processes.
    * ``max_retries``: the execution budget for tasks enqueued without one.
    * ``default_timeout``: seconds a task may run when it has no timeout of its own.
    * ``lease_timeout``: how long a claim holds a task without a heartbeat.
    * ``shutdown_timeout``: grace period for running tasks when the pool stops.
    * ``prefetch``: claimed tasks kept ready beyond those running, so fast tasks are
      claimed and recorded in batches (default: adaptive, from ``concurrency`` for
      slow tasks up to 8 times that for tasks of a millisecond; see
      ``omniq.batching``); ``0`` for long tasks that other workers should rather take.
    * ``handle_signals``: stop gracefully on SIGINT/SIGTERM (a second signal stops
      at once) while ``process_tasks`` runs in the main thread.
    * ``name``: the pool's name in logs and in the attempt history.
    * ``queues``: the queues served (``None``, the default: every queue, so no task
      is stranded by a forgotten name). A pool never claims a task of another queue.
    * ``retention``: finished tasks older than this (a ``timedelta`` or seconds;
      default 7 days) are deleted by the pool, at start and every minute; ``None``
      keeps them all.
    * ``hooks``: lifecycle hooks (``omniq.hooks.Hooks``; a facade passes its own, and
      the pool's :meth:`on_worker_start`, :meth:`before_task`... add more).
    * ``schedules``: fire the store's due schedules (default True; see
      ``omniq._async.scheduler``).
    * ``health_file``: a file the pool touches on every registry heartbeat (every
      third of the lease), for a container's liveness probe.
    * ``executor``: ``"inline"`` (default: coroutine functions on the event loop, plain
      ones on threads) or ``"process"``: every task in one of ``processes`` reused
      child processes, killed at its timeout (SIGTERM, then SIGKILL after
      ``kill_grace`` seconds, default 5), a crash failing only its own task (as
      ``crashed``), and recycled after ``max_tasks_per_child`` tasks or above
      ``max_memory_per_child`` MiB (see ``omniq._async.process_executor``).
      ``processes`` defaults to ``concurrency``, and ``concurrency`` (at most
      ``processes``) to ``processes``.
    """

    def __init__(
        self,
        storage: AsyncBaseStorage | BlockingStorage | None = None,
        serializer: Serializer | None = None,
        concurrency: int | None = None,
        poll_interval: float = 1.0,
        max_retries: int | None = None,
        default_timeout: float | None = None,
        *,
        queue: AsyncTaskQueue | None = None,
        lease_timeout: float | None = None,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        prefetch: int | None = None,
        handle_signals: bool = True,
        name: str | None = None,
        queues: Sequence[str] | None = None,
        retention: dt.timedelta | float | None = DEFAULT_RETENTION,
        hooks: Hooks | None = None,
        schedules: bool = True,
        health_file: str | os.PathLike[str] | None = None,
        executor: str = "inline",
        processes: int | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: float | None = None,
        kill_grace: float | None = None,
    ) -> None:
        self._owns_queue = queue is None
        if queue is None:
            if storage is None:
                raise TypeError(f"{type(self).__name__} needs a storage or a queue")
            queue = AsyncTaskQueue(storage, serializer)
        self.queue = queue
        self.lease_timeout = positive_number(
            "lease_timeout", queue.lease_timeout if lease_timeout is None else lease_timeout
        )
        self.executor_kind = normalize_executor(executor)
        processes = None if processes is None else positive_int("processes", processes)
        if concurrency is None:
            concurrency = DEFAULT_CONCURRENCY if processes is None else processes
        self.concurrency = positive_int("concurrency", concurrency)
        fixed_prefetch = None if prefetch is None else non_negative_int("prefetch", prefetch)
        self._claims = AsyncClaimedTasks(
            self.concurrency, Batching(self.concurrency, fixed_prefetch)
        )
        self.poll_interval = positive_number("poll_interval", poll_interval)
        self.max_retries = normalize_max_retries(max_retries)
        self.default_timeout = normalize_timeout(default_timeout, "default_timeout")
        self.shutdown_timeout = non_negative_number("shutdown_timeout", shutdown_timeout)
        self.handle_signals = handle_signals
        self.name = name or f"{type(self).__name__}-{uuid.uuid4().hex[:8]}"
        self.queues = normalize_queues(queues)
        self.retention = normalize_retention(retention)
        self.hooks = Hooks(parent=hooks)
        self._hooks = self.hooks.snapshot()
        if not isinstance(schedules, bool):
            raise TypeError(f"schedules must be True or False, got {schedules!r}")
        self.schedules = schedules
        self.health_file = None if health_file is None else Path(health_file)
        self.executor: AsyncExecutor = make_executor(
            self.executor_kind,
            queue.allow,
            self.max_retries,
            self.concurrency,
            processes=processes,
            max_tasks_per_child=max_tasks_per_child,
            max_memory_per_child=max_memory_per_child,
            kill_grace=kill_grace,
            lease_timeout=self.lease_timeout,
            serializer=queue.serializer,
            name=self.name,
        )
        self._wake: AsyncEvent | None = None
        self._duties = AsyncDuties(self.name)
        self._settler = AsyncSettler(
            queue, self.name, self.lease_timeout, self.max_retries, self.queues, self._recorded
        )
        self._started = False
        self._stopping = False
        self._aborting = False
        self._serving = False
        self._processed = 0
        self._failed = 0

    @property
    def prefetch(self) -> int:
        """Claimed tasks kept ready beyond those running, now (adaptive unless given)."""
        return self._claims.batching.prefetch()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, concurrency={self.concurrency}, "
            f"executor={self.executor_kind!r})"
        )

    @property
    def processed(self) -> int:
        """How many task executions this pool has finished (succeeded or failed)."""
        return self._processed

    @property
    def failed(self) -> int:
        """How many of those executions failed (raised, timed out; retried or not)."""
        return self._failed

    # ------------------------------------------------------------------ lifecycle

    def duties(self) -> list[AsyncDuty]:
        """The background duties this pool runs beside its dispatcher."""
        chosen: list[AsyncDuty] = [
            AsyncLeaseKeeper(
                self.queue, self.lease_timeout, self._claims.held_tasks, self._drop_lost
            ),
            AsyncLeaseRecovery(self.queue, self.lease_timeout / 3, self.max_retries),
        ]
        if self.retention is not None:
            chosen.append(AsyncPruner(self.queue, self.retention, self.name))
        if self.schedules:
            chosen.append(AsyncScheduler(self.queue, self.name))
        chosen.append(AsyncWorkerRegistry.for_pool(self.queue.storage, self))
        return chosen

    def on_worker_start(self, fn: F) -> F:
        """Run ``fn()`` when this pool starts (after its facade's hooks); see ``omniq.hooks``."""
        return self.hooks.on_worker_start(fn)

    def on_worker_stop(self, fn: F) -> F:
        """Run ``fn()`` when this pool stops."""
        return self.hooks.on_worker_stop(fn)

    def before_task(self, fn: F) -> F:
        """Run ``fn(task)`` before each execution; if it raises, the task fails (``hook``)."""
        return self.hooks.before_task(fn)

    def after_task(self, fn: F) -> F:
        """Run ``fn(task, outcome)`` after each execution; what it raises is logged."""
        return self.hooks.after_task(fn)

    async def start(self) -> None:
        """Open the queue, start the duties (recovering dead workers' tasks first). Idempotent."""
        if self._started:
            return
        # Created here rather than in __init__, so it belongs to the running loop.
        self._wake = AsyncEvent()
        try:
            await self.queue.open()
        except StorageError as error:
            # Not fatal: a store that cannot be opened now (a read-only or full disk, a
            # server down) is opened by the next call; the pool retries with back-off
            # and serves as soon as it is back.
            self._settler.failed(error)
        self.queue.add_listener(self._wake.set)
        self.queue.storage.subscribe(self._wake.set)
        self._hooks = self.hooks.snapshot()  # hooks registered before the pool starts
        await run_start_hooks(self._hooks["worker_start"])  # one fails: the pool does not start
        await self.executor.start()
        self._started = True
        omniq_logging.log_worker_started(
            self.name,
            concurrency=self.concurrency,
            queues=list(self.queues or ["*"]),
            executor=self.executor_kind,
        )
        await self._duties.start(self.duties())

    async def __aenter__(self) -> AsyncWorkerPool:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    def stop(self) -> None:
        """Stop claiming; running tasks get ``shutdown_timeout`` seconds, then are put back.

        Safe to call from any thread and from a signal handler.
        """
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    async def shutdown(self) -> None:
        """Stop serving, wait for a running ``process_tasks`` to wind down, release the queue."""
        if not self._started:
            return
        self.stop()
        while self._serving:  # another task or thread is in process_tasks: let it drain
            assert self._wake is not None
            await self._wake.wait(0.05)
        await self._release_unfinished()
        await self._duties.stop()
        await self.executor.stop(0.0)
        await run_stop_hooks(self._hooks["worker_stop"], self.name)
        self._started = False
        if self._wake is not None:
            self.queue.remove_listener(self._wake.set)
            self.queue.storage.unsubscribe(self._wake.set)
        omniq_logging.log_worker_stopped(self.name, processed=self._processed)
        if self._owns_queue:
            await self.queue.close()

    def _on_signal(self, signum: int) -> None:
        if self._stopping:
            self._aborting = True  # second signal: do not wait for running tasks
        self.stop()

    # ------------------------------------------------------------------ serving

    async def run(self) -> None:
        """Serve until ``stop()`` is called or a signal arrives."""
        await self.process_tasks()

    async def process_tasks(self, limit: int | None = None, duration: float | None = None) -> int:
        """Run due tasks; return how many executions finished.

        With ``limit`` it claims at most ``limit`` tasks and returns when they are
        done, or earlier when nothing more is due. With ``duration`` it keeps
        serving for that many seconds, then lets running tasks finish. With
        neither it serves until stopped. A task whose eta is in the future is
        never claimed early. After ``stop()`` (or SIGINT/SIGTERM) running tasks
        get ``shutdown_timeout`` seconds; what did not finish is put back as
        PENDING without spending an attempt. A second signal skips the wait.
        """
        if limit is not None:
            positive_int("limit", limit)
        if duration is not None:
            positive_number("duration", duration)
        await self.start()
        await self.executor.start()  # again, if the last serve ended by stopping it
        self._stopping = False
        self._aborting = False
        self._serving = True
        restore = ainstall_signal_handlers(self._on_signal) if self.handle_signals else None
        try:
            return await self._serve(limit, duration)
        finally:
            self._serving = False
            if restore is not None:
                restore()

    async def _serve(self, limit: int | None, duration: float | None) -> int:
        assert self._wake is not None
        deadline = None if duration is None else time.monotonic() + duration
        drain_deadline: float | None = None
        finished_before = self._processed
        claimed = 0
        while True:
            self._wake.clear()
            now = time.monotonic()
            if self._stopping and drain_deadline is None:
                drain_deadline = now + (0.0 if self._aborting else self.shutdown_timeout)
                if self._claims.running and not self._aborting:
                    omniq_logging.get_logger().warning(
                        f"{self.name} stopping: {self._claims.running} running task(s) get "
                        f"{self.shutdown_timeout:g}s to finish (signal again to stop now)"
                    )
            out_of_time = deadline is not None and now >= deadline
            may_claim = (
                not self._stopping and not out_of_time and (limit is None or claimed < limit)
            )
            wanted = 0
            if may_claim:
                # Keep up to `prefetch` claimed tasks ready beyond those running, so a
                # finishing task is replaced at once and claims come in batches.
                wanted = self._claims.wanted()
                if limit is not None:
                    wanted = min(wanted, limit - claimed)
                wanted = max(wanted, 0)
            self._start_ready()  # slots freed by finished tasks: no need to wait for the write
            delay = self._claims.write_delay() if may_claim else None
            if delay is not None:  # every slot is busy: let the batch fill
                await self._wake.wait(delay)
                continue
            got, failed_for = await self._settle_and_claim(wanted)
            claimed += got
            await self._renew_stale_ready()
            self._start_ready()
            if not self._claims:
                if not may_claim:
                    break
                # Nothing is due: a limited run returns rather than waits. Only a claim
                # that asked for tasks can say so (one that asked for none, with every
                # slot busy, may have recorded the last claimed tasks meanwhile).
                limited = limit is not None and deadline is None
                if got == 0 < wanted and failed_for is None and limited:
                    break
            if self._aborting or (drain_deadline is not None and now >= drain_deadline):
                break
            wait = self.poll_interval
            if deadline is not None and not out_of_time:
                wait = min(wait, max(deadline - now, 0.0))
            if drain_deadline is not None:
                wait = min(wait, max(drain_deadline - now, 0.0))
            if failed_for is not None:
                wait = min(wait, failed_for)  # a failing store: back off, then try again
            elif got < wanted:
                wait = min(wait, await self._until_next_due())
            await self._wake.wait(wait)
        await self._release_unfinished()
        return self._processed - finished_before

    async def _settle_and_claim(self, wanted: int) -> tuple[int, float | None]:
        """Record what finished and claim up to ``wanted`` more, in one storage call.

        Returns how many tasks were claimed, and, when the store failed, how long to
        back off before the next try. Many tasks finishing close together share one
        transaction (one disk sync). If the write fails the outcomes are kept and
        written on the next call; the tasks stay in flight (leases renewed)
        meanwhile, so nothing is lost; a crash before the write leaves them RUNNING
        until their lease ends, then they run again.
        """
        outcomes = self._claims.take_outcomes()
        if not outcomes and wanted <= 0:
            return 0, None
        settled = await self._settler.settle(outcomes, wanted)
        self._claims.settled(settled.unrecorded, settled.claimed)
        return len(settled.claimed), settled.retry_in

    def _recorded(self, outcomes: Sequence[Outcome], held: Sequence[bool]) -> None:
        """Forget recorded outcomes' tasks; say which attempts had lost their task."""
        self._claims.recorded(outcomes)
        # Only the dispatcher records (and, after it, shutdown): one writer of the counts.
        self._processed += len(outcomes)
        self._failed += sum(1 for outcome in outcomes if outcome.error is not None)
        for outcome, kept in zip(outcomes, held, strict=True):
            if not kept:
                log_lost(self.name, outcome.task)

    async def _renew_stale_ready(self) -> None:
        """Renew the leases of ready tasks claimed over half a lease ago, before they start.

        A pool that was paused (SIGSTOP, a VM pause, a long GC) past its lease may hold
        ready tasks that another worker has taken over since; starting one would run
        it twice. Those whose lease is gone are dropped.
        """
        stale = self._claims.stale_ready(time.time() + self.lease_timeout / 2)
        if not stale:
            return
        try:
            lost = await self.queue.heartbeat(stale, self.lease_timeout)
        except AsyncCancelled:
            raise
        except Exception as error:  # unsure whether they are still ours: keep them waiting
            omniq_logging.log_storage_error("heartbeat", error, worker=self.name)
            return
        renewed = dt.datetime.fromtimestamp(time.time() + self.lease_timeout, dt.timezone.utc)
        self._claims.renewed({task.id for task in stale} - set(lost), renewed)
        if lost:
            self._drop_lost(lost)

    def _start_ready(self) -> None:
        """Start claimed tasks while fewer than ``concurrency`` run."""
        self._claims.start_ready(self._spawn)

    def _spawn(self, task: Task) -> AsyncHandle:
        return aspawn(self._execute, task, name=f"omniq-task-{task.id}")

    def _drop_lost(self, task_ids: list[str]) -> None:
        """Forget claimed tasks whose lease another worker took over, unless they run."""
        self._claims.drop_lost(task_ids)
        for task_id in task_ids:
            omniq_logging.get_logger().warning(
                f"{self.name} lost task {task_id}: its lease was taken over"
            )

    async def _until_next_due(self) -> float:
        """Seconds until the next pending task is due (the poll interval if unknown)."""
        try:
            eta = await self.queue.storage.next_eta(self.queues)
        except AsyncCancelled:
            raise
        except Exception as error:
            omniq_logging.log_storage_error("next_eta", str(error), worker=self.name)
            return self.poll_interval
        if eta is None:
            return self.poll_interval
        return max(eta - time.time(), 0.0)

    async def _release_unfinished(self) -> None:
        """Record what finished; stop what still runs; put back (as PENDING) the rest.

        An executor that can stop its tasks (child processes) is stopped before their
        tasks go back, so that none runs on beside its next attempt; a task that
        finished at the last moment keeps its outcome. Otherwise a running coroutine
        is cancelled, and a thread, which cannot be, may go on, but its outcome can no
        longer be recorded (the attempt token is gone).
        """
        await self._settle_and_claim(0)
        handles = self._claims.stop_starting()
        stopped = bool(handles) and self.executor.stops_tasks
        if stopped:
            await self.executor.stop(0.0)
            await ajoin(handles, _STOPPED_RUNS_WAIT)  # their runs return by themselves now
            await self._settle_and_claim(0)
        else:
            for handle in handles:
                acancel(handle)
        unfinished = self._claims.unfinished()
        for claimed in unfinished:
            await self._put_back(claimed)
        if handles and not stopped:
            await ajoin(handles, 1.0)  # give cancelled coroutines a moment to unwind
        self._claims.forget(unfinished)

    async def _put_back(self, claimed: Claimed) -> None:
        """Release a claimed task to PENDING without spending an attempt."""
        try:
            await self.queue.release(claimed.task, started_at=claimed.started_at, worker=self.name)
        except Exception as error:
            omniq_logging.log_storage_error("release", str(error), task_id=claimed.task.id)

    # ------------------------------------------------------------------ one task

    async def _execute(self, task: Task) -> None:
        """Run ``task``, then ready tasks while there are any: one spawn per slot, not per task.

        In the blocking twin a slot goes on to the next ready task by itself (see
        ``omniq._concurrency.ASYNC_SLOTS_GO_ON``): that saves a hand-off through the
        pool's loop per task, a thread wake-up each way, which short tasks pay more for
        than for their run. Each task runs in a context of its own either way.
        """
        following: Task | None = task
        while following is not None:
            following = await arun_isolated(self._execute_one, following)

    async def _execute_one(self, task: Task) -> Task | None:
        """Run one task and queue its outcome; return the ready task this slot runs next."""
        timeout = task.timeout if task.timeout is not None else self.default_timeout
        try:
            outcome = await run_before_task_hooks(self._hooks["before_task"], task)
            if outcome is None:
                outcome = await self.executor.run(task, timeout, self.name)
            await run_after_task_hooks(self._hooks["after_task"], task, outcome)
        except AsyncCancelled:
            self._claims.stopped()
            raise
        except TaskReleased:  # the executor stopped before the task finished
            claimed = self._claims.released(task.id)
            if claimed is not None:
                await self._put_back(claimed)
            if self._wake is not None:
                self._wake.set()
            return None
        except Exception as error:  # executors report task errors: this is omniq's own bug
            omniq_logging.log_storage_error("execute", str(error), task_id=task.id)
            outcome = Outcome(task, error=TaskError.from_exception(error))
        go_on = ASYNC_SLOTS_GO_ON and not self._aborting
        following = self._claims.finished(
            outcome, time.time() + self.lease_timeout / 2 if go_on else None
        )
        if self._wake is not None:
            self._wake.set()
        return following
