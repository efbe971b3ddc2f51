"""A worker process for the multi-process and fault tests.

``python worker_process.py {async|sync} [--mode drain|serve] [--concurrency N]
[--lease S] [--grace S] [--poll S] [--processes N [--max-tasks-per-child N]]``
(``--processes``: the process executor). The store comes from the ``OMNIQ_*``
environment (``Settings.from_env()``). ``drain`` runs every due task and exits when nothing
more is due; ``serve`` runs until SIGINT/SIGTERM. Prints the number of task
executions it finished, then ``ready`` is printed at start so tests can wait for it.
A SIGINT/SIGTERM that arrives while no pool handles signals stops the process as the
pool would have, and prints every thread's stack to stderr (see
:func:`stopped_outside_the_pool`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

from omniq import AsyncOmniQ, OmniQ, Settings
from omniq.logging import configure


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("twin", choices=["async", "sync"])
    parser.add_argument("--mode", choices=["drain", "serve"], default="drain")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--poll", type=float, default=0.05, help="poll_interval, seconds")
    parser.add_argument("--log", action="store_true", help="omniq's log to stderr")
    parser.add_argument("--processes", type=int, help="the process executor, N children")
    parser.add_argument("--max-tasks-per-child", type=int)
    return parser.parse_args()


def pool_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "concurrency": args.concurrency,
        "lease_timeout": args.lease,
        "shutdown_timeout": args.grace,
    }
    if args.processes is not None:
        options.update(
            executor="process",
            processes=args.processes,
            concurrency=min(args.concurrency, args.processes),
            max_tasks_per_child=args.max_tasks_per_child,
        )
    return options


async def work_async(settings: Settings, args: argparse.Namespace) -> int:
    async with AsyncOmniQ(settings) as omniq:
        pool = omniq.worker_pool(**pool_options(args))
        async with pool:
            say_ready()
            if STOP_REQUESTED:  # a signal came before the pool could handle it
                return pool.processed
            if args.mode == "serve":
                await pool.run()
                return pool.processed
            return await pool.process_tasks(limit=10**9)


def work_sync(settings: Settings, args: argparse.Namespace) -> int:
    with OmniQ(settings) as omniq:
        pool = omniq.worker_pool(**pool_options(args))
        with pool:
            say_ready()
            if STOP_REQUESTED:  # a signal came before the pool could handle it
                return pool.processed
            if args.mode == "serve":
                pool.run()
                return pool.processed
            return pool.process_tasks(limit=10**9)


STOP_REQUESTED: list[int] = []  # signals that came while no pool handled signals
READY: dict[str, float] = {}  # when "ready" was being printed, and when that print returned


def say_ready() -> None:
    """Print ``ready`` (the tests wait for it), noting when."""
    READY["printing"] = time.monotonic()
    print("ready", flush=True)
    READY["printed"] = time.monotonic()


def stopped_outside_the_pool(signum: int, _frame: FrameType | None) -> None:
    """A signal that came while no pool handled signals: note where everything was, stop.

    The pool handles SIGINT/SIGTERM itself while it serves and gives this handler back
    afterwards, so this runs only when a signal lands before or after serving (start-up,
    shutdown). The process then stops as the pool would have (it does not start
    serving; after serving it simply ends), and stderr says where every thread was and
    how long ago ``ready`` was printed: CI has seen a worker's main thread still on that
    print seconds after the test read its ``ready``, and this is the evidence to look at.
    """
    STOP_REQUESTED.append(signum)
    now = time.monotonic()
    since = {name: f"{now - at:.3f}s ago" for name, at in READY.items()}
    # Straight to the descriptor, as faulthandler writes: the interrupted main thread
    # may be inside a write to sys.stderr, whose buffer refuses a reentrant call.
    line = f"signal {signum} arrived while no pool handled signals; ready: {since}\n"
    os.write(sys.stderr.fileno(), line.encode())
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    # No event loop (RuntimeError), or sys.stderr busy in the interrupted thread (also
    # RuntimeError): the threads' stacks above say enough.
    with contextlib.suppress(RuntimeError):
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)
        sys.stderr.flush()


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stopped_outside_the_pool)
    args = options()
    if args.log:
        configure(level="INFO")  # to stderr: a test reads it to see what the worker does
    settings = Settings.from_env(poll_interval=args.poll)
    if args.twin == "async":
        done = asyncio.run(work_async(settings, args))
    else:
        done = work_sync(settings, args)
    print(done, flush=True)


if __name__ == "__main__":
    main()
