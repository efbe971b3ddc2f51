"""The Starlette example's tasks, declared with ``@task``."""

from __future__ import annotations

import asyncio

from omniq import task


@task(timeout=10)
async def greet(name: str) -> str:
    """A coroutine task: it runs on the app's own event loop, next to the requests."""
    await asyncio.sleep(0.01)  # stands for a call to a slow service
    return f"Hello, {name}!"
