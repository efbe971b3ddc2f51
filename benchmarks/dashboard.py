"""How fast the dashboard's pages load over a big store: 100,000 tasks by default.

Usage (from the repository root, with ``omniq[web]`` installed)::

    python benchmarks/dashboard.py                       # SQLite, 100,000 tasks
    python benchmarks/dashboard.py --tasks 20000 --runs 3 --json out.json
    python benchmarks/dashboard.py --dsn postgresql://postgres@127.0.0.1:5432/test

The store gets tasks in every state over three queues (60 % completed and 10 %
failed, with finish times over the last two hours: the worst case for the overview's
throughput query, which counts every task finished in the last hour, here some
35,000; 20 % pending, 5 % running, 5 % cancelled), written straight to the store in
batches. The dashboard is then served by uvicorn on a loopback port,
as ``omniq web`` serves it, and each page is fetched over HTTP: once to warm up, then
``--runs`` times. The figures are the median and the slowest of those fetches,
server time plus the HTTP round trip on this machine, and beside them the same for
the facade call behind the page alone. Measurements, not assertions: the machine may
be busy, so the load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from omniq import AsyncOmniQ, Settings
from omniq.models import new_task_id
from omniq.records import TaskRecord
from omniq.web.app import METRICS_TTL

QUEUES = ("default", "emails", "reports")
BATCH = 5000


def record(position: int, now: float, rng: random.Random) -> TaskRecord:
    """One stored task, its state drawn by the benchmark's mix."""
    draw = rng.random()
    status = (
        "completed"
        if draw < 0.6
        else "failed"
        if draw < 0.7
        else "pending"
        if draw < 0.9
        else "running"
        if draw < 0.95
        else "cancelled"
    )
    created = now - rng.uniform(0, 7200)
    finished = (
        created + rng.uniform(0.01, 5) if status in ("completed", "failed", "cancelled") else None
    )
    error = history = None
    if status == "failed":
        error = json.dumps(
            {
                "error_type": "runtime",
                "message": "the mail server refused the message",
                "exception_type": "builtins.RuntimeError",
                "traceback": "Traceback (most recent call last):\n" + "  ...\n" * 12,
            }
        )
        history = json.dumps(
            [
                {
                    "attempt": 1,
                    "worker": "bench",
                    "started_at": created,
                    "finished_at": finished,
                    "outcome": "failed",
                }
            ]
        )
    return TaskRecord(
        id=new_task_id(),
        func_path=f"app.jobs.job_{position % 7}",
        payload=json.dumps({"args": [position, "x" * 40], "kwargs": {"user": position % 997}}),
        status=status,
        attempts=0 if status == "pending" else 1,
        max_retries=3,
        eta=created,
        interval=None,
        timeout=None,
        result=json.dumps(position) if status == "completed" else None,
        error=error,
        created_at=created,
        updated_at=finished or created,
        started_at=None if status == "pending" else created,
        finished_at=finished,
        lease_until=now + 3600 if status == "running" else None,
        attempt_token=uuid.uuid4().hex if status == "running" else None,
        queue=QUEUES[position % len(QUEUES)],
        worker=None if status == "pending" else "bench",
        history=history,
    )


async def fill(omniq: AsyncOmniQ, count: int) -> str:
    """Write ``count`` tasks; return the id of a failed one (for its task page)."""
    rng = random.Random(15)
    now = time.time()
    failed = ""
    batch: list[TaskRecord] = []
    for position in range(count):
        made = record(position, now, rng)
        if made.status == "failed":
            failed = made.id
        batch.append(made)
        if len(batch) == BATCH:
            await omniq.queue.storage.add(batch)
            batch = []
    if batch:
        await omniq.queue.storage.add(batch)
    return failed


