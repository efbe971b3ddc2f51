"""What the PostgreSQL peers' measures share (``benchmarks.peers`` and its ``peer_*`` modules).

Each ``peer_*`` module offers ``available() -> str | None`` (why it cannot run here, or
None) and ``row(server, n, cap) -> Row`` (its figures), and imports its library only
through :func:`importlib.import_module`: the peers are optional, never omniq dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from benchmarks.common import Postgres

PAUSES = (0.05, 0.1, 0.25, 0.5, 0.05, 0.1, 0.25, 0.5)  # idle pauses before each wake-up sample
WAKE_TIMEOUT = 30.0  # seconds a wake-up sample may wait for its task
Row = dict[str, float | None]


def missing(*modules: str) -> str | None:
    """The first of ``modules`` that does not import, as a note, or None."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{module} is not installed (nox -s bench-peers installs it)"
    return None


def load(module: str) -> Any:
    """``module``, imported (as Any: a peer's types are no concern of mypy's here)."""
    return importlib.import_module(module)


async def analyze(dsn: str) -> None:
    """ANALYZE every table of the schema ``dsn``'s search_path names, once a backlog is in.

    A drain right after the backlog's insert would otherwise plan on empty statistics
    (procrastinate's fetch takes 12 ms instead of 3 on 10,000 rows), where a server's
    autovacuum would have analyzed a real backlog by then. omniq's drains are not given this.
    """
    import psycopg  # here, as in benchmarks.common: without it peers.py still says why
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        for (table,) in await cursor.fetchall():
            await conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))


def rate(done: int, seconds: float, what: str) -> float:
    """Tasks per second, refusing a measure in which nothing was done (a silent no-op)."""
    if done <= 0:
        raise RuntimeError(f"{what}: no task was done")
    return done / seconds


def checked(count: int, expected: int, what: str) -> None:
    """Raise unless a batch call reported ``expected`` new jobs (``count``)."""
    if count != expected:
        raise RuntimeError(f"{what}: {count} jobs reported for {expected} enqueued")


async def capped(
    runner: Awaitable[object],
    cap: float,
    stop: Callable[[asyncio.Future[object]], object],
    counter: Counter,
) -> tuple[float, int]:
    """Seconds until ``runner`` (a worker draining) ends by itself, or ``cap``, and the
    tasks ``counter`` saw run by then; then it is stopped with ``stop`` and awaited (its
    shutdown is not timed, nor the jobs it lets finish)."""
    start = time.perf_counter()
    task: asyncio.Future[object] = asyncio.ensure_future(runner)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), cap)
    elapsed, ran = time.perf_counter() - start, counter.ran
    stop(task)
    # A worker stopped by cancellation ends with CancelledError: that is its normal end.
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(task, WAKE_TIMEOUT)
    return elapsed, ran


class Counter:
    """How many tasks ran, and an event set once ``target`` of them did."""

    def __init__(self, target: int = 0) -> None:
        self.ran = 0
        self.target = target
        self.reached = asyncio.Event()

    def tick(self) -> None:
        """One more task ran (called by the peer's no-op task)."""
        self.ran += 1
        if self.ran >= self.target:
            self.reached.set()


class Stamps:
    """When each wake-up task started (``time.perf_counter()``), by token."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.arrived = asyncio.Event()

    def stamp(self, token: str) -> None:
        """The task of ``token`` starts now (called first thing by the peer's task)."""
        self.at[token] = time.perf_counter()
        self.arrived.set()

    async def wake_ms(self, enqueue: Callable[[str], Awaitable[object]]) -> float:
        """Median ms from ``enqueue(token)``'s start to its task's start, after each pause
        of :data:`PAUSES` with the worker idle."""
        samples: list[float] = []
        for pause in PAUSES:
            await asyncio.sleep(pause)
            token = uuid.uuid4().hex
            self.arrived.clear()
            sent = time.perf_counter()
            await enqueue(token)
            while token not in self.at:
                await asyncio.wait_for(self.arrived.wait(), WAKE_TIMEOUT)
                self.arrived.clear()
            samples.append(self.at[token] - sent)
        return statistics.median(samples) * 1000


def measured_row(
    server: Postgres,
    n: int,
    cap: float,
    *,
    enqueue: Callable[[Postgres, int, float], Coroutine[Any, Any, float]],
    many: Callable[[Postgres, int], Coroutine[Any, Any, float]],
    drain: Callable[[Postgres, int, float, int], Coroutine[Any, Any, tuple[float, int]]],
    wake: Callable[[Postgres], Coroutine[Any, Any, float]],
) -> Row:
    """A peer's row from its measures, each on an event loop of its own, with how many
    tasks each drain ran."""
    enqueued = asyncio.run(enqueue(server, n, cap))
    batch = asyncio.run(many(server, n))
    c4, ran4 = asyncio.run(drain(server, n, cap, 4))
    c16, ran16 = asyncio.run(drain(server, n, cap, 16))
    woken = asyncio.run(wake(server))
    return {
        "enqueue": enqueued,
        "many": batch,
        "drain_c4": c4,
        "drain_c16": c16,
        "wake_ms": woken,
        "ran_c4": ran4,
        "ran_c16": ran16,
    }
