"""``manage.py omniq_worker``: run the Django tasks of one ``TASKS`` alias.

It serves the omniq queues of the alias's Django queues (``--queue-name a,b``, or ``*``
for every queue in its ``QUEUES``) with a blocking ``WorkerPool``: ``--concurrency``
threads, each task on a thread of its own, where Django's per-thread database
connections live. Around every task the pool's hooks call
``django.db.close_old_connections()``, as Django does around a request (and Celery and
djhuey around a task), so a connection past ``CONN_MAX_AGE`` or broken by the last
task is not reused. Django tasks have no timeout: the pool gives them none.

``--batch`` runs every due task and exits; ``--max-tasks N`` exits after N; otherwise
it serves until SIGINT or SIGTERM, which let the running tasks finish (up to
``--shutdown-timeout`` seconds, then they are put back as READY) and exit 0. A second
signal stops at once: the running tasks are put back as READY, never left RUNNING.
Any number of workers may serve one store; each task runs once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django.tasks.exceptions import InvalidTaskBackend

from omniq import WorkerPool, limits
from omniq.contrib.django.backend import OmniQBackend
from omniq.contrib.django.naming import omniq_queue

logger = logging.getLogger("omniq.contrib.django")

ALL_QUEUES = "*"
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
MAX_WORKER_ID = 64


@dataclass(frozen=True)
class WorkerOptions:
    """What ``omniq_worker`` was asked to do (its command-line options)."""

    backend: str = DEFAULT_TASK_BACKEND_ALIAS
    queue_names: tuple[str, ...] = (ALL_QUEUES,)
    batch: bool = False
    max_tasks: int | None = None
    worker_id: str | None = None
    concurrency: int | None = None
    interval: float | None = None
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT


def backend_for(alias: str) -> OmniQBackend:
    """The ``OmniQBackend`` of ``alias``; ``ValueError`` naming what is wrong."""
    try:
        backend = task_backends[alias]
    except InvalidTaskBackend as error:
        raise ValueError(f"--backend {alias}: {error}") from None
    if not isinstance(backend, OmniQBackend):
        raise ValueError(
            f"--backend {alias}: its BACKEND is {type(backend).__module__}."
            f"{type(backend).__qualname__}, not omniq.contrib.django.OmniQBackend"
        )
    return backend


def queues_for(backend: OmniQBackend, names: Sequence[str]) -> list[str]:
    """The omniq queues of the Django queue ``names`` (``*``: all of the alias's ``QUEUES``)."""
    where = f"TASKS[{backend.alias!r}]['QUEUES']"
    if ALL_QUEUES in names:
        if len(names) > 1:
            raise ValueError(f"--queue-name: '{ALL_QUEUES}' stands alone, got {','.join(names)}")
        if not backend.queues:
            raise ValueError(
                f"{where} is empty (any queue name is accepted), so '{ALL_QUEUES}' cannot "
                "name its queues: list them with --queue-name a,b"
            )
        names = sorted(backend.queues)
    chosen: list[str] = []
    for name in names:
        if not name:
            raise ValueError("--queue-name: an empty queue name")
        if backend.queues and name not in backend.queues:
            raise ValueError(f"--queue-name: {name!r} is not in {where} ({sorted(backend.queues)})")
        chosen.append(omniq_queue(backend.alias, name))
    return list(dict.fromkeys(chosen))


def check_worker_id(worker_id: str) -> str:
    """A worker id as ``db_worker`` takes it: non-empty, at most 64 characters."""
    if not worker_id:
        raise ValueError("--worker-id must not be empty")
    if len(worker_id) > MAX_WORKER_ID:
        raise ValueError(f"--worker-id must be at most {MAX_WORKER_ID} characters")
    return worker_id


def default_worker_id() -> str:
    """``<host>-<pid>-<4 hex>``: readable in ``worker_ids`` and unique enough."""
    suffix = f"-{os.getpid()}-{secrets.token_hex(2)}"
    return socket.gethostname()[: MAX_WORKER_ID - len(suffix)] + suffix


def close_connections_before(task: Any) -> None:
    """``before_task`` hook: drop database connections that are stale or broken."""
    close_old_connections()


def close_connections_after(task: Any, outcome: Any) -> None:
    """``after_task`` hook: close the connections the task left past ``CONN_MAX_AGE``."""
    close_old_connections()


@contextlib.contextmanager
def _signals_before_serving(pool: WorkerPool) -> Iterator[list[int]]:
    """SIGINT/SIGTERM while the worker starts up: stop cleanly (exit 0), not die of it.

    The pool handles the signals itself while it serves; before that (Django, the store
    and the pool starting) a signal is noted here, stops the pool and ends the worker.
    Yields the list of signals noted. Nothing is installed outside the main thread.
    """
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum: int, frame: object) -> None:
        noted.append(signum)
        pool.stop()

    previous = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield noted
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def serve(options: WorkerOptions) -> int:
    """Run the worker ``options`` describe; return how many task executions finished.

    Bad options raise ``ValueError`` before anything starts.
    """
    backend = backend_for(options.backend)
    queues = queues_for(backend, options.queue_names)
    worker_id = check_worker_id(
        default_worker_id() if options.worker_id is None else options.worker_id
    )
    overrides: dict[str, Any] = {
        "queues": queues,
        "name": worker_id,
        "max_retries": 1,
        "default_timeout": None,
        "shutdown_timeout": options.shutdown_timeout,
    }
    if options.concurrency is not None:
        overrides["concurrency"] = options.concurrency
    if options.interval is not None:
        overrides["poll_interval"] = options.interval
    if options.max_tasks is not None and options.max_tasks < 1:
        raise ValueError(f"--max-tasks must be at least 1, got {options.max_tasks}")
    pool = backend.omniq.worker_pool(**overrides)
    pool.before_task(close_connections_before)
    pool.after_task(close_connections_after)
    with _signals_before_serving(pool) as stopped:
        logger.info(
            "Starting worker worker_id=%s queues=%s",
            worker_id,
            ",".join(name.partition(":")[2] for name in queues),
        )
        with pool:
            if stopped:  # a signal came while starting up: nothing to finish
                processed = 0
            elif options.batch:
                processed = pool.process_tasks(limit=options.max_tasks or limits.MAX_COUNT)
            elif options.max_tasks is not None:
                # With a duration the pool waits for tasks instead of returning when none
                # is due.
                processed = pool.process_tasks(
                    limit=options.max_tasks, duration=limits.MAX_WAIT_SECONDS
                )
            else:
                processed = pool.process_tasks()
    if options.max_tasks is not None and processed >= options.max_tasks:
        logger.info(
            "Run maximum tasks (%d) on worker=%s - exiting gracefully.", processed, worker_id
        )
    elif options.batch:
        logger.info("No more tasks to run for worker_id=%s - exiting gracefully.", worker_id)
    else:
        logger.info("Worker worker_id=%s stopped after %d task(s).", worker_id, processed)
    return processed
