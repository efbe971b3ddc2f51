"""The results: the JSON document, the terminal table, the goals, the chart, the docs section."""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import LATENCY_METRICS, METRICS, THROUGHPUT_METRICS

DOCS_START = "<!-- bench:start -->"
DOCS_END = "<!-- bench:end -->"

# Huey figures from issue 8 (same machine), used for the goals when Huey was not run.
ISSUE_REFERENCE = {
    ("sqlite", "enqueue_per_s"): 2_300.0,
    ("sqlite", "drain_c4_per_s"): 1_400.0,
    ("file", "enqueue_per_s"): 1_000.0,
    ("file", "drain_c4_per_s"): 640.0,
}

COLUMNS = (
    ("enqueue_per_s", "enqueue/s"),
    ("enqueue_many_per_s", "many/s"),
    ("producers_per_s", "producers/s"),
    ("drain_c1_per_s", "drain c1/s"),
    ("drain_c4_per_s", "drain c4/s"),
    ("end_to_end_per_s", "e2e/s"),
    ("wakeup_median_ms", "wake p50 ms"),
    ("wakeup_p99_ms", "wake p99 ms"),
    ("claim_small_per_s", "claim/s small"),
    ("claim_large_per_s", "claim/s large"),
    ("claim_slowdown", "slowdown"),
)


def ratio(metric: str, ours: float | None, theirs: float | None) -> float | None:
    """How many times better omniq is: a rate over Huey's, or Huey's latency over ours."""
    if ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return None
    if metric in LATENCY_METRICS:
        return theirs / ours
    if metric in THROUGHPUT_METRICS:
        return ours / theirs
    return None


def _huey_row(document: dict[str, Any], config: str | None) -> dict[str, Any] | None:
    for row in document.get("huey", []):
        if row["config"] == config:
            found: dict[str, Any] = row
            return found
    return None


def add_ratios(document: dict[str, Any]) -> None:
    """Fill each omniq row's ``ratios`` against its matching Huey row (same run)."""
    for row in document["omniq"]:
        theirs = _huey_row(document, row.get("huey"))
        row["ratios"] = {
            metric: (
                None
                if theirs is None
                else ratio(metric, row["metrics"].get(metric), theirs["metrics"].get(metric))
            )
            for metric in METRICS
        }


# ---------------------------------------------------------------------- formatting


