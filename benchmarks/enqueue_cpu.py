"""Wall and CPU time per ``enqueue`` on SQLite FULL: omniq against Huey, interleaved.

Usage (from the repository root; the Huey rows need Huey, which ``nox -s bench``'s
virtualenv has, and are left out without it)::

    python -m benchmarks.enqueue_cpu                 # 1,000 calls a measure, 5 rounds
    python -m benchmarks.enqueue_cpu --calls 2000 --rounds 3

``python -m benchmarks`` gives tasks per second; this gives what a call costs, which
load on the machine moves less: for each workload the median over ``--rounds`` of the
wall time and the process's CPU time (every thread: the producers, aiosqlite's thread,
the WAL syncs' system time) per call, in µs. The workloads, each on a fresh store:

* ``one producer``: ``OmniQ.enqueue``, ``AsyncOmniQ.enqueue`` and a ``SqliteHuey``
  task call, one after the other on one thread;
* ``8 threads``: eight threads share one ``OmniQ`` (group commit) or one ``SqliteHuey``.

The rounds interleave omniq and Huey, so a change in the disk's speed during the run
falls on both. These are measurements, not assertions; the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import tasks
from omniq import AsyncOmniQ, OmniQ, Settings

PRODUCER_THREADS = 8
Cost = tuple[float, float]  # wall µs, CPU µs per call


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _per_call(calls: int, started: tuple[float, float]) -> Cost:
    wall, cpu = started
    return (
        (time.perf_counter() - wall) / calls * 1e6,
        (time.process_time() - cpu) / calls * 1e6,
    )


def _timed(calls: int, run: Callable[[], None]) -> Cost:
    started = _clocks()
    run()
    return _per_call(calls, started)


def _threads(calls: int, call: Callable[[], object]) -> Cost:
    share = calls // PRODUCER_THREADS

    def produce() -> None:
        for _ in range(share):
            call()

    def run() -> None:
        workers = [threading.Thread(target=produce) for _ in range(PRODUCER_THREADS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    return _timed(share * PRODUCER_THREADS, run)


def _settings(path: Path) -> Settings:
    return Settings(backend="sqlite", base_dir=path)


def omniq_one(path: Path, calls: int) -> Cost:
    """One thread, one ``OmniQ.enqueue`` per task."""
    with OmniQ(_settings(path)) as omniq:
        omniq.enqueue(tasks.NOOP)  # warm: schema, connection

        def run() -> None:
            for _ in range(calls):
                omniq.enqueue(tasks.NOOP)

        return _timed(calls, run)


def omniq_async_one(path: Path, calls: int) -> Cost:
    """One coroutine, one ``AsyncOmniQ.enqueue`` per task."""

    async def measure() -> Cost:
        async with AsyncOmniQ(_settings(path)) as omniq:
            await omniq.enqueue(tasks.NOOP)
            started = _clocks()
            for _ in range(calls):
                await omniq.enqueue(tasks.NOOP)
            return _per_call(calls, started)

    return asyncio.run(measure())


def omniq_threads(path: Path, calls: int) -> Cost:
    """Eight threads share one ``OmniQ``."""
    with OmniQ(_settings(path)) as omniq:
        omniq.enqueue(tasks.NOOP)
        return _threads(calls, lambda: omniq.enqueue(tasks.NOOP))


def _huey_noop(path: Path) -> tuple[Any, Callable[[], Any]]:
    module: Any = importlib.import_module("huey")  # not an omniq dependency: only here
    huey = module.SqliteHuey("bench", filename=str(path / "huey.db"))  # WAL, FULL

    def noop() -> None:
        pass

    task: Callable[[], Any] = huey.task()(noop)
    task()  # warm: the table, the connection
    return huey, task


def huey_one(path: Path, calls: int) -> Cost:
    """One thread, one Huey task call per task."""
    huey, noop = _huey_noop(path)
    try:

        def run() -> None:
            for _ in range(calls):
                noop()

        return _timed(calls, run)
    finally:
        huey.storage.close()


def huey_threads(path: Path, calls: int) -> Cost:
    """Eight threads share one ``SqliteHuey``."""
    huey, noop = _huey_noop(path)
    try:
        return _threads(calls, noop)
    finally:
        huey.storage.close()


WORKLOADS: dict[str, list[tuple[str, Callable[[Path, int], Cost]]]] = {
    "one producer": [
        ("omniq blocking", omniq_one),
        ("omniq async", omniq_async_one),
        ("Huey", huey_one),
    ],
    f"{PRODUCER_THREADS} threads": [("omniq blocking", omniq_threads), ("Huey", huey_threads)],
}


def chosen_workloads() -> dict[str, list[tuple[str, Callable[[Path, int], Cost]]]]:
    """The workloads to run: without Huey installed, omniq's rows only."""
    if importlib.util.find_spec("huey") is not None:
        return WORKLOADS
    return {
        workload: [(name, runner) for name, runner in runners if name != "Huey"]
        for workload, runners in WORKLOADS.items()
    }


def main() -> None:
    """Run every workload ``--rounds`` times, interleaved; print medians and factors."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="enqueue calls per measure")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--store-dir", default=None, help="where scratch stores go")
    args = parser.parse_args()
    workloads = chosen_workloads()
    costs: dict[tuple[str, str], list[Cost]] = {}
    for _ in range(args.rounds):
        for workload, runners in workloads.items():
            for name, runner in runners:
                with tempfile.TemporaryDirectory(dir=args.store_dir) as scratch:
                    costs.setdefault((workload, name), []).append(runner(Path(scratch), args.calls))
    print(
        f"medians of {args.rounds} rounds of {args.calls:,} calls; SQLite synchronous=FULL; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    if workloads is not WORKLOADS:
        print("  (Huey is not installed: no Huey rows, no factors)")
    for workload, runners in workloads.items():
        huey = costs.get((workload, "Huey"))
        huey_wall = None if huey is None else statistics.median(wall for wall, _ in huey)
        for name, _ in runners:
            wall = statistics.median(wall for wall, _ in costs[(workload, name)])
            cpu = statistics.median(cpu for _, cpu in costs[(workload, name)])
            factor = "" if huey_wall is None else f"   {huey_wall / wall:5.2f}x Huey"
            print(f"  {workload:<13} {name:<15} {wall:7.1f} µs wall {cpu:7.1f} µs CPU{factor}")


if __name__ == "__main__":
    main()
