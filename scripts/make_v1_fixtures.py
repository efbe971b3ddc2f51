"""Make the schema-v1 stores of ``tests/fixtures/v1`` with omniq 0.1.0.

Run from a checkout of b656dee (omniq 0.1.0), whose ``src`` is on the path::

    PYTHONPATH=src python scripts/make_v1_fixtures.py tests/fixtures/v1

It prints the ids of the tasks it stored; put them in ``manifest.json``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, "tests")  # task_functions

from omniq import OmniQ, Settings


def make(backend: str, target: Path) -> None:
    """One store of ``backend``: a task in every state, copied to ``target``."""
    base = Path(tempfile.mkdtemp(prefix=f"omniq-v1-{backend}-"))
    with OmniQ(Settings(backend=backend, base_dir=base)) as omniq:
        done = omniq.enqueue("task_functions.add", args=[20, 22])
        failed = omniq.enqueue(
            "task_functions.fail_always", args=[str(base / "side")], max_retries=1
        )
        cancelled = omniq.enqueue("task_functions.add", args=[0, 0])
        omniq.cancel(cancelled)
        with omniq.worker_pool(concurrency=1) as pool:
            pool.process_tasks(limit=2)
        pending = [omniq.enqueue("task_functions.add", args=[i, 100]) for i in range(3)]
        later = omniq.enqueue(
            "task_functions.add", args=[5, 5], eta=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
        )
        ids = {
            "completed": done,
            "failed": failed,
            "cancelled": cancelled,
            "pending": pending,
            "later": later,
        }
        print(backend, ids)
    shutil.rmtree(target, ignore_errors=True)
    if backend == "sqlite":
        target.mkdir(parents=True)
        shutil.copy(base / "omniq.db", target / "omniq.db")
    else:
        shutil.copytree(base, target)


def main() -> None:
    """Make both fixtures under the directory given."""
    out = Path(sys.argv[1])
    make("sqlite", out / "sqlite")
    make("file", out / "files")


if __name__ == "__main__":
    main()