def _number(value: float | None, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if metric in LATENCY_METRICS:
        return f"{value:.1f}" if value < 100 else f"{value:,.0f}"
    if metric == "claim_slowdown":
        return f"{value:.2f}x"
    return f"{value:,.0f}"


def _short(count: int) -> str:
    """1000 -> 1k, 100000 -> 100k."""
    return f"{count // 1000}k" if count >= 1000 and count % 1000 == 0 else str(count)


def _cell(row: dict[str, Any], metric: str) -> str:
    text = _number(row["metrics"].get(metric), metric)
    factor = row.get("ratios", {}).get(metric)
    if factor is not None:
        text += f" ({factor:.1f}x)"
    return text


def table_rows(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The header and cells of the results table (omniq rows, then Huey rows)."""
    plan = document.get("plan", {})
    sizes = {
        "claim_small_per_s": f"claim/s {_short(plan.get('claim_small', 0))}",
        "claim_large_per_s": f"claim/s {_short(plan.get('claim_large', 0))}",
    }
    header = ["backend", "twin", *[sizes.get(metric, label) for metric, label in COLUMNS]]
    body: list[list[str]] = []
    for row in document["omniq"]:
        body.append([row["backend"], row["twin"], *[_cell(row, m) for m, _ in COLUMNS]])
    for row in document.get("huey", []):
        cells = [_number(row["metrics"].get(m), m) for m, _ in COLUMNS]
        cells[1] = "no bulk insert"
        body.append([f"Huey {row['config']}", "thread", *cells])
    return header, body


def terminal_table(document: dict[str, Any]) -> str:
    """The results as an aligned text table."""
    header, body = table_rows(document)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.rjust(w) if i > 1 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


# ---------------------------------------------------------------------- goals


def _find(document: dict[str, Any], backend: str, twin: str) -> dict[str, Any] | None:
    for row in document["omniq"]:
        if row["backend"] == backend and row["twin"] == twin:
            found: dict[str, Any] = row
            return found
    return None


def _reference(document: dict[str, Any], config: str, metric: str) -> tuple[float | None, str]:
    row = _huey_row(document, config)
    if row is not None and row["metrics"].get(metric):
        return row["metrics"][metric], f"Huey {config}, this run"
    value = ISSUE_REFERENCE.get((config, metric))
    return value, "Huey, issue 8's figure" if value else "no Huey figure"


def goals(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of issues 17 and 8, per twin: the target, the measured value, met or not."""
    out: list[dict[str, Any]] = []
    all_twins = sorted({row["twin"] for row in document["omniq"]})

    def check(
        goal: str,
        backend: str,
        metric: str,
        target: float | None,
        basis: str,
        below: bool = False,
        twins: Sequence[str] | None = None,
    ) -> None:
        for twin in all_twins if twins is None else twins:
            row = _find(document, backend, twin)
            if row is None:
                continue
            value = row["metrics"].get(metric)
            met = (
                None
                if value is None or target is None
                else (value <= target if below else value >= target)
            )
            out.append(
                {
                    "goal": goal,
                    "backend": backend,
                    "twin": twin,
                    "metric": metric,
                    "value": value,
                    "target": target,
                    "basis": basis,
                    "met": met,
                }
            )

    def times(factor: float, value: float | None) -> float | None:
        return None if value is None else factor * value

    # Issue 17: SQLite at full durability against SqliteHuey at its defaults (WAL, FULL).
    huey_enqueue, basis = _reference(document, "sqlite", "enqueue_per_s")
    for twin, factor in (("sync", 1.2), ("async", 0.9)):
        check(
            f"17: enqueue, one producer >= {factor:g}x Huey",
            "sqlite-full",
            "enqueue_per_s",
            times(factor, huey_enqueue),
            basis,
            twins=[twin],
        )
    huey_producers, basis = _reference(document, "sqlite", "producers_per_s")
    check(
        "17: concurrent producers (100 coroutines / 8 threads) >= 2x Huey's 8 threads",
        "sqlite-full",
        "producers_per_s",
        times(2.0, huey_producers),
        basis,
    )
    huey_drain, basis = _reference(document, "sqlite", "drain_c4_per_s")
    for twin, factor in (("sync", 3.0), ("async", 2.5)):
        check(
            f"17: drain c4 >= {factor:g}x Huey",
            "sqlite-full",
            "drain_c4_per_s",
            times(factor, huey_drain),
            basis,
            twins=[twin],
        )
    check("17: enqueue many >= 50,000/s", "sqlite-full", "enqueue_many_per_s", 50_000.0, "issue 17")
    check(
        "17: enqueue many >= 60,000/s", "postgres-full", "enqueue_many_per_s", 60_000.0, "issue 17"
    )
    for metric, label, below in (
        ("enqueue_per_s", "enqueue", False),
        ("producers_per_s", "concurrent producers", False),
        ("drain_c4_per_s", "drain c4", False),
        ("wakeup_median_ms", "idle wake-up median", True),
    ):
        value, basis = _reference(document, "postgres", metric)
        check(
            f"17: PostgreSQL {label} ahead of PostgresHuey",
            "postgres-full",
            metric,
            value,
            basis,
            below=below,
        )
    # Issue 8's goals that issue 17 did not replace.
    for backend in ("sqlite-full", "file-full", "memory", "postgres-full"):
        check("8: idle wake-up <= 5 ms", backend, "wakeup_median_ms", 5.0, "issue 8", below=True)
    file_enqueue, basis = _reference(document, "file", "enqueue_per_s")
    check(
        "8: file enqueue >= 2x FileHuey (equal durability: no fsync)",
        "file-fast",
        "enqueue_per_s",
        times(2.0, file_enqueue),
        basis,
    )
    file_drain, basis = _reference(document, "file", "drain_c4_per_s")
    check(
        "8: file drain c4 >= 2x FileHuey (equal durability)",
        "file-fast",
        "drain_c4_per_s",
        times(2.0, file_drain),
        basis,
    )
    for backend in ("file-full", "file-fast"):
        check(
            "8: file claims O(1): slowdown 1k -> 100k pending <= 2x",
            backend,
            "claim_slowdown",
            2.0,
            "claims/s with the large backlog at least half those with the small one",
            below=True,
        )
    return out


def goals_rows(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The goals as table cells."""
    header = ["goal", "backend", "twin", "measured", "target", "met", "basis"]
    body = []
    for goal in document.get("goals", []):
        metric = goal["metric"]
        met = {True: "yes", False: "NO", None: "—"}[goal["met"]]
        body.append(
            [
                goal["goal"],
                goal["backend"],
                goal["twin"],
                _number(goal["value"], metric),
                _number(goal["target"], metric),
                met,
                goal["basis"],
            ]
        )
    return header, body


def terminal_goals(document: dict[str, Any]) -> str:
    """The goals as an aligned text table."""
    header, body = goals_rows(document)
    if not body:
        return "(no goal could be evaluated with these backends)"
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *body]
    )


# ---------------------------------------------------------------------- files


def write_json(document: dict[str, Any], path: Path) -> None:
    """The whole document, indented."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def docs_section(document: dict[str, Any]) -> str:
    """The generated part of docs/performance.md."""
    meta = document["meta"]
    machine = meta["machine"]
    plan = document["plan"]
    lines = [
        DOCS_START,
        "",
        "<!-- generated by `python -m benchmarks --write-docs`: do not edit by hand -->",
        "",
        f"Measured {meta['started']} on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['memory_gib']} GiB), {machine['os']}, Python {machine['python']}, "
        f"SQLite {machine['sqlite']}, stores on {machine['store_fs']}, load average "
        f"{machine['load_average_start'][0]} at the start and "
        f"{machine.get('load_average_end', ['?'])[0]} at the end (other work shares the "
        f"machine: see Noise above); omniq "
        f"{meta['versions']['omniq']}, Huey {meta['versions'].get('huey') or 'not run'}. "
        f"Each throughput measure stops after {plan['tasks']:,} tasks or "
        f"{plan['seconds']:g} s ({plan['other_seconds']:g} s outside the SQLite rows), "
        f"whichever comes first; enqueue, enqueue-many and drain c4 of the SQLite rows are "
        f"medians of {plan['runs']} runs. The whole benchmark took "
        f"{meta['total_seconds']:.0f} s.",
        "",
        "Throughput in tasks per second; wake-up in milliseconds (median, p99 of every "
        "sample); `(N.Nx)` is the factor to the matching Huey row of the same run "
        "(above 1: omniq is faster).",
        "",
        markdown_table(*table_rows(document)),
        "",
        "Goals (issue 17, then what remains of issue 8):",
        "",
        markdown_table(*goals_rows(document)),
        "",
    ]
    memory = document.get("memory")
    if memory:
        lines += [
            f"Memory (SQLite fast, blocking twin, a process of its own): RSS "
            f"{memory['rss_start_mib']} MiB after start, {memory['rss_small_mib']} MiB after "
            f"{memory['tasks_small']:,} tasks, {memory['rss_large_mib']} MiB after "
            f"{memory['tasks_large']:,} ({memory['growth_mib_per_10k']} MiB per 10,000 tasks).",
            "",
        ]
    for note in document.get("notes", []):
        lines.append(f"- {note}")
    lines += ["", DOCS_END]
    return "\n".join(lines)


def write_docs(document: dict[str, Any], path: Path) -> None:
    """Replace the marked section of ``path`` (docs/performance.md) with the latest figures."""
    text = path.read_text()
    start, end = text.find(DOCS_START), text.find(DOCS_END)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no {DOCS_START} ... {DOCS_END} section")
    path.write_text(text[:start] + docs_section(document) + text[end + len(DOCS_END) :])


def write_chart(document: dict[str, Any], path: Path) -> str | None:
    """A PNG of the figures; returns why not when matplotlib is missing."""
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no chart"
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")

    rows = document["omniq"]
    huey = {row["config"]: row for row in document.get("huey", [])}
    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    fig.suptitle(
        f"omniq benchmark ({document['meta']['started'][:10]}, "
        f"{document['meta']['machine']['cores']} cores); log scales"
    )

    def bars(
        ax: Any,
        groups: list[str],
        series: list[tuple[str, list[float | None]]],
        title: str,
        unit: str,
    ) -> None:
        width = 0.8 / max(1, len(series))
        for index, (label, values) in enumerate(series):
            xs = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
            heights = [v if v else 0.0 for v in values]
            ax.bar(xs, heights, width, label=label)
        ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)

    sqlite_rows = [r for r in rows if r["backend"].startswith("sqlite")]
    names = [label for _, label in COLUMNS[:5]]
    series = [
        (f"{r['backend']} {r['twin']}", [r["metrics"].get(m) for m, _ in COLUMNS[:5]])
        for r in sqlite_rows
    ]
    for config in ("sqlite", "sqlite-nosync"):
        if config in huey:
            series.append(
                (f"Huey {config}", [huey[config]["metrics"].get(m) for m, _ in COLUMNS[:5]])
            )
    bars(axes[0][0], names, series, "SQLite: throughput", "tasks/s")

    backends = list(dict.fromkeys(r["backend"] for r in rows))
    twins = list(dict.fromkeys(r["twin"] for r in rows))

    def per_backend(metric: str) -> list[tuple[str, list[float | None]]]:
        out: list[tuple[str, list[float | None]]] = []
        for twin in twins:
            values = []
            for backend in backends:
                row = _find(document, backend, twin)
                values.append(None if row is None else row["metrics"].get(metric))
            out.append((f"omniq {twin}", values))
        matched = []
        for backend in backends:
            row = next((r for r in rows if r["backend"] == backend), None)
            config = None if row is None else row.get("huey")
            matched.append(huey[config]["metrics"].get(metric) if config in huey else None)
        if any(matched):
            out.append(("Huey (matching store)", matched))
        return out

    bars(
        axes[0][1], backends, per_backend("enqueue_per_s"), "enqueue, one call per task", "tasks/s"
    )
    bars(
        axes[1][0],
        backends,
        per_backend("drain_c4_per_s"),
        "drain a backlog, concurrency 4",
        "tasks/s",
    )
    bars(
        axes[1][1],
        backends,
        per_backend("wakeup_median_ms"),
        "idle wake-up, median (lower is better)",
        "ms",
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None
