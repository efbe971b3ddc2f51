"""The omniq measurements, each written for both twins (``AsyncOmniQ`` and ``OmniQ``).

Every measure runs on a fresh store built from ``Settings`` (only the public API
is used) and stops after ``n`` tasks or ``cap`` seconds, whichever comes first;
it returns a :class:`Rate` (tasks done, seconds taken). The async twin runs
coroutine no-ops (on its event loop); the blocking twin runs plain no-ops (on the
pool's threads).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from benchmarks import tasks
from benchmarks.common import Backend, Plan, Stores
from omniq import AsyncOmniQ, OmniQ, Settings

CHUNK = 1_000  # enqueue_many batch when building a backlog
_PROBE = 200  # tasks of the enqueue_many call that sizes the measured one
_WAKE_TIMEOUT = 30.0  # seconds a wake-up sample may take before the measure fails
_IDLE_FIRST = 0.3  # seconds the pool idles before the first wake-up sample
PRODUCER_THREADS = 8  # the blocking twin's (and Huey's) concurrent producers: Flask-style threads
PRODUCER_COROUTINES = 100  # the async twin's concurrent producers on one AsyncOmniQ


class Rate(NamedTuple):
    """``tasks`` done in ``seconds``."""

    tasks: int
    seconds: float

    @property
    def per_second(self) -> float:
        """Tasks per second."""
        return self.tasks / self.seconds if self.seconds > 0 else float("nan")


class Wake(NamedTuple):
    """Wake-up samples: enqueue-call-start to task-start, and the enqueue call alone."""

    latencies: list[float]
    calls: list[float]


def _items(func_path: str, n: int) -> Iterator[dict[str, Any]]:
    return ({"func_path": func_path} for _ in range(n))


# ---------------------------------------------------------------------- blocking twin


def sync_enqueue(settings: Settings, n: int, cap: float) -> Rate:
    """One ``enqueue`` call per task."""
    with OmniQ(settings) as omniq:
        omniq.enqueue(tasks.NOOP)  # warm: schema, connection
        start = time.perf_counter()
        deadline = start + cap
        done = 0
        while done < n:
            omniq.enqueue(tasks.NOOP)
            done += 1
            if time.perf_counter() >= deadline:
                break
        return Rate(done, time.perf_counter() - start)


def _many_size(probe: Rate, n: int, cap: float) -> int:
    """How many tasks one ``enqueue_many`` call gets: ``n``, or what fits in ``cap`` s."""
    return max(_PROBE, min(n, int(probe.per_second * cap)))


def sync_enqueue_many(settings: Settings, n: int, cap: float) -> Rate:
    """Up to ``n`` tasks in one ``enqueue_many`` call (fewer if a probe says it would
    take longer than ``cap`` seconds)."""
    with OmniQ(settings) as omniq:
        items = list(_items(tasks.NOOP, _PROBE))
        start = time.perf_counter()
        omniq.enqueue_many(items)
        size = _many_size(Rate(_PROBE, time.perf_counter() - start), n, cap)
        items = list(_items(tasks.NOOP, size))
        start = time.perf_counter()
        omniq.enqueue_many(items)
        return Rate(size, time.perf_counter() - start)


def sync_build(omniq: OmniQ, func_path: str, n: int, cap: float, chunk: int = CHUNK) -> int:
    """A backlog of up to ``n`` due tasks (``enqueue_many`` in chunks, for ``cap`` s at most)."""
    deadline = time.perf_counter() + cap
    built = 0
    while built < n and (built == 0 or time.perf_counter() < deadline):
        step = min(chunk, n - built)
        omniq.enqueue_many(_items(func_path, step))
        built += step
    return built


def sync_drain(settings: Settings, n: int, cap: float, concurrency: int) -> Rate:
    """A pool of ``concurrency`` claims and completes tasks from a backlog."""
    with OmniQ(settings) as omniq:
        built = sync_build(omniq, tasks.NOOP, n, 1.5 * cap)
        with omniq.worker_pool(concurrency=concurrency, handle_signals=False) as pool:
            start = time.perf_counter()
            done = pool.process_tasks(limit=built, duration=cap)
            return Rate(done, time.perf_counter() - start)


def sync_producers(settings: Settings, n: int, cap: float) -> Rate:
    """``PRODUCER_THREADS`` threads share one ``OmniQ``, one ``enqueue`` call per task."""
    with OmniQ(settings) as omniq:
        omniq.enqueue(tasks.NOOP)  # warm: schema, connection
        counts = [0] * PRODUCER_THREADS
        start = time.perf_counter()
        deadline = start + cap
        share = max(1, n // PRODUCER_THREADS)

        def produce(slot: int) -> None:
            while counts[slot] < share and time.perf_counter() < deadline:
                omniq.enqueue(tasks.NOOP)
                counts[slot] += 1

        threads = [
            threading.Thread(target=produce, args=(slot,), name=f"bench-producer-{slot}")
            for slot in range(PRODUCER_THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return Rate(sum(counts), time.perf_counter() - start)


def sync_end_to_end(settings: Settings, n: int, cap: float) -> Rate:
    """From the first enqueue to the last completion, with the producer and the pool at once.

    The producer enqueues for ``cap`` seconds at most; completions are counted
    until every enqueued task ran or ``2 * cap`` seconds passed.
    """
    with OmniQ(settings) as omniq, omniq.worker_pool(handle_signals=False) as pool:
        server = threading.Thread(target=pool.run, name="bench-pool", daemon=True)
        server.start()
        start = time.perf_counter()
        sent = 0
        while sent < n:
            omniq.enqueue(tasks.NOOP)
            sent += 1
            if time.perf_counter() >= start + cap:
                break
        while pool.processed < sent and time.perf_counter() < start + 2 * cap:
            time.sleep(0.001)
        rate = Rate(pool.processed, time.perf_counter() - start)
        pool.stop()
        server.join()
    return rate


def sync_wakeup(settings: Settings, pauses: tuple[float, ...]) -> Wake:
    """Seconds from the ``enqueue`` call to the task's start, after each idle pause
    (and how long each ``enqueue`` call took)."""
    latencies: list[float] = []
    calls: list[float] = []  # how long the enqueue call itself took
    with OmniQ(settings) as omniq, omniq.worker_pool(handle_signals=False) as pool:
        server = threading.Thread(target=pool.run, name="bench-pool", daemon=True)
        server.start()
        time.sleep(_IDLE_FIRST)
        for pause in pauses:
            time.sleep(pause)
            token = uuid.uuid4().hex
            started = tasks.Started()
            tasks.expect(token, started)
            sent = time.perf_counter()
            omniq.enqueue(tasks.STAMP, args=[token])
            returned = time.perf_counter()
            if not started.wait(_WAKE_TIMEOUT):
                raise RuntimeError(f"no worker started the task within {_WAKE_TIMEOUT:g}s")
            latencies.append(started.at - sent)
            calls.append(returned - sent)
        pool.stop()
        server.join()
    return Wake(latencies, calls)


def sync_claims(settings: Settings, claims: int, cap: float) -> Rate:
    """Claims through ``TaskQueue.dequeue_many(4)`` on the store's backlog."""
    with OmniQ(settings) as omniq:
        return _sync_claim(omniq, claims, cap)


