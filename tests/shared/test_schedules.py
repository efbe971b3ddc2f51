"""Schedules: validation, next and due fires with a fake clock, daylight saving time, keys.

Every "now" here is passed in: the functions under test never read a clock.
DST days used: Europe/Berlin 2025-03-30 (02:00 CET -> 03:00 CEST) and 2025-10-26
(03:00 CEST -> 02:00 CET); America/New_York 2025-03-09 (02:00 EST -> 03:00 EDT) and
2025-11-02 (02:00 EDT -> 01:00 EST).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from omniq.schedules import (
    EPOCH,
    Schedule,
    declared_schedules,
    due_fires,
    fire_key,
    get_schedule,
    next_fire,
    register_schedule,
    unregister_schedule,
)

UTC = dt.timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# Four days around each DST change of both zones.
DST_WINDOWS = [
    (utc(2025, 3, 7), utc(2025, 3, 11)),
    (utc(2025, 3, 28), utc(2025, 4, 1)),
    (utc(2025, 10, 24), utc(2025, 10, 28)),
    (utc(2025, 10, 31), utc(2025, 11, 4)),
]


def cron(expression: str, tz: str = "UTC", **options: Any) -> Schedule:
    return Schedule(name="job", func_path="app.tasks.job", cron=expression, tz=tz, **options)


def fires_between(schedule: Schedule, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Every fire in (start, end], by walking next_fire."""
    fires: list[dt.datetime] = []
    moment = start
    while True:
        following = next_fire(schedule, moment)
        if following is None or following > end:
            return fires
        fires.append(following)
        moment = following


def local(moments: list[dt.datetime], zone: ZoneInfo) -> list[str]:
    return [moment.astimezone(zone).isoformat() for moment in moments]


# ----------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("options", "exc", "fragment"),
    [
        ({"cron": "61 * * * *"}, ValueError, "'61 * * * *'"),
        ({"cron": "* * * *"}, ValueError, "5 fields"),
        ({"cron": "* * * * * * *"}, ValueError, "got 7"),
        ({"cron": "@fortnightly"}, ValueError, "'@fortnightly'"),
        ({"cron": "0 0 31 2 *"}, ValueError, "'0 0 31 2 *'"),
        ({"cron": 7}, TypeError, "7"),
        ({"cron": "0 7 * * *", "tz": "Europe/Atlantis"}, ValueError, "'Europe/Atlantis'"),
        ({"cron": "0 7 * * *", "tz": "../etc/passwd"}, ValueError, "'../etc/passwd'"),
        ({"cron": "0 7 * * *", "tz": 1}, TypeError, "1"),
        ({"every": 0}, ValueError, "0"),
        ({"every": -3}, ValueError, "-3"),
        ({"every": dt.timedelta(0)}, ValueError, "timedelta(0)"),
        ({"every": 0.5}, ValueError, "at least 1 second"),
        ({"every": "10m"}, TypeError, "'10m'"),
        ({"every": 60, "tz": "Europe/Berlin"}, ValueError, "'Europe/Berlin'"),
        ({}, ValueError, "exactly one of cron= and every="),
        ({"cron": "* * * * *", "every": 60}, ValueError, "exactly one"),
        ({"every": 60, "name": "has space"}, ValueError, "'has space'"),
        ({"every": 60, "name": "x" * 151}, ValueError, "1-150"),
        ({"every": 60, "name": 3}, TypeError, "3"),
        ({"every": 60, "func_path": "nodots"}, ValueError, "'nodots'"),
        ({"every": 60, "args": "abc"}, TypeError, "'abc'"),
        ({"every": 60, "queue": "no way"}, ValueError, "'no way'"),
        ({"every": 60, "priority": 500}, ValueError, "500"),
        ({"every": 60, "max_retries": -1}, ValueError, "-1"),
        ({"every": 60, "timeout": 0}, ValueError, "0"),
        ({"every": 60, "catch_up": 1}, TypeError, "1"),
        ({"every": 60, "max_catch_up": 0}, ValueError, "0"),
    ],
)
def test_bad_schedules_fail_at_declaration_naming_the_value(
    options: dict[str, Any], exc: type[Exception], fragment: str
) -> None:
    values: dict[str, Any] = {"name": "job", "func_path": "app.tasks.job", **options}
    with pytest.raises(exc) as raised:
        Schedule(**values)
    assert fragment in str(raised.value)


