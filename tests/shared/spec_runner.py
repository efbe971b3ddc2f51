"""Run one code example of the spec (tests/spec/seed-readme.md), verbatim.

Usage: ``python spec_runner.py EXAMPLE.py``. The spec's examples are fragments of
one story: they use names defined in other examples or left as placeholders
(``omniq``, ``task_id``, ``data``, ``storage``, ``serializer``, ``some_operation``,
``datetime``...). This runner provides those names, then executes the example's
code unchanged; top-level ``await`` runs on an event loop. Two things are adjusted
around the code, never in it: ``my_module`` is a real module written next to the
example, and worker ``duration``s are divided by 100 so that the spec's
``process_tasks(duration=300)`` takes three seconds instead of five minutes.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from omniq import AsyncOmniQ, Settings
from omniq.serialization import JsonSerializer
from omniq.storage.sqlite import SQLiteStorage
from omniq.worker import AsyncWorkerPool

MY_MODULE = """
import asyncio

def my_function(a=0, b=0):
    return a + b

async def process_data(data, option=False):
    await asyncio.sleep(0)
    return {"processed": data, "option": option}

def cleanup_task():
    return "cleaned"

def maintenance_task():
    return "maintained"
"""

DURATION_SCALE = 100


def scale_durations() -> None:
    original = AsyncWorkerPool.process_tasks

    async def process_tasks(
        self: AsyncWorkerPool, limit: int | None = None, duration: float | None = None
    ) -> int:
        if duration is not None:
            duration = duration / DURATION_SCALE
        return await original(self, limit=limit, duration=duration)

    AsyncWorkerPool.process_tasks = process_tasks  # type: ignore[method-assign]


async def failed_task_id(omniq: AsyncOmniQ) -> str:
    """A task that has run and failed, so that error-inspection examples find an error."""
    task_id = await omniq.enqueue(
        "task_functions.fail_always", args=["side-effects.log"], max_retries=1
    )
    async with omniq.worker_pool() as workers:
        await workers.process_tasks(limit=1)
    return task_id


async def some_operation() -> None:
    raise ConnectionError("placeholder operation failed")


async def some_async_operation(data: Any) -> Any:
    return data


def apply_option(result: Any) -> Any:
    return result


def namespace(omniq: AsyncOmniQ) -> dict[str, Any]:
    return {
        "__name__": "__main__",
        "datetime": datetime,
        "timedelta": timedelta,
        "omniq": omniq,
        "data": {"rows": [1, 2, 3]},
        "storage": SQLiteStorage("spec-storage.db"),
        "serializer": JsonSerializer(),
        "some_operation": some_operation,
        "some_async_operation": some_async_operation,
        "apply_option": apply_option,
    }


def main() -> None:
    example = Path(sys.argv[1])
    Path("my_module.py").write_text(MY_MODULE)
    sys.path.insert(0, str(Path.cwd()))
    scale_durations()
    source = example.read_text()
    code = compile(source, str(example), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    omniq = AsyncOmniQ(Settings(base_dir="spec-data"))
    names = namespace(omniq)
    if code.co_flags & inspect.CO_COROUTINE:

        async def run() -> None:
            names["task_id"] = await failed_task_id(omniq)
            await eval(code, names)
            await omniq.close()

        asyncio.run(run())
    else:
        exec(code, names)


if __name__ == "__main__":
    main()
