"""Reused daemon threads for short units of work, shared by both twins.

Starting a thread costs far more than a no-op task: the blocking worker pool runs
each task on a thread, and the async pool runs each plain function on one. So
finished threads wait a while for their next unit instead of exiting. Each unit
runs in a copy of the submitter's contextvars context, as an asyncio task does,
so log correlation ids follow a task onto its thread.
"""

from __future__ import annotations

import _thread
import contextvars
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

IDLE_SECONDS = 10.0
"""How long a finished thread waits for more work before it exits."""


class ThreadHandle:
    """One unit of work on a cached thread; shaped like ``threading.Thread`` for joining.

    Its "done" flag is a bare lock held while the unit runs (a ``threading.Event`` costs
    a Condition and a lock to build, once per task).
    """

    __slots__ = ("_running", "name")

    def __init__(self, name: str | None) -> None:
        self.name = name
        self._running = _thread.allocate_lock()
        self._running.acquire()

    def is_alive(self) -> bool:
        """Whether the unit is still running (or waiting to start)."""
        return self._running.locked()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the unit to finish, at most ``timeout`` seconds."""
        if self._running.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            self._running.release()

    def _finish(self) -> None:
        self._running.release()

    def __repr__(self) -> str:
        state = "running" if self.is_alive() else "done"
        return f"<ThreadHandle {self.name!r} {state}>"


_Job = tuple[contextvars.Context, Callable[..., Any], tuple[Any, ...], ThreadHandle]


class ThreadCache:
    """Runs units on daemon threads, reusing idle ones (see the module docstring)."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self._reset()

    def _reset(self) -> None:
        """Start empty: in a forked child none of the parent's threads exist."""
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a job and not yet promised one
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._pid = os.getpid()

    def submit(self, fn: Callable[..., Any], *args: Any, name: str | None = None) -> ThreadHandle:
        """Run ``fn(*args)`` on an idle thread, or a new one; return its handle."""
        if self._pid != os.getpid():
            self._reset()  # forked without the at-fork hook (or before it ran)
        handle = ThreadHandle(name)
        job: _Job = (contextvars.copy_context(), fn, args, handle)
        with self._lock:
            if self._idle:
                self._idle -= 1  # promised to one waiting thread
                self._jobs.put(job)
                return handle
        threading.Thread(target=self._work, args=(job,), name="omniq-thread", daemon=True).start()
        return handle

    def _work(self, job: _Job) -> None:
        while True:
            context, fn, args, handle = job
            try:
                context.run(fn, *args)
            except BaseException:  # as an uncaught exception in a plain thread would be
                threading.excepthook(
                    threading.ExceptHookArgs([*sys.exc_info(), threading.current_thread()])
                )
            finally:
                handle._finish()
            with self._lock:
                self._idle += 1
            while True:
                try:
                    job = self._jobs.get(timeout=self.idle_seconds)
                    break
                except queue.Empty:
                    with self._lock:
                        # Leave only if no submitter promised this thread a job meanwhile.
                        if self._idle:
                            self._idle -= 1
                            return


THREADS = ThreadCache()
"""The process-wide cache both twins use."""

if hasattr(os, "register_at_fork"):
    # A child must not count on (or queue jobs for) threads that stayed in the parent.
    os.register_at_fork(after_in_child=THREADS._reset)