def _sync_claim(omniq: OmniQ, claims: int, cap: float) -> Rate:
    queue = omniq.queue
    queue.dequeue_many(4)  # warm
    got = 0
    start = time.perf_counter()
    while got < claims and time.perf_counter() < start + cap:
        batch = queue.dequeue_many(4)
        if not batch:
            raise RuntimeError("the backlog ran out during the claim measure")
        got += len(batch)
    return Rate(got, time.perf_counter() - start)


def sync_build_claims(
    settings: Settings, pending: int, build: float, claims: int, cap: float
) -> tuple[int, Rate]:
    """Build a backlog then claim from it in the same store object (the memory backend)."""
    with OmniQ(settings) as omniq:
        built = sync_build(omniq, tasks.NOOP, pending, build, chunk=5_000)
        return built, _sync_claim(omniq, claims, cap)


# ---------------------------------------------------------------------- async twin


async def async_enqueue(settings: Settings, n: int, cap: float) -> Rate:
    """One ``await enqueue`` per task."""
    async with AsyncOmniQ(settings) as omniq:
        await omniq.enqueue(tasks.ANOOP)
        start = time.perf_counter()
        deadline = start + cap
        done = 0
        while done < n:
            await omniq.enqueue(tasks.ANOOP)
            done += 1
            if time.perf_counter() >= deadline:
                break
        return Rate(done, time.perf_counter() - start)


