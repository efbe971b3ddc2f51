"""``python -m benchmarks``: measure omniq (and Huey, when installed) and report.

Prints a table (each figure with its factor to the matching Huey figure of the
same run), the goals of issues 17 and 8, and the total time; writes a JSON file and a
chart, and with ``--write-docs`` the marked section of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import omniq
from benchmarks import huey_workloads, process_executor, report, rss, schema, workloads
from benchmarks.common import (
    DEFAULT_POSTGRES_DSN,
    METRICS,
    TWINS,
    Backend,
    Plan,
    Postgres,
    Stores,
    filesystem_of,
    make_plan,
    median,
    percentile,
    select_backends,
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark omniq per backend and twin, against Huey on the same workloads.",
    )
    parser.add_argument("--quick", action="store_true", help="small counts, one run: seconds")
    parser.add_argument("--runs", type=int, help="repetitions of the SQLite rows (default 3)")
    parser.add_argument(
        "--tasks", type=int, help="tasks per throughput measure, at most (default 10,000)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        help="time cap of a headline throughput measure (default 1.0; others get half)",
    )
    parser.add_argument(
        "--backends",
        default="sqlite,file,memory,postgres",
        help="kinds or names, comma separated: sqlite, sqlite-full, sqlite-fast, file, "
        "file-full, file-fast, memory, postgres, postgres-full, postgres-fast",
    )
    parser.add_argument("--twins", default="async,sync", help="async, sync or both")
    parser.add_argument("--json", type=Path, default=Path("bench-results/latest.json"))
    parser.add_argument(
        "--chart", help="PNG path, or 'none' (default docs/performance.png; none with --quick)"
    )
    parser.add_argument(
        "--huey",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the same workloads on Huey for the ratio columns (default: yes)",
    )
    parser.add_argument(
        "--write-docs", action="store_true", help="rewrite the figures section of --docs"
    )
    parser.add_argument("--docs", type=Path, default=Path("docs/performance.md"))
    parser.add_argument("--store-dir", type=Path, help="where scratch stores go (default: /tmp)")
    parser.add_argument(
        "--schema",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure schema v2: SQLite pages per commit, claims over a priority "
        "backlog (benchmarks/schema.py; default: yes)",
    )
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get("OMNIQ_BENCH_POSTGRES_DSN", DEFAULT_POSTGRES_DSN),
        help="PostgreSQL server (default: $OMNIQ_BENCH_POSTGRES_DSN or the local test db)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the RSS measure")
    parser.add_argument(
        "--processes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the process executor against the thread executor, and its "
        "recovery from a timeout (benchmarks/process_executor.py; default: yes)",
    )
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.tasks is not None and args.tasks < 20:
        parser.error("--tasks must be at least 20")
    if args.chart is None and not args.quick:
        args.chart = "docs/performance.png"
    args.chart = None if args.chart in (None, "none") else Path(args.chart)
    try:
        args.backend_list = select_backends(args.backends)
    except ValueError as error:
        parser.error(str(error))
    args.twin_list = [t.strip() for t in args.twins.split(",") if t.strip()]
    if not args.twin_list or any(t not in TWINS for t in args.twin_list):
        parser.error(f"--twins takes async, sync or both, got {args.twins!r}")
    return args


class Progress:
    """One line per measure on stderr, with the time since the start."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True)


def machine(store_root: Path) -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown CPU"
    memory_gib = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gib = f"{int(line.split()[1]) / 1024 / 1024:.0f}"
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "store_fs": filesystem_of(store_root),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def git_commit() -> str | None:
    """The checked-out commit, ``+dirty`` when the tree has changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def summarize(runs: dict[str, list[float]]) -> dict[str, float | None]:
    """Medians of the runs; wake-up median and p99 over every sample, in ms."""
    metrics: dict[str, float | None] = dict.fromkeys(METRICS)
    for metric, values in runs.items():
        if metric == "wakeup_samples_s":
            samples = [v * 1000 for v in values]
            metrics["wakeup_median_ms"] = median(samples)
            metrics["wakeup_p99_ms"] = percentile(samples, 99)
        elif metric in metrics:
            metrics[metric] = median(values)
    return metrics


def diagnostics(runs: dict[str, list[float]]) -> dict[str, float | None]:
    """Figures that explain others: how long the wake-up's enqueue call itself took."""
    calls = [v * 1000 for v in runs.get("wakeup_enqueue_s", [])]
    return {"wakeup_enqueue_call_median_ms": median(calls)}


