"""The PostgreSQL claim's cost against the backlog, with queues and priorities.

Usage::

    python -m benchmarks.postgres_claims [--dsn DSN] [--large 100000] [--claims 70]

Two stores (schemas of their own, dropped at the end) hold 1,000 and ``--large``
pending tasks spread over 3 queues and 10 priorities, half of them due in an hour.
Claims of 4 then alternate between the two stores (so machine noise hits both
alike), over every queue and over two of the three; it prints the median claim
time of each and their ratio (1.0x: the claim is O(1) in the backlog).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Sequence

import psycopg
from psycopg.conninfo import make_conninfo

from omniq.models import new_task_id
from omniq.records import TaskRecord
from omniq.storage.postgres import PostgresStorage

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
SMALL = 1_000
LIMIT = 4  # tasks per claim, as a pool of concurrency 4 prefetches


def build(dsn: str, count: int) -> tuple[str, PostgresStorage]:
    """A new schema holding ``count`` pending tasks, and a storage on it."""
    schema = f"omniq_claimbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    store = make_conninfo(dsn, options=f"-csearch_path={schema}")
    storage = PostgresStorage(store)
    now = time.time()
    records = [
        TaskRecord(
            id=new_task_id(),
            func_path="builtins.abs",
            payload='{"args":[1],"kwargs":{}}',
            status="pending",
            attempts=0,
            max_retries=3,
            eta=now - 10 - (i % 997) * 0.001 if i % 2 == 0 else now + 3600,
            interval=None,
            timeout=None,
            result=None,
            error=None,
            created_at=now,
            updated_at=now,
            queue="abc"[i % 3],
            priority=(i // 3) % 10,
        )
        for i in range(count)
    ]
    for start in range(0, count, 5000):
        storage.add(records[start : start + 5000])
    with psycopg.connect(store, autocommit=True) as admin:
        admin.execute("VACUUM ANALYZE omniq_tasks")
    return schema, storage


def measure(dsn: str, large: int, claims: int, queues: Sequence[str] | None) -> tuple[float, float]:
    """The median claim time (ms) over ``SMALL`` and over ``large`` pending tasks."""
    stores = [build(dsn, SMALL), build(dsn, large)]
    try:
        times: list[list[float]] = [[], []]
        for _, storage in stores:
            for _ in range(5):  # psycopg prepares a statement on its fifth run
                storage.claim(time.time(), time.time() + 30, LIMIT, queues)
        for _ in range(claims):
            for index, (_, storage) in enumerate(stores):
                started = time.perf_counter()
                claimed = storage.claim(time.time(), time.time() + 30, LIMIT, queues)
                times[index].append(time.perf_counter() - started)
                if len(claimed) != LIMIT:
                    raise RuntimeError("the backlog ran out during the measure: fewer --claims")
        small, big = (statistics.median(values) * 1000 for values in times)
        return small, big
    finally:
        for schema, storage in stores:
            storage.close()
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("OMNIQ_TEST_POSTGRES_DSN", DEFAULT_DSN))
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=70)
    args = parser.parse_args()
    for queues in (None, ["a", "b"]):
        small, big = measure(args.dsn, args.large, args.claims, queues)
        served = "every queue" if queues is None else f"queues {queues}"
        print(
            f"claim of {LIMIT}, {served}: {small:.2f} ms over {SMALL:,} pending, "
            f"{big:.2f} ms over {args.large:,} ({big / small:.2f}x)",
            flush=True,
        )


if __name__ == "__main__":
    main()
