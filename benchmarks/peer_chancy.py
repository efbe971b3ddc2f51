"""chancy beside omniq: psycopg 3 (its only driver; an ``AsyncConnectionPool`` of 1 to 10
connections, its default), its tables (prefix ``chancy_``) made by ``Chancy.migrate()`` in
a fresh schema (the DSN's search_path), its default plugins on, NOTIFY on.

Enqueue: ``Chancy.push(job)``; many: ``Chancy.push_many(jobs)`` (its default batches of
1,000, a transaction each). Worker: ``Worker(chancy)`` at its defaults (signal handlers
off) on the queue ``default``, declared with the ``AsyncExecutor`` (chancy's default runs
jobs in a process pool; the other peers run coroutines on the worker's loop), concurrency
c (the wake-up: the executor's default, 100), its default ``polling_interval`` of 5 s and
``eager_polling=True``: without it a worker fetches its next c jobs only at the next poll.
chancy records completions in batches each second: a drain that ran its whole backlog
stops its clock after ``Worker.flush()`` wrote them. Its logger is given at WARNING (its
default logs a line per job at INFO). The jobs are coroutines found by import path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from benchmarks.common import Postgres
from benchmarks.peer_common import (
    Counter,
    Row,
    Stamps,
    analyze,
    checked,
    load,
    measured_row,
    missing,
    rate,
)


def available() -> str | None:
    """Why chancy cannot run here, or None."""
    return missing("chancy", "psycopg_pool")


class _Current:
    """The measure's counter and stamps, which the jobs (imported by path) reach here."""

    counter = Counter()
    stamps = Stamps()


async def noop() -> None:
    """The no-op job: counts itself."""
    _Current.counter.tick()


async def stamp(token: str) -> None:
    """The wake-up job: notes when it started."""
    _Current.stamps.stamp(token)


@contextlib.asynccontextmanager
async def _chancy(server: Postgres, concurrency: int | None) -> AsyncIterator[tuple[Any, str]]:
    """An open Chancy app migrated in a fresh schema, its ``default`` queue declared; and
    the DSN of that schema."""
    chancy = load("chancy")
    log = logging.getLogger("benchmarks.peer_chancy.chancy")
    log.setLevel(logging.WARNING)
    with server.schema() as dsn:
        async with chancy.Chancy(dsn, log=log) as app:
            await app.migrate()
            await app.declare(
                chancy.Queue(
                    "default",
                    concurrency=concurrency,
                    executor=chancy.Chancy.Executor.Async,
                    eager_polling=True,
                )
            )
            yield app, dsn


def _job(func: Any, **kwargs: Any) -> Any:
    """A chancy Job of ``func`` (by its import path)."""
    return load("chancy").Job.from_func(func, kwargs=kwargs)


async def _push_many(app: Any, n: int) -> int:
    """Push ``n`` no-op jobs in one ``push_many`` call; how many it reported."""
    pushed = 0
    async for refs in app.push_many([_job(noop)] * n):
        pushed += len(refs)
    return pushed


async def _enqueue(server: Postgres, n: int, cap: float) -> float:
    async with _chancy(server, None) as (app, _):
        job = _job(noop)
        await app.push(job)  # warm: the pool's first connection
        start = time.perf_counter()
        done = 0
        while done < n and time.perf_counter() < start + cap:
            await app.push(job)
            done += 1
        return rate(done, time.perf_counter() - start, "chancy enqueue")


async def _many(server: Postgres, n: int) -> float:
    async with _chancy(server, None) as (app, _):
        start = time.perf_counter()
        pushed = await _push_many(app, n)
        elapsed = time.perf_counter() - start
        checked(pushed, n, "chancy many")
        return rate(n, elapsed, "chancy many")


async def _drain(server: Postgres, n: int, cap: float, concurrency: int) -> tuple[float, int]:
    async with _chancy(server, concurrency) as (app, dsn):
        checked(await _push_many(app, n), n, "chancy backlog")
        await analyze(dsn)
        _Current.counter = Counter(n)
        start = time.perf_counter()
        worker = load("chancy").Worker(app, register_signal_handlers=False)
        await worker.start()
        try:
            left = start + cap - time.perf_counter()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(_Current.counter.reached.wait(), max(left, 0.0))
            if _Current.counter.reached.is_set():
                await worker.flush()
            elapsed, ran = time.perf_counter() - start, _Current.counter.ran
        finally:
            await worker.stop()
        return rate(ran, elapsed, f"chancy drain c{concurrency}"), ran


async def _wake(server: Postgres) -> float:
    async with _chancy(server, None) as (app, _):
        _Current.stamps = Stamps()
        async with load("chancy").Worker(app, register_signal_handlers=False):
            await asyncio.sleep(0.5)  # its listener and queue loop are up
            return await _Current.stamps.wake_ms(lambda token: app.push(_job(stamp, token=token)))


def row(server: Postgres, n: int, cap: float) -> Row:
    """chancy's figures, with how many tasks each drain ran."""
    return measured_row(server, n, cap, enqueue=_enqueue, many=_many, drain=_drain, wake=_wake)
