"""What a store's monitoring shows: its worker pools, queues, throughput and schedules.

Shared by both twins (no I/O here). Worker pools register themselves as named state
records of kind ``"worker"`` (see ``omniq._async.registry``); :func:`worker_from_state`
reads one back as a :class:`WorkerInfo`. :func:`build_metrics` turns what a store
answers (counts per queue, finished tasks per minute, the earliest pending etas, the
worker and schedule records) into one :class:`Metrics` snapshot, the numbers that the
dashboard, ``GET /metrics`` and ``omniq stats --json`` all show.

A pool is *alive* while its last heartbeat is younger than its lease (it renews its
record every third of the lease); past that it is *lost*, and after
:data:`PRUNE_AFTER_LEASES` leases its record is deleted by any running pool.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omniq.records import STATUSES, StateRecord

WORKER_KIND = "worker"
"""The kind of the state records of worker pools."""
PRUNE_AFTER_LEASES = 10
"""A lost pool's record is deleted once its heartbeat is this many leases old."""
THROUGHPUT_MINUTES = 60
"""The throughput window: this many one-minute slots, the current minute last."""
_MINUTE = 60.0


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


class _Record(Mapping[str, Any]):
    """Read-only mapping access to a frozen dataclass's fields (as :class:`~omniq.Task`)."""

    def __getitem__(self, key: str) -> Any:
        if key not in self._field_names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._field_names())

    def __len__(self) -> int:
        return len(self._field_names())

    def _field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (times as ISO 8601 UTC text)."""
        return {name: _jsonable(getattr(self, name)) for name in self._field_names()}


# ---------------------------------------------------------------------- workers


@dataclass(frozen=True)
class WorkerInfo(_Record):
    """One registered worker pool, as its last heartbeat described it. A mapping too.

    ``queues`` is ``None`` for a pool serving every queue; ``processed`` counts the
    executions it finished, ``failed`` those that raised (or timed out); ``alive`` is
    whether its last heartbeat is younger than ``lease_timeout`` (else it is lost: it
    stopped without saying so, or cannot reach the store).
    """

    name: str
    host: str
    pid: int
    queues: tuple[str, ...] | None
    concurrency: int
    executor: str
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    processed: int
    failed: int
    lease_timeout: float
    alive: bool
    key: str  # the name of its state record

    __hash__ = None  # type: ignore[assignment]  # a mapping, compared by value

    @property
    def lost(self) -> bool:
        """Whether the pool missed its heartbeats for longer than its lease."""
        return not self.alive


def worker_key(name: str, host: str, pid: int, instance: str) -> str:
    """The state-record name of a pool: unique per pool, even where names repeat
    (``instance`` tells two pools of one name in one process apart)."""
    return f"{name}@{host}:{pid}:{instance}"


def worker_data(
    *,
    name: str,
    host: str,
    pid: int,
    queues: Sequence[str] | None,
    concurrency: int,
    executor: str,
    started_at: float,
    heartbeat_at: float,
    processed: int,
    failed: int,
    lease_timeout: float,
) -> str:
    """The JSON text of a pool's state record (times as epoch seconds)."""
    return json.dumps(
        {
            "name": name,
            "host": host,
            "pid": pid,
            "queues": None if queues is None else list(queues),
            "concurrency": concurrency,
            "executor": executor,
            "started_at": started_at,
            "heartbeat_at": heartbeat_at,
            "processed": processed,
            "failed": failed,
            "lease_timeout": lease_timeout,
        },
        separators=(",", ":"),
    )