async def async_enqueue_many(settings: Settings, n: int, cap: float) -> Rate:
    """Up to ``n`` tasks in one ``enqueue_many`` call (see :func:`sync_enqueue_many`)."""
    async with AsyncOmniQ(settings) as omniq:
        items = list(_items(tasks.ANOOP, _PROBE))
        start = time.perf_counter()
        await omniq.enqueue_many(items)
        size = _many_size(Rate(_PROBE, time.perf_counter() - start), n, cap)
        items = list(_items(tasks.ANOOP, size))
        start = time.perf_counter()
        await omniq.enqueue_many(items)
        return Rate(size, time.perf_counter() - start)


async def async_build(
    omniq: AsyncOmniQ, func_path: str, n: int, cap: float, chunk: int = CHUNK
) -> int:
    """A backlog of up to ``n`` due tasks (``enqueue_many`` in chunks, for ``cap`` s at most)."""
    deadline = time.perf_counter() + cap
    built = 0
    while built < n and (built == 0 or time.perf_counter() < deadline):
        step = min(chunk, n - built)
        await omniq.enqueue_many(_items(func_path, step))
        built += step
    return built


async def async_drain(settings: Settings, n: int, cap: float, concurrency: int) -> Rate:
    """A pool of ``concurrency`` claims and completes tasks from a backlog."""
    async with AsyncOmniQ(settings) as omniq:
        built = await async_build(omniq, tasks.ANOOP, n, 1.5 * cap)
        async with omniq.worker_pool(concurrency=concurrency, handle_signals=False) as pool:
            start = time.perf_counter()
            done = await pool.process_tasks(limit=built, duration=cap)
            return Rate(done, time.perf_counter() - start)


