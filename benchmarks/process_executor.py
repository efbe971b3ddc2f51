"""The process executor's cost: per-task overhead against the thread executor, and recovery.

``python -m benchmarks.process_executor [--tasks N] [--rounds N]`` (also run by
``python -m benchmarks``, unless ``--no-processes``). Blocking twin, no-op tasks
(``benchmarks.tasks.noop``):

* **One run at a time**: the executor's ``run()`` of a claimed task, sequentially, with
  no store in the way: ``InlineExecutor`` (the pool's default: the task on this
  thread's pool of threads) against ``ProcessExecutor`` (one child). Wall time per task,
  and CPU per task in the worker (all its threads) and in the child.
* **Drained by a pool**: ``WorkerPool.process_tasks`` over an in-memory store holding the
  tasks, inline with 4 threads against 4 child processes: wall and CPU per task, the CPU
  of the worker and its children together.
* **From a timeout to the replacement child ready**: a task that hangs in C
  (``time.sleep``) with a 0.5 s timeout, one child: from the deadline to the task's
  outcome (the stack, SIGTERM, reaping) and to a new child ready for the next task.

Nothing is asserted: these are figures for docs/workers.md, from one machine at one moment.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

from benchmarks.tasks import NOOP
from omniq import OmniQ, Settings
from omniq._sync.executor import InlineExecutor
from omniq._sync.process_executor import ProcessExecutor
from omniq.allowlist import AllowList
from omniq.models import Task

TIMEOUT = 0.5  # seconds the hanging task may run
_ALLOW = AllowList(["benchmarks.tasks"])


def _claimed(index: int, func_path: str = NOOP, timeout: float | None = None) -> Task:
    return Task(id=f"bench-{index}", func_path=func_path, timeout=timeout, attempt_token="t")


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes ``pids`` have used (Linux; 0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _median(values: list[float]) -> float:
    return statistics.median(values)


def one_at_a_time(tasks: int, rounds: int) -> dict[str, float]:
    """µs per sequential ``run()``: wall, worker CPU, child CPU; for both executors."""
    figures: dict[str, float] = {}
    inline = InlineExecutor(_ALLOW)
    inline.start()

    def inline_batch() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for index in range(tasks):
            inline.run(_claimed(index), None, "bench")
        return (time.perf_counter() - wall) / tasks, (time.process_time() - cpu) / tasks

    inline_batch()  # warm-up
    samples = [inline_batch() for _ in range(rounds)]
    figures["inline_wall_us"] = _median([s[0] for s in samples]) * 1e6
    figures["inline_cpu_us"] = _median([s[1] for s in samples]) * 1e6

    process = ProcessExecutor(_ALLOW, processes=1)
    process.start()
    try:

        def process_batch() -> tuple[float, float, float]:
            children = process.child_pids()
            child_cpu = _cpu_of(children)
            wall, cpu = time.perf_counter(), time.process_time()
            for index in range(tasks):
                process.run(_claimed(index), None, "bench")
            wall = (time.perf_counter() - wall) / tasks
            cpu = (time.process_time() - cpu) / tasks
            return wall, cpu, (_cpu_of(children) - child_cpu) / tasks

        process_batch()
        samples3 = [process_batch() for _ in range(rounds)]
    finally:
        process.stop(0.0)
    figures["process_wall_us"] = _median([s[0] for s in samples3]) * 1e6
    figures["process_cpu_us"] = _median([s[1] for s in samples3]) * 1e6
    figures["process_child_cpu_us"] = _median([s[2] for s in samples3]) * 1e6
    return figures


def drained(tasks: int, rounds: int, executor: str) -> tuple[float, float]:
    """µs per task, wall and CPU (worker and children), draining ``tasks`` no-ops with 4."""
    options: dict[str, Any] = {"concurrency": 4, "handle_signals": False, "retention": None}
    if executor == "process":
        options.update(executor="process", processes=4)
    walls: list[float] = []
    cpus: list[float] = []
    with tempfile.TemporaryDirectory(prefix="omniq-procx-") as scratch:
        settings = Settings(backend="memory", base_dir=scratch, task_modules=("benchmarks.tasks",))
        with OmniQ(settings) as omniq, omniq.worker_pool(**options) as pool:
            children: list[int] = getattr(pool.executor, "child_pids", list)()
            for round_ in range(rounds + 1):
                omniq.enqueue_many([{"func_path": NOOP} for _ in range(tasks)])
                child_cpu = _cpu_of(children)
                wall, cpu = time.perf_counter(), time.process_time()
                done = pool.process_tasks(limit=tasks)
                wall = time.perf_counter() - wall
                cpu = time.process_time() - cpu + _cpu_of(children) - child_cpu
                assert done == tasks, (done, tasks)
                if round_:  # the first is the warm-up
                    walls.append(wall / tasks)
                    cpus.append(cpu / tasks)
                omniq.purge(0, ["completed"])
    return _median(walls) * 1e6, _median(cpus) * 1e6


def recovery(rounds: int) -> dict[str, float]:
    """ms from a timeout to the task's outcome, and to the replacement child ready."""
    executor = ProcessExecutor(AllowList(["time.sleep"]), processes=1)
    executor.start()
    resolved: list[float] = []
    ready: list[float] = []
    try:
        executor.run(_claimed(0), None, "bench")  # the first child is warm
        for index in range(rounds):
            (hung,) = executor.child_pids()
            task = Task(id=f"hang-{index}", func_path="time.sleep", args=(60,), attempt_token="t")
            deadline = time.perf_counter() + TIMEOUT
            outcome = executor.run(task, TIMEOUT, "bench")
            resolved.append(time.perf_counter() - deadline)
            assert outcome.error is not None and outcome.error.error_type == "timeout"
            while executor.child_pids() in ([], [hung]):  # the slot starts the next child
                time.sleep(0.0005)
            ready.append(time.perf_counter() - deadline)
    finally:
        executor.stop(0.0)
    return {
        "timeout_to_outcome_ms": _median(resolved) * 1e3,
        "timeout_to_ready_ms": _median(ready) * 1e3,
    }


