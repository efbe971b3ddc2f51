"""procrastinate beside omniq: its ``PsycopgConnector`` (psycopg 3, an ``AsyncConnectionPool``
at psycopg_pool's defaults), its schema applied by ``app.schema_manager.apply_schema_async()``
in a fresh schema, which the DSN's ``options=-csearch_path=<schema>`` makes its only one.

Enqueue: ``Task.defer_async()``; many: ``Task.batch_defer_async(*kwargs)`` (one INSERT).
Worker: ``App.run_worker_async`` at its defaults (``listen_notify`` on, job polling every
5 s, jobs kept once done) with ``install_signal_handlers=False``; for the backlog
``concurrency=c`` and ``wait=False`` (it stops once caught up, then waits for its running
jobs); for the wake-up its default ``concurrency=1``. The tasks are coroutines.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
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
    """Why procrastinate cannot run here, or None."""
    return missing("procrastinate", "psycopg_pool")


@contextlib.asynccontextmanager
async def _app(server: Postgres) -> AsyncIterator[tuple[Any, str]]:
    """An open procrastinate App whose schema was just applied in a fresh schema, and the
    DSN of that schema."""
    procrastinate = load("procrastinate")
    with server.schema() as dsn:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            # The search_path in the DSN must have put its tables in our schema, not public.
            found = await app.connector.execute_query_one_async(
                query="SELECT count(*) AS n FROM pg_tables "
                "WHERE tablename = 'procrastinate_jobs' AND schemaname = current_schema()"
            )
            if found["n"] != 1:
                raise RuntimeError("procrastinate's schema is not in the fresh schema")
            yield app, dsn


def _noop_task(app: Any, counter: Counter) -> Any:
    """A no-op task of ``app`` that ticks ``counter``."""

    async def noop() -> None:
        counter.tick()

    return app.task(name="noop")(noop)


async def _enqueue(server: Postgres, n: int, cap: float) -> float:
    async with _app(server) as (app, _):
        task = _noop_task(app, Counter())
        await task.defer_async()  # warm: the pool's first connection
        start = time.perf_counter()
        done = 0
        while done < n and time.perf_counter() < start + cap:
            await task.defer_async()
            done += 1
        return rate(done, time.perf_counter() - start, "procrastinate enqueue")


async def _many(server: Postgres, n: int) -> float:
    async with _app(server) as (app, _):
        task = _noop_task(app, Counter())
        kwargs: list[dict[str, Any]] = [{} for _ in range(n)]
        start = time.perf_counter()
        ids = await task.batch_defer_async(*kwargs)
        elapsed = time.perf_counter() - start
        checked(len(ids), n, "procrastinate many")
        return rate(n, elapsed, "procrastinate many")


async def _drain(server: Postgres, n: int, cap: float, concurrency: int) -> tuple[float, int]:
    async with _app(server) as (app, dsn):
        counter = Counter(n)
        task = _noop_task(app, counter)
        ids = await task.batch_defer_async(*[{} for _ in range(n)])
        checked(len(ids), n, "procrastinate backlog")
        await analyze(dsn)
        runner = app.run_worker_async(
            concurrency=concurrency, wait=False, install_signal_handlers=False
        )
        # Cancelling run_worker_async is its documented stop: it ends the running jobs first.
        elapsed, ran = await capped(runner, cap, lambda future: future.cancel(), counter)
        return rate(ran, elapsed, f"procrastinate drain c{concurrency}"), ran


async def _wake(server: Postgres) -> float:
    async with _app(server) as (app, _):
        stamps = Stamps()

        async def stamp(token: str) -> None:
            stamps.stamp(token)

        task = app.task(name="stamp")(stamp)
        runner = asyncio.ensure_future(app.run_worker_async(install_signal_handlers=False))
        await asyncio.sleep(0.5)  # its listener is up
        try:
            return await stamps.wake_ms(lambda token: task.defer_async(token=token))
        finally:
            runner.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(runner, 30)


def row(server: Postgres, n: int, cap: float) -> Row:
    """procrastinate's figures, with how many tasks each drain ran."""
    return measured_row(server, n, cap, enqueue=_enqueue, many=_many, drain=_drain, wake=_wake)
