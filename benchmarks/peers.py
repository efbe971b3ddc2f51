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

A peer that is not installed, or whose run fails, is skipped with a one-line note. No
test asserts these figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

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
    for twin in ("async", "sync"):
        rows[f"omniq {twin}"] = omniq_row(server, twin, args.tasks, args.seconds)
        print(f"omniq {twin}: {rows[f'omniq {twin}']}", flush=True)
    for name in wanted:
        result = peer_row(name, server, args.tasks, args.seconds)
        if isinstance(result, str):
            print(f"{name} skipped: {result}", flush=True)
        else:
            rows[name] = result
            print(f"{name}: {result}", flush=True)
    print()
    print(table(rows))
    print(
        f"\n(factor: omniq against the best peer; tasks per measure at most {args.tasks:,}, "
        f"{args.seconds:g} s cap; noop tasks: {tasks.NOOP}; ran_*: tasks each drain ran)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
