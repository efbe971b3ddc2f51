"""How the pages show values: times, durations, task data as JSON text.

These return plain text; the templates escape it (autoescape is on for every
template), so a task whose argument is ``<script>`` shows exactly that text.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from omniq.durations import format_duration

MAX_SHOWN_CHARS = 100_000  # of one value on a task page; the rest is cut, and said so
EMPTY = "\u2013"  # an en dash


def utc(moment: dt.datetime | None) -> str:
    """``2026-05-01 14:03:07 UTC`` (the browser's script shows local time)."""
    if moment is None:
        return EMPTY
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(moment: dt.datetime | None) -> str:
    """ISO 8601 in UTC, for ``<time datetime=...>``."""
    return "" if moment is None else moment.astimezone(dt.timezone.utc).isoformat()


def relative(moment: dt.datetime | None, now: dt.datetime) -> str:
    """``3m ago``, ``in 5m``, ``now``."""
    if moment is None:
        return EMPTY
    seconds = (moment - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
    text = format_duration(round(abs(seconds)))
    return f"in {text}" if seconds > 0 else f"{text} ago"


def seconds(value: float | None) -> str:
    """A duration in seconds as ``1m30s`` (``0.25s`` below a second)."""
    if value is None:
        return EMPTY
    if value < 1:
        return f"{value:.2g}s" if value > 0 else "0s"
    return format_duration(round(value))


def pretty(value: Any) -> str:
    """``value`` as indented JSON (what JSON cannot hold as its ``str``), cut when huge."""
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=False)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > MAX_SHOWN_CHARS:
        cut = len(text) - MAX_SHOWN_CHARS
        text = f"{text[:MAX_SHOWN_CHARS]}\n… ({cut} more characters not shown)"
    return text


def short_id(task_id: str) -> str:
    """The last 12 characters of an id (the random part of a time-ordered id)."""
    return task_id if len(task_id) <= 14 else "…" + task_id[-12:]


def json_for_script(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``<``, ``>`` or ``&``)."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
