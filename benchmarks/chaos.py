"""Fault injection: workers SIGKILLed at random while they drain a store; what survived.

``python -m benchmarks.chaos [--backends sqlite,file,postgres] [--tasks 10000]``

Per backend, on a fresh store: enqueue ``--tasks`` tasks (each appends a start line,
sleeps 20-60 ms, appends an end line, to a log shared by every process), start four
``omniq worker`` processes of four kinds (threads, ``--async``, ``--processes 2``,
threads at concurrency 8), and every 2-4 s SIGKILL one at random and start a new one
of its kind, until every task is final. Then count, from the store and the log:

- completed / lost: tasks COMPLETED in the store, and those that are not;
- overlapping: two executions of one task at the same time (an execution cut by a
  kill ends when its worker was killed); at-least-once with fenced leases allows a
  task to run again after its worker died, never beside itself;
- re-runs to the end: a task whose function ran to its end more than once (a worker
  killed between the function's end and the write of its outcome; allowed by
  at-least-once, and rare).

No test asserts these figures: docs/reliability.md quotes a run (``--write-docs``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.common import DEFAULT_POSTGRES_DSN, ROOT, Postgres, child_env
from omniq import OmniQ, Settings

STEP = "benchmarks.chaos_task.step"
KINDS: dict[str, tuple[str, ...]] = {
    "threads": ("--concurrency", "4"),
    "async": ("--async", "--concurrency", "4"),
    "processes": ("--processes", "2"),
    "threads-8": ("--concurrency", "8"),
}
LEASE = 2.0  # seconds: a killed worker's task is recovered this long after the kill
# A task may be cut by several kills: its budget outlasts them (a spent one is "lost").
_OPTIONS: dict[str, Any] = {
    "lease_timeout": LEASE,
    "max_retries": 20,
    "task_modules": ("benchmarks.chaos_task.*",),
}
DOCS_START = "<!-- chaos:start -->"
DOCS_END = "<!-- chaos:end -->"


class Result(NamedTuple):
    """One backend's run."""

    backend: str
    enqueued: int
    completed: int
    lost: int
    overlapping: int
    reruns: int
    kills: int
    seconds: float


@contextlib.contextmanager
def _store(backend: str, root: Path, postgres: Postgres) -> Iterator[Settings]:
    if backend == "postgres":
        with postgres.schema() as dsn:
            yield Settings(backend="postgres", dsn=dsn, **_OPTIONS)
    else:
        yield Settings(backend=backend, base_dir=root / backend, **_OPTIONS)


def _environment(settings: Settings) -> dict[str, str]:
    env = child_env()
    for name in [name for name in env if name.startswith("OMNIQ_")]:
        del env[name]
    env.update(
        OMNIQ_BACKEND=settings.backend,
        # The workers' settings are the producer's (``_OPTIONS``), through the environment.
        OMNIQ_LEASE_TIMEOUT=str(settings.lease_timeout),
        OMNIQ_MAX_RETRIES=str(settings.max_retries),
        OMNIQ_TASK_MODULES=",".join(settings.task_modules),
        OMNIQ_POLL_INTERVAL="0.2",
        OMNIQ_LOG_LEVEL="ERROR",
    )
    if settings.dsn is not None:
        env["OMNIQ_DSN"] = settings.dsn
    else:
        env["OMNIQ_BASE_DIR"] = str(settings.base_dir)
    return env


def _start(kind: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "omniq", "worker", *KINDS[kind]],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a kill takes the worker and its child processes
    )


def _executions(log: Path) -> dict[str, list[tuple[float, float | None, int]]]:
    """Per task key: (start, end or None, the worker's pid) of each execution."""
    starts: dict[tuple[str, int, str], float] = {}
    runs: dict[str, list[tuple[float, float | None, int]]] = {}
    ends: dict[tuple[str, int, str], float] = {}
    parents: dict[tuple[str, int, str], int] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) != 6:
            continue  # a line torn by a kill
        mark, key, pid, parent, nonce, at = parts
        ident = (key, int(pid), nonce)
        if mark == "S":
            starts[ident] = float(at)
            parents[ident] = int(parent)
        elif mark == "E":
            ends[ident] = float(at)
    for ident, start in starts.items():
        runs.setdefault(ident[0], []).append((start, ends.get(ident), parents[ident]))
    return runs


