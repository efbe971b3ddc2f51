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


def normalize_interval(interval: Any) -> dt.timedelta | None:
    """``None`` or a positive ``timedelta``; int/float seconds are converted."""
    if interval is None:
        return None
    if isinstance(interval, dt.timedelta):
        if interval <= dt.timedelta(0):
            raise ValueError(f"interval must be positive, got {interval!r}")
        return interval
    seconds = _number("interval", interval)
    if seconds <= 0:
        raise ValueError(f"interval must be positive, got {interval!r}")
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
