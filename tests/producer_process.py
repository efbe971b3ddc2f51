"""A producer process for the unique-key race: ``python producer_process.py {async|sync}
BARRIER_DIR PARTIES KEY COUNT``.

The store comes from the ``OMNIQ_*`` environment. Each producer announces itself in
``BARRIER_DIR`` and waits until ``PARTIES`` have, so they all enqueue at once; then it
enqueues ``COUNT`` tasks with the unique key ``KEY`` and prints the ids it got back,
one per line.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from omniq import AsyncOmniQ, OmniQ, Settings


def wait_for_parties(directory: Path, parties: int) -> None:
    (directory / str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(os.listdir(directory)) < parties:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(os.listdir(directory))} of {parties} producers came")
        time.sleep(0.001)


async def produce_async(
    settings: Settings, barrier: Path, parties: int, key: str, count: int
) -> list[str]:
    async with AsyncOmniQ(settings) as omniq:  # opened first: the race is between enqueues
        wait_for_parties(barrier, parties)
        return [
            await omniq.enqueue("task_functions.add", args=[i, i], unique_key=key)
            for i in range(count)
        ]


def produce_sync(
    settings: Settings, barrier: Path, parties: int, key: str, count: int
) -> list[str]:
    with OmniQ(settings) as omniq:  # opened first: the race is between enqueues
        wait_for_parties(barrier, parties)
        return [
            omniq.enqueue("task_functions.add", args=[i, i], unique_key=key) for i in range(count)
        ]


def main() -> None:
    twin, barrier, parties, key, count = sys.argv[1:6]
    settings = Settings.from_env()
    produce = produce_sync if twin == "sync" else None
    if produce is None:
        ids = asyncio.run(produce_async(settings, Path(barrier), int(parties), key, int(count)))
    else:
        ids = produce(settings, Path(barrier), int(parties), key, int(count))
    print("\n".join(ids), flush=True)


if __name__ == "__main__":
    main()
