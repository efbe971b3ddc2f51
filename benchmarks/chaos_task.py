"""The task of ``benchmarks.chaos``: log its start and end around a short sleep."""

from __future__ import annotations

import os
import random
import time


def _append(path: str, line: str) -> None:
    # One write of one line with O_APPEND: lines of concurrent processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def step(log: str, key: str) -> str:
    """Append ``S key pid worker-pid nonce time``, sleep 20-60 ms, append the ``E`` line."""
    # The worker's pid is the process group's: a task run in a child of the process
    # executor names the worker that a kill took.
    ident = f"{key} {os.getpid()} {os.getpgid(0)} {os.urandom(4).hex()}"
    _append(log, f"S {ident} {time.time():.6f}\n")
    time.sleep(random.uniform(0.02, 0.06))
    _append(log, f"E {ident} {time.time():.6f}\n")
    return key
