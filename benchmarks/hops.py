"""What one thread hop costs on this machine: the floor under the async SQLite rows.

Usage (from the repository root)::

    python -m benchmarks.hops                # 2,000 rounds of each measure
    python -m benchmarks.hops --rounds 5000

The async SQLite store runs each operation on its aiosqlite connection's thread: the
event loop hands the call over and is woken when it is done. On a VM whose idle
virtual CPUs sleep, each wake-up of a sleeping thread costs far more than the Python
around it, and an ``enqueue`` pays two (there and back) on top of its disk sync. This
prints, as medians of ``--rounds`` calls (µs):

* ``thread ping-pong``: a round trip to a waiting thread through two ``SimpleQueue``s,
  what the blocking pool's hand-off of a task to its thread pays per task;
* ``aiosqlite no-op``: ``await`` a no-op on an aiosqlite connection's thread, what the
  async store pays per operation on top of the operation itself;
* ``commit direct`` / ``commit via aiosqlite``: a one-row ``UPDATE`` at
  ``synchronous=FULL`` (one WAL sync) called on this thread, then through aiosqlite.

These are measurements, not assertions: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from queue import SimpleQueue

import aiosqlite

from omniq._concurrency import arun_sqlite


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def ping_pong(rounds: int) -> float:
    """Median round trip to another thread that waits on a ``SimpleQueue``."""
    there: SimpleQueue[object] = SimpleQueue()
    back: SimpleQueue[object] = SimpleQueue()

    def echo() -> None:
        while (item := there.get()) is not None:
            back.put(item)

    thread = threading.Thread(target=echo, name="bench-echo", daemon=True)
    thread.start()
    samples = []
    for _ in range(rounds):
        time.sleep(0.0002)  # let the other thread go back to sleep, as between tasks
        start = time.perf_counter()
        there.put(1)
        back.get()
        samples.append(time.perf_counter() - start)
    there.put(None)
    thread.join()
    return _median_us(samples)


def _update(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE t SET n = n + 1 WHERE id = 1")


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, n INTEGER)")
    conn.execute("INSERT OR IGNORE INTO t VALUES (1, 0)")
    return conn


def commit_direct(path: Path, rounds: int) -> float:
    """Median one-row autocommit UPDATE at synchronous=FULL, on this thread."""
    conn = _open(path)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        _update(conn)
        samples.append(time.perf_counter() - start)
    conn.close()
    return _median_us(samples)


async def _through_aiosqlite(
    path: Path, rounds: int, call: Callable[[sqlite3.Connection], None]
) -> float:
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute("PRAGMA synchronous=FULL")
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await arun_sqlite(conn, call)  # how the async store runs each operation
        samples.append(time.perf_counter() - start)
    await conn.close()
    return _median_us(samples)


def main(argv: list[str] | None = None) -> None:
    """Print the hop figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args(argv)
    rounds = max(10, args.rounds)
    with tempfile.TemporaryDirectory(prefix="omniq-hops-") as directory:
        path = Path(directory) / "hops.db"
        _open(path).close()
        figures = {
            "thread ping-pong": ping_pong(rounds),
            "aiosqlite no-op": asyncio.run(_through_aiosqlite(path, rounds, lambda conn: None)),
            "commit direct": commit_direct(path, rounds),
            "commit via aiosqlite": asyncio.run(_through_aiosqlite(path, rounds, _update)),
        }
    print(f"medians of {rounds} calls; load average {os.getloadavg()[0]:.2f}")
    for name, value in figures.items():
        print(f"  {name:<22} {value:8.1f} µs")


if __name__ == "__main__":
    main()