def _overlaps(runs: list[tuple[float, float | None, int]], killed: dict[int, float]) -> int:
    """Pairs of executions of one task that ran at the same time."""
    spans = sorted(
        (start, end if end is not None else killed.get(parent, start), parent)
        for start, end, parent in runs
    )
    return sum(1 for (_, end, _), (start, _, _) in itertools.pairwise(spans) if start < end)


def run_one(backend: str, tasks: int, root: Path, postgres: Postgres, limit: float) -> Result:
    """Enqueue ``tasks``, drain them under random SIGKILLs, count what survived."""
    log = root / f"{backend}.log"
    log.touch()
    rng = random.Random(7)
    with _store(backend, root, postgres) as settings, OmniQ(settings) as omniq:
        ids = omniq.enqueue_many(
            {"func_path": STEP, "args": [str(log), str(n)]} for n in range(tasks)
        )
        env = _environment(settings)
        workers = {kind: _start(kind, env) for kind in KINDS}
        killed: dict[int, float] = {}  # pid of the worker's process group -> when
        kills = 0
        started = time.monotonic()
        next_kill = started + rng.uniform(2, 4)
        try:
            while time.monotonic() - started < limit:
                stats = omniq.stats()
                if stats.get("pending", 0) == 0 and stats.get("running", 0) == 0:
                    break
                if time.monotonic() >= next_kill:
                    kind = rng.choice(sorted(workers))
                    victim = workers[kind]
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(victim.pid, signal.SIGKILL)
                    victim.wait()
                    killed[victim.pid] = time.time()
                    kills += 1
                    workers[kind] = _start(kind, env)
                    next_kill = time.monotonic() + rng.uniform(2, 4)
                time.sleep(0.2)
            seconds = time.monotonic() - started
        finally:
            for worker in workers.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGTERM)
            for worker in workers.values():
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()
        completed = sum(
            1
            for task_id in ids
            if (task := omniq.get_task(task_id)) is not None and task["status"] == "completed"
        )
    runs = _executions(log)
    overlapping = sum(_overlaps(each, killed) for each in runs.values())
    reruns = sum(1 for each in runs.values() if sum(end is not None for _, end, _ in each) > 1)
    return Result(backend, tasks, completed, tasks - completed, overlapping, reruns, kills, seconds)


def table(results: list[Result], tasks: int) -> str:
    """The results as a Markdown table, with the command of each row."""
    lines = [
        "| fault | backend | enqueued | completed | lost | overlapping | re-runs to the end "
        "| kills | seconds | command |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| a random worker of 4 SIGKILLed every 2-4 s | {r.backend} | {r.enqueued:,} "
            f"| {r.completed:,} | {r.lost} | {r.overlapping} | {r.reruns} | {r.kills} "
            f"| {r.seconds:.0f} | `python -m benchmarks.chaos --backends {r.backend} "
            f"--tasks {tasks}` |"
        )
    return "\n".join(lines)


def write_docs(path: Path, text: str) -> None:
    """Replace the marked section of ``path`` with ``text``."""
    document = path.read_text(encoding="utf-8")
    head, rest = document.split(DOCS_START, 1)
    _, tail = rest.split(DOCS_END, 1)
    path.write_text(f"{head}{DOCS_START}\n\n{text}\n\n{DOCS_END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run every backend asked for; print the table (and write it into the docs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,file,postgres")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--limit", type=float, default=600.0, help="seconds per backend, at most")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args(argv)
    postgres = Postgres(os.environ.get("OMNIQ_BENCH_POSTGRES_DSN", DEFAULT_POSTGRES_DSN))
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="omniq-chaos-") as scratch:
        for backend in args.backends.split(","):
            if backend == "postgres" and not postgres.available():
                print(f"postgres skipped: {postgres.problem}")
                continue
            result = run_one(backend, args.tasks, Path(scratch), postgres, args.limit)
            print(result)
            results.append(result)
    text = table(results, args.tasks)
    print(text)
    if args.write_docs:
        write_docs(args.docs, text)
    return 0 if all(r.lost == 0 and r.overlapping == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