def worker_from_state(record: StateRecord, now: float) -> WorkerInfo | None:
    """The pool a state record describes; ``None`` for a record that is not one."""
    try:
        data = json.loads(record.data)
        queues = data.get("queues")
        heartbeat = float(data.get("heartbeat_at", record.updated_at))
        lease = float(data["lease_timeout"])
        return WorkerInfo(
            name=str(data["name"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            queues=None if queues is None else tuple(str(queue) for queue in queues),
            concurrency=int(data["concurrency"]),
            executor=str(data["executor"]),
            started_at=_utc(float(data["started_at"])),
            heartbeat_at=_utc(heartbeat),
            processed=int(data.get("processed", 0)),
            failed=int(data.get("failed", 0)),
            lease_timeout=lease,
            alive=now - heartbeat <= lease,
            key=record.name,
        )
    except (ValueError, TypeError, KeyError, OverflowError, OSError):
        return None


def is_prunable(record: StateRecord, now: float, lease_timeout: float) -> bool:
    """Whether a worker record is old enough to delete (a damaged one: by ``lease_timeout``)."""
    info = worker_from_state(record, now)
    if info is None:
        age, lease = now - record.updated_at, lease_timeout
    else:
        age, lease = now - info.heartbeat_at.timestamp(), info.lease_timeout
    return age > PRUNE_AFTER_LEASES * lease


def workers_from_states(records: Sequence[StateRecord], now: float) -> list[WorkerInfo]:
    """The pools of ``records`` (damaged ones left out), alive first, then by name."""
    found = [info for record in records if (info := worker_from_state(record, now)) is not None]
    return sorted(found, key=lambda info: (not info.alive, info.name, info.key))


# ---------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class ScheduleInfo(_Record):
    """A stored schedule: when it fired last and fires next (``problem``: unreadable).

    ``last_fire`` is its last fire time (for a schedule that never fired: when it
    was created); ``next_fire`` is the first fire after that, so one in the past is
    overdue: no worker pool has fired it.
    """

    name: str
    func_path: str | None
    spec: str | None
    queue: str | None
    last_fire: dt.datetime | None
    next_fire: dt.datetime | None
    problem: str | None = None


# ---------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class QueueMetrics(_Record):
    """One queue: its tasks per status, how long its oldest due task has waited, and
    how many of its tasks completed and failed in the throughput window."""

    name: str
    counts: Mapping[str, int]
    oldest_pending_eta: dt.datetime | None
    oldest_due_age: float
    completed_last_hour: int
    failed_last_hour: int

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class ThroughputMinute(_Record):
    """The tasks that completed and failed (for good) in one minute starting at ``minute``."""

    minute: dt.datetime
    completed: int
    failed: int


@dataclass(frozen=True)
class Metrics(_Record):
    """A snapshot of a store, taken at ``taken_at``.

    ``counts``: tasks per status over every queue; ``queues``: per queue, by name;
    ``throughput``: the last :data:`THROUGHPUT_MINUTES` minutes, oldest first (the
    current, partial minute last); ``workers`` and ``schedules``: the registered
    pools and the stored schedules.
    """

    taken_at: dt.datetime
    counts: Mapping[str, int]
    queues: tuple[QueueMetrics, ...]
    throughput: tuple[ThroughputMinute, ...]
    workers: tuple[WorkerInfo, ...]
    schedules: tuple[ScheduleInfo, ...]

    __hash__ = None  # type: ignore[assignment]

    @property
    def total(self) -> int:
        """Tasks in the store."""
        return sum(self.counts.values())

    @property
    def workers_alive(self) -> int:
        """Registered pools whose heartbeat is current."""
        return sum(1 for worker in self.workers if worker.alive)

    @property
    def workers_lost(self) -> int:
        """Registered pools whose heartbeat is older than their lease."""
        return len(self.workers) - self.workers_alive

    def to_dict(self) -> dict[str, Any]:
        """Every number as JSON-ready data (times as ISO 8601 UTC text)."""
        data = super().to_dict()
        data["total"] = self.total
        data["workers_alive"] = self.workers_alive
        data["workers_lost"] = self.workers_lost
        data["queues"] = {queue.name: queue.to_dict() for queue in self.queues}
        return data


def throughput_since(now: float) -> float:
    """The start of the throughput window: the current minute is its last slot."""
    return (now // _MINUTE) * _MINUTE - (THROUGHPUT_MINUTES - 1) * _MINUTE


def build_metrics(
    now: float,
    per_queue: Mapping[str, Mapping[str, int]],
    finished: Sequence[tuple[int, str, str, int]],
    earliest: Mapping[str, float],
    workers: Sequence[StateRecord],
    schedules: Sequence[ScheduleInfo],
) -> Metrics:
    """The snapshot from a store's answers: ``finished`` as :meth:`count_finished` gives
    it from :func:`throughput_since`, ``earliest`` as ``earliest_pending`` does,
    ``workers`` the registry's records."""
    since = throughput_since(now)
    completed = [0] * THROUGHPUT_MINUTES
    failed = [0] * THROUGHPUT_MINUTES
    per_queue_done: dict[str, list[int]] = {}
    for slot, queue, status, count in finished:
        if slot < 0:
            continue
        slot = min(slot, THROUGHPUT_MINUTES - 1)  # a clock a little ahead: the current minute
        done = per_queue_done.setdefault(queue, [0, 0])
        if status == "completed":
            completed[slot] += count
            done[0] += count
        elif status == "failed":
            failed[slot] += count
            done[1] += count
    totals = dict.fromkeys(STATUSES, 0)
    queues: list[QueueMetrics] = []
    for name in sorted(per_queue):
        counts = {status: int(per_queue[name].get(status, 0)) for status in STATUSES}
        for status, count in counts.items():
            totals[status] += count
        eta = earliest.get(name) if counts["pending"] else None
        done = per_queue_done.get(name, [0, 0])
        queues.append(
            QueueMetrics(
                name=name,
                counts=counts,
                oldest_pending_eta=None if eta is None else _utc(eta),
                oldest_due_age=0.0 if eta is None else max(now - eta, 0.0),
                completed_last_hour=done[0],
                failed_last_hour=done[1],
            )
        )
    minutes = tuple(
        ThroughputMinute(_utc(since + slot * _MINUTE), completed[slot], failed[slot])
        for slot in range(THROUGHPUT_MINUTES)
    )
    return Metrics(
        taken_at=_utc(now),
        counts=totals,
        queues=tuple(queues),
        throughput=minutes,
        workers=tuple(workers_from_states(workers, now)),
        schedules=tuple(
            sorted(
                schedules,
                key=lambda info: (info.next_fire is None, info.next_fire or _utc(0), info.name),
            )
        ),
    )
