"""One child process as the parent handles it: start it, wait on it, stop it, read its stacks.

A child gets two pipes: ``conn`` carries the protocol both ways, and ``lifeline`` is never
written (the child exits at its end of file, so it cannot outlive the parent). Its
``faulthandler`` writes to a dump file of its own, which the parent reads after a timeout
or a crash and deletes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from omniq import logging as omniq_logging
from omniq._process.child import Resolver, child_main
from omniq._process.jobs import decode_message
from omniq.serialization import Serializer

DEATH_WAIT = 5.0  # from a child's pipe closing to its exit, at most (a busy machine)
REAP_TIMEOUT = 30.0  # how long a SIGKILLed child may take to be reaped (a busy machine)
_DUMP_WAIT = 1.0  # seconds a timed-out child gets to write its stacks before SIGTERM
_DUMP_LIMIT = 64 * 1024  # characters of a child's stack dump kept in a TaskError


class ChildStartError(RuntimeError):
    """A child process could not be started, or failed before it was ready."""


@dataclass(frozen=True)
class ChildSpec:
    """What every child of one pool starts with."""

    context: BaseContext
    name: str
    resolve: Resolver | None
    serializer: Serializer | None
    initializer: Callable[[], object] | None
    start_timeout: float
    dump_dir: Path


class Child:
    """A started child process: its pipes, its exit sentinel and what it has done."""

    def __init__(
        self,
        process: BaseProcess,
        conn: Connection,
        lifeline: Connection,
        dump_path: Path,
        log_generation: int,
    ) -> None:
        self.process = process
        self.conn = conn
        self.lifeline = lifeline  # never written: the child ends itself when this closes
        self.pid = process.pid or 0
        self.sentinel = process.sentinel
        self.dump_path = dump_path
        self.log_generation = log_generation  # of the logging configuration it applied
        self.jobs = 0
        self.exitcode: int | None = None  # once reaped
        self._reaped = False
        # One poll object for the child's life: multiprocessing's wait() builds and tears
        # down a selector on every call, a good part of a no-op job's cost.
        self._poller = select.poll()

    @classmethod
    def start(cls, spec: ChildSpec, serial: int, wake_fd: int) -> Child:
        """Start a child and wait until it is ready; :class:`ChildStartError` if it is not.

        ``wake_fd`` turns readable when the pool shuts down: waits on the child end then.
        """
        dump_path = spec.dump_dir / f"child-{serial}.txt"
        generation, log_config = omniq_logging.export_config()
        settings = json.dumps({"log": log_config, "dump_path": str(dump_path)})
        parent_conn, child_conn = spec.context.Pipe(duplex=True)
        lifeline_r, lifeline_w = spec.context.Pipe(duplex=False)
        process = spec.context.Process(  # type: ignore[attr-defined]
            target=child_main,
            args=(
                child_conn,
                lifeline_r,
                settings,
                spec.resolve,
                spec.serializer,
                spec.initializer,
            ),
            name=f"{spec.name}-child-{serial}",
        )
        try:
            process.start()
        except Exception as error:
            parent_conn.close()
            lifeline_w.close()
            raise ChildStartError(f"cannot start a child process: {error!r}") from error
        finally:
            # The child's ends live in the child only: end of file when either side is gone.
            child_conn.close()
            lifeline_r.close()
        child = cls(process, parent_conn, lifeline_w, dump_path, generation)
        child.watch(child.conn.fileno(), child.sentinel, wake_fd)
        try:
            child._await_ready(spec.start_timeout)
        except ChildStartError:
            child.kill(0.0)
            raise
        return child

    def _await_ready(self, timeout: float) -> None:
        ready = self.wait(timeout)
        if self.conn.fileno() not in ready and self.sentinel not in ready:
            if ready:
                raise ChildStartError("the pool is shutting down")
            raise ChildStartError(
                f"the child process (pid {self.pid}) was not ready within {timeout:g}s"
            )
        try:
            message = decode_message(self.conn.recv_bytes())
        except (EOFError, OSError):
            self.reap()
            raise ChildStartError(
                f"the child process (pid {self.pid}) {describe_exit(self.exitcode)} "
                "before it was ready (does the main module import cleanly?)"
            ) from None
        if message["op"] == "init_failed":
            error = message.get("error") or {}
            raise ChildStartError(
                f"the child process's initializer failed: {error.get('exception_type')}: "
                f"{error.get('message')}"
            )

    # ------------------------------------------------------------------ waiting

    def watch(self, *fds: int) -> None:
        """Have :meth:`wait` wake up when one of ``fds`` turns readable (or hangs up)."""
        for fd in fds:
            self._poller.register(fd, select.POLLIN)

    def unwatch(self, fd: int) -> None:
        """Stop waiting on ``fd`` (a flag that stays readable once it is)."""
        self._poller.unregister(fd)

    def wait(self, timeout: float | None) -> set[int]:
        """The watched descriptors that are ready, after at most ``timeout`` seconds."""
        milliseconds = None if timeout is None else math.ceil(timeout * 1000)
        return {fd for fd, _ in self._poller.poll(milliseconds)}

    def receive(self) -> dict[str, Any] | None:
        """The child's next message, or ``None`` when its pipe closed (it died)."""
        try:
            return decode_message(self.conn.recv_bytes())
        except (EOFError, OSError):
            return None

    # ------------------------------------------------------------------ stopping

    def retire(self, grace: float) -> None:
        """Let an idle child leave: close its pipe (end of file), then :meth:`kill` if it stays."""
        with contextlib.suppress(OSError):
            self.conn.close()
        if not self._reaped:
            self.process.join(grace)
        self.kill(0.0)

    def reap(self) -> None:
        """Collect a child that is dying on its own (its pipe closed): its real exit code."""
        # The pipe can close a moment before the process is reapable.
        if not self._reaped:
            self.process.join(DEATH_WAIT)
        self.kill(0.0)

    def kill(self, grace: float) -> str:
        """SIGTERM, then SIGKILL after ``grace``; reap; say which signal did it.

        Records the exit code before the process object is closed. Idempotent: a child
        already reaped (one that died before it was ready, say) is left as it is.
        """
        with contextlib.suppress(OSError):
            self.conn.close()
        if self._reaped:
            return "SIGTERM"
        self._reaped = True
        process = self.process
        how = "SIGTERM"
        if process.exitcode is None:
            with contextlib.suppress(OSError, ValueError):
                process.terminate()
            process.join(grace)
        if process.exitcode is None:
            how = f"SIGKILL after a grace of {grace:g}s"
            with contextlib.suppress(OSError, ValueError):
                process.kill()
            process.join(REAP_TIMEOUT)
        self.exitcode = process.exitcode
        with contextlib.suppress(OSError):
            self.lifeline.close()  # only now: its end of file makes a child exit at once
        with contextlib.suppress(ValueError):
            process.close()
        return how

    # ------------------------------------------------------------------ stacks

    def request_stack(self) -> None:
        """Have the child's faulthandler write its stacks (SIGUSR1), and wait for them, briefly.

        Waiting matters: while the child's main thread has SIGUSR1 pending, the kernel
        would hand the SIGTERM that follows to another thread, where it cannot interrupt
        the job.
        """
        try:
            os.kill(self.pid, signal.SIGUSR1)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + _DUMP_WAIT
        size = -1
        while time.monotonic() < deadline:
            try:
                now = self.dump_path.stat().st_size
            except OSError:
                return
            if now > 0 and now == size:
                return  # written, and no longer growing
            size = now
            time.sleep(0.002)

    def take_dump(self) -> str:
        """What faulthandler wrote (a fatal signal, or SIGUSR1), and delete the file."""
        try:
            with self.dump_path.open(encoding="utf-8", errors="replace") as f:
                text = f.read(_DUMP_LIMIT)
        except OSError:
            return ""
        finally:
            with contextlib.suppress(OSError):
                self.dump_path.unlink()
        return text.strip()


STOP_SIGNALS = frozenset({-signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP, -signal.SIGKILL})
"""Exit codes of a child stopped rather than crashed, when the pool is shutting down."""


def describe_exit(code: int | None) -> str:
    """How a child ended, in words: ``exited with code 3``, ``was killed by signal 11 (...)``."""
    if code is None:
        return "stopped answering"
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "unknown signal"
    hint = "; the kernel's out-of-memory killer sends this" if -code == signal.SIGKILL else ""
    return f"was killed by signal {-code} ({name}{hint})"