def test_a_schedule_is_normalized_at_declaration() -> None:
    schedule = Schedule(
        name="cleanup",
        func_path="app.tasks.cleanup",
        every=600,
        args=[1, 2],
        kwargs={"dry": True},
    )
    assert schedule.every == dt.timedelta(minutes=10)
    assert schedule.args == (1, 2)
    assert schedule.spec == "every 0:10:00"
    spaced = cron("  0  7 * *   mon-fri ", tz="Europe/Berlin")
    assert spaced.cron == "0 7 * * mon-fri"
    assert spaced.spec == "cron 0 7 * * mon-fri (Europe/Berlin)"
    assert cron("0 7 * * *", tz=ZoneInfo("Asia/Tokyo")).tz == "Asia/Tokyo"  # type: ignore[arg-type]
    assert cron("0 7 * * *", tz=UTC).tz == "UTC"  # type: ignore[arg-type]


def test_a_schedule_round_trips_through_its_dict() -> None:
    schedule = Schedule(
        name="report",
        func_path="app.tasks.report",
        cron="0 7 * * mon-fri",
        tz="Europe/Berlin",
        args=[42],
        kwargs={"fmt": "pdf"},
        queue="reports",
        priority=10,
        max_retries=2,
        timeout=60,
        catch_up=True,
        max_catch_up=5,
    )
    assert Schedule.from_dict(schedule.to_dict()) == schedule
    every = Schedule(name="tick", func_path="app.tasks.tick", every=dt.timedelta(seconds=90))
    assert every.to_dict()["every"] == 90.0
    assert Schedule.from_dict(every.to_dict()) == every


# --------------------------------------------------------------------------- cron


def test_cron_fires_at_its_wall_clock_times_in_its_time_zone() -> None:
    schedule = cron("0 7 * * mon-fri", tz="Europe/Berlin")
    friday_noon = dt.datetime(2025, 1, 10, 12, tzinfo=BERLIN)
    assert next_fire(schedule, friday_noon) == utc(2025, 1, 13, 6)  # Monday 07:00 CET
    summer = fires_between(schedule, utc(2025, 7, 4, 12), utc(2025, 7, 8, 12))
    assert local(summer, BERLIN) == ["2025-07-07T07:00:00+02:00", "2025-07-08T07:00:00+02:00"]


def test_next_fire_is_strictly_after_and_returns_utc() -> None:
    schedule = cron("*/15 * * * *")
    fire = next_fire(schedule, utc(2025, 5, 1, 10, 15))
    assert fire == utc(2025, 5, 1, 10, 30)
    assert fire is not None and fire.tzinfo is UTC
    assert next_fire(schedule, utc(2025, 5, 1, 10, 14, 59, 999999)) == utc(2025, 5, 1, 10, 15)


def test_the_optional_seconds_field_comes_first() -> None:
    schedule = cron("*/20 * * * * *")
    assert fires_between(schedule, utc(2025, 5, 1, 10), utc(2025, 5, 1, 10, 1)) == [
        utc(2025, 5, 1, 10, 0, 20),
        utc(2025, 5, 1, 10, 0, 40),
        utc(2025, 5, 1, 10, 1),
    ]