class Server(threading.Thread):
    """The dashboard served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.port = 0
        self.ready = threading.Event()
        self.server: Any = None

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        import uvicorn

        from omniq.web import create_app

        async with AsyncOmniQ(self.settings) as omniq:
            config = uvicorn.Config(
                create_app(omniq), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
            )
            self.server = uvicorn.Server(config)
            self.server.install_signal_handlers = lambda: None
            serving = asyncio.ensure_future(self.server.serve())
            while not self.server.started and not serving.done():
                await asyncio.sleep(0.01)
            self.port = self.server.servers[0].sockets[0].getsockname()[1]
            self.ready.set()
            await serving


def timed(fetch: Callable[[], object], runs: int, pause: float = 0.0) -> list[float]:
    """Milliseconds of ``runs`` calls of ``fetch``, after one to warm up, ``pause``
    seconds apart (untimed)."""
    fetch()
    figures = []
    for _ in range(runs):
        time.sleep(pause)
        started = time.perf_counter()
        fetch()
        figures.append((time.perf_counter() - started) * 1000)
    return figures


async def facade_times(settings: Settings, runs: int, failed_id: str) -> dict[str, list[float]]:
    """Milliseconds of the facade calls behind each page (no HTML, no HTTP)."""
    calls: dict[str, Callable[[AsyncOmniQ], Awaitable[object]]] = {
        "overview": lambda o: o.metrics(),
        "tasks": lambda o: o.list_tasks(limit=51),
        "tasks?status=failed": lambda o: o.list_tasks("failed", limit=51),
        "tasks?function=job_3": lambda o: o.list_tasks(function="job_3", limit=51),
        "tasks?offset=5000": lambda o: o.list_tasks(limit=51, offset=5000),
        "task page": lambda o: o.get_task(failed_id),
    }
    results: dict[str, list[float]] = {}
    async with AsyncOmniQ(settings) as omniq:
        for name, call in calls.items():
            await call(omniq)
            figures = []
            for _ in range(runs):
                started = time.perf_counter()
                await call(omniq)
                figures.append((time.perf_counter() - started) * 1000)
            results[name] = figures
    return results


def main(argv: list[str] | None = None) -> int:
    """Build the store, serve it, time each page; print (and optionally save) the figures."""
    parser = argparse.ArgumentParser(prog="python benchmarks/dashboard.py", description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks in the store")
    parser.add_argument("--runs", type=int, default=5, help="timed fetches per page")
    parser.add_argument("--dsn", help="a PostgreSQL DSN (default: SQLite in a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="omniq-dashboard-bench-") as scratch:
        if args.dsn:
            settings = Settings(backend="postgres", dsn=args.dsn, base_dir=scratch)
        else:
            settings = Settings(base_dir=scratch)

        async def build() -> str:
            async with AsyncOmniQ(settings) as omniq:
                return await fill(omniq, args.tasks)

        started = time.perf_counter()
        failed_id = asyncio.run(build())
        print(
            f"store: {settings.backend}, {args.tasks:,} tasks written in "
            f"{time.perf_counter() - started:.1f}s"
        )
        server = Server(settings)
        server.start()
        if not server.ready.wait(60):
            print("the dashboard did not start", file=sys.stderr)
            return 1
        base = f"http://127.0.0.1:{server.port}"
        pages = {
            "overview": "/",
            "tasks": "/tasks",
            "tasks?status=failed": "/tasks?status=failed",
            "tasks?function=job_3": "/tasks?function=job_3",
            "tasks?offset=5000": "/tasks?offset=5000",
            "task page": f"/tasks/{failed_id}",
            "metrics": "/metrics",
        }
        http: dict[str, list[float]] = {}
        with httpx.Client(base_url=base, timeout=120) as client:
            for name, path in pages.items():

                def fetch(path: str = path) -> None:
                    response = client.get(path)
                    response.raise_for_status()

                # The dashboard shares one metrics snapshot for METRICS_TTL seconds:
                # wait it out, so every fetch of these pages takes a fresh one.
                snapshot = name in ("overview", "metrics")
                http[name] = timed(fetch, args.runs, METRICS_TTL + 0.1 if snapshot else 0.0)
        server.server.should_exit = True
        server.join(30)
        facade = asyncio.run(facade_times(settings, args.runs, failed_id))
    load = os.getloadavg()
    print(
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores; "
        f"{args.runs} timed fetches per page after one warm-up"
    )
    print(f"{'page':24} {'HTTP median':>12} {'HTTP max':>10} {'facade median':>14}")
    for name, figures in http.items():
        behind = facade.get(name)
        inner = f"{statistics.median(behind):11.1f} ms" if behind else f"{'-':>14}"
        print(f"{name:24} {statistics.median(figures):9.1f} ms {max(figures):7.1f} ms {inner}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "tasks": args.tasks,
                    "backend": settings.backend,
                    "http_ms": http,
                    "facade_ms": facade,
                    "load": load,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
