"""Cron expressions in a time zone: parsing by cronsim, daylight saving time done as cron does.

cronsim (a small, typed, dependency-free evaluator that follows Debian's cron) parses
and matches the fields: five (minute hour day-of-month month day-of-week) or six with
the seconds first. This module adds what a scheduler needs on top:

* Instants in, instants out: every function takes and returns aware datetimes, so the
  same fire time comes out in every worker process, on every machine.
* Daylight saving time as Debian's cron handles it, for five *and* six fields. A job at
  a fixed time of day (its minute and hour fields do not start with ``*``) is matched
  against the wall clock: on a spring-forward day a time the clock skips runs once, at
  the instant the clock jumps; on a fall-back day a time the clock shows twice runs
  once, at its first occurrence. Jobs that run more often (``*/15 * * * *``, ``0 * * *
  *``) follow real time: the repeated hour runs twice, the skipped hour not at all.
  cronsim applies this rule itself to five fields only; here one rule covers both.
* Aliases: ``@hourly``, ``@daily``/``@midnight``, ``@weekly``, ``@monthly``,
  ``@yearly``/``@annually``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

UTC = dt.timezone.utc

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_SECOND = dt.timedelta(seconds=1)


class CronExpression:
    """A validated cron expression, evaluated in one time zone.

    ``CronExpression("0 7 * * mon-fri", ZoneInfo("Europe/Berlin"))``; a bad
    expression raises ``ValueError`` naming it.
    """

    __slots__ = ("_fields", "_wall_clock", "expression", "zone")

    def __init__(self, expression: str, zone: ZoneInfo) -> None:
        if not isinstance(expression, str):
            raise TypeError(f"cron must be a str like '0 7 * * mon-fri', got {expression!r}")
        normalized = " ".join(expression.split())
        fields = ALIASES.get(normalized.lower(), normalized).split()
        if normalized.startswith("@") and normalized.lower() not in ALIASES:
            raise ValueError(
                f"unknown cron alias {expression!r}; choose one of {', '.join(sorted(ALIASES))}"
            )
        if len(fields) not in (5, 6):
            raise ValueError(
                "cron must have 5 fields (minute hour day-of-month month day-of-week) or 6 "
                f"with the seconds first, got {len(fields)} in {expression!r}"
            )
        self.expression = normalized
        self.zone = zone
        self._fields = " ".join(fields)
        minute, hour = fields[-5], fields[-4]
        # Debian cron's rule (see the module docstring): fixed times of day are matched
        # against the wall clock, everything else against real time.
        self._wall_clock = not minute.startswith("*") and not hour.startswith("*")
        try:
            CronSim(self._fields, dt.datetime(2000, 1, 1))
        except CronSimError as error:
            raise ValueError(f"bad cron expression {expression!r}: {error}") from None

    def __repr__(self) -> str:
        return f"CronExpression({self.expression!r}, {self.zone.key!r})"

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """The first fire strictly after ``after`` (aware, UTC); ``None`` if none in 50 years."""
        after = _aware(after)
        if self._wall_clock:
            wall = _wall(after, self.zone)
            for candidate in _iterate(self._fields, wall, reverse=False):
                instant = _instant_of_wall(candidate, self.zone)
                if instant > after:  # not yet past: skips the repeated hour's first pass
                    return instant
            return None
        local = after.astimezone(self.zone).replace(microsecond=0)
        for candidate in _iterate(self._fields, local, reverse=False):
            if candidate > after:
                return candidate.astimezone(UTC)
        return None

    def fires_back_from(self, now: dt.datetime) -> Iterator[dt.datetime]:
        """Fire times at or before ``now``, latest first (aware, UTC), each instant once."""
        now = _aware(now)
        # cronsim's reverse iteration yields matches strictly before its start, in whole
        # seconds: start one second past ``now`` truncated, so a fire at ``now`` counts.
        previous: dt.datetime | None = None
        if self._wall_clock:
            start = _latest_wall_shown(now, self.zone).replace(microsecond=0) + _SECOND
            for candidate in _iterate(self._fields, start, reverse=True):
                instant = _instant_of_wall(candidate, self.zone)
                # Skipped wall times all run at the jump: one fire for all of them.
                if instant <= now and instant != previous:
                    previous = instant
                    yield instant
            return
        start = (now.astimezone(self.zone) + _SECOND).replace(microsecond=0)
        for candidate in _iterate(self._fields, start, reverse=True):
            instant = candidate.astimezone(UTC)
            if instant <= now and instant != previous:
                previous = instant
                yield instant


def _aware(moment: dt.datetime) -> dt.datetime:
    if not isinstance(moment, dt.datetime):
        raise TypeError(f"expected an aware datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected an aware datetime (with a time zone), got {moment!r}")
    return moment.astimezone(UTC)


def _iterate(fields: str, start: dt.datetime, *, reverse: bool) -> Iterator[dt.datetime]:
    # cronsim gives up (StopIteration) after 50 years without a match.
    yield from CronSim(fields, start, reverse=reverse)


def _wall(moment: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The naive wall-clock time ``moment`` shows in ``zone``."""
    return moment.astimezone(zone).replace(tzinfo=None, fold=0)


def _latest_wall_shown(moment: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The latest wall-clock time ``zone`` showed up to ``moment``.

    That is ``moment``'s own wall time, except in the second pass of a repeated hour:
    then the clock already showed the rest of that hour once, before it was set back.
    """
    local = moment.astimezone(zone)
    wall = local.replace(tzinfo=None, fold=0)
    if local.fold:
        first_offset = wall.replace(tzinfo=zone, fold=0).utcoffset()
        second_offset = wall.replace(tzinfo=zone, fold=1).utcoffset()
        assert first_offset is not None and second_offset is not None  # a ZoneInfo
        wall += max(first_offset - second_offset, dt.timedelta(0))
    return wall


def _instant_of_wall(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The instant (UTC) a wall-clock fire time runs at, with cron's DST rules.

    A time shown twice runs at its first occurrence (``fold=0``). A time the clock
    skips runs at the instant of the jump, as Debian's cron runs it "immediately".
    """
    first = wall.replace(tzinfo=zone, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant  # the wall time exists
    # In a gap, fold=1 maps with the offset after the jump (an instant before it) and
    # fold=0 with the offset before (an instant after it). The jump is the first
    # instant in between whose wall time is past ``wall``: bisect on whole seconds.
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(instant.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, zone).replace(tzinfo=None) > wall:
            high = middle
        else:
            low = middle
    return dt.datetime.fromtimestamp(high, UTC)