def test_aliases_are_their_five_field_expressions() -> None:
    start, end = utc(2025, 1, 1), utc(2026, 1, 2)
    for alias, expression in [
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ]:
        assert fires_between(cron(alias), start, end) == fires_between(cron(expression), start, end)
    assert len(fires_between(cron("@HOURLY"), utc(2025, 1, 1), utc(2025, 1, 2))) == 24


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_fire(cron("* * * * *"), dt.datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        due_fires(cron("* * * * *"), utc(2025, 1, 1), dt.datetime(2025, 1, 2))
    with pytest.raises(TypeError, match="'yesterday'"):
        next_fire(cron("* * * * *"), "yesterday")  # type: ignore[arg-type]


# -------------------------------------------------------------- daylight saving time


@pytest.mark.parametrize("expression", ["30 2 * * *", "0 30 2 * * *"])
def test_a_0230_job_runs_once_on_the_berlin_spring_forward_day(expression: str) -> None:
    fires = fires_between(cron(expression, "Europe/Berlin"), utc(2025, 3, 28), utc(2025, 4, 1))
    # 02:30 does not exist on 03-30: it runs once, when the clock jumps to 03:00.
    assert local(fires, BERLIN) == [
        "2025-03-28T02:30:00+01:00",
        "2025-03-29T02:30:00+01:00",
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T02:30:00+02:00",
    ]


@pytest.mark.parametrize("expression", ["30 2 * * *", "0 30 2 * * *"])
def test_a_0230_job_runs_once_on_the_berlin_fall_back_day(expression: str) -> None:
    fires = fires_between(cron(expression, "Europe/Berlin"), utc(2025, 10, 25), utc(2025, 10, 28))
    # 02:30 happens twice on 10-26: it runs at the first one only.
    assert local(fires, BERLIN) == [
        "2025-10-25T02:30:00+02:00",
        "2025-10-26T02:30:00+02:00",
        "2025-10-27T02:30:00+01:00",
    ]


def test_a_0130_job_runs_once_on_the_new_york_fall_back_day() -> None:
    fires = fires_between(
        cron("30 1 * * *", "America/New_York"), utc(2025, 11, 1), utc(2025, 11, 4)
    )
    assert local(fires, NEW_YORK) == [
        "2025-11-01T01:30:00-04:00",
        "2025-11-02T01:30:00-04:00",
        "2025-11-03T01:30:00-05:00",
    ]


def test_a_0230_job_runs_once_on_the_new_york_spring_forward_day() -> None:
    fires = fires_between(cron("30 2 * * *", "America/New_York"), utc(2025, 3, 8), utc(2025, 3, 11))
    assert local(fires, NEW_YORK) == [
        "2025-03-08T02:30:00-05:00",
        "2025-03-09T03:00:00-04:00",
        "2025-03-10T02:30:00-04:00",
    ]


def test_jobs_more_frequent_than_hourly_follow_real_time() -> None:
    hourly = cron("0 * * * *", "Europe/Berlin")
    second = dt.timedelta(seconds=1)

    def local_day(day: dt.date) -> list[dt.datetime]:  # the fires from 00:00 to 23:59:59
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=BERLIN)
        following = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=BERLIN)
        return fires_between(hourly, midnight - second, following - second)

    fall_day = local_day(dt.date(2025, 10, 26))
    spring_day = local_day(dt.date(2025, 3, 30))
    assert len(fall_day) == 25 and len(spring_day) == 23  # each real hour once
    assert local(fall_day[2:4], BERLIN) == [
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:00:00+01:00",
    ]
    every_20 = fires_between(
        cron("*/20 * * * *", "America/New_York"), utc(2025, 3, 9, 6), utc(2025, 3, 9, 8)
    )
    assert local(every_20, NEW_YORK)[:4] == [
        "2025-03-09T01:20:00-05:00",
        "2025-03-09T01:40:00-05:00",
        "2025-03-09T03:00:00-04:00",
        "2025-03-09T03:20:00-04:00",
    ]


