"""The Quick Start job: enqueue tasks with both twins and run them on SQLite.

Run from the repository root: ``python examples/quickstart.py``. The store lives
under ``./omniq_data`` (override with ``OMNIQ_BASE_DIR``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # so "examples.tasks" imports

from examples.tasks import add, fetch_greeting  # declared with @task
from omniq import AsyncOmniQ, OmniQ, Settings

BASE_DIR = os.environ.get("OMNIQ_BASE_DIR", "./omniq_data")


async def async_quickstart(settings: Settings) -> None:
    async with AsyncOmniQ(settings) as omniq:
        ids = [await omniq.enqueue(add, args=[i, i]) for i in range(5)]
        greeting = await fetch_greeting.using(omniq).enqueue("async world")
        async with omniq.worker_pool(concurrency=4) as workers:
            done = await workers.process_tasks(limit=10)
        print(f"AsyncOmniQ ran {done} tasks:", [await omniq.get_result(i) for i in ids])
        print("  ", await omniq.get_result(greeting))


def blocking_quickstart(settings: Settings) -> None:
    with OmniQ(settings) as omniq:
        ids = [add.using(omniq).enqueue(i, 10) for i in range(5)]
        greeting = omniq.enqueue(fetch_greeting, args=["blocking world"])
        with omniq.worker_pool(concurrency=4) as workers:
            done = workers.process_tasks(limit=10)
        print(f"OmniQ ran {done} tasks:", [omniq.get_result(i) for i in ids])
        print("  ", omniq.get_result(greeting))


def main() -> None:
    settings = Settings(backend="sqlite", base_dir=BASE_DIR)
    print(f"SQLite store: {settings.sqlite_path}")
    asyncio.run(async_quickstart(settings))
    blocking_quickstart(settings)


if __name__ == "__main__":
    main()
