"""The same workloads on Huey, for the ratio columns (Huey is imported here only, lazily).

Huey runs as its users run it: ``SqliteHuey``/``FileHuey``/``MemoryHuey``/
``PostgresHuey`` with their defaults, and its consumer in this process with
thread workers (``huey.create_consumer(workers=c, worker_type="thread")``).
Huey has no ``process_tasks(limit=N)``, so its task counts itself
(:data:`benchmarks.tasks.COUNTDOWN`) and a drain ends when the last one ran.
Huey has no bulk insert: its backlogs are built one ``enqueue`` at a time.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import tasks
from benchmarks.common import Plan, Stores
from benchmarks.workloads import PRODUCER_THREADS, Rate, Wake

NAME = "bench"

# Huey configurations, and what each is.
CONFIGS: dict[str, str] = {
    "sqlite": "SqliteHuey, defaults (WAL, synchronous=FULL)",
    "sqlite-nosync": "SqliteHuey(fsync=False): synchronous=OFF",
    "file": "FileHuey, defaults (never fsyncs)",
    "memory": "MemoryHuey",
    "postgres": "PostgresHuey, defaults (synchronous_commit=on)",
}

# The Huey configuration each omniq backend is compared with, and why it differs if it does.
MATCH: dict[str, str] = {
    "sqlite-full": "sqlite",
    "sqlite-fast": "sqlite-nosync",
    "file-full": "file",
    "file-fast": "file",
    "memory": "memory",
    "postgres-full": "postgres",
    "postgres-fast": "postgres",
}
CAVEATS: dict[str, str] = {
    "sqlite-fast": "Huey has no synchronous=NORMAL mode: compared with fsync=False "
    "(synchronous=OFF, which survives less)",
    "file-full": "FileHuey never fsyncs: it survives less than file-full",
    "postgres-fast": "compared with PostgresHuey at synchronous_commit=on (it survives more)",
}


def available() -> str | None:
    """None when Huey can be imported, else why not."""
    try:
        importlib.import_module("huey")
    except ImportError:
        return "huey is not installed (pip install huey): no ratio columns"
    return None


def version() -> str:
    """Huey's version."""
    return str(getattr(importlib.import_module("huey"), "__version__", "?"))


@dataclass
class _Huey:
    huey: Any
    count: Callable[..., Any]
    stamp: Callable[..., Any]


def _open(config: str, path: Path, dsn: str | None) -> _Huey:
    huey: Any = importlib.import_module("huey")

    if config == "sqlite":
        instance = huey.SqliteHuey(NAME, filename=str(path / "huey.db"))
    elif config == "sqlite-nosync":
        instance = huey.SqliteHuey(NAME, filename=str(path / "huey.db"), fsync=False)
    elif config == "file":
        instance = huey.FileHuey(NAME, path=str(path / "huey"))
    elif config == "memory":
        instance = huey.MemoryHuey(NAME)
    elif config == "postgres":
        instance = huey.PostgresHuey(NAME, dsn=dsn)
    else:
        raise ValueError(f"unknown Huey configuration {config!r}")
    count = instance.task(name="bench_count")(tasks.count)
    stamp = instance.task(name="bench_stamp")(tasks.stamp)
    return _Huey(instance, count, stamp)


def _builder(config: str, path: Path, dsn: str | None, main: _Huey) -> _Huey:
    """An instance for building backlogs quickly: same store, no fsync where that is an option."""
    if config == "sqlite":
        return _open("sqlite-nosync", path, dsn)
    return main


@contextlib.contextmanager
def _consumer(huey: Any, workers: int) -> Iterator[Any]:
    """Huey's consumer with ``workers`` threads, started here; the signal handlers it sets
    are put back afterwards."""
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    numbers = [getattr(signal, name) for name in names if hasattr(signal, name)]
    main = threading.current_thread() is threading.main_thread()
    saved = {number: signal.getsignal(number) for number in numbers} if main else {}
    consumer = huey.create_consumer(workers=workers, worker_type="thread")
    if not main:  # signal handlers can only be set from the main thread
        consumer._set_signal_handlers = lambda: None
    consumer.start()
    try:
        yield consumer
    finally:
        consumer.stop(graceful=True)
        for number, handler in saved.items():
            signal.signal(number, handler)


def _ran(start: float, cap: float) -> Rate:
    """Tasks run since ``start``: all of them if the countdown ended within ``cap`` s."""
    if tasks.COUNTDOWN.wait(max(0.0, start + cap - time.perf_counter())):
        return Rate(tasks.COUNTDOWN.target, tasks.COUNTDOWN.last - start)
    return Rate(tasks.COUNTDOWN.count, time.perf_counter() - start)


# ---------------------------------------------------------------------- the measures


