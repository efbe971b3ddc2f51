"""Task functions the test suites enqueue by import path (``task_functions.x``).

Side effects go to files, so executions can be counted across threads and OS
processes: each call appends one line to the file it is given.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

NOT_CALLABLE = 42
MARK: contextvars.ContextVar[str] = contextvars.ContextVar("task_functions_mark", default="unset")


def _append(path: str, line: str) -> None:
    # O_APPEND writes of one short line are atomic between processes on Linux.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def lines(path: str | Path) -> list[str]:
    """The lines recorded in ``path`` (none if it does not exist)."""
    try:
        return Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []


def add(a: int, b: int) -> int:
    return a + b


async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def set_mark(value: str) -> str:
    """Set a contextvar and leave it set: it must not leak into the next task."""
    MARK.set(value)
    return value


def read_mark() -> str:
    """The contextvar :func:`set_mark` sets, as this task sees it."""
    return MARK.get()


def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


def record(path: str, value: Any = None) -> Any:
    _append(path, str(value))
    return value


async def async_record(path: str, value: Any = None) -> Any:
    await asyncio.sleep(0)
    _append(path, str(value))
    return value


def fail_always(path: str) -> None:
    _append(path, "run")
    raise RuntimeError("this task always fails")


def fail_times(path: str, failures: int) -> str:
    """Fail on the first ``failures`` executions, then succeed."""
    _append(path, "run")
    if len(lines(path)) <= failures:
        raise ValueError(f"planned failure {len(lines(path))}")
    return "finally"


def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


async def async_sleep_for(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


def rendezvous(directory: str, parties: int, timeout: float) -> int:
    """Wait until ``parties`` calls are inside at once; fail after ``timeout`` seconds.

    Completes only if the worker really runs ``parties`` tasks concurrently.
    """
    Path(directory, uuid.uuid4().hex).touch()
    deadline = time.monotonic() + timeout
    while len(os.listdir(directory)) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(directory))} of {parties} arrived")
        time.sleep(0.01)
    return parties


async def async_rendezvous(directory: str, parties: int, timeout: float) -> int:
    Path(directory, uuid.uuid4().hex).touch()
    deadline = time.monotonic() + timeout
    while len(os.listdir(directory)) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(directory))} of {parties} arrived")
        await asyncio.sleep(0.01)
    return parties


def unserializable_result() -> object:
    return object()


def record_then_sleep(path: str, seconds: float) -> str:
    _append(path, f"start {os.getpid()}")
    time.sleep(seconds)
    _append(path, f"end {os.getpid()}")
    return "done"


class Nested:
    @staticmethod
    def method(x: int) -> int:
        return x * 2


def flaky_record(path: str, key: str, failure_percent: int) -> str:
    """Record ``key`` and the time, then fail on a fixed pseudo-random pattern.

    Whether execution n of ``key`` fails depends only on (key, n), so a run is
    reproducible whatever the scheduling.
    """
    executions = sum(1 for line in lines(path) if line.split()[0] == key)
    _append(path, f"{key} {time.time():.6f}")
    digest = hashlib.sha256(f"{key}/{executions}".encode()).digest()
    if digest[0] % 100 < failure_percent:
        raise RuntimeError(f"planned failure of {key}, execution {executions + 1}")
    return key


def lone_surrogate_result() -> dict[str, str]:
    """A result no store can keep: text with a lone surrogate."""
    return {"text": "caf\udce9"}


def nested_result(depth: int) -> list[Any]:
    """A result ``depth`` lists deep."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


# ---------------------------------------------------------------- process pool (ProcessPool)

_HOARD: list[bytes] = []  # what hog_memory keeps alive, as a leaking task would


def pid() -> int:
    return os.getpid()


async def async_pid() -> int:
    await asyncio.sleep(0)
    return os.getpid()


def exit_now(code: int) -> None:
    """End the process at once, without cleanup (as a C extension's exit() would)."""
    os._exit(code)


def exit_once(path: str, code: int) -> str:
    """End the process at once on the first execution (recorded in ``path``); then succeed."""
    first = not lines(path)
    _append(path, f"run {os.getpid()}")
    if first:
        os._exit(code)
    return "survived"


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)  # reads address 0: SIGSEGV


def hang_sleep(path: str) -> None:
    """Announce the pid, then block in C (``time.sleep``) far longer than any test waits."""
    _append(path, f"start {os.getpid()}")
    time.sleep(600)


def hang_until_stopped(path: str) -> None:
    """Like ``hang_sleep``, and record ``stopped`` when SIGTERM interrupts it (finally runs)."""
    _append(path, f"start {os.getpid()}")
    try:
        time.sleep(600)
    finally:
        _append(path, f"stopped {os.getpid()}")


def hang_once(path: str) -> str:
    """Hang (as ``hang_until_stopped``) on the first execution recorded in ``path``; then return."""
    if lines(path):
        _append(path, f"again {os.getpid()}")
        return "done"
    hang_until_stopped(path)
    return "unreachable"


def hang_busy(path: str) -> None:
    _append(path, f"start {os.getpid()}")
    while True:
        pass


def hang_socket_read(path: str) -> None:
    import socket

    _append(path, f"start {os.getpid()}")
    left, _right = socket.socketpair()
    left.recv(1)  # nobody ever writes


def hang_ignoring_sigterm(path: str) -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _append(path, f"start {os.getpid()}")
    time.sleep(600)


def hog_memory(mib: int) -> int:
    """Keep ``mib`` MiB alive in this process after returning; return the pid."""
    _HOARD.append(b"x" * (mib * 1024 * 1024))
    return os.getpid()


class UnpicklableError(Exception):
    """Cannot be pickled: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        import threading

        self.lock = threading.Lock()


def raise_unpicklable(message: str) -> None:
    raise UnpicklableError(message)


def wait_for_file(path: str, flag: str, timeout: float) -> str:
    """Record the pid in ``path``, then wait (polling) until ``flag`` exists."""
    _append(path, f"start {os.getpid()}")
    deadline = time.monotonic() + timeout
    while not os.path.exists(flag):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{flag} did not appear within {timeout}s")
        time.sleep(0.01)
    return "flag seen"


def log_twice(message: str) -> int:
    """Log ``message`` through omniq's logger and loguru's plain one; return the pid."""
    from loguru import logger

    from omniq.logging import get_logger

    get_logger().info(message)
    logger.info(f"plain {message}")
    return os.getpid()


def job_context() -> dict[str, Any]:
    from omniq._process import current_job

    job = current_job()
    assert job is not None
    return {"task_id": job["task_id"], "correlation_id": job["correlation_id"], **job["context"]}


def failing_initializer() -> None:
    raise RuntimeError("no logging here")


def echo_value(value: Any) -> Any:
    """Return ``value`` unchanged."""
    return value


def call_later_on_a_thread(seconds: float, fn: Any) -> Any:
    """Call ``fn()`` on a new thread after ``seconds``; the started ``threading.Timer``."""
    import threading

    timer = threading.Timer(seconds, fn)
    timer.start()
    return timer
