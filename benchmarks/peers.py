"""omniq on PostgreSQL beside the PostgreSQL peers it can install, in one run.

``python -m benchmarks.peers`` (``nox -s bench-peers`` installs the peers in its own
virtualenv). Each measure runs on a fresh schema of one server, omniq in both twins at
its defaults (``synchronous_commit`` as the server says), each peer at its own:

- enqueue/s: one call per task; many/s: one batch of up to 10,000 tasks;
- drain c4/s, drain c16/s: one worker with that many tasks at once, from a backlog of
  no-op tasks (each counts itself: a drain in which none ran fails); a peer's tables are
  ANALYZEd once its backlog is in, as autovacuum would have by then (omniq's are not);
- wake p50 ms: an idle worker, the producer's enqueue call to the task's start.

Peers (one module each, which says how it is driven):

- pgqueuer (``peer_pgqueuer``): asyncpg, its fastest driver; at most c jobs at once,
  dequeued in batches of c/2, the largest it allows; drain mode for the backlog.
- procrastinate (``peer_procrastinate``): its ``PsycopgConnector`` (psycopg 3 pool), its
  schema applied by its schema manager; ``run_worker_async(concurrency=c)``, NOTIFY on,
  job polling every 5 s (its defaults); ``batch_defer_async`` for the batch.
- chancy (``peer_chancy``): psycopg 3 (its pool of 1 to 10), ``Chancy.migrate()``; one
  ``Worker`` on a queue with the ``AsyncExecutor``, concurrency c, its 5 s polling
  interval and ``eager_polling`` (else it fetches only at each poll); ``push_many``.

A peer that is not installed, or whose run fails, is skipped with a one-line note. It
prints the table, then issue 17's goal rows (omniq ahead of every peer that ran, in each
twin and measure) with a met/not-met mark; ``--write-docs`` puts both in the marked
section of docs/performance.md. No test asserts these figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks import peer_chancy, peer_pgqueuer, peer_procrastinate, tasks, workloads
from benchmarks.common import DEFAULT_POSTGRES_DSN, Postgres
from benchmarks.peer_common import PAUSES, Row
from omniq import Settings

# ---------------------------------------------------------------------- omniq


def omniq_row(server: Postgres, twin: str, n: int, cap: float) -> Row:
    """omniq's figures in ``twin`` (the measures of ``benchmarks.workloads``)."""
    sync_drain, async_drain, _ = workloads.THROUGHPUT["drain_c4"]
    measures = {
        "enqueue": workloads.THROUGHPUT["enqueue"],
        "many": workloads.THROUGHPUT["enqueue_many"],
        "drain_c4": workloads.THROUGHPUT["drain_c4"],
        "drain_c16": (sync_drain, async_drain, (16,)),
    }
    row: Row = {}
    for name, (sync_fn, async_fn, extra) in measures.items():
        with server.schema() as dsn:
            settings = Settings(backend="postgres", dsn=dsn)
            rate = workloads.twin_call(twin, sync_fn, async_fn, settings, n, cap, *extra)
        row[name] = rate.per_second
        if name.startswith("drain"):
            row[f"ran_{name[6:]}"] = rate.tasks
    with server.schema() as dsn:
        settings = Settings(backend="postgres", dsn=dsn)
        wake = workloads.twin_call(
            twin, workloads.sync_wakeup, workloads.async_wakeup, settings, PAUSES
        )
    row["wake_ms"] = statistics.median(wake.latencies) * 1000
    return row


# ---------------------------------------------------------------------- peers

# Each peer: why it cannot run here (or None), and its row.
PEERS: dict[str, tuple[Callable[[], str | None], Callable[[Postgres, int, float], Row]]] = {
    "pgqueuer": (peer_pgqueuer.available, peer_pgqueuer.row),
    "procrastinate": (peer_procrastinate.available, peer_procrastinate.row),
    "chancy": (peer_chancy.available, peer_chancy.row),
}


def peer_row(name: str, server: Postgres, n: int, cap: float) -> Row | str:
    """The row of peer ``name``, or a one-line note on why it was skipped."""
    available, row = PEERS[name]
    problem = available()
    if problem is not None:
        return problem
    try:
        return row(server, n, cap)
    except Exception as error:  # a peer's failure skips that peer, never the run
        first = (str(error).strip().splitlines() or [""])[0]
        return f"its run failed: {type(error).__name__}: {first}"[:200]


# ---------------------------------------------------------------------- report

COLUMNS = (
    ("enqueue", "enqueue/s"),
    ("many", "many/s"),
    ("drain_c4", "drain c4/s"),
    ("drain_c16", "drain c16/s"),
    ("wake_ms", "wake p50 ms"),
)


def table(rows: dict[str, Row]) -> str:
    """The rows, with each omniq figure's factor to the best peer (above 1: omniq ahead)."""
    peers = {name: row for name, row in rows.items() if not name.startswith("omniq")}
    header = ["", *[label for _, label in COLUMNS]]
    lines = [header]
    for name, row in rows.items():
        cells = [name]
        for metric, _ in COLUMNS:
            value = row.get(metric)
            text = (
                "—"
                if value is None
                else (f"{value:.1f}" if metric == "wake_ms" else f"{value:,.0f}")
            )
            best = [p[metric] for p in peers.values() if p.get(metric)]
            if name.startswith("omniq") and value and best:
                ref = min(best) if metric == "wake_ms" else max(best)  # type: ignore[type-var]
                factor = ref / value if metric == "wake_ms" else value / ref  # type: ignore[operator]
                text += f" ({factor:.2f}x)"
            cells.append(text)
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


