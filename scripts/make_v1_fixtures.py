"""Make the schema-v1 fixtures in tests/fixtures/v1 with omniq 0.1.0 (run from a checkout of b656dee).

Usage: PYTHONPATH=src python scripts/make_v1_fixtures.py tests/fixtures/v1 (then update manifest.json).
"""

import datetime as dt, shutil, sys, os
from pathlib import Path

sys.path.insert(0, "tests")
from omniq import OmniQ, Settings

out = Path(sys.argv[1])
for backend, name in (("sqlite", "sqlite"), ("file", "files")):
    base = Path("/tmp/lead/v1-store-" + name)
    shutil.rmtree(base, ignore_errors=True)
    with OmniQ(Settings(backend=backend, base_dir=base)) as q:
        done = q.enqueue("task_functions.add", args=[20, 22])
        failed = q.enqueue("task_functions.fail_always", args=["/tmp/lead/v1-side"], max_retries=1)
        cancelled = q.enqueue("task_functions.add", args=[0, 0])
        q.cancel(cancelled)
        with q.worker_pool(concurrency=1) as pool:
            pool.process_tasks(limit=2)
        pending = [q.enqueue("task_functions.add", args=[i, 100]) for i in range(3)]
        later = q.enqueue(
            "task_functions.add", args=[5, 5], eta=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
        )
        print(
            backend,
            {
                "completed": done,
                "failed": failed,
                "cancelled": cancelled,
                "pending": pending,
                "later": later,
            },
        )
        print(q.stats())
    target = out / name
    shutil.rmtree(target, ignore_errors=True)
    if backend == "sqlite":
        target.mkdir(parents=True)
        shutil.copy(base / "omniq.db", target / "omniq.db")
    else:
        shutil.copytree(base, target)
