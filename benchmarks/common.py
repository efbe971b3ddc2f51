"""What the workloads share: the backends, the plan (task counts), fresh stores, statistics."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import statistics
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omniq import Settings
from omniq._secrets import mask_dsn, redact

DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"

# The directory that holds the ``benchmarks`` package (the repository root): benchmarks are
# not installed, so a child process finds them through PYTHONPATH, whatever its cwd.
ROOT = Path(__file__).resolve().parent.parent


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ``python -m benchmarks.<module>`` in a child process."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# Every metric a result row carries (None where it was not measured).
THROUGHPUT_METRICS = (
    "enqueue_per_s",
    "enqueue_many_per_s",
    "producers_per_s",
    "drain_c1_per_s",
    "drain_c4_per_s",
    "end_to_end_per_s",
)
LATENCY_METRICS = ("wakeup_median_ms", "wakeup_p99_ms")
CLAIM_METRICS = ("claim_small_per_s", "claim_large_per_s", "claim_slowdown")
METRICS = THROUGHPUT_METRICS + LATENCY_METRICS + CLAIM_METRICS
MEMORY_METRICS = (
    "tasks_small",
    "tasks_large",
    "rss_start_mib",
    "rss_small_mib",
    "rss_large_mib",
    "growth_mib_per_10k",
)


@dataclass(frozen=True)
class Backend:
    """One store configuration: ``kind`` (the omniq backend) and its durability."""

    name: str
    kind: str
    durability: str


BACKENDS = (
    Backend("sqlite-full", "sqlite", "full"),
    Backend("sqlite-fast", "sqlite", "fast"),
    Backend("file-full", "file", "full"),
    Backend("file-fast", "file", "fast"),
    Backend("memory", "memory", "full"),
    Backend("postgres-full", "postgres", "full"),
    Backend("postgres-fast", "postgres", "fast"),
)
TWINS = ("async", "sync")


def select_backends(spec: str) -> list[Backend]:
    """Backends named by a comma list of kinds (``sqlite``) or names (``sqlite-full``)."""
    wanted = [part.strip().lower() for part in spec.split(",") if part.strip()]
    chosen: list[Backend] = []
    for word in wanted:
        matches = [b for b in BACKENDS if word in (b.name, b.kind)]
        if not matches:
            names = ", ".join(sorted({b.kind for b in BACKENDS} | {b.name for b in BACKENDS}))
            raise ValueError(f"unknown backend {word!r}; choose among {names}")
        chosen.extend(b for b in matches if b not in chosen)
    return chosen


HEADLINE = ("sqlite-full", "sqlite-fast", "sqlite")  # omniq backends and Huey configs
REPEATED = ("enqueue", "enqueue_many", "producers", "drain_c4")  # the measures the goals use


@dataclass(frozen=True)
class Plan:
    """How many tasks each measure may use, for how long at most, and how often.

    Each throughput measure stops at ``tasks`` tasks (10,000 by default, as in
    issue 8) or after its time cap, whichever comes first, and reports the rate
    over what it did: so the benchmark ends in bounded time however slow a
    backend is (``nox -s bench`` must end within five minutes on a 2-core
    machine). The headline rows (SQLite, and Huey's SQLite at its defaults) get
    ``seconds`` per measure and repeat the measures the goals use ``runs`` times
    (medians are reported); the other rows get ``other_seconds`` and one run.
    """

    tasks: int = 10_000
    runs: int = 3
    quick: bool = False
    seconds: float = 1.0
    other_seconds: float = 0.5
    pauses: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
    short_pauses: tuple[float, ...] = (0.05, 0.5)
    claim_small: int = 1_000
    claim_large: int = 100_000
    claims: int = 500
    claim_seconds: float = 0.5
    claim_build_seconds: float = 5.0
    memory_small: int = 2_000
    memory_large: int = 100_000
    memory_seconds: float = 6.0

    def cap(self, name: str) -> float:
        """Seconds a throughput measure of ``name`` (backend or Huey config) may take."""
        return self.seconds if name in HEADLINE else self.other_seconds

    def repetitions(self, name: str, measure: str) -> int:
        """How many times ``measure`` runs on ``name`` (a backend or a Huey config)."""
        return self.runs if name in HEADLINE and measure in REPEATED else 1

    def rounds(self, name: str) -> int:
        """How many rounds touch ``name``."""
        return max(self.repetitions(name, measure) for measure in REPEATED)

    def wake_pauses(self, name: str) -> tuple[float, ...]:
        """The idle pauses before each wake-up sample."""
        return self.pauses if name in ("sqlite-full", "sqlite") else self.short_pauses

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready values."""
        return {
            "tasks": self.tasks,
            "runs": self.runs,
            "quick": self.quick,
            "seconds": self.seconds,
            "other_seconds": self.other_seconds,
            "headline": list(HEADLINE),
            "repeated": list(REPEATED),
            "pauses": list(self.pauses),
            "short_pauses": list(self.short_pauses),
            "claim_small": self.claim_small,
            "claim_large": self.claim_large,
            "claims": self.claims,
            "claim_seconds": self.claim_seconds,
            "claim_build_seconds": self.claim_build_seconds,
            "memory_small": self.memory_small,
            "memory_large": self.memory_large,
            "memory_seconds": self.memory_seconds,
        }


def make_plan(
    *, quick: bool, tasks: int | None, runs: int | None, seconds: float | None = None
) -> Plan:
    """The default plan, or the quick one (seconds, for smoke runs), with overrides."""
    if quick:
        base = tasks or 500
        return Plan(
            tasks=base,
            runs=runs or 1,
            quick=True,
            seconds=seconds or 0.3,
            other_seconds=seconds or 0.3,
            pauses=(0.05, 0.2),
            short_pauses=(0.05, 0.2),
            claim_small=max(base, 200),
            claim_large=max(base * 4, 800),
            claims=100,
            claim_seconds=0.2,
            claim_build_seconds=1.0,
            memory_small=base,
            memory_large=base * 4,
            memory_seconds=2.0,
        )
    return Plan(
        tasks=tasks or 10_000,
        runs=runs or 3,
        seconds=seconds or 1.0,
        other_seconds=0.5 * (seconds or 1.0),
    )


# ---------------------------------------------------------------------- stores


class Postgres:
    """The PostgreSQL server the benchmark uses, if one answers; a schema per store."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.problem: str | None = None
        self._checked = False

    def available(self) -> bool:
        """Whether psycopg is installed and the server accepts a connection."""
        if not self._checked:
            self._checked = True
            try:
                import psycopg

                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=3):
                    pass
            except ImportError:
                self.problem = 'psycopg is not installed (pip install -e ".[postgres]")'
            except Exception as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                self.problem = redact(
                    f"no PostgreSQL server at {mask_dsn(self.dsn)}: {first or type(error)}",
                    self.dsn,
                )
        return self.problem is None

    @contextlib.contextmanager
    def schema(self) -> Iterator[str]:
        """A new schema, dropped afterwards; yields a DSN whose search_path is that schema."""
        from psycopg.conninfo import make_conninfo

        with self.schema_name() as name:
            yield make_conninfo(self.dsn, options=f"-csearch_path={name}", application_name=name)

    @contextlib.contextmanager
    def schema_name(self) -> Iterator[str]:
        """A new schema, dropped afterwards (its sessions ended first); yields its name."""
        import psycopg

        name = f"omniq_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        try:
            yield name
        finally:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@dataclass
class Stores:
    """Where fresh stores are made: a scratch directory and, maybe, a PostgreSQL server."""

    root: Path
    postgres: Postgres

    @contextlib.contextmanager
    def directory(self) -> Iterator[Path]:
        """A new empty directory under the scratch root, removed afterwards."""
        path = Path(tempfile.mkdtemp(prefix="store-", dir=self.root))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @contextlib.contextmanager
    def fresh(self, backend: Backend) -> Iterator[Settings]:
        """Settings of a new, empty store of ``backend``."""
        with self.directory() as path:
            if backend.kind == "postgres":
                with self.postgres.schema() as dsn:
                    yield settings_for(backend, path, dsn)
            else:
                yield settings_for(backend, path, None)


def settings_for(backend: Backend, path: Path, dsn: str | None) -> Settings:
    """Settings of ``backend`` storing under ``path`` (or in ``dsn``), defaults otherwise."""
    return Settings(backend=backend.kind, base_dir=path, durability=backend.durability, dsn=dsn)


def filesystem_of(path: Path) -> str:
    """The filesystem type ``path`` lives on (from /proc/mounts), or ``unknown``."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    best, kind = "", "unknown"
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and target.startswith(parts[1]) and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return kind


# ---------------------------------------------------------------------- statistics


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The nearest-rank percentile (with few samples, p99 is the largest)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def rss_mib() -> float:
    """This process's resident set size in MiB (from /proc/self/statm)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