def _safe(notes: list[str], what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as error:
        notes.append(f"{what} failed: {type(error).__name__}: {error}")
        print(f"  !! {what} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measure; returns the JSON document."""
    progress = Progress()
    plan: Plan = make_plan(quick=args.quick, tasks=args.tasks, runs=args.runs, seconds=args.seconds)
    notes: list[str] = []
    started = dt.datetime.now().astimezone().replace(microsecond=0).isoformat()
    if args.store_dir is not None:
        args.store_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="omniq-bench-", dir=args.store_dir))
    stores = Stores(root, Postgres(args.postgres_dsn))
    backends: list[Backend] = list(args.backend_list)
    if any(b.kind == "postgres" for b in backends) and not stores.postgres.available():
        notes.append(f"PostgreSQL skipped: {stores.postgres.problem}")
        progress(notes[-1])
        backends = [b for b in backends if b.kind != "postgres"]
    huey_problem = huey_workloads.available() if args.huey else "Huey not run (--no-huey)"
    if huey_problem:
        notes.append(huey_problem)
    twins: list[str] = args.twin_list
    document: dict[str, Any] = {
        "version": 1,
        "meta": {
            "started": started,
            "machine": machine(root),
            "versions": {
                "omniq": omniq.__version__,
                "commit": git_commit(),
                "huey": None if huey_problem else huey_workloads.version(),
            },
        },
        "plan": plan.as_dict(),
    }
    omniq_runs: dict[tuple[str, str], dict[str, list[float]]] = {}
    huey_runs: dict[str, dict[str, list[float]]] = {}
    try:
        rounds = max((plan.rounds(b.name) for b in backends), default=0)
        for round_ in range(rounds):
            done_huey: set[str] = set()
            for backend in backends:
                if round_ >= plan.rounds(backend.name):
                    continue
                for twin in twins:
                    label = f"{backend.name} {twin} round {round_ + 1}/{plan.rounds(backend.name)}"
                    progress(label)
                    got = _safe(
                        notes,
                        label,
                        partial(workloads.measure, stores, backend, twin, plan, round_),
                    )
                    for metric, values in (got or {}).items():
                        omniq_runs.setdefault((backend.name, twin), {}).setdefault(
                            metric, []
                        ).extend(values)
                    _show(progress, got)
                config = huey_workloads.MATCH[backend.name]
                if huey_problem or config in done_huey or round_ >= plan.rounds(config):
                    continue
                done_huey.add(config)
                label = f"Huey {config} round {round_ + 1}/{plan.rounds(config)}"
                progress(label)
                got = _safe(
                    notes, label, partial(huey_workloads.measure, stores, config, plan, round_)
                )
                for metric, values in (got or {}).items():
                    huey_runs.setdefault(config, {}).setdefault(metric, []).extend(values)
                _show(progress, got)
        claims: dict[tuple[str, str], dict[str, float]] = {}  # filled below
        for kind in dict.fromkeys(b.kind for b in backends):
            group = [b for b in backends if b.kind == kind]
            progress(f"claim cost {kind}: {plan.claim_small:,} vs {plan.claim_large:,} pending")
            got = _safe(
                notes,
                f"claim cost {kind}",
                partial(workloads.measure_claims, stores, group, twins, plan),
            )
            claims.update(got or {})
        memory = None
        if not args.no_memory and any(b.kind == "sqlite" for b in backends):
            progress(
                f"memory: RSS after {plan.memory_small:,} and up to {plan.memory_large:,} tasks"
            )
            with stores.directory() as path:
                memory = _safe(
                    notes,
                    "memory",
                    partial(
                        rss.measure,
                        path,
                        plan.memory_small,
                        plan.memory_large,
                        plan.memory_seconds,
                    ),
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)

    document["omniq"] = []
    for backend in backends:
        for twin in twins:
            runs_ = omniq_runs.get((backend.name, twin), {})
            metrics = summarize(runs_)
            claim = claims.get((backend.name, twin), {})
            for metric in ("claim_small_per_s", "claim_large_per_s", "claim_slowdown"):
                metrics[metric] = claim.get(metric)
            runs_ = dict(runs_)
            for metric in ("claim_small_pending", "claim_large_pending"):
                if metric in claim:
                    runs_[metric] = [claim[metric]]
            document["omniq"].append(
                {
                    "backend": backend.name,
                    "twin": twin,
                    "huey": None if huey_problem else huey_workloads.MATCH[backend.name],
                    "caveat": huey_workloads.CAVEATS.get(backend.name),
                    "metrics": metrics,
                    "diagnostics": diagnostics(runs_),
                    "runs": runs_,
                }
            )
    document["huey"] = [
        {
            "config": config,
            "label": huey_workloads.CONFIGS[config],
            "metrics": summarize(runs_),
            "diagnostics": diagnostics(runs_),
            "runs": runs_,
        }
        for config, runs_ in huey_runs.items()
    ]
    document["memory"] = memory
    report.add_ratios(document)
    document["goals"] = report.goals(document)
    for backend in backends:
        caveat = huey_workloads.CAVEATS.get(backend.name)
        if caveat and not huey_problem:
            notes.append(f"{backend.name}: {caveat}")
    reached = {
        kind: max(
            (
                row["runs"].get("claim_large_pending", [0])[0]
                for row in document["omniq"]
                if row["backend"].split("-")[0] == kind
            ),
            default=0,
        )
        for kind in dict.fromkeys(b.kind for b in backends)
    }
    notes.append(
        "Claim cost: tasks claimed per second through dequeue_many(4) with "
        f"{plan.claim_small:,} tasks pending, then with a large backlog (up to "
        f"{plan.claim_large:,}, built with enqueue_many in fast mode for "
        f"{plan.claim_build_seconds:g} s at most; reached: "
        + ", ".join(f"{kind} {count:,.0f}" for kind, count in reached.items())
        + "); the claims use each row's durability. Slowdown = the first rate over the "
        "second (1.0x: O(1) in the backlog). Huey has no bulk insert: no Huey claim figure."
    )
    for row in document["omniq"]:
        if row["backend"] in ("sqlite-full", "sqlite-fast"):
            counts = ", ".join(
                f"{name} {median(row['runs'][f'{name}_tasks']) or 0:,.0f}"
                for name in workloads.THROUGHPUT
                if row["runs"].get(f"{name}_tasks")
            )
            notes.append(f"Tasks per measure (median), {row['backend']} {row['twin']}: {counts}.")
    calls = [
        f"{row['backend']} {row['twin']} {value:.1f}"
        for row in document["omniq"]
        if (value := row["diagnostics"]["wakeup_enqueue_call_median_ms"]) is not None
    ]
    if calls:
        notes.append(
            "The wake-up latency includes the enqueue call itself; its median (ms): "
            + ", ".join(calls)
            + "."
        )
    notes.append(
        "The async twin runs coroutine no-ops on its event loop, the blocking twin plain "
        "no-ops on its threads; Huey runs plain no-ops on its consumer's threads."
    )
    meta = document["meta"]
    meta["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    meta["total_seconds"] = round(time.perf_counter() - progress.start, 1)
    document["notes"] = notes
    return document


def _show(progress: Progress, got: dict[str, list[float]] | None) -> None:
    if not got:
        return
    parts = []
    for metric, values in got.items():
        if metric == "wakeup_samples_s":
            parts.append("wake " + "/".join(f"{v * 1000:.1f}" for v in values) + " ms")
        elif metric == "wakeup_enqueue_s":
            parts.append("(enqueue call " + "/".join(f"{v * 1000:.1f}" for v in values) + " ms)")
        elif metric.endswith("_per_s"):
            name = metric.removesuffix("_per_s")
            count = got.get(f"{name}_tasks", [0])[-1]
            parts.append(f"{name} {values[-1]:,.0f}/s ({count:,.0f})")
    progress("  " + ", ".join(parts))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 unless it could not run at all."""
    args = parse(argv)
    document = run(args)
    print()
    print(report.terminal_table(document))
    print()
    print("Goals (issue 17, then what remains of issue 8):")
    print(report.terminal_goals(document))
    if document.get("memory"):
        memory = document["memory"]
        print(
            f"\nMemory (sqlite fast, sync): RSS {memory['rss_start_mib']} MiB at start, "
            f"{memory['rss_small_mib']} MiB after {memory['tasks_small']:,} tasks, "
            f"{memory['rss_large_mib']} MiB after {memory['tasks_large']:,} "
            f"({memory['growth_mib_per_10k']} MiB per 10,000 tasks)"
        )
    for note in document["notes"]:
        print(f"note: {note}")
    if args.schema:
        # PostgreSQL's claim plan is measured by benchmarks/postgres.py (its own schema).
        kinds = [name for name in ("sqlite", "memory", "file") if name in args.backends]
        document["schema"] = schema.run(kinds, None)
        print()
        print(schema.describe(document["schema"]))
    if args.processes:
        if args.quick:
            figures = process_executor.run(tasks=200, rounds=1)
        else:
            figures = process_executor.run()
        document["process_executor"] = figures
        print()
        print(process_executor.describe(figures))
    report.write_json(document, args.json)
    print(f"\nJSON: {args.json}")
    if args.chart is not None:
        problem = report.write_chart(document, args.chart)
        print(f"chart: {problem or args.chart}")
    if args.write_docs:
        report.write_docs(document, args.docs)
        print(f"docs: {args.docs}")
    print(f"total bench time: {document['meta']['total_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
