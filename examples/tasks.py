"""Task functions for the README and the examples, enqueued as ``examples.tasks.<name>``."""

from __future__ import annotations

import asyncio
import random


def add(a: int, b: int) -> int:
    """A plain function: the blocking twin calls it on a worker thread."""
    return a + b


async def fetch_greeting(name: str) -> str:
    """A coroutine function: the async twin awaits it on the event loop."""
    await asyncio.sleep(0.01)
    return f"hello, {name}"


def flaky(probability: float = 0.5) -> str:
    """Fails at random, to show retries."""
    if random.random() < probability:
        raise ConnectionError("the upstream service did not answer")
    return "ok"


def always_fails() -> None:
    """Fails every time, to show the retry budget."""
    raise RuntimeError("this never works")
