"""A worker process for the multi-process tests: ``python worker_process.py async|sync``.

The store comes from the ``OMNIQ_*`` environment (``Settings.from_env()``); the
process drains every due task and exits when nothing more is due.
"""

from __future__ import annotations

import asyncio
import sys

from omniq import AsyncOmniQ, OmniQ, Settings


async def drain_async(settings: Settings, concurrency: int) -> int:
    async with AsyncOmniQ(settings) as omniq, omniq.worker_pool(concurrency=concurrency) as pool:
        return await pool.process_tasks(limit=10**9)


def drain_sync(settings: Settings, concurrency: int) -> int:
    with OmniQ(settings) as omniq, omniq.worker_pool(concurrency=concurrency) as pool:
        return pool.process_tasks(limit=10**9)


def main() -> None:
    twin = sys.argv[1]
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    settings = Settings.from_env()
    if twin == "async":
        done = asyncio.run(drain_async(settings, concurrency))
    else:
        done = drain_sync(settings, concurrency)
    print(done)


if __name__ == "__main__":
    main()
