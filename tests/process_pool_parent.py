"""A parent process for ``tests/shared/test_process_pool.py``: a ``ProcessPool`` in a process
of its own, so that a test can SIGKILL the parent or read what reaches its stderr.

    python process_pool_parent.py orphans PATH
        Start a pool of two children, run ``hang_sleep(PATH)`` on one, print the child pids
        (JSON) once the job has started, then wait to be killed.
    python process_pool_parent.py log MODE
        Configure omniq's logging (MODE on stderr), run ``log_twice`` in a child with the
        correlation id ``corr-from-parent``, print the result's outcome, and shut down.
"""

from __future__ import annotations

import json
import sys
import time

from task_functions import lines

from omniq import logging as omniq_logging
from omniq._process import Job, ProcessPool
from omniq.serialization import DEFAULT_SERIALIZER


def payload(*args: object) -> str:
    return DEFAULT_SERIALIZER.dumps({"args": list(args), "kwargs": {}})


def orphans(path: str) -> None:
    pool = ProcessPool(2)
    pool.start()
    pool.submit(Job("hung", "task_functions.hang_sleep", payload(path)))
    deadline = time.monotonic() + 60
    while not lines(path):
        if time.monotonic() > deadline:
            raise SystemExit("the job never started")
        time.sleep(0.02)
    print(json.dumps(pool.child_pids()), flush=True)
    time.sleep(600)


def log(mode: str) -> None:
    omniq_logging.configure("INFO", mode=mode)
    with ProcessPool(1) as pool:
        job = Job(
            "logged-task",
            "task_functions.log_twice",
            payload("hello from a child"),
            correlation_id="corr-from-parent",
            log_fields={"worker": "parent-worker"},
            context={"attempt": 1},
        )
        result = pool.submit(job).result(timeout=120)
    print(result.outcome, flush=True)


if __name__ == "__main__":
    {"orphans": orphans, "log": log}[sys.argv[1]](sys.argv[2])
