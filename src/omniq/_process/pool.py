"""``ProcessPool``: long-lived child processes that run jobs with hard timeouts.

Each of the pool's ``processes`` slots is a thread in the parent that owns one child
process for its whole life: it takes the next job from the pool's queue, hands it to its
child over a pipe, and waits for the answer, for the job's deadline, for the child's death
or for the end of a shutdown's grace, whichever comes first. So a hung child is stopped
at its deadline (SIGTERM, then SIGKILL after the grace), a dead one fails only its own
job, and either is replaced at once. The slot recycles its child after
``max_tasks_per_child`` jobs, or when the child reports more resident memory than
``max_memory_per_child`` after a job, once that job's answer is in hand.

Children start with ``forkserver`` where the platform has it, else ``spawn``; never a
plain ``fork``, which would copy the parent's threads, locks and store connections.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import multiprocessing
import os
import pickle
import queue
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from omniq import logging as omniq_logging
from omniq._process.child import Resolver
from omniq._process.children import Child, ChildSpec, ChildStartError
from omniq._process.jobs import Job, JobOutcome, JobResult, check_grace
from omniq._process.slot import Item, Slot
from omniq._validation import positive_int, positive_mib, positive_number
from omniq.serialization import Serializer

DEFAULT_KILL_GRACE = 5.0
DEFAULT_START_TIMEOUT = 60.0


def default_start_method() -> str:
    """``forkserver`` where this platform has it, else ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


class ProcessPool:
    """Runs :class:`Job`\\ s in ``processes`` reused child processes; blocking and thread-safe.

    * ``max_tasks_per_child``: replace a child after this many jobs (``None``: never).
    * ``max_memory_per_child``: replace a child whose resident memory is above this many
      MiB after a job (``None``: never). Neither recycle fails or loses the job.
    * ``kill_grace``: seconds from SIGTERM to SIGKILL when a child is stopped (a job may
      ask for less with :attr:`Job.kill_grace`).
    * ``start_method``: ``"forkserver"`` or ``"spawn"`` (default: :func:`default_start_method`).
    * ``initializer``: called in each child once it applied omniq's logging configuration,
      before its first job (configure the application's own logging there). It must be a
      module-level function: it reaches the child by its import name.
    * ``resolve``: turns a ``func_path`` into the callable, in the child (default
      :func:`omniq._functions.resolve_function`); the hook for an allow-list of tasks.
    * ``serializer``: the codec of payloads and results (default omniq's JSON); it must
      be importable by name too.
    * ``start_timeout``: seconds a new child may take until it is ready.

    :meth:`start` the pool (or use it as a context manager), :meth:`submit` jobs, and
    :meth:`shutdown` it. Every future resolves to a :class:`JobResult`: timeouts, crashes
    and exceptions are FAILED results, and jobs cut short by the shutdown are RELEASED.
    """

    def __init__(
        self,
        processes: int,
        *,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: float | None = None,
        kill_grace: float = DEFAULT_KILL_GRACE,
        start_method: str | None = None,
        initializer: Callable[[], object] | None = None,
        resolve: Resolver | None = None,
        serializer: Serializer | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        name: str | None = None,
    ) -> None:
        if os.name != "posix":
            raise NotImplementedError(
                "the process executor needs a POSIX system (Linux, macOS): it stops children "
                "with signals"
            )
        self.processes = positive_int("processes", processes)
        self.max_tasks_per_child = (
            None
            if max_tasks_per_child is None
            else positive_int("max_tasks_per_child", max_tasks_per_child)
        )
        self.max_memory_per_child = (
            None
            if max_memory_per_child is None
            else positive_mib("max_memory_per_child", max_memory_per_child)
        )
        self.kill_grace = check_grace("kill_grace", kill_grace)
        self.start_timeout = positive_number("start_timeout", start_timeout)
        self.start_method = _check_start_method(start_method)
        self.name = name or f"omniq-procpool-{os.getpid()}"
        self._initializer = _importable("initializer", initializer)
        self._resolve = _importable("resolve", resolve)
        self._serializer = _importable("serializer", serializer)
        self._spec: ChildSpec | None = None  # once started
        self._warned_about = -1  # the logging generation whose sink children cannot share
        self._jobs: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._state = "new"  # -> running -> closing -> closed
        self._slots: list[Slot] = []
        self._serials = itertools.count(1)
        self._shutdown_deadline: float | None = None
        self._wake_r = self._wake_w = -1

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(processes={self.processes}, "
            f"start_method={self.start_method!r}, state={self._state!r})"
        )

    def __enter__(self) -> ProcessPool:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start every child and wait until each is ready. Idempotent.

        Raises :class:`ChildStartError` (and leaves the pool shut down) when a child
        cannot start: a broken initializer, say, or a main module that fails to import.
        """
        with self._lock:
            if self._state != "new":
                if self._state == "running":
                    return
                raise RuntimeError(f"{self!r} was shut down; it cannot start again")
            self._state = "running"
            if self.start_method == "forkserver":
                _preload_in_fork_server("omniq._process.child")
            self._wake_r, self._wake_w = os.pipe()
            self._spec = ChildSpec(
                context=multiprocessing.get_context(self.start_method),
                name=self.name,
                resolve=self._resolve,
                serializer=self._serializer,
                initializer=self._initializer,
                start_timeout=self.start_timeout,
                dump_dir=Path(tempfile.mkdtemp(prefix="omniq-procpool-")),
            )
            self._slots = [Slot(self, index) for index in range(self.processes)]
            _LIVE_POOLS.add(self)
        for slot in self._slots:
            slot.thread.start()
        failures = [slot.first_start() for slot in self._slots]
        problems = [str(failure) for failure in failures if failure is not None]
        if problems:
            self.shutdown(0.0)
            raise ChildStartError(f"{self.name}: {problems[0]}")

    def submit(self, job: Job) -> Future[JobResult]:
        """Queue ``job`` for the next free child; its future resolves to a :class:`JobResult`.

        ``TypeError`` for a job whose fields JSON cannot encode; ``RuntimeError`` if the
        pool is not running.
        """
        if not isinstance(job, Job):
            raise TypeError(f"submit() takes a Job, got {type(job).__name__}: {job!r}")
        message = job.to_message()
        future: Future[JobResult] = Future()
        with self._lock:
            if self._state != "running":
                raise RuntimeError(f"{self!r} is not running: start() it first")
            self._jobs.put((job, message, future))
        return future

    def shutdown(self, grace: float = 30.0) -> None:
        """Stop the pool: running jobs get ``grace`` seconds, then their children are killed.

        Jobs still queued, and jobs cut short at the end of the grace, resolve as
        RELEASED, so the caller can put their tasks back without spending an attempt.
        Returns once every child is gone. Idempotent; later calls wait for the first.
        """
        grace = check_grace("grace", grace)
        with self._lock:
            state = self._state
            if state in ("new", "running"):
                self._state = "closing" if state == "running" else "closed"
                self._shutdown_deadline = time.monotonic() + grace
        if state == "new":
            return
        if state == "running":
            os.write(self._wake_w, b"x")  # wakes every slot waiting on a child
            while True:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    self._release(item)
            for _ in self._slots:
                self._jobs.put(None)
        for slot in self._slots:
            if slot.thread is not threading.current_thread():  # a future's callback, say
                slot.thread.join()
        with self._lock:
            if self._state == "closing":
                self._state = "closed"
                _LIVE_POOLS.discard(self)
                for fd in (self._wake_r, self._wake_w):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                if self._spec is not None:
                    shutil.rmtree(self._spec.dump_dir, ignore_errors=True)

    def child_pids(self) -> list[int]:
        """The process ids of the children alive now (one per slot, while it has one)."""
        return [child.pid for slot in self._slots if (child := slot.child) is not None]

    # ------------------------------------------------------------------ for the slots (slot.py)

    @property
    def closing(self) -> bool:
        """Whether :meth:`shutdown` has begun."""
        return self._state in ("closing", "closed")

    def _release(self, item: Item) -> None:
        job, _, future = item
        if future.set_running_or_notify_cancel():
            future.set_result(JobResult(job.task_id, JobOutcome.RELEASED))

    def start_child(self) -> Child:
        """Start a child for a slot and wait until it is ready (:class:`ChildStartError`)."""
        assert self._spec is not None
        generation, config = omniq_logging.export_config()
        if config is not None and config["substituted"] and generation != self._warned_about:
            self._warned_about = generation
            omniq_logging.get_logger().warning(
                f"{self.name}: omniq logs to a sink a child process cannot share; "
                "the children write their records to stderr"
                + (" and to the log file" if config["file"] else "")
            )
        return Child.start(self._spec, next(self._serials), self._wake_r)

    def next_item(self) -> Item | None:
        """The next queued job for a slot (blocking); ``None`` once the pool shuts down."""
        return self._jobs.get()

    @property
    def wake_fd(self) -> int:
        """Readable once :meth:`shutdown` has begun."""
        return self._wake_r

    @property
    def shutdown_deadline(self) -> float | None:
        """When a shutdown's grace ends (``time.monotonic()``), once it has begun."""
        return self._shutdown_deadline


