"""Benchmark omniq on PostgreSQL next to SQLite, measured in the same run.

Usage::

    python -m benchmarks.postgres [--dsn DSN] [--enqueues 2000] [--tasks 4000]
                                  [--wakeups 50] [--twin async|sync] [--durability full|fast]

The DSN defaults to ``OMNIQ_TEST_POSTGRES_DSN`` or the local ``test`` database; the run
uses a schema of its own (``omniq_pgbench_<random>``) and drops it at the end. SQLite
uses a temporary directory. For each backend it prints:

* enqueue/s: single ``enqueue`` calls one after another (one transaction each), and
  ``enqueue_many`` in batches of 500;
* processed/s: a backlog of no-op tasks drained by 1 and by 4 worker processes (each
  with ``concurrency=4``), timed from the moment every worker is ready until the last
  one has found nothing more to do;
* idle wake-up latency: one worker process, idle (``poll_interval=1``), and tasks
  enqueued by this process one at a time; the latency is the task's start time (its
  result: ``time.time()``) minus the moment before ``enqueue`` was called. PostgreSQL
  wakes the worker with LISTEN/NOTIFY; SQLite has no cross-process wake-up, so its
  latency is the polling delay.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import child_env
from omniq import AsyncOmniQ, OmniQ, Settings

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
NOOP = "builtins.abs"  # the cheapest importable task: the figures measure the queue
CLOCK = "time.time"  # returns when it ran: the start time of the task


def worker_main(args: argparse.Namespace) -> None:
    """A worker process: ready, wait for the go line on stdin, then drain or serve."""
    settings = Settings.from_env()
    if args.twin == "async":
        import asyncio

        async def run() -> int:
            omniq = AsyncOmniQ(settings)
            async with omniq, omniq.worker_pool(concurrency=4) as pool:
                print("ready", flush=True)
                sys.stdin.readline()
                if args.worker == "serve":
                    await pool.run()
                    return pool.processed
                return await pool.process_tasks(limit=10**9)

        done = asyncio.run(run())
    else:
        with OmniQ(settings) as omniq, omniq.worker_pool(concurrency=4) as pool:
            print("ready", flush=True)
            sys.stdin.readline()
            if args.worker == "serve":
                pool.run()
                done = pool.processed
            else:
                done = pool.process_tasks(limit=10**9)
    print(done, flush=True)


def start_workers(
    settings: Settings, count: int, mode: str, twin: str
) -> list[subprocess.Popen[str]]:
    env = child_env()
    env.update(
        OMNIQ_BACKEND=settings.backend,
        OMNIQ_BASE_DIR=str(settings.base_dir),
        OMNIQ_POLL_INTERVAL=str(settings.poll_interval),
        OMNIQ_DURABILITY=settings.durability,
        # The workers run tasks another process enqueued: the allow-list must name them.
        OMNIQ_TASK_MODULES=f"{NOOP},{CLOCK}",
    )
    if settings.dsn:
        env["OMNIQ_DSN"] = settings.dsn
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.postgres", "--worker", mode, "--twin", twin],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for worker in workers:
        assert worker.stdout is not None
        line = worker.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"a worker failed to start (said {line!r})")
    return workers


def go(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()


def bench_enqueue(settings: Settings, count: int) -> tuple[float, float]:
    with OmniQ(settings) as omniq:
        omniq.enqueue(NOOP, args=[0])  # connect and create the schema outside the timing
        started = time.perf_counter()
        for i in range(count):
            omniq.enqueue(NOOP, args=[i])
        single = count / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(count // 500 or 1):
            omniq.enqueue_many({"func_path": NOOP, "args": [i]} for i in range(500))
        batched = (count // 500 or 1) * 500 / (time.perf_counter() - started)
    return single, batched


def bench_processing(settings: Settings, tasks: int, processes: int, twin: str) -> float:
    with OmniQ(settings) as omniq:
        for start in range(0, tasks, 500):
            omniq.enqueue_many(
                {"func_path": NOOP, "args": [i]} for i in range(start, min(start + 500, tasks))
            )
    workers = start_workers(settings, processes, "drain", twin)
    started = time.perf_counter()
    go(workers)
    done = 0
    for worker in workers:
        stdout, _ = worker.communicate(timeout=600)
        done += int(stdout.strip().splitlines()[-1])
    elapsed = time.perf_counter() - started
    if done != tasks:
        raise SystemExit(f"expected {tasks} executions, the workers reported {done}")
    return tasks / elapsed


def bench_wakeup(settings: Settings, count: int, twin: str) -> list[float]:
    workers = start_workers(settings, 1, "serve", twin)
    go(workers)
    latencies: list[float] = []
    try:
        with OmniQ(settings) as omniq:
            time.sleep(0.5)  # the worker is idle, waiting
            for i in range(count):
                time.sleep(0.1 + (i % 7) * 0.03)  # idle again, at varied points of its poll
                before = time.time()
                task_id = omniq.enqueue(CLOCK)
                ran_at = omniq.get_result(task_id, wait=True, timeout=30)
                latencies.append(ran_at - before)
    finally:
        workers[0].terminate()
        workers[0].communicate(timeout=60)
    return latencies


@contextlib.contextmanager
def postgres_settings(dsn: str, durability: str) -> Iterator[Settings]:
    import psycopg
    from psycopg.conninfo import make_conninfo

    schema = f"omniq_pgbench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield Settings(
            backend="postgres",
            dsn=make_conninfo(dsn, options=f"-csearch_path={schema}"),
            durability=durability,
        )
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextlib.contextmanager
def sqlite_settings(durability: str) -> Iterator[Settings]:
    with tempfile.TemporaryDirectory(prefix="omniq-bench-") as tmp:
        yield Settings(backend="sqlite", base_dir=Path(tmp), durability=durability)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def store(name: str, args: argparse.Namespace) -> contextlib.AbstractContextManager[Settings]:
    """A fresh, empty store of backend ``name``."""
    if name == "postgres":
        return postgres_settings(args.dsn, args.durability)
    return sqlite_settings(args.durability)


def run(args: argparse.Namespace) -> None:
    print(
        f"omniq benchmark: twin={args.twin} durability={args.durability} "
        f"enqueues={args.enqueues} tasks={args.tasks} wakeups={args.wakeups}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    for name in ("sqlite", "postgres"):
        with store(name, args) as settings:
            single, batched = bench_enqueue(settings, args.enqueues)
        figures = [f"enqueue {single:,.0f}/s", f"enqueue_many {batched:,.0f}/s"]
        for processes in (1, 4):
            with store(name, args) as settings:
                rate = bench_processing(settings, args.tasks, processes, args.twin)
            figures.append(f"processed {rate:,.0f}/s with {processes} process(es)")
        with store(name, args) as settings:
            latencies = bench_wakeup(settings, args.wakeups, args.twin)
        figures.append(
            f"idle wake-up median {statistics.median(latencies) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
        )
        print(f"{name:9} " + "; ".join(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.postgres", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--dsn", default=os.environ.get("OMNIQ_TEST_POSTGRES_DSN", DEFAULT_DSN))
    parser.add_argument("--enqueues", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--wakeups", type=int, default=50)
    parser.add_argument("--twin", choices=["async", "sync"], default="async")
    parser.add_argument("--durability", choices=["full", "fast"], default="full")
    parser.add_argument("--worker", choices=["drain", "serve"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