def enqueue(h: _Huey, n: int, cap: float) -> Rate:
    """One call per task (each leaves a pending task)."""
    h.count()  # warm: the connection
    start = time.perf_counter()
    done = 0
    while done < n:
        h.count()
        done += 1
        if time.perf_counter() >= start + cap:
            break
    return Rate(done, time.perf_counter() - start)


def producers(h: _Huey, n: int, cap: float, threads: int) -> Rate:
    """``threads`` threads share one Huey instance, one call per task."""
    h.count()  # warm: the connection
    counts = [0] * threads
    start = time.perf_counter()
    share = max(1, n // threads)

    def produce(slot: int) -> None:
        while counts[slot] < share and time.perf_counter() < start + cap:
            h.count()
            counts[slot] += 1

    workers = [threading.Thread(target=produce, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return Rate(sum(counts), time.perf_counter() - start)


def drain(h: _Huey, builder: _Huey, n: int, cap: float, workers: int) -> Rate:
    """A consumer of ``workers`` threads runs tasks from a backlog (built one call per task)."""
    built = 0
    deadline = time.perf_counter() + 1.5 * cap
    while built < n and (built < 100 or time.perf_counter() < deadline):
        builder.count()
        built += 1
    tasks.COUNTDOWN.arm(built)
    start = time.perf_counter()
    with _consumer(h.huey, workers):
        return _ran(start, cap)


def end_to_end(h: _Huey, n: int, cap: float) -> Rate:
    """From the first enqueue to the last run, producer and consumer (4 threads) at once."""
    with _consumer(h.huey, 4):
        tasks.COUNTDOWN.arm(n)
        start = time.perf_counter()
        sent = 0
        while sent < n:
            h.count()
            sent += 1
            if time.perf_counter() >= start + cap:
                break
        tasks.COUNTDOWN.retarget(sent)
        return _ran(start, 2 * cap)


def wakeup(h: _Huey, pauses: tuple[float, ...]) -> Wake:
    """Seconds from the enqueue call to the task's start, after each idle pause
    (and how long each enqueue call took)."""
    latencies: list[float] = []
    calls: list[float] = []  # how long the enqueue call itself took
    with _consumer(h.huey, 4):
        time.sleep(0.3)
        for pause in pauses:
            time.sleep(pause)
            token = uuid.uuid4().hex
            started = tasks.Started()
            tasks.expect(token, started)
            sent = time.perf_counter()
            h.stamp(token)
            returned = time.perf_counter()
            if not started.wait(60.0):
                raise RuntimeError("Huey did not start the task within 60s")
            latencies.append(started.at - sent)
            calls.append(returned - sent)
    return Wake(latencies, calls)


def measure(stores: Stores, config: str, plan: Plan, round_: int) -> dict[str, list[float]]:
    """Round ``round_`` of the Huey measures of ``config`` (as :func:`workloads.measure`)."""
    out: dict[str, list[float]] = {}
    kind = config.split("-")[0]
    cap = plan.cap(config)

    @contextlib.contextmanager
    def fresh() -> Iterator[tuple[_Huey, _Huey]]:
        with stores.directory() as path:
            if kind == "postgres":
                with stores.postgres.schema() as dsn:
                    main = _open(config, path, dsn)
                    try:
                        yield main, _builder(config, path, dsn, main)
                    finally:
                        main.huey.storage.close()
            else:
                main = _open(config, path, None)
                try:
                    yield main, _builder(config, path, None, main)
                finally:
                    with contextlib.suppress(Exception):
                        main.huey.storage.close()

    def record(name: str, rate: Rate) -> None:
        out[f"{name}_per_s"] = [rate.per_second]
        out[f"{name}_tasks"] = [rate.tasks]

    if round_ < plan.repetitions(config, "enqueue"):
        with fresh() as (main, _):
            record("enqueue", enqueue(main, plan.tasks, cap))
    if round_ < plan.repetitions(config, "producers"):
        with fresh() as (main, _):
            record("producers", producers(main, plan.tasks, cap, PRODUCER_THREADS))
    if round_ < plan.repetitions(config, "drain_c1"):
        with fresh() as (main, builder):
            record("drain_c1", drain(main, builder, plan.tasks, cap, 1))
    if round_ < plan.repetitions(config, "drain_c4"):
        with fresh() as (main, builder):
            record("drain_c4", drain(main, builder, plan.tasks, cap, 4))
    if round_ < plan.repetitions(config, "end_to_end"):
        with fresh() as (main, _):
            record("end_to_end", end_to_end(main, plan.tasks, cap))
    if round_ == 0:
        with fresh() as (main, _):
            wake = wakeup(main, plan.wake_pauses(config))
        out["wakeup_samples_s"] = wake.latencies
        out["wakeup_enqueue_s"] = wake.calls
    return out
