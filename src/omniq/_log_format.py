"""How omniq's log records look: the DEV two-line format and the PROD JSON line.

Pure functions of a loguru record, used by the sinks :mod:`omniq.logging` adds.
"""

from __future__ import annotations

import json
import traceback
from datetime import timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loguru import Record

MARKER = "_omniq"  # the extra key of every omniq record (omniq.logging.MARKER)

# Shown first, in this order, in both modes; PROD always emits them (null when unset) so
# every line has the same schema.
_CONTEXT_FIELDS = ("task_id", "operation", "worker", "correlation_id")
_PROD_RESERVED = frozenset({"timestamp", "level", "logger", "message", "exception"})
# "event" names the helper that logged; the DEV message already says it in words.
_DEV_HIDDEN = frozenset({MARKER, "event"})

# The formatters leave their output in these top-level record keys and return a template that
# reads them back. Top-level keys, unlike "extra" (loguru's documented spot), are invisible to
# the application's sinks: loguru serializes and shows only its own record fields.
_JSON_KEY = "_omniq_json"
_CONTEXT_KEY = "_omniq_context"

_DEV_LINE = (
    "<green>{time:YYYY-MM-DD HH:mm:ss}</green> | <level>{level: <8}</level> | "
    "<cyan>{name}</cyan>:<cyan>{line}</cyan> | <level>{message}</level>\n"
)
_DEV_FORMAT = _DEV_LINE + "{exception}"
_DEV_FORMAT_WITH_CONTEXT = _DEV_LINE + "<dim>└── {" + _CONTEXT_KEY + "}</dim>\n{exception}"
_PROD_FORMAT = "{" + _JSON_KEY + "}\n"
# One shared encoder: json.dumps() with options builds a new one per call. NaN is refused
# because it is not JSON; unknown objects fall back to str().
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False, allow_nan=False)


def format_dev(record: Record) -> str:
    """The DEV format of ``record``: a colored line, and its context on a second one."""
    extra = record["extra"]
    parts = [
        f"{key}: {_dev_value(extra[key])}"
        for key in _CONTEXT_FIELDS
        if key in extra
        # The correlation id is worth a column only when it says something the task id doesn't.
        and not (key == "correlation_id" and extra[key] == extra.get("task_id"))
    ]
    parts.extend(
        f"{key}: {_dev_value(value)}"
        for key, value in extra.items()
        if key not in _DEV_HIDDEN and key not in _CONTEXT_FIELDS
    )
    if not parts:
        return _DEV_FORMAT
    record[_CONTEXT_KEY] = " | ".join(parts)  # type: ignore[literal-required]
    return _DEV_FORMAT_WITH_CONTEXT


def _dev_value(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def format_prod(record: Record) -> str:
    """The PROD format of ``record``: one JSON object per line."""
    record[_JSON_KEY] = json_line(record)  # type: ignore[literal-required]
    return _PROD_FORMAT


def json_line(record: Record) -> str:
    """One JSON object, no newline: the spec's fields, then any other bound extras."""
    utc = record["time"].astimezone(timezone.utc)
    extra = record["extra"]
    payload: dict[str, Any] = {
        "timestamp": utc.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record["level"].name,
        "logger": record["name"],
        "message": record["message"],
    }
    for key in _CONTEXT_FIELDS:
        payload[key] = extra.get(key)
    for key, value in extra.items():
        if key == MARKER or key in _CONTEXT_FIELDS:
            continue
        # Never let a bound extra overwrite a field the schema promises.
        payload[f"extra_{key}" if key in _PROD_RESERVED else str(key)] = value
    exception = record["exception"]
    if exception is not None:
        payload["exception"] = "".join(
            traceback.format_exception(exception.type, exception.value, exception.traceback)
        ).rstrip("\n")
    try:
        return _ENCODER.encode(payload)
    except (TypeError, ValueError):
        # Odd extras (non-string keys inside a dict, NaN): keep the line, stringify the values.
        return _ENCODER.encode({key: _json_safe(value) for key, value in payload.items()})


def _json_safe(value: object) -> object:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and value == value and value not in (float("inf"), -float("inf")):
        return value
    return str(value)
