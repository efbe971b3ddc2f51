"""omniq on PostgreSQL beside the PostgreSQL peers it can install, in one run.

``python -m benchmarks.peers`` (``nox -s bench-peers`` installs the peers in its own
virtualenv). Each measure runs on a fresh schema of one server, omniq in both twins at
its defaults (``synchronous_commit`` as the server says), each peer at its own:

- enqueue/s: one call per task; many/s: one batch of up to 10,000 tasks;
- drain c4/s, drain c16/s: one worker with that many tasks at once, from a backlog;
- wake p50 ms: an idle worker, the producer's enqueue call to the task's start.

Peers: pgqueuer (asyncpg, its fastest driver; at most c jobs at once, dequeued in
batches of c/2, the largest it allows).
A peer that is not installed is skipped with a note. No test asserts these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from benchmarks import tasks, workloads
from benchmarks.common import DEFAULT_POSTGRES_DSN, Postgres
from omniq import Settings

PAUSES = (0.05, 0.1, 0.25, 0.5, 0.05, 0.1, 0.25, 0.5)  # idle pauses before each wake-up sample
Row = dict[str, float | None]


# ---------------------------------------------------------------------- omniq


def omniq_row(server: Postgres, twin: str, n: int, cap: float) -> Row:
    """omniq's figures in ``twin`` (the measures of ``benchmarks.workloads``)."""
    sync_drain, async_drain, _ = workloads.THROUGHPUT["drain_c4"]
    measures = {
        "enqueue": workloads.THROUGHPUT["enqueue"],
        "many": workloads.THROUGHPUT["enqueue_many"],
        "drain_c4": workloads.THROUGHPUT["drain_c4"],
        "drain_c16": (sync_drain, async_drain, (16,)),
    }
    row: Row = {}
    for name, (sync_fn, async_fn, extra) in measures.items():
        with server.schema() as dsn:
            settings = Settings(backend="postgres", dsn=dsn)
            rate = workloads.twin_call(twin, sync_fn, async_fn, settings, n, cap, *extra)
        row[name] = rate.per_second
    with server.schema() as dsn:
        settings = Settings(backend="postgres", dsn=dsn)
        wake = workloads.twin_call(
            twin, workloads.sync_wakeup, workloads.async_wakeup, settings, PAUSES
        )
    row["wake_ms"] = statistics.median(wake.latencies) * 1000
    return row


# ---------------------------------------------------------------------- pgqueuer


def pgqueuer_available() -> str | None:
    """Why pgqueuer cannot run here, or None."""
    for module in ("pgqueuer", "asyncpg"):
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{module} is not installed (nox -s bench-peers installs it)"
    return None


@contextlib.asynccontextmanager
async def _pgqueuer(server: Postgres) -> AsyncIterator[tuple[Any, Callable[[], Any]]]:
    """pgqueuer installed in a fresh schema: its queries, and a factory of new drivers."""
    asyncpg: Any = importlib.import_module("asyncpg")
    db: Any = importlib.import_module("pgqueuer.db")
    queries_module: Any = importlib.import_module("pgqueuer.queries")
    with server.schema_name() as schema:
        connections: list[Any] = []

        async def driver() -> Any:
            conn = await asyncpg.connect(dsn=server.dsn, server_settings={"search_path": schema})
            connections.append(conn)
            return db.AsyncpgDriver(conn)

        queries = queries_module.Queries(await driver())
        await queries.install(create_schema=False)
        try:
            yield queries, driver
        finally:
            for conn in connections:
                with contextlib.suppress(Exception):
                    await conn.close()


async def _pgq_enqueue(server: Postgres, n: int, cap: float) -> float:
    async with _pgqueuer(server) as (queries, _):
        await queries.enqueue("fetch", None)
        start = time.perf_counter()
        done = 0
        while done < n and time.perf_counter() < start + cap:
            await queries.enqueue("fetch", None)
            done += 1
        return done / (time.perf_counter() - start)


async def _pgq_many(server: Postgres, n: int) -> float:
    async with _pgqueuer(server) as (queries, _):
        start = time.perf_counter()
        await queries.enqueue(["fetch"] * n, [None] * n, [0] * n)
        return n / (time.perf_counter() - start)


