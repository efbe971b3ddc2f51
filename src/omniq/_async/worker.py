"""``AsyncWorkerPool``: claim due tasks and run them, ``concurrency`` at a time.

One dispatcher loop claims tasks in batches (up to the free slots), starts each
on its own unit of concurrency (an asyncio task here, a thread in the blocking
twin), renews the leases of running tasks, recovers tasks of dead workers, and
sleeps on an event that a finishing task or ``stop()`` sets. Both twins run
coroutine functions and plain functions (see ``omniq._concurrency``).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from types import TracebackType

from omniq import logging as omniq_logging
from omniq._async.executor import log_lost, run_task
from omniq._async.queue import AsyncTaskQueue
from omniq._async.storage.base import AsyncBaseStorage
from omniq._concurrency import (
    AsyncCancelled,
    AsyncEvent,
    AsyncHandle,
    AsyncThreadGuard,
    acancel,
    ainstall_signal_handlers,
    ajoin,
    aspawn,
)
from omniq._sync.storage.base import BaseStorage as BlockingStorage
from omniq._validation import (
    non_negative_number,
    normalize_max_retries,
    normalize_timeout,
    positive_int,
    positive_number,
)
from omniq.models import Task, TaskError
from omniq.records import Outcome
from omniq.serialization import Serializer

DEFAULT_SHUTDOWN_TIMEOUT = 30.0


class AsyncWorkerPool:
    """Runs due tasks from a queue, ``concurrency`` at a time.

    * ``storage``/``serializer`` or ``queue``: where the tasks come from.
    * ``concurrency``: how many tasks run at once.
    * ``poll_interval``: how often an idle pool looks for tasks from other processes.
    * ``max_retries``: the execution budget for tasks enqueued without one.
    * ``default_timeout``: seconds a task may run when it has no timeout of its own.
    * ``lease_timeout``: how long a claim holds a task without a heartbeat.
    * ``shutdown_timeout``: grace period for running tasks when the pool stops.
    * ``prefetch``: claimed tasks kept ready beyond those running (default:
      ``concurrency``), so fast tasks are claimed in batches; ``0`` for long tasks
      that other workers should rather take.
    * ``handle_signals``: stop gracefully on SIGINT/SIGTERM (a second signal stops
      at once) while ``process_tasks`` runs in the main thread.
    """

    def __init__(
        self,
        storage: AsyncBaseStorage | BlockingStorage | None = None,
        serializer: Serializer | None = None,
        concurrency: int = 4,
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
        self.concurrency = positive_int("concurrency", concurrency)
        self.prefetch = self.concurrency if prefetch is None else _non_negative_int(prefetch)
        self.poll_interval = positive_number("poll_interval", poll_interval)
        self.max_retries = normalize_max_retries(max_retries)
        self.default_timeout = normalize_timeout(default_timeout, "default_timeout")
        self.shutdown_timeout = non_negative_number("shutdown_timeout", shutdown_timeout)
        self.handle_signals = handle_signals
        self.name = name or f"{type(self).__name__}-{uuid.uuid4().hex[:8]}"
        # Claimed and not yet recorded: ready (no handle yet), running, or finished.
        self._inflight: dict[str, tuple[Task, AsyncHandle | None]] = {}
        self._ready: deque[Task] = deque()  # claimed, waiting for a free slot
        self._running = 0
        self._finished: list[Outcome] = []  # run, outcome not yet recorded
        self._guard = AsyncThreadGuard()
        self._wake: AsyncEvent | None = None
        self._started = False
        self._stopping = False
        self._aborting = False
        self._serving = False
        self._processed = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, concurrency={self.concurrency})"

    @property
    def processed(self) -> int:
        """How many task executions this pool has finished (succeeded or failed)."""
        return self._processed

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the queue and recover tasks of dead workers. Idempotent."""
        if self._started:
            return
        # Created here rather than in __init__, so it belongs to the running loop.
        self._wake = AsyncEvent()
        await self.queue.open()
        self.queue.add_listener(self._wake.set)
        self.queue.storage.subscribe(self._wake.set)
        self._started = True
        omniq_logging.log_worker_started(self.name, concurrency=self.concurrency)
        await self._maintain()

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
        beat_every = self.lease_timeout / 3
        next_beat = time.monotonic() + beat_every
        drain_deadline: float | None = None
        finished_before = self._processed
        claimed = 0
        while True:
            self._wake.clear()
            now = time.monotonic()
            if self._stopping and drain_deadline is None:
                drain_deadline = now + (0.0 if self._aborting else self.shutdown_timeout)
                if self._running and not self._aborting:
                    omniq_logging.get_logger().warning(
                        f"{self.name} stopping: {self._running} running task(s) get "
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
                with self._guard:  # finished tasks leave in the same call
                    held = len(self._inflight) - len(self._finished)
                wanted = self.concurrency + self.prefetch - held
                if limit is not None:
                    wanted = min(wanted, limit - claimed)
                wanted = max(wanted, 0)
            self._start_ready()  # slots freed by finished tasks: no need to wait for the write
            got = await self._settle_and_claim(wanted)
            claimed += got
            self._start_ready()
            if not self._inflight:
                if not may_claim:
                    break
                if got == 0 and limit is not None and deadline is None:
                    break  # nothing is due: a limited run returns rather than waits
            if self._aborting or (drain_deadline is not None and now >= drain_deadline):
                break
            if now >= next_beat:
                await self._maintain()
                next_beat = now + beat_every
            wait = min(self.poll_interval, max(next_beat - now, 0.0))
            if deadline is not None and not out_of_time:
                wait = min(wait, max(deadline - now, 0.0))
            if drain_deadline is not None:
                wait = min(wait, max(drain_deadline - now, 0.0))
            if got < wanted:
                wait = min(wait, await self._until_next_due())
            await self._wake.wait(wait)
        await self._release_unfinished()
        return self._processed - finished_before

    async def _settle_and_claim(self, wanted: int) -> int:
        """Record what finished and claim up to ``wanted`` more, in one storage call.

        Many tasks finishing close together share one transaction (one disk sync).
        If the write fails the outcomes are kept and written on the next call; the
        tasks stay in flight (leases renewed) meanwhile, so nothing is lost; a crash
        before the write leaves them RUNNING until their lease ends, then they run
        again.
        """
        with self._guard:
            outcomes, self._finished = self._finished, []
        if not outcomes and wanted <= 0:
            return 0
        try:
            held, tasks = await self.queue.settle_and_claim(
                outcomes, wanted, self.lease_timeout, self.max_retries, self.name
            )
        except Exception as error:  # a busy or broken store: log, wait, try again
            omniq_logging.log_storage_error("finish_and_claim", str(error), worker=self.name)
            with self._guard:
                self._finished[:0] = outcomes
            return 0
        with self._guard:
            for outcome in outcomes:
                self._inflight.pop(outcome.task.id, None)
            self._processed += len(outcomes)
            for task in tasks:
                self._inflight[task.id] = (task, None)
                self._ready.append(task)
        for outcome, kept in zip(outcomes, held, strict=True):
            if not kept:
                log_lost(self.name, outcome.task)
        return len(tasks)

    def _start_ready(self) -> None:
        """Start claimed tasks while fewer than ``concurrency`` run."""
        with self._guard:
            while self._ready and self._running < self.concurrency:
                task = self._ready.popleft()
                self._running += 1
                handle = aspawn(self._execute, task, name=f"omniq-task-{task.id}")
                self._inflight[task.id] = (task, handle)

    async def _until_next_due(self) -> float:
        """Seconds until the next pending task is due (the poll interval if unknown)."""
        try:
            eta = await self.queue.storage.next_eta()
        except Exception as error:
            omniq_logging.log_storage_error("next_eta", str(error), worker=self.name)
            return self.poll_interval
        if eta is None:
            return self.poll_interval
        return max(eta - time.time(), 0.0)

    async def _maintain(self) -> None:
        """Renew the leases of running tasks and recover tasks of dead workers."""
        with self._guard:
            running = [task for task, _ in self._inflight.values()]
        try:
            for task_id in await self.queue.heartbeat(running, self.lease_timeout):
                omniq_logging.get_logger().warning(
                    f"{self.name} lost task {task_id}: its lease was taken over"
                )
            await self.queue.recover_expired(self.max_retries)
        except Exception as error:
            omniq_logging.log_storage_error("heartbeat", str(error), worker=self.name)

    async def _release_unfinished(self) -> None:
        """Record what finished; put back (as PENDING) what is ready or still running.

        A running coroutine is cancelled; a thread cannot be: it may go on, but its
        outcome can no longer be recorded (the attempt token is gone).
        """
        await self._settle_and_claim(0)
        with self._guard:
            unfinished = list(self._inflight.values())
            self._ready.clear()
        handles = [handle for _, handle in unfinished if handle is not None]
        for task, handle in unfinished:
            if handle is not None:
                acancel(handle)
            try:
                await self.queue.release(task)
            except Exception as error:
                omniq_logging.log_storage_error("release", str(error), task_id=task.id)
        if handles:
            await ajoin(handles, 1.0)  # give cancelled coroutines a moment to unwind
        with self._guard:
            for task, _ in unfinished:
                self._inflight.pop(task.id, None)
            self._finished.clear()

    # ------------------------------------------------------------------ one task

    async def _execute(self, task: Task) -> None:
        timeout = task.timeout if task.timeout is not None else self.default_timeout
        try:
            outcome = await run_task(task, timeout=timeout, worker=self.name)
        except AsyncCancelled:
            with self._guard:
                self._running -= 1
            raise
        except Exception as error:  # run_task reports task errors: this is omniq's own bug
            omniq_logging.log_storage_error("execute", str(error), task_id=task.id)
            outcome = Outcome(task, error=TaskError.from_exception(error))
        with self._guard:
            self._running -= 1
            self._finished.append(outcome)
        if self._wake is not None:
            self._wake.set()


def _non_negative_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"prefetch must be an int >= 0, got {value!r}")
    return value
