"""Start and watch worker processes (``worker_process.py``) from tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from task_functions import lines

from omniq import Settings

WORKER = Path(__file__).resolve().parent / "worker_process.py"


def environment(settings: Settings) -> dict[str, str]:
    """The environment that makes ``Settings.from_env()`` describe ``settings``' store."""
    env = dict(os.environ)
    env["OMNIQ_BACKEND"] = settings.backend
    env["OMNIQ_BASE_DIR"] = str(settings.base_dir)
    # The tests' task functions, enqueued by this process, may run in the worker's.
    env["OMNIQ_TASK_MODULES"] = "task_functions"
    if settings.dsn:
        env["OMNIQ_DSN"] = settings.dsn
    return env


def start_worker(settings: Settings, twin: str, *options: str) -> subprocess.Popen[str]:
    """A worker process on ``settings``' store; returns once it printed ``ready``."""
    process = subprocess.Popen(
        [sys.executable, str(WORKER), twin, *options],
        env=environment(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    assert first.strip() == "ready", (first, process.stderr.read() if process.stderr else "")
    return process


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)


def wait_for_lines(path: str, count: int, timeout: float = 30.0) -> list[str]:
    """Wait until ``path`` holds at least ``count`` lines; return them."""
    wait_until(lambda: len(lines(path)) >= count, timeout, f"{count} lines in {path}")
    return lines(path)


def wait_for_stderr(process: subprocess.Popen[str], fragment: str) -> None:
    """Read the worker's log (stderr) until a line contains ``fragment``."""
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        if fragment in line:
            return
        seen.append(line)
    raise AssertionError(f"the worker exited without logging {fragment!r}: {''.join(seen)}")


def finish(process: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, str, str]:
    """Wait for ``process`` to exit; return its code, stdout and stderr."""
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr
