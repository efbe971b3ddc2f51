"""Checks of user input, run at the call that made it (``enqueue``, ``Settings``).

Each function returns the normalized value or raises ``ValueError``/``TypeError``
naming the offending value, so bad input never reaches a worker.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any

_FUNC_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


def check_func_path(func_path: Any) -> str:
    """A dotted ``module.attr`` path; anything else is rejected."""
    if not isinstance(func_path, str):
        raise TypeError(f"func_path must be a str like 'module.function', got {func_path!r}")
    if not _FUNC_PATH.match(func_path):
        raise ValueError(
            f"func_path must be a dotted path like 'my_module.my_function', got {func_path!r}"
        )
    return func_path


def normalize_args(args: Any) -> tuple[Any, ...]:
    """Positional arguments as a tuple; a str or a mapping is a mistake, not a sequence."""
    if args is None:
        return ()
    if isinstance(args, (list, tuple)):
        return tuple(args)
    raise TypeError(f"args must be a list or tuple, got {type(args).__name__}: {args!r}")


def normalize_kwargs(kwargs: Any) -> dict[str, Any]:
    """Keyword arguments as a dict with str keys."""
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"kwargs must be a dict, got {type(kwargs).__name__}: {kwargs!r}")
    for key in kwargs:
        if not isinstance(key, str) or not key.isidentifier():
            raise TypeError(f"kwargs keys must be identifiers, got {key!r}")
    return dict(kwargs)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def normalize_timeout(timeout: Any, name: str = "timeout") -> float | None:
    """``None`` (no timeout) or a positive number of seconds."""
    if timeout is None:
        return None
    seconds = _number(name, timeout)
    if seconds <= 0:
        raise ValueError(f"{name} must be positive, got {timeout!r}")
    return seconds


def positive_number(name: str, value: Any) -> float:
    """A positive, finite number (poll intervals, lease lengths)."""
    seconds = _number(name, value)
    if seconds <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return seconds


def normalize_max_retries(max_retries: Any, name: str = "max_retries") -> int | None:
    """``None`` (the worker's default) or an int >= 0 counting executions."""
    if max_retries is None:
        return None
    if isinstance(max_retries, bool) or not isinstance(max_retries, int):
        raise TypeError(f"{name} must be an int, got {max_retries!r}")
    if max_retries < 0:
        raise ValueError(f"{name} must be >= 0, got {max_retries!r}")
    return max_retries


def positive_int(name: str, value: Any) -> int:
    """An int >= 1 (concurrency, limits)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


def normalize_interval(interval: Any, name: str = "interval") -> dt.timedelta | None:
    """``None`` or a positive ``timedelta``; int/float seconds are converted."""
    if interval is None:
        return None
    if isinstance(interval, dt.timedelta):
        if interval <= dt.timedelta(0):
            raise ValueError(f"{name} must be positive, got {interval!r}")
        return interval
    seconds = _number(name, interval)
    if seconds <= 0:
        raise ValueError(f"{name} must be positive, got {interval!r}")
    return dt.timedelta(seconds=seconds)


def normalize_eta(eta: Any) -> dt.datetime | None:
    """``None`` or an aware UTC datetime; a naive datetime means local time."""
    if eta is None:
        return None
    if not isinstance(eta, dt.datetime):
        raise TypeError(f"eta must be a datetime, got {type(eta).__name__}: {eta!r}")
    moment: dt.datetime = eta
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        moment = moment.astimezone()  # naive: interpreted in the machine's local time zone
    return moment.astimezone(dt.timezone.utc)


# ---------------------------------------------------------------- queues, priorities, keys
# The rules of issue 11 (schema v2): declared tasks and schedules check their options
# at declaration with the same functions enqueue uses.

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MIN_PRIORITY = -100
MAX_PRIORITY = 100
MAX_UNIQUE_KEY_LENGTH = 200


def normalize_queue(queue: Any) -> str:
    """A queue name: ``[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}``."""
    if not isinstance(queue, str):
        raise TypeError(f"queue must be a str like 'emails', got {queue!r}")
    if not _QUEUE_NAME.match(queue):
        raise ValueError(
            "queue must be 1-64 characters of letters, digits and '_.:-', starting with a "
            f"letter or digit, got {queue!r}"
        )
    return queue


def normalize_priority(priority: Any) -> int:
    """An int (not a bool) in -100..100; higher runs first."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(
            f"priority must be an int in {MIN_PRIORITY}..{MAX_PRIORITY}, got {priority!r}"
        )
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority must be in {MIN_PRIORITY}..{MAX_PRIORITY}, got {priority!r}")
    return priority


def normalize_unique_key(unique_key: Any) -> str | None:
    """``None`` or a non-empty str of at most 200 characters."""
    if unique_key is None:
        return None
    if not isinstance(unique_key, str):
        raise TypeError(f"unique_key must be a str or None, got {unique_key!r}")
    if not unique_key or len(unique_key) > MAX_UNIQUE_KEY_LENGTH:
        raise ValueError(
            f"unique_key must be 1-{MAX_UNIQUE_KEY_LENGTH} characters, got {unique_key!r}"
        )
    return unique_key


# ------------------------------------------------------------------ modules and patterns

_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_PATTERN_SEGMENT = re.compile(r"^[\w*?\[\]!-]+$")
_GLOB_CHARS = frozenset("*?[")


def has_glob(segment: str) -> bool:
    """Whether a pattern (segment) uses glob characters (``*``, ``?``, ``[...]``)."""
    return any(char in _GLOB_CHARS for char in segment)


def _names(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(f"{name} must be a list of str like ['app.tasks'], got {value!r}")
    for item in value:
        if not isinstance(item, str):
            raise TypeError(f"{name} entries must be str, got {item!r} in {value!r}")
    return tuple(dict.fromkeys(item.strip() for item in value))  # ordered, no repeats


def normalize_module_names(name: str, value: Any) -> tuple[str, ...]:
    """Dotted module names (``["app.tasks", "billing.jobs"]``)."""
    modules = _names(name, value)
    for module in modules:
        if not _MODULE_NAME.match(module):
            raise ValueError(f"{name} entries must be dotted module names, got {module!r}")
    return modules


def normalize_task_modules(value: Any) -> tuple[str, ...]:
    """Glob patterns over task import paths (``["app.tasks.*"]``).

    The first segment must be literal: ``"*"`` or ``"*.tasks"`` would allow any
    importable function (``os.system`` too) and defeat the allow-list.
    """
    patterns = _names("task_modules", value)
    for pattern in patterns:
        segments = pattern.split(".")
        if not all(segments) or not all(_PATTERN_SEGMENT.match(s) for s in segments):
            raise ValueError(
                "task_modules entries must be dotted paths, optionally with glob characters "
                f"(*, ?, [...]) like 'app.tasks.*', got {pattern!r}"
            )
        if has_glob(segments[0]) or not segments[0].isidentifier():
            raise ValueError(
                "task_modules patterns must start with a package name, not a wildcard "
                f"(a leading wildcard would allow any importable function), got {pattern!r}"
            )
    return patterns