async def async_producers(settings: Settings, n: int, cap: float) -> Rate:
    """``PRODUCER_COROUTINES`` coroutines share one ``AsyncOmniQ``, one ``enqueue`` per task."""
    async with AsyncOmniQ(settings) as omniq:
        await omniq.enqueue(tasks.ANOOP)
        counts = [0] * PRODUCER_COROUTINES
        start = time.perf_counter()
        deadline = start + cap
        share = max(1, n // PRODUCER_COROUTINES)

        async def produce(slot: int) -> None:
            while counts[slot] < share and time.perf_counter() < deadline:
                await omniq.enqueue(tasks.ANOOP)
                counts[slot] += 1

        await asyncio.gather(*(produce(slot) for slot in range(PRODUCER_COROUTINES)))
        return Rate(sum(counts), time.perf_counter() - start)


async def async_end_to_end(settings: Settings, n: int, cap: float) -> Rate:
    """From the first enqueue to the last completion, with the producer and the pool at once."""
    async with AsyncOmniQ(settings) as omniq, omniq.worker_pool(handle_signals=False) as pool:
        server = asyncio.create_task(pool.run())
        await asyncio.sleep(0)
        start = time.perf_counter()
        sent = 0
        while sent < n:
            await omniq.enqueue(tasks.ANOOP)
            sent += 1
            if time.perf_counter() >= start + cap:
                break
        while pool.processed < sent and time.perf_counter() < start + 2 * cap:
            await asyncio.sleep(0.001)
        rate = Rate(pool.processed, time.perf_counter() - start)
        pool.stop()
        await server
    return rate


async def async_wakeup(settings: Settings, pauses: tuple[float, ...]) -> Wake:
    """Seconds from the ``enqueue`` call to the task's start, after each idle pause
    (and how long each ``enqueue`` call took)."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    calls: list[float] = []  # how long the enqueue call itself took
    async with AsyncOmniQ(settings) as omniq, omniq.worker_pool(handle_signals=False) as pool:
        server = asyncio.create_task(pool.run())
        await asyncio.sleep(_IDLE_FIRST)
        for pause in pauses:
            await asyncio.sleep(pause)
            token = uuid.uuid4().hex
            started: asyncio.Future[float] = loop.create_future()
            tasks.expect(token, _resolver(loop, started))
            sent = time.perf_counter()
            await omniq.enqueue(tasks.ASTAMP, args=[token])
            returned = time.perf_counter()
            try:
                at = await asyncio.wait_for(started, _WAKE_TIMEOUT)
            except asyncio.TimeoutError:
                raise RuntimeError(
                    f"no worker started the task within {_WAKE_TIMEOUT:g}s"
                ) from None
            latencies.append(at - sent)
            calls.append(returned - sent)
        pool.stop()
        await server
    return Wake(latencies, calls)


def _resolver(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[float]
) -> Callable[[float], None]:
    def settle(at: float) -> None:
        if not future.done():
            future.set_result(at)

    def resolve(at: float) -> None:
        loop.call_soon_threadsafe(settle, at)

    return resolve


async def async_claims(settings: Settings, claims: int, cap: float) -> Rate:
    """Claims through ``AsyncTaskQueue.dequeue_many(4)`` on the store's backlog."""
    async with AsyncOmniQ(settings) as omniq:
        return await _async_claim(omniq, claims, cap)


async def _async_claim(omniq: AsyncOmniQ, claims: int, cap: float) -> Rate:
    queue = omniq.queue
    await queue.dequeue_many(4)
    got = 0
    start = time.perf_counter()
    while got < claims and time.perf_counter() < start + cap:
        batch = await queue.dequeue_many(4)
        if not batch:
            raise RuntimeError("the backlog ran out during the claim measure")
        got += len(batch)
    return Rate(got, time.perf_counter() - start)


async def async_build_claims(
    settings: Settings, pending: int, build: float, claims: int, cap: float
) -> tuple[int, Rate]:
    """Build a backlog then claim from it in the same store object (the memory backend)."""
    async with AsyncOmniQ(settings) as omniq:
        built = await async_build(omniq, tasks.ANOOP, pending, build, chunk=5_000)
        return built, await _async_claim(omniq, claims, cap)


# ---------------------------------------------------------------------- rows


def twin_call(
    twin: str, sync_fn: Callable[..., Any], async_fn: Callable[..., Any], *args: Any
) -> Any:
    """Call the blocking function, or run the coroutine function in a new event loop."""
    if twin == "sync":
        return sync_fn(*args)
    return asyncio.run(async_fn(*args))


THROUGHPUT: dict[str, tuple[Callable[..., Any], Callable[..., Any], tuple[Any, ...]]] = {
    "enqueue": (sync_enqueue, async_enqueue, ()),
    "enqueue_many": (sync_enqueue_many, async_enqueue_many, ()),
    "producers": (sync_producers, async_producers, ()),
    "drain_c1": (sync_drain, async_drain, (1,)),
    "drain_c4": (sync_drain, async_drain, (4,)),
    "end_to_end": (sync_end_to_end, async_end_to_end, ()),
}


def measure(
    stores: Stores, backend: Backend, twin: str, plan: Plan, round_: int
) -> dict[str, list[float]]:
    """Round ``round_`` of the measures of ``backend`` in ``twin``.

    Returns ``{"<measure>_per_s": [rate], "<measure>_tasks": [n], ...}``; round 0
    also measures the wake-up (raw samples in ``wakeup_samples_s``).
    """
    out: dict[str, list[float]] = {}
    cap = plan.cap(backend.name)
    for name, (sync_fn, async_fn, extra) in THROUGHPUT.items():
        if round_ >= plan.repetitions(backend.name, name):
            continue
        with stores.fresh(backend) as settings:
            rate: Rate = twin_call(twin, sync_fn, async_fn, settings, plan.tasks, cap, *extra)
        out[f"{name}_per_s"] = [rate.per_second]
        out[f"{name}_tasks"] = [rate.tasks]
    if round_ == 0:
        with stores.fresh(backend) as settings:
            pauses = plan.wake_pauses(backend.name)
            wake: Wake = twin_call(twin, sync_wakeup, async_wakeup, settings, pauses)
        out["wakeup_samples_s"] = wake.latencies
        out["wakeup_enqueue_s"] = wake.calls
    return out


def measure_claims(
    stores: Stores, group: list[Backend], twins: list[str], plan: Plan
) -> dict[tuple[str, str], dict[str, float]]:
    """Claims per second with ``claim_small`` and with up to ``claim_large`` tasks pending.

    Backlogs are built with ``enqueue_many`` in fast mode (only the claims are
    timed; the large one stops growing after ``claim_build_seconds``) and flushed
    to disk (``os.sync()``), then the
    store is opened with each row's durability and twin, which claims up to
    ``plan.claims`` tasks (at most half the small backlog, for ``claim_seconds``
    at most). Each row gets a small backlog of its own; the large one is shared by
    the rows of a kind, except on the memory backend, whose tasks live in one store
    object.
    """
    results: dict[tuple[str, str], dict[str, float]] = {}
    if not group:
        return results
    kind = group[0].kind
    fast = next((b for b in group if b.durability == "fast"), group[0])
    claims = max(4, min(plan.claims, plan.claim_small // 2))

    def record(backend: Backend, twin: str, size: str, built: int, rate: Rate) -> None:
        values = results.setdefault((backend.name, twin), {})
        values[f"claim_{size}_per_s"] = rate.per_second
        values[f"claim_{size}_pending"] = built

    def build(settings: Settings, pending: int) -> int:
        with OmniQ(settings) as omniq:
            built = sync_build(omniq, tasks.NOOP, pending, plan.claim_build_seconds, chunk=5_000)
        # Built without fsync: flush it now, or the first fsync of a "full" claim would
        # pay for writing the whole backlog out and look like a claim that grows with it.
        if hasattr(os, "sync"):
            os.sync()
        return built

    for size, pending in (("small", plan.claim_small), ("large", plan.claim_large)):
        if kind == "memory":
            for backend in group:
                for twin in twins:
                    with stores.fresh(backend) as settings:
                        built, rate = twin_call(
                            twin,
                            sync_build_claims,
                            async_build_claims,
                            settings,
                            pending,
                            plan.claim_build_seconds / len(twins),
                            claims,
                            plan.claim_seconds,
                        )
                    record(backend, twin, size, built, rate)
        elif size == "large":
            with stores.fresh(fast) as settings:
                built = build(settings, pending)
                for backend in group:
                    same = settings.replace(durability=backend.durability)
                    for twin in twins:
                        rate = twin_call(
                            twin, sync_claims, async_claims, same, claims, plan.claim_seconds
                        )
                        record(backend, twin, size, built, rate)
        else:
            for backend in group:
                for twin in twins:
                    with stores.fresh(fast) as settings:
                        built = build(settings, pending)
                        same = settings.replace(durability=backend.durability)
                        rate = twin_call(
                            twin, sync_claims, async_claims, same, claims, plan.claim_seconds
                        )
                    record(backend, twin, size, built, rate)
    for values in results.values():
        small, large = values.get("claim_small_per_s"), values.get("claim_large_per_s")
        if small and large:
            values["claim_slowdown"] = small / large
    return results