GOAL_METRICS = {
    "enqueue": "enqueue",
    "many": "batch enqueue",
    "drain_c4": "drain c4",
    "drain_c16": "drain c16",
    "wake_ms": "idle wake-up median",
}
DOCS_START = "<!-- peers:start -->"
DOCS_END = "<!-- peers:end -->"


def goals(rows: dict[str, Row]) -> list[list[str]]:
    """Issue 17's rows: in each twin and measure, omniq ahead of the best peer that ran."""
    peers = {name: row for name, row in rows.items() if not name.startswith("omniq")}
    out = [["goal", "twin", "omniq", "best peer", "met"]]
    for metric, label in GOAL_METRICS.items():
        figures = {name: row[metric] for name, row in peers.items() if row.get(metric)}
        for twin in ("async", "sync"):
            value = rows.get(f"omniq {twin}", {}).get(metric)
            if value is None or not figures:
                continue
            lower = metric == "wake_ms"  # milliseconds: less is ahead
            best = (min if lower else max)(figures, key=lambda name: figures[name] or 0.0)
            ref = figures[best]
            assert ref is not None
            met = value < ref if lower else value > ref
            out.append(
                [
                    f"17: PostgreSQL {label} ahead of every peer",
                    twin,
                    _figure(value, lower),
                    f"{_figure(ref, lower)} ({best})",
                    "yes" if met else "NO",
                ]
            )
    return out


def _figure(value: float, milliseconds: bool) -> str:
    return f"{value:.1f} ms" if milliseconds else f"{value:,.0f}/s"


def markdown(rows: list[list[str]]) -> str:
    """``rows`` (the first one the header) as a Markdown table."""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def docs_section(rows: dict[str, Row], notes: list[str], args: argparse.Namespace) -> str:
    """The generated part of docs/performance.md's PostgreSQL peers section."""
    versions = []
    for name in ("omniq", "pgqueuer", "procrastinate", "chancy"):
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    load = os.getloadavg()[0]
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    header = ["", *[label for _, label in COLUMNS]]
    body = [line.split("  ") for line in table(rows).splitlines()[1:]]
    cells = [header] + [[cell.strip() for cell in line if cell.strip()] for line in body]
    return "\n".join(
        [
            DOCS_START,
            "",
            "<!-- generated by `python -m benchmarks.peers --write-docs`: do not edit by hand -->",
            "",
            f"Measured {started} ({', '.join(versions)}; load average {load:.2f} at the end; "
            f"at most {args.tasks:,} tasks or {args.seconds:g} s per measure). omniq's "
            "factor to the best peer in brackets (above 1: omniq ahead):",
            "",
            markdown(cells),
            "",
            markdown(goals(rows)),
            "",
            *[f"- {note}" for note in notes],
            "",
            DOCS_END,
        ]
    )


def write_docs(section: str, path: Path) -> None:
    """Replace the marked part of ``path`` with ``section``."""
    text = path.read_text()
    start, end = text.find(DOCS_START), text.find(DOCS_END)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no {DOCS_START} ... {DOCS_END} section")
    path.write_text(text[:start] + section + text[end + len(DOCS_END) :])


def main(argv: list[str] | None = None) -> int:
    """Measure omniq and every installed peer on one PostgreSQL server; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=DEFAULT_POSTGRES_DSN)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=2.0, help="time cap of a measure")
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma list of the peers to run (default: all of {', '.join(PEERS)})",
    )
    parser.add_argument("--write-docs", action="store_true", help="rewrite the docs' table")
    parser.add_argument("--docs", type=Path, default=Path("docs/performance.md"))
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in PEERS]
    if unknown:
        parser.error(f"unknown peer {unknown[0]!r}; choose among {', '.join(PEERS)}")
    server = Postgres(args.dsn)
    if not server.available():
        print(f"no PostgreSQL: {server.problem}")
        return 1
    rows: dict[str, Row] = {}
    notes: list[str] = []
    for twin in ("async", "sync"):
        rows[f"omniq {twin}"] = omniq_row(server, twin, args.tasks, args.seconds)
        print(f"omniq {twin}: {rows[f'omniq {twin}']}", flush=True)
    for name in wanted:
        result = peer_row(name, server, args.tasks, args.seconds)
        if isinstance(result, str):
            print(f"{name} skipped: {result}", flush=True)
            notes.append(f"{name} skipped: {result}")
        else:
            rows[name] = result
            print(f"{name}: {result}", flush=True)
    print()
    print(table(rows))
    print(
        f"\n(factor: omniq against the best peer; tasks per measure at most {args.tasks:,}, "
        f"{args.seconds:g} s cap; noop tasks: {tasks.NOOP}; ran_*: tasks each drain ran)"
    )
    print()
    print(markdown(goals(rows)))
    if args.write_docs:
        write_docs(docs_section(rows, notes, args), args.docs)
        print(f"\nwrote {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
