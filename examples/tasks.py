"""Task functions for the README and the examples, declared with ``@task``.

Declared tasks are what a worker may run (see "What a worker may run" in
docs/tasks.md): a worker that imports this module, as ``omniq worker --import
examples.tasks`` does, runs them; enqueue them by the function itself
(``omniq.enqueue(add, args=[1, 2])``, or typed: ``add.using(omniq).enqueue(1, 2)``)
or by their path, ``"examples.tasks.add"``.
"""

from __future__ import annotations

import asyncio
import random

from omniq import task


@task
def add(a: int, b: int) -> int:
    """A plain function: the blocking twin calls it on a worker thread."""
    return a + b


@task
async def fetch_greeting(name: str) -> str:
    """A coroutine function: the async twin awaits it on the event loop."""
    await asyncio.sleep(0.01)
    return f"hello, {name}"


@task(max_retries=5)
def flaky(probability: float = 0.5) -> str:
    """Fails at random, to show retries (five executions unless the enqueue says otherwise)."""
    if random.random() < probability:
        raise ConnectionError("the upstream service did not answer")
    return "ok"


@task
def always_fails() -> None:
    """Fails every time, to show the retry budget."""
    raise RuntimeError("this never works")
