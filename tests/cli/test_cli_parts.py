"""The command's parts, in-process: durations, the progress bar, JSON output."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from decimal import Decimal

import pytest

from omniq.cli.output import relative, shorten, to_json
from omniq.cli.progress import Progress
from omniq.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("7d", 604800),
        ("1h30m", 5400),
        ("2d12h", 216000),
        ("1m30s", 90),
        ("90", 90),
        ("0", 0),
        ("0.5", 0.5),
        ("1.5h", 5400),
        (" 10S ", 10),
    ],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "", "h", "1h1h", "30m1h", "-5", "1e3", "nan", "1 h"])
def test_bad_durations_are_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (45, "45s"), (90, "1m30s"), (5400, "1h30m"), (0.25, "0.25s")]
)
def test_durations_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_relative_times() -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    assert relative(now + dt.timedelta(minutes=5), now) == "in 5m"
    assert relative(now - dt.timedelta(seconds=3), now) == "3s ago"
    assert relative(now, now) == "now"


def test_shorten_keeps_one_line() -> None:
    assert shorten("a\nb", 10) == "a b"
    assert shorten("x" * 20, 10) == "xxxxxxx..."


def test_json_output_holds_the_extended_types() -> None:
    value = {
        "when": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc),
        "every": dt.timedelta(minutes=1),
        "id": uuid.UUID(int=1),
        "price": Decimal("1.5"),
        "raw": b"hi",
        "tags": ("a", "b"),
    }
    assert json.loads(json.dumps(to_json(value))) == {
        "when": "2030-01-01T00:00:00+00:00",
        "every": 60.0,
        "id": "00000000-0000-0000-0000-000000000001",
        "price": "1.5",
        "raw": "aGk=",
        "tags": ["a", "b"],
    }


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_in_place_on_a_terminal() -> None:
    screen = Terminal()
    progress = Progress(4, screen)
    progress.update(0)
    progress.update(0)  # no change, no redraw
    progress.update(2)
    progress.close(4)
    drawn = screen.getvalue()
    assert drawn.count("\r") == 3
    assert "2/4 tasks  50%" in drawn
    assert drawn.endswith("[" + "#" * 30 + "] 4/4 tasks 100%\n")


def test_progress_is_plain_lines_elsewhere() -> None:
    log = io.StringIO()
    progress = Progress(3, log)
    for done in (0, 1, 1, 3):
        progress.update(done)
    progress.close(3)
    assert log.getvalue().splitlines() == [
        "omniq worker: 0/3 tasks done",
        "omniq worker: 1/3 tasks done",
        "omniq worker: 3/3 tasks done",
    ]
