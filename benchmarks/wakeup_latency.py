"""Cross-process wake-up figures: a producer process and a worker process on one store.

Usage (from the repository root, with omniq installed; PostgreSQL optional)::

    python benchmarks/wakeup_latency.py                      # sqlite, file, postgres
    python benchmarks/wakeup_latency.py --backends sqlite --samples 50 --json out.json

For each backend, with wake-ups ("on") and without them ("before": what omniq did
before them: the worker polls every ``poll_interval``, ``get_result`` polls 10 ms
doubling to 0.5 s; PostgreSQL keeps its LISTEN for new tasks), it measures:

* enqueue-to-start: the producer notes the time, enqueues a task whose function
  returns the time it started, in a worker process idle for a random 50-250 ms
  pause (the default ``poll_interval`` of 1 s); p50 and p99 (nearest rank);
* back-to-back ``enqueue`` + ``get_result(wait=True)``: the median round trip;
* idle worker CPU: the worker's CPU time over 30 s with nothing to do, as % of a core;
* the cost per enqueue: median ``enqueue`` time with one idle listening process,
  and the channel's own ``notify_due`` time with 0, 1 and 4 listening processes.

These are measurements, not assertions: the machine may be shared, so the load
average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from omniq import AsyncOmniQ, OmniQ, Settings

HERE = Path(__file__).resolve()
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
POLL = 1.0  # the default poll_interval


def stamp() -> float:
    """The task the worker runs: the wall-clock time it started."""
    return time.time()


# --------------------------------------------------------------------------- helpers


def disable_wakeups() -> None:
    """Behave as omniq did before cross-process wake-ups (SQLite, files; get_result polls)."""
    from omniq import _wakeup

    _wakeup.HAS_UNIX_SOCKETS = False
    with contextlib.suppress(ImportError):
        from omniq._async.storage.postgres import AsyncPostgresStorage
        from omniq._sync.storage.postgres import PostgresStorage

        for cls in (AsyncPostgresStorage, PostgresStorage):
            cls.subscribe_finished = lambda self, callback: False  # type: ignore[method-assign]


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def environment(store: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    env.update(store)
    return env


def settings_of(store: dict[str, str]) -> Settings:
    return Settings(
        backend=store["OMNIQ_BACKEND"],
        base_dir=Path(store["OMNIQ_BASE_DIR"]),
        dsn=store.get("OMNIQ_DSN"),
        poll_interval=POLL,
    )


class Child:
    """A helper process of this script, driven by one-line commands on stdin."""

    def __init__(self, store: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE), *args],
            env=environment(store),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.ask("") == "ready"

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        if command:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.ask("stop")
        self.process.wait(60)


def serve_commands(stop: Callable[[], None]) -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "cpu":
            print(time.process_time(), flush=True)
        elif line.strip() == "stop":
            break
    stop()


# --------------------------------------------------------------------------- child processes


def worker_main(twin: str) -> None:
    settings = Settings.from_env(poll_interval=POLL)
    if twin == "sync":
        with OmniQ(settings) as omniq:
            pool = omniq.worker_pool(concurrency=2, handle_signals=False)
            with pool:
                server = threading.Thread(target=pool.run, daemon=True)
                server.start()
                serve_commands(pool.stop)
                server.join(60)
        return

    async def main() -> None:
        async with AsyncOmniQ(settings) as omniq:
            pool = omniq.worker_pool(concurrency=2, handle_signals=False)
            async with pool:
                loop = asyncio.get_running_loop()
                serving = asyncio.ensure_future(pool.run())

                def stop() -> None:
                    loop.call_soon_threadsafe(pool.stop)

                await loop.run_in_executor(None, serve_commands, stop)
                await serving

    asyncio.run(main())


def listener_main() -> None:
    """A process that only listens (a worker's socket, without its claims)."""
    from omniq._wakeup import channel_for

    settings = Settings.from_env()
    directory = (
        Path(settings.sqlite_path).with_name(Path(settings.sqlite_path).name + "-wakeup")
        if settings.backend == "sqlite"
        else Path(settings.base_dir) / "wakeup"
    )
    channel = channel_for(directory)
    channel.subscribe(lambda: None)
    serve_commands(lambda: None)


# --------------------------------------------------------------------------- measurements


def measure_latency(store: dict[str, str], twin: str, samples: int) -> dict[str, float]:
    worker = Child(store, "--worker", twin, *(["--before"] if "before" in store else []))
    waits: list[float] = []
    try:
        with OmniQ(settings_of(store)) as omniq:
            omniq.get_result(omniq.enqueue("wakeup_latency.stamp"), wait=True, timeout=60)
            for _ in range(samples):
                time.sleep(random.uniform(0.05, 0.25))  # the worker is idle
                before = time.time()
                task_id = omniq.enqueue("wakeup_latency.stamp")
                started = omniq.get_result(task_id, wait=True, timeout=60)
                waits.append((started - before) * 1000)
    finally:
        worker.stop()
    return {
        "start_p50_ms": round(statistics.median(waits), 2),
        "start_p99_ms": round(percentile(waits, 0.99), 2),
    }


def measure_round_trip(store: dict[str, str], samples: int) -> dict[str, float]:
    worker = Child(store, "--worker", "sync", *(["--before"] if "before" in store else []))
    trips: list[float] = []
    try:
        with OmniQ(settings_of(store)) as omniq:
            omniq.get_result(omniq.enqueue("wakeup_latency.stamp"), wait=True, timeout=60)
            for _ in range(samples):
                before = time.perf_counter()
                omniq.get_result(omniq.enqueue("wakeup_latency.stamp"), wait=True, timeout=60)
                trips.append((time.perf_counter() - before) * 1000)
    finally:
        worker.stop()
    return {"round_trip_median_ms": round(statistics.median(trips), 2)}


def measure_idle_cpu(store: dict[str, str], seconds: float) -> dict[str, float]:
    worker = Child(store, "--worker", "sync", *(["--before"] if "before" in store else []))
    try:
        time.sleep(2.0)  # past start-up
        cpu_before, wall_before = float(worker.ask("cpu")), time.monotonic()
        time.sleep(seconds)
        cpu_after, wall_after = float(worker.ask("cpu")), time.monotonic()
    finally:
        worker.stop()
    return {
        "idle_cpu_percent": round(100 * (cpu_after - cpu_before) / (wall_after - wall_before), 3)
    }


def measure_enqueue_cost(store: dict[str, str], samples: int) -> dict[str, float]:
    """Enqueue times with and without the wake-up, interleaved in rounds (a shared machine
    drifts), with one idle listening process to send to."""
    from omniq import _wakeup

    listener = Child(store, "--listener")
    durations: dict[bool, list[float]] = {True: [], False: []}
    try:
        time.sleep(1.2)  # past the racy-mtime window of the listener's bind: the listing is cached
        with OmniQ(settings_of(store)) as omniq:
            for _ in range(50):
                omniq.enqueue("wakeup_latency.stamp")  # warm up
            for round_ in range(6):
                waking = round_ % 2 == 0
                _wakeup.HAS_UNIX_SOCKETS = waking
                for _ in range(samples // 6):
                    before = time.perf_counter()
                    omniq.enqueue("wakeup_latency.stamp")
                    durations[waking].append((time.perf_counter() - before) * 1_000_000)
    finally:
        _wakeup.HAS_UNIX_SOCKETS = True
        listener.stop()
    return {
        "enqueue_median_us": round(statistics.median(durations[True]), 1),
        "enqueue_without_wakeup_us": round(statistics.median(durations[False]), 1),
    }


def measure_notify(directory: Path, listeners: int, samples: int = 5000) -> float:
    from omniq._wakeup import channel_for

    store = {"OMNIQ_BACKEND": "file", "OMNIQ_BASE_DIR": str(directory)}
    children = [Child(store, "--listener") for _ in range(listeners)]
    try:
        time.sleep(1.2)  # past the racy-mtime window: the listing is cached
        channel = channel_for(directory / "wakeup")
        durations = []
        for _ in range(samples):
            before = time.perf_counter()
            channel.notify_due()
            durations.append((time.perf_counter() - before) * 1_000_000)
            time.sleep(0.0002)  # a producer, not a flood
    finally:
        for child in children:
            child.stop()
    return round(statistics.median(durations), 2)


def producer_main(args: argparse.Namespace) -> None:
    """One backend in one mode, in a process of its own; prints a JSON object."""
    store = json.loads(args.producer)
    if "before" in store:
        disable_wakeups()
    result: dict[str, Any] = {}
    for twin in args.twins.split(","):
        result[twin] = measure_latency(store, twin, args.samples)
    result.update(measure_round_trip(store, max(args.samples // 2, 10)))
    if args.idle_seconds > 0:
        result.update(measure_idle_cpu(store, args.idle_seconds))
    if store["OMNIQ_BACKEND"] != "postgres" and "before" not in store:
        result.update(measure_enqueue_cost(store, 1800))
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------- orchestration


@contextlib.contextmanager
def fresh_store(backend: str, dsn: str) -> Iterator[dict[str, str]]:
    base = tempfile.mkdtemp(prefix="omniq-wakeup-")
    store = {"OMNIQ_BACKEND": backend, "OMNIQ_BASE_DIR": base}
    schema = f"omniq_bench_{uuid.uuid4().hex[:12]}"
    if backend == "postgres":
        import psycopg
        from psycopg.conninfo import make_conninfo

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        store["OMNIQ_DSN"] = make_conninfo(dsn, options=f"-csearch_path={schema}")
    try:
        yield store
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if backend == "postgres":
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def postgres_problem(dsn: str) -> str | None:
    try:
        import psycopg

        psycopg.connect(dsn, connect_timeout=5).close()
    except Exception as error:
        return f"PostgreSQL not measured: {str(error).strip().splitlines()[0]}"
    return None


def run_mode(backend: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    with fresh_store(backend, args.dsn) as store:
        if mode == "before":
            store["before"] = "1"
        command = [
            sys.executable,
            str(HERE),
            "--producer",
            json.dumps(store),
            "--samples",
            str(args.samples if mode == "on" else max(args.samples // 4, 10)),
            "--twins",
            args.twins if mode == "on" else "sync",
            "--idle-seconds",
            str(args.idle_seconds if mode == "on" else 0),
        ]
        output = subprocess.run(
            command, env=environment({}), capture_output=True, text=True, check=False
        )
        if output.returncode != 0:
            raise RuntimeError(f"{backend} {mode}: {output.stderr.strip()}")
        result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
        return result


def main() -> None:
    args = options()
    if args.worker:
        if args.before:
            disable_wakeups()
        worker_main(args.worker)
        return
    if args.listener:
        listener_main()
        return
    if args.producer:
        producer_main(args)
        return
    report: dict[str, Any] = {
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "backends": {},
    }
    backends = args.backends.split(",")
    if "postgres" in backends and (problem := postgres_problem(args.dsn)):
        print(problem)
        backends.remove("postgres")
    for backend in backends:
        report["backends"][backend] = {
            mode: run_mode(backend, mode, args) for mode in ("on", "before")
        }
        print(f"{backend}: {json.dumps(report['backends'][backend])}", flush=True)
    with tempfile.TemporaryDirectory(prefix="omniq-notify-") as scratch:
        report["notify_due_us"] = {
            str(count): measure_notify(Path(scratch) / str(count), count) for count in (0, 1, 4)
        }
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


def print_table(report: dict[str, Any]) -> None:
    print()
    print(f"load average at start {report['load_average_start']}, end {report['load_average_end']}")
    print(
        "| backend | mode | start p50 ms (sync/async worker) | start p99 ms | "
        "enqueue+get_result median ms | idle worker CPU % | enqueue µs (without wake-up) |"
    )
    print("|---|---|---|---|---|---|---|")
    for backend, modes in report["backends"].items():
        for mode, row in modes.items():
            twins = [twin for twin in ("sync", "async") if twin in row]
            p50 = " / ".join(str(row[twin]["start_p50_ms"]) for twin in twins)
            p99 = " / ".join(str(row[twin]["start_p99_ms"]) for twin in twins)
            cost = ""
            if "enqueue_median_us" in row:
                cost = f"{row['enqueue_median_us']} ({row['enqueue_without_wakeup_us']})"
            print(
                f"| {backend} | {mode} | {p50} | {p99} | {row['round_trip_median_ms']} | "
                f"{row.get('idle_cpu_percent', '')} | {cost} |"
            )
    costs = ", ".join(
        f"{count} listener(s) {us} µs" for count, us in report["notify_due_us"].items()
    )
    print(f"notify_due alone (median): {costs}")


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,file,postgres")
    parser.add_argument("--dsn", default=os.environ.get("OMNIQ_BENCH_POSTGRES_DSN", DEFAULT_DSN))
    parser.add_argument("--samples", type=int, default=100, help="enqueue-to-start samples")
    parser.add_argument("--twins", default="sync,async", help="worker twins for the latency")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--json", help="also write the figures to this file")
    # The script's own child processes:
    parser.add_argument("--worker", choices=["sync", "async"], help=argparse.SUPPRESS)
    parser.add_argument("--before", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--listener", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--producer", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    main()
