"""Fork safety: a store used before ``fork()`` works in the parent and in the child.

A child forked from a process whose facade had already touched the store (a
``stats()`` at import, a start-up enqueue: what ``gunicorn --preload`` does) opens its
own connections instead of sharing the parent's; both go on working.
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import sys

import pytest
from conftest import requires_persistence

from omniq import AsyncOmniQ
from omniq._concurrency import run_callable

TWIN = "async" if inspect.iscoroutinefunction(AsyncOmniQ.enqueue) else "sync"
TASKS = 20

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or "fork" not in multiprocessing.get_all_start_methods(),
    reason="no fork() on this platform",
)


async def use(omniq: AsyncOmniQ, tag: str) -> list[str]:
    """Enqueue and read back tasks, as a web worker would."""
    ids = [await omniq.enqueue("task_functions.add", args=[i, i]) for i in range(TASKS)]
    for task_id in ids:
        task = await omniq.get_task(task_id)
        assert task is not None, (tag, task_id)
    await omniq.stats()
    return ids


def child(omniq: AsyncOmniQ) -> None:
    """The forked child: use the inherited facade, exit 0 if all went well."""
    try:
        # The blocking primitive in both twins: the coroutine function runs to its end on
        # an event loop of this (new) process; in the blocking twin use() is plain.
        run_callable(use, (omniq, "child"), {}, None)
    except BaseException as error:  # reported through the exit code
        print(f"child failed: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        os._exit(1)
    os._exit(0)


@requires_persistence()
async def test_a_store_touched_before_fork_works_in_parent_and_child(omniq: AsyncOmniQ) -> None:
    await omniq.stats()  # the parent has a connection open (and threads, and listeners)
    await omniq.enqueue("task_functions.add", args=[0, 0])
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=child, args=(omniq,)) for _ in range(3)]
    for process in children:
        process.start()
    mine = await use(omniq, "parent")  # meanwhile, on the parent's own connection
    for process in children:
        process.join(120)
        assert process.exitcode == 0
    assert (await omniq.stats())["pending"] == 1 + TASKS * 4
    for task_id in mine:
        assert await omniq.get_task(task_id) is not None