def run(tasks: int = 2000, rounds: int = 5) -> dict[str, Any]:
    """Every figure of this module, as a JSON-ready dict."""
    figures: dict[str, Any] = {"tasks": tasks, "rounds": rounds, "cpus": os.cpu_count()}
    figures["one_at_a_time"] = one_at_a_time(tasks, rounds)
    drains: dict[str, float] = {}
    for executor in ("inline", "process"):
        wall, cpu = drained(tasks, rounds, executor)
        drains[f"{executor}_wall_us"] = wall
        drains[f"{executor}_cpu_us"] = cpu
    figures["drain_4"] = drains
    figures["recovery"] = recovery(max(rounds, 3))
    figures["load_average"] = round(os.getloadavg()[0], 2)
    return figures


def describe(figures: dict[str, Any]) -> str:
    """The figures as text for the terminal."""
    one, drain, back = figures["one_at_a_time"], figures["drain_4"], figures["recovery"]

    def row(label: str, value: str) -> str:
        return f"  {label:<44}{value}"

    return "\n".join(
        [
            f"Process executor, no-op tasks ({figures['tasks']:,} x {figures['rounds']}, "
            f"median; load average {figures['load_average']}):",
            row(
                "one run at a time, inline (thread)",
                f"{one['inline_wall_us']:7.1f} µs wall, {one['inline_cpu_us']:6.1f} µs CPU",
            ),
            row(
                "one run at a time, process (1 child)",
                f"{one['process_wall_us']:7.1f} µs wall, {one['process_cpu_us']:6.1f} µs CPU "
                f"+ {one['process_child_cpu_us']:.1f} µs in the child",
            ),
            row(
                "pool drain, inline, 4 threads",
                f"{drain['inline_wall_us']:7.1f} µs wall, {drain['inline_cpu_us']:6.1f} µs CPU",
            ),
            row(
                "pool drain, process, 4 children",
                f"{drain['process_wall_us']:7.1f} µs wall, {drain['process_cpu_us']:6.1f} µs CPU "
                "(worker + children)",
            ),
            row("timeout -> the task's outcome", f"{back['timeout_to_outcome_ms']:7.1f} ms"),
            row("timeout -> replacement child ready", f"{back['timeout_to_ready_ms']:7.1f} ms"),
        ]
    )


def main() -> None:
    """The command line of this module."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.process_executor")
    parser.add_argument("--tasks", type=int, default=2000, help="no-op tasks per batch")
    parser.add_argument("--rounds", type=int, default=5, help="batches per figure")
    args = parser.parse_args()
    print(describe(run(args.tasks, args.rounds)))


if __name__ == "__main__":
    main()
