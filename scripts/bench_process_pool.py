"""Measure the process executor's engine (``omniq._process.ProcessPool``): what it costs per job.

Usage::

    python scripts/bench_process_pool.py [--jobs 2000] [--rounds 10] [--start-method forkserver]

Standalone: it needs only omniq installed, and its task functions come from the standard
library (``os.getpid`` is the no-op, ``time.sleep`` the hang, ``os._exit`` the crash), so
children import nothing else. It prints, as medians over several batches:

* per-job wall time of a no-op, one job at a time (submit, then wait for the result),
  next to the thread executor's whole run of one task (``omniq._sync.executor.run_task``
  on this thread: resolve, check, call, log context) and a stdlib ``ProcessPoolExecutor``
  round trip;
* per-job wall time with 4 processes and every job submitted at once (throughput);
* how long a pool takes to start 1 and 4 children;
* from a task's timeout to its job resolving (SIGTERM and reaping the child), and to the
  replacement child answering its first job; the same from a crash (``os._exit(3)``).

Nothing is asserted: these are figures for the docs, from one machine at one moment.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable

from omniq._functions import resolve_function
from omniq._process import Job, ProcessPool, default_start_method
from omniq._sync.executor import run_task
from omniq.models import Task
from omniq.serialization import DEFAULT_SERIALIZER

NO_ARGS = DEFAULT_SERIALIZER.dumps({"args": [], "kwargs": {}})


def payload(*args: object) -> str:
    return DEFAULT_SERIALIZER.dumps({"args": list(args), "kwargs": {}})


def noop(index: int) -> Job:
    return Job(f"noop-{index}", "os.getpid", NO_ARGS)


def median_us(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e6:8.1f} µs"


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e3:8.1f} ms"


def batches(run: Callable[[], float], rounds: int) -> list[float]:
    run()  # warm-up: imports, caches, the first child's first job
    return [run() for _ in range(rounds)]


def sequential(pool: ProcessPool, jobs: int) -> float:
    started = time.perf_counter()
    for index in range(jobs):
        pool.submit(noop(index)).result()
    return (time.perf_counter() - started) / jobs


def all_at_once(pool: ProcessPool, jobs: int) -> float:
    started = time.perf_counter()
    futures = [pool.submit(noop(index)) for index in range(jobs)]
    for future in futures:
        future.result()
    return (time.perf_counter() - started) / jobs


def thread_executor(jobs: int) -> float:
    task = Task(id="noop", func_path="os.getpid")
    started = time.perf_counter()
    for _ in range(jobs):
        run_task(task, timeout=None, worker="bench", resolve=resolve_function)
    return (time.perf_counter() - started) / jobs


def stdlib_round_trip(executor: concurrent.futures.ProcessPoolExecutor, jobs: int) -> float:
    started = time.perf_counter()
    for _ in range(jobs):
        executor.submit(os.getpid).result()
    return (time.perf_counter() - started) / jobs


def start_time(processes: int, start_method: str) -> float:
    started = time.perf_counter()
    pool = ProcessPool(processes, start_method=start_method)
    pool.start()
    elapsed = time.perf_counter() - started
    pool.shutdown(0.0)
    return elapsed


def replacement(pool: ProcessPool, job: Job, deadline_after: float) -> tuple[float, float]:
    """Seconds from the job's deadline (or start) to its result, and to the next job's."""
    sent = time.perf_counter()
    failed = pool.submit(job)
    follow_up = pool.submit(noop(0))
    failed.result()
    resolved = time.perf_counter()
    follow_up.result()
    answered = time.perf_counter()
    due = sent + deadline_after
    return resolved - due, answered - due


def row(label: str, value: str) -> None:
    print(f"{label:<44}{value}")


def child_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used, from /proc (Linux only)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_job(pool: ProcessPool, jobs: int) -> tuple[float, float | None]:
    """CPU seconds per sequential no-op job: this process (all threads), and the child."""
    pool.submit(noop(0)).result()
    (pid,) = pool.child_pids()
    child_before = child_cpu_seconds(pid)
    before = time.process_time()
    sequential(pool, jobs)
    parent = (time.process_time() - before) / jobs
    child_after = child_cpu_seconds(pid)
    if child_before is None or child_after is None:
        return parent, None
    return parent, (child_after - child_before) / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="no-op jobs per batch")
    parser.add_argument("--rounds", type=int, default=10, help="batches (or kills) per figure")
    parser.add_argument("--start-method", default=default_start_method())
    args = parser.parse_args()
    jobs, rounds, method = args.jobs, args.rounds, args.start_method
    print(f"start method {method}, {os.cpu_count()} CPUs, {jobs} jobs x {rounds} batches")
    print(f"load average {os.getloadavg()[0]:.2f} (other work on the machine skews wall times)")

    row(
        "thread executor: run_task inline",
        median_us(batches(lambda: thread_executor(jobs), rounds)),
    )
    with ProcessPool(1, start_method=method) as pool:
        row(
            "ProcessPool(1): one job at a time",
            median_us(batches(lambda: sequential(pool, jobs), rounds)),
        )
        parent, child = cpu_per_job(pool, jobs * rounds // 2)
        cpu = f"{parent * 1e6:8.1f} µs parent" + (f", {child * 1e6:.1f} µs child" if child else "")
        row("ProcessPool(1): CPU per job", cpu)
    with ProcessPool(4, start_method=method) as pool:
        row(
            "ProcessPool(4): one job at a time",
            median_us(batches(lambda: sequential(pool, jobs), rounds)),
        )
        row(
            "ProcessPool(4): all submitted at once",
            median_us(batches(lambda: all_at_once(pool, jobs), rounds)),
        )

    # After the pools: the first user of the fork server decides what it preloads.
    context = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as executor:
        figure = median_us(batches(lambda: stdlib_round_trip(executor, jobs), rounds))
        row("ProcessPoolExecutor(1): round trip", figure)

    for processes in (1, 4):
        samples = [start_time(processes, method) for _ in range(max(3, rounds // 3))]
        row(f"start() with {processes} children, until all ready", median_ms(samples))

    timeout = 0.5
    with ProcessPool(1, start_method=method) as pool:
        pool.submit(noop(0)).result()
        hang = Job("hang", "time.sleep", payload(60), timeout=timeout)
        kills = [replacement(pool, hang, timeout) for _ in range(rounds)]
        crash = Job("crash", "os._exit", payload(3))
        crashes = [replacement(pool, crash, 0.0) for _ in range(rounds)]
    row("timeout -> job resolved (stack, SIGTERM, reap)", median_ms([k[0] for k in kills]))
    row("timeout -> replacement child answered a job", median_ms([k[1] for k in kills]))
    row("crash job sent -> job resolved", median_ms([c[0] for c in crashes]))
    row("crash job sent -> replacement answered a job", median_ms([c[1] for c in crashes]))


if __name__ == "__main__":
    main()
