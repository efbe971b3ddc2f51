"""Memory: the RSS of a fresh process after it processed ``small`` and then ``large`` tasks.

Run in a process of its own (``python -m benchmarks.rss DIR SMALL LARGE [SECONDS]``, one
JSON line on stdout) so that nothing else the benchmark did shows in its RSS.
SQLite in fast mode, the blocking twin: tasks are enqueued with ``enqueue_many``
in chunks and processed by a pool of 4, chunk after chunk; past ``small`` the run
stops after SECONDS (the figures say how many tasks were processed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import tasks
from benchmarks.common import child_env, rss_mib
from omniq import OmniQ, Settings

_CHUNK = 5_000


def _process(omniq: OmniQ, n: int, seconds: float | None = None) -> int:
    """Enqueue and process up to ``n`` tasks (stopping between chunks after ``seconds``)."""
    deadline = None if seconds is None else time.perf_counter() + seconds
    done = 0
    with omniq.worker_pool(concurrency=4, handle_signals=False) as pool:
        while done < n and (deadline is None or time.perf_counter() < deadline):
            step = min(_CHUNK, n - done)
            omniq.enqueue_many({"func_path": tasks.NOOP} for _ in range(step))
            ran = pool.process_tasks(limit=step)
            if ran != step:
                raise RuntimeError(f"processed {ran} of {step} tasks")
            done += step
    return done


def main(argv: list[str]) -> dict[str, Any]:
    """Process ``small`` tasks, then up to ``large`` in total (for ``seconds`` at most).

    Reports the RSS after the first task, after ``small`` and at the end.
    """
    directory, small, large = Path(argv[0]), int(argv[1]), int(argv[2])
    seconds = float(argv[3]) if len(argv) > 3 else None
    settings = Settings(backend="sqlite", base_dir=directory, durability="fast")
    with OmniQ(settings) as omniq:
        _process(omniq, 1)
        start = rss_mib()
        _process(omniq, small - 1)
        after_small = rss_mib()
        large = small + _process(omniq, large - small, seconds)
        after_large = rss_mib()
    return {
        "tasks_small": small,
        "tasks_large": large,
        "rss_start_mib": round(start, 1),
        "rss_small_mib": round(after_small, 1),
        "rss_large_mib": round(after_large, 1),
        "growth_mib_per_10k": round(
            (after_large - after_small) / max(1, large - small) * 10_000, 2
        ),
    }


def measure(directory: Path, small: int, large: int, seconds: float) -> dict[str, Any]:
    """Run :func:`main` in a new Python process and return its figures."""
    argv = [str(directory), str(small), str(large), str(seconds)]
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.rss", *argv],
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the memory measure failed: {completed.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
