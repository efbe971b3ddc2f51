"""Checks of user input, run at the call that made it (``enqueue``, ``Settings``...).

Each function returns the normalized value or raises ``ValueError``/``TypeError``
naming the offending value, so bad input never reaches a store or a worker. The
bounds come from :mod:`omniq.limits`, one rule for every backend.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any

from omniq import limits

_FUNC_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def short_repr(value: Any, width: int = 80) -> str:
    """``repr(value)`` cut to ``width`` characters (messages stay one readable line)."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def check_func_path(func_path: Any) -> str:
    """A dotted ``module.attr`` path; anything else (a trailing newline too) is rejected."""
    if not isinstance(func_path, str):
        raise TypeError(f"func_path must be a str like 'module.function', got {func_path!r}")
    if not _FUNC_PATH.fullmatch(func_path):
        raise ValueError(
            f"func_path must be a dotted path like 'my_module.my_function', "
            f"got {short_repr(func_path)}"
        )
    return func_path


_TEXT_HINT = "decode bytes with their real encoding first, or pass them as bytes"


def check_text(text: str, what: str, hint: str = _TEXT_HINT) -> str:
    """``text`` if UTF-8 can encode it; a lone surrogate is a ``ValueError`` naming ``what``.

    SQLite and PostgreSQL store UTF-8, so text they could not take is refused on
    every backend alike. ``isascii`` is O(1), so most text is checked for free.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = text[error.start : error.end]
        raise ValueError(
            f"{what} holds a lone surrogate {bad!r} at character {error.start}: not valid "
            f"Unicode text, so no store can keep it ({hint})"
        ) from None
    return text


def check_task_id(task_id: Any) -> str:
    """A task id as the stores keep them: a non-empty str of valid text without NUL.

    Checked before any storage call, so a malformed id is a clear error instead of
    a driver's; a well-formed id that names no task is simply not found.
    """
    if not isinstance(task_id, str):
        raise TypeError(
            f"a task id must be a str, got {type(task_id).__name__}: {short_repr(task_id)}"
        )
    if not task_id:
        raise ValueError("a task id must not be empty")
    if len(task_id) > limits.MAX_TASK_ID_LENGTH:
        raise ValueError(
            f"task id {short_repr(task_id, 40)} is {len(task_id)} characters long, over "
            f"the limit of {limits.MAX_TASK_ID_LENGTH}"
        )
    if "\x00" in task_id:
        raise ValueError(f"task id {short_repr(task_id)} holds a NUL character")
    return check_text(
        task_id, f"task id {short_repr(task_id)}", "task ids are the text enqueue returned"
    )


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
        raise TypeError(f"{name} must be a number of seconds, got {short_repr(value)}")
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond any float
        raise ValueError(f"{name} is too large, got {short_repr(value)}") from None
    if not math.isfinite(seconds):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return seconds


def _describe_seconds(seconds: float) -> str:
    if seconds == limits.MAX_DURATION_SECONDS:
        return f"{seconds:.0f} seconds (100 years)"
    if seconds >= 86_400:
        return f"{seconds:.0f} seconds ({seconds / 86_400:.1f} days)"
    return f"{seconds:g} seconds"


def seconds_between(
    name: str, value: Any, low: float, high: float, *, open_low: bool, shown: Any = None
) -> float:
    """A number of seconds in ``(low, high]`` (``open_low``) or ``[low, high]``.

    The error names ``shown`` (what the caller was given) if set, else ``value``.
    """
    seconds = _number(name, value)
    if (seconds <= low if open_low else seconds < low) or seconds > high:
        above = "above" if open_low else "at least"
        raise ValueError(
            f"{name} must be {above} {_describe_seconds(low)} and at most "
            f"{_describe_seconds(high)}, got {short_repr(value if shown is None else shown)}"
        )
    return seconds


def normalize_timeout(timeout: Any, name: str = "timeout") -> float | None:
    """``None`` (no timeout) or a positive number of seconds a worker can wait for."""
    if timeout is None:
        return None
    return seconds_between(name, timeout, 0.0, limits.MAX_WAIT_SECONDS, open_low=True)


def positive_number(name: str, value: Any) -> float:
    """A positive number of seconds a worker can wait for (poll intervals, leases)."""
    return seconds_between(name, value, 0.0, limits.MAX_WAIT_SECONDS, open_low=True)


def non_negative_number(name: str, value: Any) -> float:
    """Zero or a positive number of seconds a worker can wait for (a shutdown grace)."""
    return seconds_between(name, value, 0.0, limits.MAX_WAIT_SECONDS, open_low=False)


def normalize_age(older_than: Any) -> float:
    """``purge``'s ``older_than``: a ``timedelta`` or seconds, from 0 to 100 years."""
    value = older_than.total_seconds() if isinstance(older_than, dt.timedelta) else older_than
    try:
        return seconds_between(
            "older_than", value, 0.0, limits.MAX_DURATION_SECONDS, open_low=False, shown=older_than
        )
    except TypeError:
        raise TypeError(
            f"older_than must be a timedelta or seconds >= 0, got {short_repr(older_than)}"
        ) from None