def test_after_a_time_in_the_repeated_hour_its_first_pass_is_not_fired_again() -> None:
    schedule = cron("50 2 * * *", "Europe/Berlin")
    second_pass = dt.datetime(2025, 10, 26, 2, 40, fold=1, tzinfo=BERLIN)  # 01:40 UTC
    assert second_pass.astimezone(UTC) == utc(2025, 10, 26, 1, 40)
    # 02:50 CEST (00:50 UTC) was that day's fire; the next is the following day's.
    assert local([next_fire(schedule, second_pass)], BERLIN) == ["2025-10-27T02:50:00+01:00"]  # type: ignore[list-item]
    assert due_fires(schedule, utc(2025, 10, 26, 0), second_pass) == [utc(2025, 10, 26, 0, 50)]


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
@pytest.mark.parametrize(
    "expression", ["30 2 * * *", "0 1-3 * * *", "15,45 2 * * 0", "0 2 * 3,10,11 sun"]
)
def test_five_field_fixed_times_match_cronsims_own_dst_handling(expression: str, zone: str) -> None:
    schedule = cron(expression, zone)
    for start, end in [(utc(2025, 3, 1), utc(2025, 4, 15)), (utc(2025, 10, 1), utc(2025, 11, 15))]:
        reference = []
        for fire in CronSim(expression, start.astimezone(ZoneInfo(zone))):
            if fire.astimezone(UTC) > end:
                break
            reference.append(fire.astimezone(UTC))
        assert fires_between(schedule, start, end) == reference


# ------------------------------------------------------------------------ due fires


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "UTC"])
@pytest.mark.parametrize(
    "expression",
    [
        "30 2 * * *",
        "0 30 2 * * *",
        "*/20 * * * *",
        "0 * * * *",
        "* 2 * * *",
        "0 1-3 * * *",
        "30 1 * * *",
    ],
)
def test_due_fires_with_catch_up_are_the_fires_walked_forward(expression: str, zone: str) -> None:
    schedule = cron(expression, zone, catch_up=True, max_catch_up=10_000)
    for start, end in DST_WINDOWS:
        assert due_fires(schedule, start, end) == fires_between(schedule, start, end)


def test_without_catch_up_only_the_latest_missed_fire_is_due() -> None:
    schedule = cron("0 * * * *")
    assert due_fires(schedule, utc(2025, 5, 1, 6, 0), utc(2025, 5, 1, 9, 30)) == [
        utc(2025, 5, 1, 9)
    ]


def test_with_catch_up_each_missed_fire_is_due_the_latest_up_to_the_bound() -> None:
    schedule = cron("0 * * * *", catch_up=True, max_catch_up=2)
    assert due_fires(schedule, utc(2025, 5, 1, 6, 0), utc(2025, 5, 1, 9, 30)) == [
        utc(2025, 5, 1, 8),
        utc(2025, 5, 1, 9),
    ]
    unbounded = cron("0 * * * *", catch_up=True)
    assert due_fires(unbounded, utc(2025, 5, 1, 6, 0), utc(2025, 5, 1, 9, 30)) == [
        utc(2025, 5, 1, 7),
        utc(2025, 5, 1, 8),
        utc(2025, 5, 1, 9),
    ]


def test_due_fires_include_now_and_exclude_the_last_fire() -> None:
    schedule = cron("0 * * * *", catch_up=True)
    assert due_fires(schedule, utc(2025, 5, 1, 7), utc(2025, 5, 1, 8)) == [utc(2025, 5, 1, 8)]
    assert due_fires(schedule, utc(2025, 5, 1, 8), utc(2025, 5, 1, 8, 59, 59)) == []
    assert due_fires(schedule, utc(2025, 5, 1, 8), utc(2025, 5, 1, 7)) == []


def test_a_missed_spring_forward_fire_is_due_once() -> None:
    schedule = cron("0,30 2 * * *", "Europe/Berlin", catch_up=True)
    # 02:00 and 02:30 do not exist on 03-30: both run at the jump, as one fire.
    assert due_fires(schedule, utc(2025, 3, 29, 12), utc(2025, 3, 30, 12)) == [utc(2025, 3, 30, 1)]


# ---------------------------------------------------------------------------- every


