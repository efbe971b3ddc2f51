"""Schedules declared in code: cron or fixed-interval definitions and when they fire.

A :class:`Schedule` names a task and when to run it: ``cron="0 7 * * mon-fri"`` in a
time zone (``tz``, UTC by default), or ``every=timedelta(minutes=10)``. Everything is
checked when the schedule is made, so a bad cron expression, an unknown time zone or
a non-positive interval fails at declaration, naming the value.

The functions here are pure: given a schedule and the times involved they say when it
fires. They never read a clock, so tests pass any "now", and every worker process
computes the same fire times:

* :func:`next_fire` -- the first fire strictly after a moment.
* :func:`due_fires` -- the fires owed between the last fire and now: only the latest
  one (``catch_up=False``, the default) or each of them, the latest ``max_catch_up``
  at most (``catch_up=True``).
* :func:`fire_key` -- the unique key of one fire, ``schedule:<name>:<UTC ISO time>``:
  every worker that fires the same time enqueues with the same key, and the store
  keeps one task for it.

``every`` schedules fire on multiples of the interval since the Unix epoch (UTC):
``every=timedelta(minutes=10)`` fires at :00, :10, :20 ..., whichever process
computes it, so no leader is needed to agree on the series.

``@task(cron=...)`` and ``@task(every=...)`` register their schedule here, by name,
in a process-wide registry (:func:`declared_schedules`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from omniq._cron import UTC, CronExpression
from omniq._validation import (
    check_func_path,
    normalize_args,
    normalize_interval,
    normalize_kwargs,
    normalize_max_retries,
    normalize_priority,
    normalize_queue,
    normalize_timeout,
    positive_int,
)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
"""The origin of ``every`` series: fires are whole multiples of the interval after it."""
MIN_EVERY = dt.timedelta(seconds=1)
DEFAULT_MAX_CATCH_UP = 100
MAX_NAME_LENGTH = 150  # so that fire_key() stays within the 200 characters of a unique key
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")


@dataclass(frozen=True)
class Schedule:
    """When to enqueue a task, declared in code. Validated at construction.

    * ``name``: the schedule's identity in the store (declaring a name again updates it);
      letters, digits and ``_.:-``, at most 150 characters.
    * ``func_path``: the task, ``"module.function"``.
    * ``cron`` (with ``tz``, an IANA name such as ``"Europe/Berlin"``, default ``"UTC"``)
      or ``every`` (a ``timedelta`` or seconds, at least one second): exactly one.
    * ``args``, ``kwargs``: the arguments of every fire.
    * ``queue``, ``priority``, ``max_retries``, ``timeout``: enqueue options of every
      fire; ``None`` leaves them to the task's declaration, then the facade's defaults.
    * ``catch_up``: after an outage, enqueue each missed fire (the latest
      ``max_catch_up`` at most) instead of only the latest one.
    """

    name: str
    func_path: str
    cron: str | None = None
    every: dt.timedelta | None = None
    tz: str = "UTC"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    max_retries: int | None = None
    timeout: float | None = None
    catch_up: bool = False
    max_catch_up: int = DEFAULT_MAX_CATCH_UP

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalize in place once, at construction
        set_(self, "name", check_schedule_name(self.name))
        set_(self, "func_path", check_func_path(self.func_path))
        if (self.cron is None) == (self.every is None):
            raise ValueError(
                f"schedule {self.name!r} needs exactly one of cron= and every=, "
                f"got cron={self.cron!r}, every={self.every!r}"
            )
        set_(self, "tz", _zone(self.tz).key)
        if self.cron is not None:
            expression = _cron(self.cron, self.tz)
            if expression.next_after(dt.datetime.now(UTC)) is None:
                raise ValueError(
                    f"schedule {self.name!r}: cron {self.cron!r} never fires in the next 50 years"
                )
            set_(self, "cron", expression.expression)
        else:
            if self.tz != "UTC":
                raise ValueError(
                    f"schedule {self.name!r}: tz={self.tz!r} applies to cron= only; "
                    "every= counts real time"
                )
            every = normalize_interval(self.every, "every")
            assert every is not None
            if every < MIN_EVERY:
                raise ValueError(f"every must be at least 1 second, got {self.every!r}")
            set_(self, "every", every)
        set_(self, "args", normalize_args(self.args))
        set_(self, "kwargs", normalize_kwargs(self.kwargs))
        if self.queue is not None:
            normalize_queue(self.queue)
        if self.priority is not None:
            normalize_priority(self.priority)
        set_(self, "max_retries", normalize_max_retries(self.max_retries))
        set_(self, "timeout", normalize_timeout(self.timeout))
        if not isinstance(self.catch_up, bool):
            raise TypeError(f"catch_up must be True or False, got {self.catch_up!r}")
        set_(self, "max_catch_up", positive_int("max_catch_up", self.max_catch_up))

    __hash__ = None  # type: ignore[assignment]  # kwargs is a mutable value

    @property
    def spec(self) -> str:
        """When it fires, for listings: ``"every 0:10:00"`` or
        ``"cron 0 7 * * mon-fri (Europe/Berlin)"``.
        """
        if self.cron is not None:
            return f"cron {self.cron} ({self.tz})"
        return f"every {self.every}"

    def enqueue_item(self, fire_time: dt.datetime) -> dict[str, Any]:
        """The ``enqueue_many`` item of one fire: the task, its arguments and options.

        ``eta`` is the fire time (a late fire is due at once and keeps its place in
        the order) and ``unique_key`` is :func:`fire_key`. Options left ``None`` are
        left out, so the task's declaration and the facade's defaults apply.
        """
        item: dict[str, Any] = {
            "func_path": self.func_path,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "eta": fire_time,
            "unique_key": fire_key(self.name, fire_time),
        }
        for option in ("queue", "priority", "max_retries", "timeout"):
            value = getattr(self, option)
            if value is not None:
                item[option] = value
        return item

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``every`` in seconds); ``args``/``kwargs`` as given."""
        data = dataclasses.asdict(self)
        data["args"] = list(self.args)
        data["every"] = None if self.every is None else self.every.total_seconds()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        """Rebuild (and validate again) a schedule from :meth:`to_dict` output."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if values.get("every") is not None:
            values["every"] = dt.timedelta(seconds=values["every"])
        return cls(**values)


def check_schedule_name(name: Any) -> str:
    """A schedule name: letters, digits and ``_.:-``, 1-150 characters."""
    if not isinstance(name, str):
        raise TypeError(f"schedule name must be a str, got {name!r}")
    if not _NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"schedule name must be 1-{MAX_NAME_LENGTH} letters, digits and '_.:-', got {name!r}"
        )
    return name


def _zone(tz: Any) -> ZoneInfo:
    if isinstance(tz, ZoneInfo):
        return tz
    if tz is dt.timezone.utc:
        return ZoneInfo("UTC")
    if not isinstance(tz, str):
        raise TypeError(f"tz must be an IANA time zone name like 'Europe/Berlin', got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {tz!r}; use an IANA name like 'Europe/Berlin' or 'UTC'"
        ) from None


@functools.lru_cache(maxsize=1024)
def _cron(expression: str, tz: str) -> CronExpression:
    """The parsed expression (cached: fire computations ask for it on every tick)."""
    return CronExpression(expression, _zone(tz))


def _aware(name: str, moment: Any) -> dt.datetime:
    if not isinstance(moment, dt.datetime):
        raise TypeError(f"{name} must be an aware datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (with a time zone), got {moment!r}")
    return moment.astimezone(UTC)


def next_fire(schedule: Schedule, after: dt.datetime) -> dt.datetime | None:
    """The first fire of ``schedule`` strictly after ``after`` (aware), in UTC.

    ``None`` only for a cron expression with no match in the next 50 years.
    """
    after = _aware("after", after)
    if schedule.every is not None:
        steps = (after - EPOCH) // schedule.every + 1
        return EPOCH + schedule.every * steps
    assert schedule.cron is not None
    return _cron(schedule.cron, schedule.tz).next_after(after)


def due_fires(schedule: Schedule, last_fire: dt.datetime, now: dt.datetime) -> list[dt.datetime]:
    """The fires owed after ``last_fire`` up to and including ``now``, oldest first (UTC).

    ``last_fire`` is the last fire enqueued (for a schedule that never fired: when it
    was declared). With ``catch_up=False`` at most one fire comes back, the latest;
    with ``catch_up=True`` each missed one, the latest ``max_catch_up`` of them.
    """
    last_fire = _aware("last_fire", last_fire)
    now = _aware("now", now)
    limit = schedule.max_catch_up if schedule.catch_up else 1
    fires: list[dt.datetime] = []
    if now <= last_fire:
        return fires
    if schedule.every is not None:
        latest = EPOCH + schedule.every * ((now - EPOCH) // schedule.every)
        while latest > last_fire and len(fires) < limit:
            fires.append(latest)
            latest -= schedule.every
    else:
        assert schedule.cron is not None
        expression = _cron(schedule.cron, schedule.tz)
        for fire in expression.fires_back_from(now):
            if fire <= last_fire or len(fires) >= limit:
                break
            fires.append(fire)
    fires.reverse()
    return fires


def fire_key(name: str, fire_time: dt.datetime) -> str:
    """The unique key of one fire of schedule ``name``: ``schedule:<name>:<UTC ISO time>``."""
    return f"schedule:{check_schedule_name(name)}:{_aware('fire_time', fire_time).isoformat()}"


# ------------------------------------------------------------------ the process registry

_SCHEDULES: dict[str, Schedule] = {}
_REGISTRY_LOCK = threading.Lock()


def register_schedule(schedule: Schedule) -> Schedule:
    """Add ``schedule`` to this process's declared schedules; the same name replaces it."""
    if not isinstance(schedule, Schedule):
        raise TypeError(f"expected a Schedule, got {schedule!r}")
    with _REGISTRY_LOCK:
        _SCHEDULES[schedule.name] = schedule
    return schedule


def unregister_schedule(name: str) -> bool:
    """Forget the declared schedule ``name``; False if there was none."""
    with _REGISTRY_LOCK:
        return _SCHEDULES.pop(name, None) is not None


def declared_schedules() -> list[Schedule]:
    """The schedules declared in this process (by ``@task(cron=...)``...), by name."""
    with _REGISTRY_LOCK:
        return [_SCHEDULES[name] for name in sorted(_SCHEDULES)]


def get_schedule(name: str) -> Schedule | None:
    """The declared schedule called ``name``, or ``None``."""
    with _REGISTRY_LOCK:
        return _SCHEDULES.get(name)
