"""The main loop of a pool's child process: receive a job, run it, send back the outcome.

A child is started by :class:`omniq._process.pool.ProcessPool` (``forkserver`` or
``spawn``, never a plain fork) and serves one job at a time until its pipe closes, the
parent asks it to stop, or the parent kills it. It holds no store connection: it only
resolves the task's function, decodes the arguments, runs the function inside the task's
log context and encodes what came of it.

Signals: SIGINT is ignored (a Ctrl-C in the terminal reaches the whole process group, and
the parent decides what a stop means); SIGTERM from the parent (a hard timeout, or the end
of a shutdown's grace) interrupts the running function with a ``BaseException``, so its
``finally`` blocks run, then the child dies of SIGTERM. SIGUSR1 makes ``faulthandler``
write every thread's stack to the child's dump file, which the parent reads after a
timeout or a crash to put the stack in the task's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import faulthandler
import inspect
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from multiprocessing.connection import Connection
from types import FrameType, MappingProxyType
from typing import Any

from omniq import logging as omniq_logging
from omniq._concurrency import is_coroutine_function
from omniq._functions import check_arguments, resolve_function
from omniq._process.jobs import decode_message, encode_message
from omniq.exceptions import TaskFunctionError
from omniq.models import ErrorType, TaskError
from omniq.serialization import DEFAULT_SERIALIZER, Serializer
from omniq.task_context import TaskContext, running_task

Resolver = Callable[[str], Callable[..., Any]]

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_JOB_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1}

_job: ContextVar[Mapping[str, Any] | None] = ContextVar("omniq_process_job", default=None)


def current_job() -> Mapping[str, Any] | None:
    """The job running in this child process, or ``None`` outside one (or outside a child).

    A read-only mapping with ``task_id``, ``func_path``, ``correlation_id`` and ``context``
    (the facts the parent sent: queue, attempt, max_retries, worker, eta...).
    """
    return _job.get()


class Terminated(BaseException):
    """Raised in the running function when the parent sends SIGTERM.

    A ``BaseException``, so ``except Exception`` in task code does not swallow it.
    """


def child_main(
    conn: Connection,
    lifeline: Connection,
    settings_text: str,
    resolve: Resolver | None,
    serializer: Serializer | None,
    initializer: Callable[[], object] | None,
) -> None:
    """Serve jobs from ``conn`` until it closes or says stop; never returns normally.

    ``lifeline`` is a pipe the parent never writes to: its end of file means the parent is
    gone (see :func:`_die_with_parent`).
    ``settings_text`` is JSON from the parent: its log configuration (``log``), the dump
    file for stacks (``dump_path``). ``resolve`` maps a ``func_path`` to the callable
    (default: import by path). Exits through ``os._exit`` so that threads a task left
    behind cannot hold the process open.
    """
    _die_with_parent(lifeline)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    terminated = False
    code = 0
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
        settings = json.loads(settings_text)
        dump = open(settings["dump_path"], "w", encoding="utf-8")  # noqa: SIM115  (for life)
        faulthandler.enable(dump, all_threads=True)
        faulthandler.register(signal.SIGUSR1, dump, all_threads=True)
        # faulthandler asks for SA_RESTART: a blocking call that SIGUSR1 and SIGTERM hit
        # together would be restarted in the kernel, and the SIGTERM handler never run.
        signal.siginterrupt(signal.SIGUSR1, True)
        runner = _start(conn, settings, resolve, serializer, initializer)
        if runner is None:
            code = 1
        else:
            runner.serve()
    except Terminated:
        terminated = True
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent went away while we answered: nobody is left to tell
    except Exception:  # omniq's own bug: say it where the parent's stderr goes, and leave
        traceback.print_exc()
        code = 1
    finally:
        _flush()
    if terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # die of the signal the parent sent
    os._exit(code)


def _start(
    conn: Connection,
    settings: Mapping[str, Any],
    resolve: Resolver | None,
    serializer: Serializer | None,
    initializer: Callable[[], object] | None,
) -> _Runner | None:
    """Set up logging and run the initializer; tell the parent ``ready`` (or why not)."""
    try:
        omniq_logging.prepare_child_process()
        omniq_logging.apply_config(settings.get("log"))
        if initializer is not None:
            initializer()
    except Exception as error:
        failure = describe(error, ErrorType.CRASHED)
        conn.send_bytes(encode_message({"op": "init_failed", "error": failure.to_dict()}))
        return None
    runner = _Runner(conn, resolve or resolve_function, serializer or DEFAULT_SERIALIZER)
    conn.send_bytes(encode_message({"op": "ready", "pid": os.getpid()}))
    return runner


class _Runner:
    """Runs the jobs of one child, one at a time, and answers each on the pipe."""

    def __init__(self, conn: Connection, resolve: Resolver, serializer: Serializer) -> None:
        self._conn = conn
        self._resolve = resolve
        self._serializer = serializer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._statm = _open_statm()

    def serve(self) -> None:
        """Answer ``run`` messages until the pipe closes or a ``stop`` message arrives."""
        while True:
            try:
                data = self._conn.recv_bytes()
            except (EOFError, OSError):
                return  # the parent closed the pipe, or died: nothing more to do
            message = decode_message(data)
            if message["op"] == "run":
                self._conn.send_bytes(encode_message(self.run(message["job"])))
            elif message["op"] == "log":  # the parent's logging was configured anew
                omniq_logging.apply_config(message["config"])
            elif message["op"] == "stop":
                return
            else:
                raise ValueError(f"unknown message from the parent: {message['op']!r}")

    def run(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Run one job in its log context; the ``done`` message for the parent."""
        task_id: str = job["task_id"]
        correlation_id: str = job["correlation_id"]
        fields: dict[str, Any] = job["log_fields"]
        started = time.perf_counter()
        token = _job.set(
            MappingProxyType(
                {
                    "task_id": task_id,
                    "func_path": job["func_path"],
                    "correlation_id": correlation_id,
                    "context": MappingProxyType(job["context"]),
                }
            )
        )
        task = _task_context(job)
        try:
            with (
                omniq_logging.task_context(
                    task_id, "execute", correlation_id=correlation_id, **fields
                ),
                running_task(task) if task is not None else contextlib.nullcontext(),
            ):
                omniq_logging.log_task_started(
                    task_id,
                    job["context"].get("attempt", 1),
                    correlation_id=correlation_id,
                    **fields,
                )
                result, error = self._call(job["func_path"], job["payload"])
        finally:
            _job.reset(token)
        return {
            "op": "done",
            "result": result,
            "error": error.to_dict() if error is not None else None,
            "duration": time.perf_counter() - started,
            "rss": _rss_bytes(self._statm),
        }

    def _call(self, func_path: str, payload: str) -> tuple[str | None, TaskError | None]:
        """Resolve, decode, check, run and encode; errors as the thread executor names them.

        Import and argument errors are not retryable (running again cannot help), nor is a
        result the serializer refuses; anything the function raises is.
        """
        try:
            function = self._resolve(func_path)
        except TaskFunctionError as failure:
            kind = getattr(failure, "error_type", ErrorType.IMPORT)
            return None, describe(failure, kind, is_retryable=False)
        except Exception as failure:  # a resolver hook (the allow-list) that refused
            return None, describe(failure, ErrorType.IMPORT, is_retryable=False)
        try:
            decoded = self._serializer.loads(payload)
            args, kwargs = decoded["args"], decoded["kwargs"]
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise TypeError("args/kwargs of the wrong type")
        except (ValueError, TypeError, KeyError) as failure:
            message = f"the task's arguments cannot be decoded: {failure}"
            return None, TaskError(ErrorType.SERIALIZATION, message, is_retryable=False)
        try:
            check_arguments(function, tuple(args), kwargs)
        except TaskFunctionError as failure:
            kind = getattr(failure, "error_type", ErrorType.ARGUMENTS)
            return None, describe(failure, kind, is_retryable=False)
        try:
            value = self._invoke(function, args, kwargs)
        except Terminated:
            raise
        except BaseException as failure:  # SystemExit or KeyboardInterrupt from a task, too
            return None, describe(failure, ErrorType.RUNTIME)
        try:
            return self._serializer.dumps(value), None
        except (TypeError, ValueError) as failure:
            message = f"the task's result cannot be serialized: {failure}"
            return None, TaskError(ErrorType.SERIALIZATION, message, is_retryable=False)

    def _invoke(self, function: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
        if is_coroutine_function(function):
            return self._run_coroutine(function(*args, **kwargs))
        value = function(*args, **kwargs)
        if inspect.isawaitable(value):  # a plain callable that returned an awaitable
            return self._run_coroutine(value)
        return value

    def _run_coroutine(self, awaitable: Any) -> Any:
        """Run on this child's event loop, kept between jobs (a new loop per job costs more).

        As ``asyncio.run`` does, tasks the job left behind are cancelled when it returns, so
        nothing of one job runs on during the next.
        """
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
        loop = self._loop
        try:
            return loop.run_until_complete(awaitable)
        finally:
            leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in leftovers:
                task.cancel()
            if leftovers:
                loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))


