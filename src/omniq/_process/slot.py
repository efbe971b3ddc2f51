"""One slot of a process pool: a thread of the parent and the child process it owns.

The slot takes the next job from the pool's queue, hands it to its child and waits for
the first of: the answer, the job's deadline, the child's death, the end of a shutdown's
grace. Whatever happens, the job's future gets a :class:`JobResult`, and a slot whose
child is gone (killed, crashed, recycled) starts the next one at once, so a ready child
waits for the next job.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeAlias

from omniq import logging as omniq_logging
from omniq._process.children import STOP_SIGNALS, Child, ChildStartError, describe_exit
from omniq._process.jobs import Job, JobOutcome, JobResult, encode_message
from omniq.exceptions import TaskTimeout
from omniq.models import ErrorType, TaskError

if TYPE_CHECKING:
    from omniq._process.pool import ProcessPool

Item: TypeAlias = "tuple[Job, bytes, Future[JobResult]]"
"""A queued job: the job, its encoded ``run`` message, and the future to resolve."""

_MIB = 1024 * 1024


class Slot:
    """Serves the pool's jobs one at a time on its own child process."""

    def __init__(self, pool: ProcessPool, index: int) -> None:
        self.pool = pool
        self.child: Child | None = None
        self.thread = threading.Thread(
            target=self._serve, name=f"{pool.name}-slot-{index}", daemon=True
        )
        self._started = threading.Event()
        self._start_failure: ChildStartError | None = None
        self._log = omniq_logging.get_logger().bind(worker=pool.name)

    def first_start(self) -> ChildStartError | None:
        """Wait until this slot's first child is ready; the error if it failed to start."""
        self._started.wait()
        return self._start_failure

    def _serve(self) -> None:
        try:
            self.child = self.pool.start_child()
        except ChildStartError as error:
            self._start_failure = error
        except Exception as error:  # omniq's own bug: fail the start, not this thread
            self._start_failure = ChildStartError(f"cannot start a child process: {error!r}")
        finally:
            self._started.set()
        try:
            while (item := self.pool.next_item()) is not None:
                self._handle(item)
        finally:
            self._discard()

    def _handle(self, item: Item) -> None:
        job, message, future = item
        if not future.set_running_or_notify_cancel():
            return  # cancelled while queued
        if self.pool.closing:
            future.set_result(JobResult(job.task_id, JobOutcome.RELEASED))
            return
        try:
            result = self._execute(job, message)
        except Exception as error:  # omniq's own bug: fail this job, keep serving
            self._log.opt(exception=error).error(f"process pool failed running {job.task_id}")
            self._discard()
            future.set_exception(error)
            return
        future.set_result(result)
        self._after(job, result)

    def _execute(self, job: Job, message: bytes) -> JobResult:
        """Run ``job`` on this slot's child, starting one if needed; what came of it."""
        child = self.child
        if child is None:
            try:
                child = self.child = self.pool.start_child()
            except ChildStartError as error:
                if self.pool.closing:
                    return JobResult(job.task_id, JobOutcome.RELEASED)
                self._log.error(f"process pool cannot run {job.task_id}: {error}")
                crashed = TaskError(ErrorType.CRASHED, f"no child process to run the task: {error}")
                return JobResult(job.task_id, JobOutcome.FAILED, error=crashed)
        started = time.monotonic()
        try:
            generation, log_config = omniq_logging.export_config()
            if generation != child.log_generation:  # configured anew since the child started
                child.conn.send_bytes(encode_message({"op": "log", "config": log_config}))
                child.log_generation = generation
            child.conn.send_bytes(message)
        except OSError:
            return self._died(job, child, started)  # it died between two jobs
        return self._await_answer(job, child, started)

    def _await_answer(self, job: Job, child: Child, started: float) -> JobResult:
        pool = self.pool
        deadline = None if job.timeout is None else started + job.timeout
        conn = child.conn.fileno()
        while True:
            limits = [t for t in (deadline, pool.shutdown_deadline) if t is not None]
            ready = child.wait(None if not limits else max(0.0, min(limits) - time.monotonic()))
            if conn in ready or (child.sentinel in ready and child.conn.poll(0)):
                answer = child.receive()
                if answer is None:
                    return self._died(job, child, started)
                if answer["op"] != "done":
                    raise RuntimeError(f"unexpected message from a child: {answer['op']!r}")
                return _result(job, child, answer)
            if child.sentinel in ready:
                return self._died(job, child, started)
            if pool.wake_fd in ready:
                child.unwatch(pool.wake_fd)  # shutdown began: now its deadline counts too
                continue
            now = time.monotonic()
            if pool.shutdown_deadline is not None and now >= pool.shutdown_deadline:
                return self._released(job, child)
            if deadline is not None and now >= deadline:
                return self._timed_out(job, child, started)

    def _released(self, job: Job, child: Child) -> JobResult:
        self._log.bind(task_id=job.task_id).warning(
            f"shutdown grace is over: stopping the child process (pid {child.pid}) "
            f"running {job.task_id}; the task is released"
        )
        self.child = None
        child.kill(self.pool.kill_grace)
        return JobResult(job.task_id, JobOutcome.RELEASED, pid=child.pid)

    def _timed_out(self, job: Job, child: Child, started: float) -> JobResult:
        assert job.timeout is not None
        grace = self.pool.kill_grace if job.kill_grace is None else job.kill_grace
        self.child = None
        child.request_stack()
        how = child.kill(grace)
        message = (
            f"task exceeded its timeout of {job.timeout:g}s; its child process "
            f"(pid {child.pid}) was stopped with {how}"
        )
        error = TaskError.from_exception(TaskTimeout(message), ErrorType.TIMEOUT)
        stack = child.take_dump()
        if stack:
            error = dataclasses.replace(
                error, traceback=f"Stack of the child process at the timeout:\n{stack}"
            )
        self._log.bind(task_id=job.task_id).info(message)
        duration = time.monotonic() - started
        return JobResult(
            job.task_id, JobOutcome.FAILED, error=error, pid=child.pid, duration=duration
        )

    def _died(self, job: Job, child: Child, started: float) -> JobResult:
        self.child = None
        child.reap()
        duration = time.monotonic() - started
        if self.pool.closing and child.exitcode in STOP_SIGNALS:
            # Stopped with the pool (systemd's SIGTERM to the whole group, say): not a crash.
            return JobResult(job.task_id, JobOutcome.RELEASED, pid=child.pid, duration=duration)
        message = (
            f"the child process (pid {child.pid}) running the task {describe_exit(child.exitcode)}"
        )
        error = TaskError(ErrorType.CRASHED, message)
        stack = child.take_dump()
        if stack:
            error = dataclasses.replace(error, traceback=stack)
        self._log.bind(task_id=job.task_id).info(f"task {job.task_id} crashed: {message}")
        return JobResult(
            job.task_id, JobOutcome.FAILED, error=error, pid=child.pid, duration=duration
        )

    def _after(self, job: Job, result: JobResult) -> None:
        """Recycle the child if it is due, then make sure a ready child waits for the next job."""
        pool = self.pool
        child = self.child
        if child is not None:
            child.jobs += 1
            reason = None
            if pool.max_tasks_per_child is not None and child.jobs >= pool.max_tasks_per_child:
                reason = f"it ran {child.jobs} tasks (max_tasks_per_child)"
            elif (
                pool.max_memory_per_child is not None
                and result.rss_mib is not None
                and result.rss_mib > pool.max_memory_per_child
            ):
                reason = (
                    f"its memory ({result.rss_mib:.0f} MiB) is above "
                    f"max_memory_per_child ({pool.max_memory_per_child:g} MiB)"
                )
            if reason is not None:
                self._log.bind(task_id=job.task_id).info(
                    f"recycling the child process (pid {child.pid}): {reason}"
                )
                self._discard()
        if self.child is None and not pool.closing:
            try:
                self.child = pool.start_child()
            except ChildStartError as error:  # the next job tries again, and says why
                if not pool.closing:
                    self._log.error(f"process pool cannot start a child: {error}")

    def _discard(self) -> None:
        if self.child is not None:
            child, self.child = self.child, None
            child.retire(self.pool.kill_grace)


def _result(job: Job, child: Child, answer: dict[str, Any]) -> JobResult:
    error = answer.get("error")
    rss = answer.get("rss")
    return JobResult(
        job.task_id,
        JobOutcome.FAILED if error is not None else JobOutcome.COMPLETED,
        result=answer.get("result"),
        error=TaskError.from_dict(error) if error is not None else None,
        pid=child.pid,
        duration=answer.get("duration"),
        rss_mib=rss / _MIB if isinstance(rss, int) else None,
    )