async def _pgq_drain(server: Postgres, n: int, cap: float, concurrency: int) -> float:
    pgqueuer: Any = importlib.import_module("pgqueuer")
    types: Any = importlib.import_module("pgqueuer.types")
    async with _pgqueuer(server) as (queries, driver):
        await queries.enqueue(["fetch"] * n, [None] * n, [0] * n)
        pgq = pgqueuer.PgQueuer(await driver())
        done = 0

        async def fetch(job: Any) -> None:
            nonlocal done
            done += 1

        pgq.entrypoint("fetch")(fetch)

        start = time.perf_counter()
        runner = asyncio.ensure_future(
            # At most `concurrency` jobs at once; pgqueuer wants room for two batches.
            pgq.run(
                batch_size=max(1, concurrency // 2),
                mode=types.QueueExecutionMode.drain,
                max_concurrent_tasks=concurrency,
            )
        )
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(runner), cap)
        elapsed = time.perf_counter() - start
        pgq.shutdown.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner, 30)
        return done / elapsed


async def _pgq_wake(server: Postgres) -> float:
    pgqueuer: Any = importlib.import_module("pgqueuer")
    async with _pgqueuer(server) as (queries, driver):
        pgq = pgqueuer.PgQueuer(await driver())
        started: dict[bytes, float] = {}
        arrived = asyncio.Event()

        async def stamp(job: Any) -> None:
            started[job.payload] = time.perf_counter()
            arrived.set()

        pgq.entrypoint("stamp")(stamp)

        runner = asyncio.ensure_future(pgq.run())
        await asyncio.sleep(0.5)  # its listener is up
        samples: list[float] = []
        for pause in PAUSES:
            await asyncio.sleep(pause)
            token = uuid.uuid4().hex.encode()
            arrived.clear()
            sent = time.perf_counter()
            await queries.enqueue("stamp", token)
            while token not in started:
                await asyncio.wait_for(arrived.wait(), 30)
                arrived.clear()
            samples.append(started[token] - sent)
        pgq.shutdown.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner, 30)
        return statistics.median(samples) * 1000


def pgqueuer_row(server: Postgres, n: int, cap: float) -> Row:
    """pgqueuer's figures on the same measures."""
    return {
        "enqueue": asyncio.run(_pgq_enqueue(server, n, cap)),
        "many": asyncio.run(_pgq_many(server, n)),
        "drain_c4": asyncio.run(_pgq_drain(server, n, cap, 4)),
        "drain_c16": asyncio.run(_pgq_drain(server, n, cap, 16)),
        "wake_ms": asyncio.run(_pgq_wake(server)),
    }


# ---------------------------------------------------------------------- report

COLUMNS = (
    ("enqueue", "enqueue/s"),
    ("many", "many/s"),
    ("drain_c4", "drain c4/s"),
    ("drain_c16", "drain c16/s"),
    ("wake_ms", "wake p50 ms"),
)


def table(rows: dict[str, Row]) -> str:
    """The rows, with each omniq figure's factor to the best peer (above 1: omniq ahead)."""
    peers = {name: row for name, row in rows.items() if not name.startswith("omniq")}
    header = ["", *[label for _, label in COLUMNS]]
    lines = [header]
    for name, row in rows.items():
        cells = [name]
        for metric, _ in COLUMNS:
            value = row.get(metric)
            text = (
                "—"
                if value is None
                else (f"{value:.1f}" if metric == "wake_ms" else f"{value:,.0f}")
            )
            best = [p[metric] for p in peers.values() if p.get(metric)]
            if name.startswith("omniq") and value and best:
                ref = min(best) if metric == "wake_ms" else max(best)  # type: ignore[type-var]
                factor = ref / value if metric == "wake_ms" else value / ref  # type: ignore[operator]
                text += f" ({factor:.2f}x)"
            cells.append(text)
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def main(argv: list[str] | None = None) -> int:
    """Measure omniq and every installed peer on one PostgreSQL server; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=DEFAULT_POSTGRES_DSN)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=2.0, help="time cap of a measure")
    args = parser.parse_args(argv)
    server = Postgres(args.dsn)
    if not server.available():
        print(f"no PostgreSQL: {server.problem}")
        return 1
    rows: dict[str, Row] = {}
    for twin in ("async", "sync"):
        rows[f"omniq {twin}"] = omniq_row(server, twin, args.tasks, args.seconds)
        print(f"omniq {twin}: {rows[f'omniq {twin}']}", flush=True)
    problem = pgqueuer_available()
    if problem is None:
        rows["pgqueuer"] = pgqueuer_row(server, args.tasks, args.seconds)
        print(f"pgqueuer: {rows['pgqueuer']}", flush=True)
    else:
        print(f"pgqueuer skipped: {problem}")
    print()
    print(table(rows))
    print(
        f"\n(factor: omniq against the best peer; tasks per measure at most {args.tasks:,}, "
        f"{args.seconds:g} s cap; noop tasks: {tasks.NOOP})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