def _task_context(job: Mapping[str, Any]) -> TaskContext | None:
    """What ``omniq.current_task()`` gives inside the job, when the parent said enough.

    A worker pool's jobs carry the task's queue, attempt, budget, worker and eta
    (:func:`omniq._process.jobs.job_for_task`); a bare job runs without a task context.
    """
    facts = job["context"]
    try:
        return TaskContext(
            id=job["task_id"],
            func_path=job["func_path"],
            queue=str(facts["queue"]),
            attempt=int(facts["attempt"]),
            max_retries=facts.get("max_retries"),
            correlation_id=job["correlation_id"],
            worker=str(facts["worker"]),
            eta=dt.datetime.fromisoformat(facts["eta"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def describe(
    failure: BaseException, kind: str = ErrorType.RUNTIME, *, is_retryable: bool = True
) -> TaskError:
    """``failure`` as a :class:`TaskError`, even when its ``__str__`` raises."""
    try:
        return TaskError.from_exception(failure, kind, is_retryable=is_retryable)
    except Exception:  # an exception whose str() fails: keep its type and where it came from
        exc_type = type(failure)
        return TaskError(
            error_type=kind,
            message=f"<unprintable {exc_type.__name__}>",
            exception_type=f"{exc_type.__module__}.{exc_type.__qualname__}",
            traceback="".join(traceback.format_tb(failure.__traceback__)),
            is_retryable=is_retryable,
        )


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"stopped by signal {signum}")


def _die_with_parent(lifeline: Connection) -> None:
    """Make sure this child does not outlive the pool's process, even in the middle of a job.

    Everywhere: a daemon thread waits on ``lifeline``, a pipe whose only writer is the
    pool's process, and ends this process at its end of file, that is when the pool's
    process is gone. On Linux the kernel also sends SIGKILL when the parent dies
    (``PR_SET_PDEATHSIG``), which works even while a C extension holds the GIL. Under
    ``forkserver`` that parent is the fork server: it exits once no process holds its
    "alive" pipe, so this child lets go of its copy (see :func:`_leave_the_fork_server`).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _leave_the_fork_server()

    def watch() -> None:
        # Signals are for the main thread, which runs the job: one this thread took would
        # not interrupt the job's blocking call.
        signal.pthread_sigmask(signal.SIG_BLOCK, _JOB_SIGNALS)
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()
        os._exit(1)  # nobody is left to answer to

    threading.Thread(target=watch, name="omniq-lifeline", daemon=True).start()


def _leave_the_fork_server() -> None:
    """Close this child's copy of the fork server's "alive" pipe (``forkserver`` only).

    multiprocessing hands it to every child, so that the fork server lives while any child
    does; then a child stuck in a job would keep its parent, the fork server, alive after
    the pool's process died, and its death signal would never come. Without the pipe, a
    task that uses the ``forkserver`` start method itself gets a fork server of its own.
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if server is None or not isinstance(alive_fd, int):
        return  # started with spawn, or a multiprocessing that works differently
    with contextlib.suppress(OSError):
        os.close(alive_fd)
    server._forkserver_alive_fd = None
    server._forkserver_address = None


def _open_statm() -> int | None:
    try:
        return os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return None


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes(statm: int | None) -> int | None:
    """This process's resident memory now (Linux), else its peak (``getrusage``)."""
    if statm is not None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(os.pread(statm, 128, 0).split()[1]) * _PAGE_SIZE
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _flush() -> None:
    """Write out what the logging sinks and the standard streams still hold."""
    with contextlib.suppress(Exception):
        omniq_logging.get_logger().complete()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
