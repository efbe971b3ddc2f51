"""What each task costs PostgreSQL: WAL bytes per task, schema v3 beside v2, in one run.

Usage::

    python -m benchmarks.postgres_wal [--dsn DSN] [--tasks 5000] [--rounds 3]

Every round builds two stores on fresh schemas, one at the current schema version and
one stopped at version 2 (the schema omniq 0.2.0 made, which still had the indexes
``(status, updated_at, seq)`` and ``(updated_at, seq)``), and on each, through the
blocking twin: one ``enqueue_many`` of ``--tasks`` tasks, 500 single ``enqueue`` calls,
and a pool of 4 threads draining all of them (a claim and a finish each). It prints,
per store, the median over the rounds of the WAL the server wrote per task (from
``pg_current_wal_lsn()``; each index entry a write adds is WAL), and of the rates.

WAL bytes do not move with the load on the machine as rates do, but other sessions on
the same server write WAL too: run it on a quiet server. No test asserts these figures.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

from benchmarks.common import DEFAULT_POSTGRES_DSN, Postgres
from omniq import OmniQ, Settings
from omniq import _postgres_schema as schema

NOOP = "benchmarks.tasks.noop"
SINGLES = 500


@contextlib.contextmanager
def schema_version(version: int) -> Iterator[None]:
    """New stores opened meanwhile stop their migrations at ``version``."""
    current = schema.SCHEMA_VERSION
    schema.SCHEMA_VERSION = version
    try:
        yield
    finally:
        schema.SCHEMA_VERSION = current


class Wal:
    """The server's WAL position, read on a connection of its own."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.conn: Any = psycopg.connect(dsn, autocommit=True)

    def position(self) -> str:
        """The current WAL insert position."""
        return str(self.conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])

    def since(self, start: str) -> float:
        """Bytes of WAL written since ``start``."""
        row = self.conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (start,))
        return float(row.fetchone()[0])

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def measure(settings: Settings, wal: Wal, tasks: int) -> dict[str, float]:
    """WAL per task and rates of a batch, single enqueues and the drain of them all."""
    out: dict[str, float] = {}
    items = [{"func_path": NOOP} for _ in range(tasks)]
    with OmniQ(settings) as omniq:
        omniq.enqueue(NOOP)  # the first call opens the pool and migrates
        start, began = wal.position(), time.perf_counter()
        omniq.enqueue_many(items)
        out["many/s"] = tasks / (time.perf_counter() - began)
        out["many B/task"] = wal.since(start) / tasks
        start, began = wal.position(), time.perf_counter()
        for _ in range(SINGLES):
            omniq.enqueue(NOOP)
        out["enqueue/s"] = SINGLES / (time.perf_counter() - began)
        out["enqueue B/task"] = wal.since(start) / SINGLES
        total = tasks + SINGLES + 1
        start, began = wal.position(), time.perf_counter()
        with omniq.worker_pool(concurrency=4, handle_signals=False) as pool:
            done = pool.process_tasks(limit=total)
        if done != total:
            raise RuntimeError(f"the drain ran {done} of {total} tasks")
        out["drain c4/s"] = total / (time.perf_counter() - began)
        out["claim+finish B/task"] = wal.since(start) / total
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_POSTGRES_DSN)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    server = Postgres(args.dsn)
    if not server.available():
        print(f"skipped: {server.problem}")
        return 0
    results: dict[int, list[dict[str, float]]] = {}
    wal = Wal(args.dsn)
    try:
        for _ in range(args.rounds):
            for version in (schema.SCHEMA_VERSION, 2):  # interleaved: noise hits both
                with server.schema() as dsn, schema_version(version):
                    settings = Settings(backend="postgres", dsn=dsn)
                    results.setdefault(version, []).append(measure(settings, wal, args.tasks))
    finally:
        wal.close()
    names = list(next(iter(results.values()))[0])
    print(f"{'schema':<8}" + "".join(f"{name:>21}" for name in names))
    for version, rounds in results.items():
        medians = [statistics.median(r[name] for r in rounds) for name in names]
        print(f"{'v' + str(version):<8}" + "".join(f"{value:>21,.0f}" for value in medians))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