def _preload_in_fork_server(module: str) -> None:
    """Have the fork server import ``module`` once, so the children forked from it start warm.

    A child then starts in milliseconds instead of importing omniq afresh (a fifth of a
    second or more), which is most of the time from a timeout or a crash to a replacement.
    It takes effect only if the fork server has not started yet, and keeps the modules the
    application asked to preload (``__main__`` by default).
    """
    from multiprocessing import forkserver

    current = getattr(getattr(forkserver, "_forkserver", None), "_preload_modules", None)
    if isinstance(current, list) and module not in current:
        forkserver.set_forkserver_preload([*current, module])


def _check_start_method(method: str | None) -> str:
    if method is None:
        return default_start_method()
    allowed = [m for m in ("forkserver", "spawn") if m in multiprocessing.get_all_start_methods()]
    if method not in allowed:
        raise ValueError(
            f"start_method must be one of {', '.join(map(repr, allowed))}, got {method!r} "
            "(a plain fork would copy the parent's threads, locks and store connections)"
        )
    return method


def _importable(name: str, value: Any) -> Any:
    """``value`` if it can reach a child by import name; ``TypeError`` naming it otherwise."""
    if value is None:
        return None
    try:
        pickle.dumps(value)
    except Exception as error:
        raise TypeError(
            f"{name} must be importable by name in a child process (a module-level function "
            f"or object), got {value!r}: {error}"
        ) from None
    return value


_LIVE_POOLS: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


@atexit.register
def _shutdown_live_pools() -> None:
    # Runs before multiprocessing's own exit hook (registered earlier), which would wait
    # for our children forever: they serve until their pipe closes.
    for pool in list(_LIVE_POOLS):
        with contextlib.suppress(Exception):
            pool.shutdown(0.0)
