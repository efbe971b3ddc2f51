"""pgqueuer beside omniq: asyncpg (its fastest driver), its tables in a fresh schema.

Worker: ``PgQueuer.run`` with at most c jobs at once, dequeued in batches of c/2 (the
largest it allows), in drain mode for the backlog; at its defaults for the wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from benchmarks.common import Postgres
from benchmarks.peer_common import (
    Counter,
    Row,
    Stamps,
    analyze,
    capped,
    checked,
    load,
    measured_row,
    missing,
    rate,
)


def available() -> str | None:
    """Why pgqueuer cannot run here, or None."""
    return missing("pgqueuer", "asyncpg")


@contextlib.asynccontextmanager
async def _pgqueuer(server: Postgres) -> AsyncIterator[tuple[Any, Callable[[], Any], str]]:
    """pgqueuer installed in a fresh schema: its queries, a factory of new drivers, and a
    DSN of that schema."""
    from psycopg.conninfo import make_conninfo  # psycopg: as in benchmarks.common

    asyncpg = load("asyncpg")
    db = load("pgqueuer.db")
    queries_module = load("pgqueuer.queries")
    with server.schema_name() as schema:
        connections: list[Any] = []

        async def driver() -> Any:
            conn = await asyncpg.connect(dsn=server.dsn, server_settings={"search_path": schema})
            connections.append(conn)
            return db.AsyncpgDriver(conn)

        queries = queries_module.Queries(await driver())
        await queries.install(create_schema=False)
        try:
            yield queries, driver, make_conninfo(server.dsn, options=f"-csearch_path={schema}")
        finally:
            for conn in connections:
                with contextlib.suppress(Exception):
                    await conn.close()


async def _enqueue(server: Postgres, n: int, cap: float) -> float:
    async with _pgqueuer(server) as (queries, _, _):
        await queries.enqueue("fetch", None)
        start = time.perf_counter()
        done = 0
        while done < n and time.perf_counter() < start + cap:
            await queries.enqueue("fetch", None)
            done += 1
        return rate(done, time.perf_counter() - start, "pgqueuer enqueue")


async def _many(server: Postgres, n: int) -> float:
    async with _pgqueuer(server) as (queries, _, _):
        start = time.perf_counter()
        ids = await queries.enqueue(["fetch"] * n, [None] * n, [0] * n)
        elapsed = time.perf_counter() - start
        checked(len(ids), n, "pgqueuer many")
        return rate(n, elapsed, "pgqueuer many")


async def _drain(server: Postgres, n: int, cap: float, concurrency: int) -> tuple[float, int]:
    pgqueuer = load("pgqueuer")
    types = load("pgqueuer.types")
    async with _pgqueuer(server) as (queries, driver, dsn):
        ids = await queries.enqueue(["fetch"] * n, [None] * n, [0] * n)
        checked(len(ids), n, "pgqueuer backlog")
        await analyze(dsn)
        pgq = pgqueuer.PgQueuer(await driver())
        counter = Counter(n)

        async def fetch(job: Any) -> None:
            counter.tick()

        pgq.entrypoint("fetch")(fetch)
        # At most `concurrency` jobs at once; pgqueuer wants room for two batches.
        runner = pgq.run(
            batch_size=max(1, concurrency // 2),
            mode=types.QueueExecutionMode.drain,
            max_concurrent_tasks=concurrency,
        )
        elapsed, ran = await capped(runner, cap, lambda _: pgq.shutdown.set(), counter)
        return rate(ran, elapsed, f"pgqueuer drain c{concurrency}"), ran


async def _wake(server: Postgres) -> float:
    pgqueuer = load("pgqueuer")
    async with _pgqueuer(server) as (queries, driver, _):
        pgq = pgqueuer.PgQueuer(await driver())
        stamps = Stamps()

        async def stamp(job: Any) -> None:
            stamps.stamp(job.payload.decode())

        pgq.entrypoint("stamp")(stamp)
        runner = asyncio.ensure_future(pgq.run())
        await asyncio.sleep(0.5)  # its listener is up
        try:
            return await stamps.wake_ms(lambda token: queries.enqueue("stamp", token.encode()))
        finally:
            pgq.shutdown.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runner, 30)


def row(server: Postgres, n: int, cap: float) -> Row:
    """pgqueuer's figures, with how many tasks each drain ran."""
    return measured_row(server, n, cap, enqueue=_enqueue, many=_many, drain=_drain, wake=_wake)
