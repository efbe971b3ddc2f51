"""Schema v2 figures: SQLite pages written per commit, and claims over a priority backlog.

``python -m benchmarks.schema`` (also run by ``python -m benchmarks``):

* **Pages per commit** (SQLite, ``synchronous=FULL``): the growth of the ``-wal`` file
  per commit divided by the page size plus the 24-byte frame header, with automatic
  checkpoints off, for an enqueue, a claim and a finish, each its own commit.
* **Claims over a priority backlog**: the median time of a claim (``dequeue_many(4)``)
  with 1,000 and with 100,000 pending tasks spread over 3 queues and 10 priorities,
  half of them due in the future; the ratio says whether the claim stays flat.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from omniq import OmniQ, Settings
from omniq.records import Transition

QUEUES = ("alpha", "beta", "gamma")
PRIORITIES = tuple(range(-45, 55, 10))  # ten levels
CLAIMS = 200


def wal_pages(operations: int = 2000) -> dict[str, float]:
    """Pages per commit of an enqueue, a claim and a finish on a fresh SQLite store."""
    with (
        tempfile.TemporaryDirectory(prefix="omniq-pages-") as scratch,
        OmniQ(Settings(base_dir=scratch, durability="full")) as omniq,
    ):
        storage = omniq.queue.storage
        storage.open()
        conn = storage._db._conn  # type: ignore[attr-defined]  # the benchmark's one peek
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        page = int(conn.execute("PRAGMA page_size").fetchone()[0]) + 24
        wal = Path(str(storage.path) + "-wal")  # type: ignore[attr-defined]

        def per_commit(step: Any) -> float:
            before = wal.stat().st_size
            for index in range(operations):
                step(index)
            return (wal.stat().st_size - before) / page / operations

        ids: list[str] = []
        enqueue = per_commit(lambda i: ids.append(omniq.enqueue("benchmarks.tasks.noop", args=[i])))
        claimed: list[Any] = []
        now = time.time()

        def claim(_: int) -> None:
            claimed.extend(storage.claim(time.time(), now + 3600, 1))

        claim_pages = per_commit(claim)

        def finish(index: int) -> None:
            record = claimed[index]
            done = Transition(status="completed", now=time.time(), result="null")
            storage.finish_many([(record.id, record.attempt_token, done)])

        finish_pages = per_commit(finish)
    return {"enqueue": enqueue, "claim": claim_pages, "finish": finish_pages}


def _backlog(omniq: OmniQ, pending: int) -> None:
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    rng = random.Random(7)
    items = [
        {
            "func_path": "benchmarks.tasks.noop",
            "queue": rng.choice(QUEUES),
            "priority": rng.choice(PRIORITIES),
            **({"eta": later} if index % 2 else {}),
        }
        for index in range(pending)
    ]
    for start in range(0, pending, 5000):
        omniq.enqueue_many(items[start : start + 5000])


def claim_cost(backend: str, pending: int, dsn: str | None = None) -> float:
    """Median seconds per claim of 4 over ``pending`` tasks (3 queues, 10 priorities)."""
    with tempfile.TemporaryDirectory(prefix="omniq-claims-") as scratch:
        settings = Settings(backend=backend, base_dir=scratch, durability="fast", dsn=dsn)
        with OmniQ(settings) as omniq:
            _backlog(omniq, pending)
            times = []
            for _ in range(min(CLAIMS, pending // 2 // 8)):  # a quarter of the due tasks at most
                start = time.perf_counter()
                got = omniq.queue.dequeue_many(4)
                times.append(time.perf_counter() - start)
                if not got:
                    raise RuntimeError("the backlog ran out during the claim measure")
            if backend == "postgres":
                omniq.purge(0, ["completed"])
    return statistics.median(times)


def run(backends: list[str], dsn: str | None = None) -> dict[str, Any]:
    """Every figure of this module, as a JSON-ready dict."""
    figures: dict[str, Any] = {"pages_per_commit": wal_pages(), "claims": {}}
    for backend in backends:
        small = claim_cost(backend, 1_000, dsn)
        large = claim_cost(backend, 100_000, dsn)
        figures["claims"][backend] = {
            "claim_1k_us": small * 1e6,
            "claim_100k_us": large * 1e6,
            "ratio": large / small,
        }
    return figures


def describe(figures: dict[str, Any]) -> str:
    """The figures as text for the terminal."""
    pages = figures["pages_per_commit"]
    lines = [
        "SQLite pages written per commit (synchronous=FULL, checkpoints off): "
        f"enqueue {pages['enqueue']:.2f} (goal <= 3), claim {pages['claim']:.2f}, "
        f"finish {pages['finish']:.2f}",
        "Claims of 4 over a backlog of 3 queues x 10 priorities, half due later "
        "(goal: 100k within 1.3x of 1k):",
    ]
    for backend, claim in figures["claims"].items():
        mark = "met" if claim["ratio"] <= 1.3 else "not met"
        lines.append(
            f"  {backend:9} 1k {claim['claim_1k_us']:8.0f} us   100k {claim['claim_100k_us']:8.0f} "
            f"us   {claim['ratio']:.2f}x  {mark}"
        )
    return "\n".join(lines)


def main() -> None:
    """The command line of this module."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.schema")
    parser.add_argument("--backends", default="sqlite,memory,file")
    parser.add_argument("--dsn", default=os.environ.get("OMNIQ_BENCH_POSTGRES_DSN"))
    args = parser.parse_args()
    print(describe(run(args.backends.split(","), args.dsn)))


if __name__ == "__main__":
    main()