def test_every_fires_on_multiples_of_the_interval_since_the_epoch() -> None:
    schedule = Schedule(name="tick", func_path="app.tasks.tick", every=dt.timedelta(minutes=10))
    assert next_fire(schedule, utc(2025, 5, 1, 10, 3, 7)) == utc(2025, 5, 1, 10, 10)
    assert next_fire(schedule, utc(2025, 5, 1, 10, 10)) == utc(2025, 5, 1, 10, 20)
    odd = Schedule(name="odd", func_path="app.tasks.tick", every=dt.timedelta(seconds=7))
    fire = next_fire(odd, utc(2025, 5, 1))
    assert fire is not None and (fire - EPOCH) % dt.timedelta(seconds=7) == dt.timedelta(0)
    assert dt.timedelta(0) < fire - utc(2025, 5, 1) <= dt.timedelta(seconds=7)


def test_every_due_fires_follow_catch_up_and_its_bound() -> None:
    latest_only = Schedule(name="tick", func_path="app.tasks.tick", every=60)
    assert due_fires(latest_only, utc(2025, 5, 1, 10), utc(2025, 5, 1, 10, 5, 30)) == [
        utc(2025, 5, 1, 10, 5)
    ]
    each = Schedule(
        name="tick", func_path="app.tasks.tick", every=60, catch_up=True, max_catch_up=3
    )
    assert due_fires(each, utc(2025, 5, 1, 10), utc(2025, 5, 1, 10, 5, 30)) == [
        utc(2025, 5, 1, 10, 3),
        utc(2025, 5, 1, 10, 4),
        utc(2025, 5, 1, 10, 5),
    ]
    assert due_fires(each, utc(2025, 5, 1, 10, 5), utc(2025, 5, 1, 10, 5, 59)) == []


def test_every_fire_is_the_same_whoever_computes_it() -> None:
    schedule = Schedule(name="tick", func_path="app.tasks.tick", every=dt.timedelta(seconds=1))
    # Two workers that last saw different moments agree on the fire of this second.
    first = due_fires(schedule, utc(2025, 5, 1, 10, 0, 0, 300), utc(2025, 5, 1, 10, 0, 1, 900))
    second = due_fires(schedule, utc(2025, 5, 1, 10, 0, 0, 800), utc(2025, 5, 1, 10, 0, 1, 100))
    assert first == second == [utc(2025, 5, 1, 10, 0, 1)]


# ------------------------------------------------------------------- keys and items


def test_the_fire_key_names_the_schedule_and_the_utc_time() -> None:
    berlin_seven = dt.datetime(2025, 1, 13, 7, tzinfo=BERLIN)
    assert fire_key("report", berlin_seven) == "schedule:report:2025-01-13T06:00:00+00:00"
    assert fire_key("report", utc(2025, 1, 13, 6)) == fire_key("report", berlin_seven)
    longest = fire_key("x" * 150, utc(2025, 1, 13, 6, 0, 0, 123456))
    assert len(longest) <= 200  # fits a unique key
    with pytest.raises(ValueError, match="aware"):
        fire_key("report", dt.datetime(2025, 1, 13))


def test_the_enqueue_item_of_a_fire_carries_the_task_and_its_options() -> None:
    schedule = Schedule(
        name="report",
        func_path="app.tasks.report",
        cron="0 7 * * *",
        args=[1],
        kwargs={"x": 2},
        priority=4,
    )
    fire = utc(2025, 1, 13, 7)
    assert schedule.enqueue_item(fire) == {
        "func_path": "app.tasks.report",
        "args": [1],
        "kwargs": {"x": 2},
        "eta": fire,
        "unique_key": "schedule:report:2025-01-13T07:00:00+00:00",
        "priority": 4,
    }


# ------------------------------------------------------------------------ registry


def test_registering_a_name_again_replaces_it(clean_registry: None) -> None:
    first = register_schedule(Schedule(name="nightly", func_path="app.tasks.a", cron="0 3 * * *"))
    assert get_schedule("nightly") is first
    second = register_schedule(Schedule(name="nightly", func_path="app.tasks.a", cron="0 4 * * *"))
    assert get_schedule("nightly") is second
    assert [s.name for s in declared_schedules()].count("nightly") == 1
    assert unregister_schedule("nightly") and not unregister_schedule("nightly")
    assert get_schedule("nightly") is None
    with pytest.raises(TypeError):
        register_schedule("nightly")  # type: ignore[arg-type]