def normalize_retention(retention: Any) -> float | None:
    """How long finished tasks are kept: ``None`` (forever), or a ``timedelta`` or seconds
    above 0 and at most 100 years."""
    if retention is None:
        return None
    value = retention.total_seconds() if isinstance(retention, dt.timedelta) else retention
    return seconds_between(
        "retention", value, 0.0, limits.MAX_DURATION_SECONDS, open_low=True, shown=retention
    )


def _bounded_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {short_repr(value)}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {short_repr(value)}")
    if value > high:
        raise ValueError(f"{name} must be at most {high}, got {short_repr(value)}")
    return value


def normalize_max_retries(max_retries: Any, name: str = "max_retries") -> int | None:
    """``None`` (the worker's default) or an int from 0 to 2**31-1 counting executions."""
    if max_retries is None:
        return None
    return _bounded_int(name, max_retries, 0, limits.MAX_RETRIES)


def positive_int(name: str, value: Any) -> int:
    """An int from 1 to 2**31-1 (concurrency, limits)."""
    return _bounded_int(name, value, 1, limits.MAX_COUNT)


EXECUTORS = ("inline", "process")
MAX_MIB = 2**40  # a mebibyte count beyond any machine's memory (an exbibyte)


def normalize_executor(executor: Any) -> str:
    """A worker pool's executor: ``"inline"`` or ``"process"``."""
    if not isinstance(executor, str) or executor.lower() not in EXECUTORS:
        raise ValueError(
            f"unknown executor {short_repr(executor)}; choose one of {', '.join(EXECUTORS)}"
        )
    return executor.lower()


def positive_mib(name: str, value: Any) -> float:
    """An amount of memory in MiB: a finite number above 0 (``max_memory_per_child``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of MiB, got {short_repr(value)}")
    if not 0 < value <= MAX_MIB:  # NaN fails this too
        raise ValueError(f"{name} must be above 0 and at most {MAX_MIB} MiB, got {value!r}")
    return float(value)


def non_negative_int(name: str, value: Any) -> int:
    """An int from 0 to 2**31-1 (offsets)."""
    return _bounded_int(name, value, 0, limits.MAX_COUNT)


def normalize_interval(interval: Any, name: str = "interval") -> dt.timedelta | None:
    """``None`` or a ``timedelta`` from 1 ms to 100 years; int/float seconds are converted."""
    if interval is None:
        return None
    if isinstance(interval, dt.timedelta):
        seconds_between(
            name,
            interval.total_seconds(),
            limits.MIN_INTERVAL_SECONDS,
            limits.MAX_DURATION_SECONDS,
            open_low=False,
            shown=interval,
        )
        return interval
    seconds = seconds_between(
        name,
        interval,
        limits.MIN_INTERVAL_SECONDS,
        limits.MAX_DURATION_SECONDS,
        open_low=False,
    )
    return dt.timedelta(seconds=seconds)


def normalize_eta(eta: Any) -> dt.datetime | None:
    """``None`` or an aware UTC datetime from 1970 to 9000; a naive datetime means local time."""
    if eta is None:
        return None
    if not isinstance(eta, dt.datetime):
        raise TypeError(f"eta must be a datetime, got {type(eta).__name__}: {eta!r}")
    moment: dt.datetime = eta
    try:
        if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
            moment = moment.astimezone()  # naive: interpreted in the machine's local time zone
        moment = moment.astimezone(dt.timezone.utc)
    except (OverflowError, OSError, ValueError):  # beyond datetime's range once in UTC
        moment = limits.MAX_ETA + dt.timedelta(days=1)  # reported below
    if not limits.MIN_ETA <= moment <= limits.MAX_ETA:
        raise ValueError(
            f"eta must be between {limits.MIN_ETA:%Y-%m-%d} and {limits.MAX_ETA:%Y-%m-%d} "
            f"(UTC), got {eta!r}"
        )
    return moment


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
    if not _QUEUE_NAME.fullmatch(queue):
        raise ValueError(
            "queue must be 1-64 characters of letters, digits and '_.:-', starting with a "
            f"letter or digit, got {queue!r}"
        )
    return queue


def normalize_queues(queues: Any) -> tuple[str, ...] | None:
    """``None`` (every queue) or a non-empty list of queue names, without repeats."""
    if queues is None:
        return None
    if isinstance(queues, str) or not isinstance(queues, (list, tuple, set, frozenset)):
        raise TypeError(f"queues must be a list of queue names like ['emails'], got {queues!r}")
    names = tuple(dict.fromkeys(normalize_queue(queue) for queue in queues))
    if not names:
        raise ValueError("queues must name at least one queue (or be None for every queue)")
    return names


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


MAX_SEARCH_LENGTH = 255


def normalize_search(name: str, text: Any) -> str | None:
    """A piece of text to look for (in a function path, an id); empty or ``None``: none."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {short_repr(text)}")
    if len(text) > MAX_SEARCH_LENGTH or "\x00" in text:
        raise ValueError(
            f"{name} must be at most {MAX_SEARCH_LENGTH} characters without NUL, "
            f"got {short_repr(text)}"
        )
    return check_text(text, name) or None
