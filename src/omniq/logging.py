"""omniq's logging, built on loguru.

Core API: :func:`configure`, :func:`get_logger`, :func:`task_context`, :func:`bind_task`
(plus :func:`current_correlation_id` and :func:`reset`). Event helpers: ``log_task_*``,
``log_worker_*``, :func:`log_storage_error`, :func:`log_serialization_error`.

Etiquette: importing omniq adds no sink and removes none. omniq's own records stay silent
until :func:`configure` is called, or until the first omniq log call finds
``OMNIQ_LOG_LEVEL``, ``OMNIQ_LOG_MODE`` or ``OMNIQ_LOG_FILE`` set, which configures from
the environment once. :func:`configure` only ever replaces the sinks omniq itself added.

This module must not import other omniq modules (but for :mod:`omniq._logfile`, a leaf
that imports none): everything else imports it. omniq's own
modules log through :func:`get_logger` or the helpers, never the bare loguru logger, so
that each of their records carries the ``_omniq`` marker applications can filter on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import time as daytime
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

from loguru import logger as _root_logger

from omniq._log_format import format_dev, format_prod
from omniq._logfile import make_private_dirs, private_compression, private_opener, touch_private

if TYPE_CHECKING:
    from loguru import Logger, Message, Record, Writable

__all__ = [
    "ALLOWED_LEVELS",
    "ALLOWED_MODES",
    "ENV_FILE",
    "ENV_LEVEL",
    "ENV_MODE",
    "ENV_RETENTION",
    "ENV_ROTATION",
    "MARKER",
    "bind_task",
    "configure",
    "current_correlation_id",
    "get_logger",
    "log_hook_error",
    "log_permissions_tightened",
    "log_schedule_fired",
    "log_serialization_error",
    "log_storage_error",
    "log_task_completed",
    "log_task_deduplicated",
    "log_task_enqueued",
    "log_task_failed",
    "log_task_started",
    "log_tasks_pruned",
    "log_worker_started",
    "log_worker_stopped",
    "reset",
    "task_context",
]

LOGGER_NAME = "omniq"

ENV_LEVEL = "OMNIQ_LOG_LEVEL"
ENV_MODE = "OMNIQ_LOG_MODE"
ENV_FILE = "OMNIQ_LOG_FILE"
ENV_ROTATION = "OMNIQ_LOG_ROTATION"
ENV_RETENTION = "OMNIQ_LOG_RETENTION"
# Rotation and retention only shape a file sink, so on their own they don't switch logging on.
_ENV_TRIGGERS = (ENV_LEVEL, ENV_MODE, ENV_FILE)

ALLOWED_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
ALLOWED_MODES = ("DEV", "PROD")
DEFAULT_LEVEL = "INFO"
DEFAULT_MODE = "DEV"
DEFAULT_ROTATION = "100 MB"
DEFAULT_RETENTION = "30 days"

# Every record omniq emits, and every record logged through a logger omniq hands out, carries
# this extra key. omniq's sinks select on it, and applications can filter their own sinks by it.
MARKER = "_omniq"

RotationValue: TypeAlias = "str | int | daytime | timedelta"
RetentionValue: TypeAlias = "str | int | timedelta"
SinkValue: TypeAlias = "TextIO | Writable | Callable[[Message], None]"

# Ambient correlation id of the innermost task_context scope. loguru keeps its own contextvar
# for contextualize(), but that one is private, so the queue reads ours.
_correlation: ContextVar[str | None] = ContextVar("omniq_correlation_id", default=None)

_lock = threading.RLock()
_sink_ids: list[int] = []
# loguru's numbers for the standard levels, for the hot-path test below.
_DEBUG, _INFO, _WARNING, _ERROR = 10, 20, 30, 40
_OFF = 1_000  # above every level: nothing passes
# The lowest level omniq emits, or _OFF until configure() runs (explicitly or from the
# environment). omniq's own records (events, task_context's exit records) below it are never
# built, so they cost nothing and reach no sink, the application's included. Read without the
# lock on the hot path: an int load is atomic.
_threshold = _OFF
_env_checked = False  # the one-time look at OMNIQ_LOG_* has happened
# The configuration in force (None while omniq's records are off), and a number that changes
# with every configure() and reset(), so a process pool can tell when its children must be
# told again (see export_config).
_applied: _Settings | None = None
_generation = 0

# Libraries built on loguru disable their namespace and let the application opt in.
_root_logger.disable(LOGGER_NAME)

_marked: Logger = _root_logger.bind(**{MARKER: True})
# depth=1 so a record's name/function/line point at whoever called the helper
# (say omniq._async.worker), not at this module.
_events: Logger = _root_logger.opt(depth=1).bind(**{MARKER: True})


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class _Settings:
    level: str
    mode: str
    file: Path | None
    rotation: RotationValue
    retention: RetentionValue
    compression: str | None
    sink: SinkValue | None
    colorize: bool | None
    sources: Mapping[str, str]  # option name -> env var it came from, for error messages


def configure(
    level: str | None = None,
    *,
    mode: str | None = None,
    file: str | os.PathLike[str] | None = None,
    rotation: RotationValue | None = None,
    retention: RetentionValue | None = None,
    compression: str | None = None,
    sink: SinkValue | None = None,
    colorize: bool | None = None,
) -> None:
    """Enable omniq's records and (re)install omniq's sink(s).

    Each argument left as ``None`` falls back to its ``OMNIQ_LOG_*`` environment variable,
    then to the default (INFO, DEV, no file, "100 MB", "30 days"). Records go to ``file``
    when one is set, otherwise to ``sink`` (default: ``sys.stderr``); passing both writes
    to both. Sinks added by an earlier ``configure()`` are replaced; sinks the application
    added are never touched.

    Raises ``ValueError`` for an unknown level or mode or an unparsable rotation, retention
    or compression, and ``OSError`` when the log file cannot be opened for appending. On
    error the previous configuration stays in place.
    """
    settings = _resolve(
        level=level,
        mode=mode,
        file=file,
        rotation=rotation,
        retention=retention,
        compression=compression,
        sink=sink,
        colorize=colorize,
    )
    with _lock:
        _apply(settings)


def reset() -> None:
    """Undo :func:`configure`: remove omniq's sinks and silence omniq's records again.

    The environment is looked at afresh on the next omniq log call. Meant for tests and for
    applications that reconfigure logging wholesale; it flushes file sinks.
    """
    global _threshold, _env_checked, _applied, _generation
    with _lock:
        _remove_own_sinks()
        _root_logger.disable(LOGGER_NAME)
        _threshold = _OFF
        _env_checked = False
        _applied = None
        _generation += 1


def _resolve(
    *,
    level: str | None,
    mode: str | None,
    file: str | os.PathLike[str] | None,
    rotation: RotationValue | None,
    retention: RetentionValue | None,
    compression: str | None,
    sink: SinkValue | None,
    colorize: bool | None,
) -> _Settings:
    """Merge arguments over the environment over defaults, and validate the result."""
    sources: dict[str, str] = {}

    def from_env(name: str, explicit: Any, env_var: str) -> Any:
        if explicit is not None:
            return explicit
        value = os.environ.get(env_var, "").strip()
        if value:
            sources[name] = env_var
            return value
        return None

    raw_level = from_env("level", level, ENV_LEVEL) or DEFAULT_LEVEL
    raw_mode = from_env("mode", mode, ENV_MODE) or DEFAULT_MODE
    raw_file = from_env("file", file, ENV_FILE)
    raw_rotation = from_env("rotation", rotation, ENV_ROTATION) or DEFAULT_ROTATION
    raw_retention = from_env("retention", retention, ENV_RETENTION) or DEFAULT_RETENTION

    checked_level = _check_choice("level", raw_level, ALLOWED_LEVELS, sources)
    checked_mode = _check_choice("mode", raw_mode, ALLOWED_MODES, sources)
    # A bare number from the environment means bytes (rotation) or a file count (retention),
    # as the same int would when passed to configure().
    if isinstance(raw_rotation, str) and raw_rotation.isdigit():
        raw_rotation = int(raw_rotation)
    if isinstance(raw_retention, str) and raw_retention.isdigit():
        raw_retention = int(raw_retention)
    # Checked even without a file, so a typo surfaces now rather than when a file is added.
    _check_file_option("rotation", raw_rotation, sources)
    _check_file_option("retention", raw_retention, sources)
    if compression is not None:
        _check_file_option("compression", compression, sources)

    return _Settings(
        level=checked_level,
        mode=checked_mode,
        file=Path(raw_file).expanduser().absolute() if raw_file is not None else None,
        rotation=raw_rotation,
        retention=raw_retention,
        compression=compression,
        sink=sink,
        colorize=colorize,
        sources=sources,
    )


def _origin(name: str, sources: Mapping[str, str]) -> str:
    env_var = sources.get(name)
    return f" (from {env_var})" if env_var else ""


def _check_choice(
    name: str, value: object, allowed: tuple[str, ...], sources: Mapping[str, str]
) -> str:
    normalized = value.strip().upper() if isinstance(value, str) else ""
    if normalized not in allowed:
        raise ValueError(
            f"Unknown omniq log {name} {value!r}{_origin(name, sources)}; "
            f"expected one of: {', '.join(allowed)}"
        )
    return normalized


_FILE_OPTION_HINTS = {
    "rotation": "a size ('100 MB'), an interval ('1 week', '12 hours'), a time of day "
    "('00:00', 'sunday at 12:00'), a frequency ('daily'), or an int number of bytes",
    "retention": "a duration ('30 days', '1 week') or an int number of files to keep",
    "compression": "an archive format: 'gz', 'bz2', 'xz', 'lzma', 'tar', 'tar.gz', "
    "'tar.bz2', 'tar.xz' or 'zip'",
}


def _check_file_option(name: str, value: object, sources: Mapping[str, str]) -> None:
    """Let loguru parse one file-sink option now, turning its error into a clear ValueError."""
    # loguru has no public parser for these; a file sink built with delay=True parses them
    # without touching the file system, and a filter that rejects everything keeps records
    # out of it. The empty temporary directory keeps retention's clean-up away from real files.
    with tempfile.TemporaryDirectory(prefix="omniq-log-check-") as directory:
        options: dict[str, Any] = {name: value}
        try:
            handler_id = _root_logger.add(
                os.path.join(directory, "check.log"),
                filter=lambda _record: False,
                delay=True,
                **options,
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"Invalid omniq log {name} {value!r}{_origin(name, sources)}: {exc}; "
                f"expected {_FILE_OPTION_HINTS[name]}"
            ) from None
        _root_logger.remove(handler_id)


def _check_writable(path: Path, sources: Mapping[str, str]) -> None:
    """Fail now, in the caller, if the log file can't be written, not later in a worker."""
    try:
        # A directory made here is 0700 and the file 0600, whatever the umask: log
        # lines hold task ids, function paths and errors.
        make_private_dirs(path.parent)
        if "{" in path.name:
            # loguru fills placeholders such as {time} at open time; check the directory only.
            if not os.access(path.parent, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "Permission denied", str(path.parent))
        else:
            touch_private(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.filename and exc.filename != str(path):
            reason = f"{reason}: {exc.filename!r}"
        raise OSError(
            exc.errno,
            f"omniq cannot write its log file {str(path)!r}{_origin('file', sources)}: {reason}",
        ) from exc


def _apply(settings: _Settings, *, follower: bool = False) -> None:
    """Install the sinks for ``settings``, then drop the ones installed before.

    A ``follower`` (a child process applying its parent's settings) appends to the file
    without rotating it: only the parent rotates, and the child reopens the file when it
    was rotated away (loguru's ``watch``). It writes directly, without loguru's queue, so a
    child that crashes has written every record logged before the crash.
    """
    global _threshold, _env_checked, _applied, _generation
    if follower:
        # Passed on to open(): each file the sink creates is 0600.
        file_options: dict[str, Any] = {"watch": True, "enqueue": False, "opener": private_opener}
    else:
        file_options = {
            # Records from every thread, and from forked children that inherit this
            # sink, go through one queue to one writer, a whole line at a time.
            "enqueue": True,
            "rotation": settings.rotation,
            "retention": settings.retention,
            "compression": private_compression(settings.compression),
            # Passed on to open(): each file the sink creates (rotation too) is 0600.
            "opener": private_opener,
        }
    if settings.file is not None:
        _check_writable(settings.file, settings.sources)

    formatter = format_prod if settings.mode == "PROD" else format_dev
    added: list[int] = []
    try:
        if settings.file is not None:
            added.append(
                _root_logger.add(
                    str(settings.file),
                    level=settings.level,
                    format=formatter,
                    filter=_is_omniq_record,
                    colorize=False,
                    backtrace=False,
                    diagnose=False,
                    **file_options,
                )
            )
        if settings.sink is not None or settings.file is None:
            added.append(
                _root_logger.add(
                    # sys.stderr is looked up now, so a stream redirected since import counts.
                    settings.sink if settings.sink is not None else sys.stderr,
                    level=settings.level,
                    format=formatter,
                    filter=_is_omniq_record,
                    colorize=settings.colorize if settings.mode == "DEV" else False,
                    # Values of local variables in tracebacks can hold secrets; keep them out.
                    backtrace=False,
                    diagnose=False,
                )
            )
    except Exception:
        for handler_id in added:
            _root_logger.remove(handler_id)
        raise

    # New sinks go in before old ones leave, so a record logged meanwhile is not lost.
    _remove_own_sinks()
    _sink_ids.extend(added)
    _root_logger.enable(LOGGER_NAME)
    _threshold = _root_logger.level(settings.level).no
    _env_checked = True
    _applied = settings
    _generation += 1


def _remove_own_sinks() -> None:
    while _sink_ids:
        handler_id = _sink_ids.pop()
        # The application may have removed it already, e.g. with a bare logger.remove().
        with contextlib.suppress(ValueError):
            _root_logger.remove(handler_id)


def _configure_from_env() -> int:
    """On the first omniq log call, configure from OMNIQ_LOG_* if any is set.

    Returns the resulting threshold, so a helper can decide on its record in one expression.
    """
    global _env_checked
    with _lock:
        if _env_checked:
            return _threshold
        _env_checked = True
        if not any(os.environ.get(name, "").strip() for name in _ENV_TRIGGERS):
            return _threshold
        # This runs inside some log call, perhaps in a worker: a bad setting must not raise
        # there. Warn and keep going as best we can; configure() raises for the same input.
        try:
            settings = _resolve(
                level=None,
                mode=None,
                file=None,
                rotation=None,
                retention=None,
                compression=None,
                sink=None,
                colorize=None,
            )
        except ValueError as exc:
            warnings.warn(f"omniq logging stays off: {exc}", RuntimeWarning, stacklevel=2)
            return _threshold
        try:
            _apply(settings)
        except OSError as exc:
            warnings.warn(f"{exc}; omniq logs to stderr instead", RuntimeWarning, stacklevel=2)
            _apply(replace(settings, file=None))
        return _threshold


# --------------------------------------------------------------------------- child processes


def export_config() -> tuple[int, dict[str, Any] | None]:
    """The configuration in force as JSON-ready data for a child process, and its generation.

    ``None`` means omniq's records are off: not configured (yet), so a child looks at the
    ``OMNIQ_LOG_*`` environment it inherits, as this process would on its first log call.
    The generation changes with every :func:`configure` and :func:`reset`, so a caller can
    tell when to send the configuration again. A child can share only the standard streams:
    for any other ``sink`` the data says ``"stream": "stderr"`` and ``"substituted": True``.
    """
    with _lock:
        settings, generation = _applied, _generation
    if settings is None:
        return generation, None
    stream, substituted = _stream_of(settings)
    return generation, {
        "level": settings.level,
        "mode": settings.mode,
        "file": str(settings.file) if settings.file is not None else None,
        "stream": stream,
        "substituted": substituted,
        "colorize": settings.colorize,
    }


def apply_config(config: Mapping[str, Any] | None) -> None:
    """In a child process, apply what :func:`export_config` gave the parent.

    Same level, mode and file, and the inherited stderr/stdout for a stream sink, so the
    child's records look like the parent's and land in the same places. The file is
    appended to and never rotated here (see ``_apply``). ``None`` switches omniq's records
    off, as :func:`reset` does. ``ValueError`` for data that is not such a configuration.
    """
    if config is None:
        reset()
        return
    stream = config.get("stream")
    if stream not in (None, "stderr", "stdout"):
        raise ValueError(f"unknown log stream {stream!r} (expected 'stderr', 'stdout' or None)")
    file = config.get("file")
    colorize = config.get("colorize")
    settings = _Settings(
        level=_check_choice("level", config.get("level"), ALLOWED_LEVELS, {}),
        mode=_check_choice("mode", config.get("mode"), ALLOWED_MODES, {}),
        file=Path(file) if isinstance(file, str) else None,
        rotation=DEFAULT_ROTATION,  # unused by a follower
        retention=DEFAULT_RETENTION,
        compression=None,
        sink=None if stream is None else (sys.stdout if stream == "stdout" else sys.stderr),
        colorize=colorize if isinstance(colorize, bool) else None,
        sources={},
    )
    if settings.file is None and settings.sink is None:
        settings = replace(settings, sink=sys.stderr)
    with _lock:
        _apply(settings, follower=True)


def prepare_child_process() -> None:
    """In a fresh child process, keep loguru's default sink for the application's own records.

    The default stderr sink loguru adds on import would also print omniq's records, a second
    time next to omniq's own sink; it is replaced by the same sink without them. An
    application that removed it (in code its main module runs on import) keeps its choice.
    """
    with _lock:
        try:
            _root_logger.remove(0)
        except ValueError:
            return
        _root_logger.add(sys.stderr, filter=lambda record: not _is_omniq_record(record))


def _stream_of(settings: _Settings) -> tuple[str | None, bool]:
    """Which standard stream a child should write to for ``settings``, and whether it stands in."""
    sink = settings.sink
    if sink is None:
        return (None if settings.file is not None else "stderr"), False
    for name, streams in (
        ("stderr", (sys.stderr, sys.__stderr__)),
        ("stdout", (sys.stdout, sys.__stdout__)),
    ):
        if any(sink is stream for stream in streams if stream is not None):
            return name, False
    try:
        number = sink.fileno()  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        number = None
    if number in (1, 2):
        return ("stdout" if number == 1 else "stderr"), False
    return "stderr", True


def _is_omniq_record(record: Record) -> bool:
    # omniq's sinks take omniq's records, not everything the application logs: the
    # application's records already reach the application's own sinks.
    if MARKER in record["extra"]:
        return True
    name = record["name"]
    return name is not None and (name == LOGGER_NAME or name.startswith("omniq."))


# --------------------------------------------------------------------------- core API


def get_logger() -> Logger:
    """omniq's loguru logger: its records reach omniq's sinks and carry the ambient task context.

    The context (task id, correlation id, ...) comes from the enclosing :func:`task_context`
    at the time of each call, so a module-level ``logger = get_logger()`` is fine.
    """
    if not _env_checked:
        _configure_from_env()
    return _marked


def current_correlation_id() -> str | None:
    """The correlation id of the innermost :func:`task_context` scope, or ``None``.

    The queue stores it on every task enqueued inside such a scope, so the caller's id (say,
    a web request's) follows the task into every attempt, retry and interval successor.
    """
    return _correlation.get()


def bind_task(task_id: str, **extra: Any) -> Logger:
    """A logger bound to ``task_id``, a correlation id, and ``extra``.

    ``correlation_id`` (a keyword in ``extra``) defaults to the enclosing
    :func:`task_context`'s correlation id, else to ``task_id``. Unlike ``task_context`` this
    opens no scope and changes no ambient state: only records logged through the returned
    logger carry the binding, and :func:`current_correlation_id` is unchanged.
    """
    if not _env_checked:
        _configure_from_env()
    if extra.get("correlation_id") is None:
        extra["correlation_id"] = _correlation.get() or task_id
    return _marked.bind(task_id=task_id, **extra)


def task_context(
    task_id: str, operation: str, *, correlation_id: str | None = None, **extra: Any
) -> AbstractContextManager[Logger]:
    """A scope for work on ``task_id``: yields a bound logger; logs duration and errors.

    Inside the block every record (also those logged through the plain loguru logger, in
    coroutines awaited from it, and in threads that copy the context such as
    ``asyncio.to_thread``) carries ``task_id``, ``operation``, ``correlation_id`` and
    ``extra``, and :func:`current_correlation_id` returns the correlation id. It defaults to
    the enclosing scope's correlation id, else to ``task_id``. On exit the duration is logged
    at DEBUG; an exception is logged at ERROR with its traceback and re-raised.
    """
    if not _env_checked:
        _configure_from_env()
    return _TaskScope(task_id, operation, correlation_id, extra)


def execution_scope(task_id: str, correlation_id: str, **extra: Any) -> AbstractContextManager[Any]:
    """The scope a worker runs one execution in: :func:`task_context` while omniq's records
    are on; while they are off (the default), only the correlation id is set, so tasks
    enqueued inside inherit it, at a fraction of the cost (this runs once per task)."""
    if not _env_checked:
        _configure_from_env()
    if _threshold < _OFF:
        return _TaskScope(task_id, "execute", correlation_id, extra)
    return _CorrelationScope(correlation_id)


class _CorrelationScope:
    """Sets :func:`current_correlation_id` for a block, nothing else."""

    __slots__ = ("_correlation_id", "_token")

    def __init__(self, correlation_id: str) -> None:
        self._correlation_id = correlation_id

    def __enter__(self) -> None:
        self._token = _correlation.set(self._correlation_id)

    def __exit__(self, *exc_info: object) -> None:
        _correlation.reset(self._token)


class _TaskScope:
    """task_context's context manager.

    A class rather than @contextmanager: cheaper on the per-task hot path, and ``__exit__``
    runs directly in the caller's frame, so a fixed ``opt(depth=...)`` names the caller (the
    worker, say) in the records it logs on exit.
    """

    __slots__ = ("_contextualizer", "_fields", "_started", "_token")

    def __init__(
        self, task_id: str, operation: str, correlation_id: str | None, extra: dict[str, Any]
    ) -> None:
        self._fields: dict[str, Any] = {
            "task_id": task_id,
            "operation": operation,
            "correlation_id": correlation_id,
            **extra,
        }

    def __enter__(self) -> Logger:
        fields = self._fields
        if fields["correlation_id"] is None:
            fields["correlation_id"] = _correlation.get() or fields["task_id"]
        self._token = _correlation.set(fields["correlation_id"])
        # contextualize() rides on a contextvar, so the context follows awaits and copied
        # contexts into threads, and reaches records logged through the plain loguru logger.
        self._contextualizer = _root_logger.contextualize(**fields)
        self._contextualizer.__enter__()
        self._started = time.perf_counter()
        return _marked.bind(**fields)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if _threshold <= _ERROR:
                self._log_exit(exc_type, exc, tb)
        finally:
            self._contextualizer.__exit__(None, None, None)
            _correlation.reset(self._token)

    def _log_exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = time.perf_counter() - self._started
        operation = self._fields["operation"]
        fields = {**self._fields, "duration": round(duration, 6)}
        # depth=2: _log_exit <- __exit__ <- the caller's with-statement.
        if exc is None or not isinstance(exc, Exception):
            # Cancellation, KeyboardInterrupt and SystemExit are shutdown, not failure.
            if _threshold <= _DEBUG:
                outcome = (
                    f"finished in {duration:.3f}s"
                    if exc is None
                    else f"interrupted after {duration:.3f}s ({type(exc).__name__})"
                )
                _marked.opt(depth=2).bind(**fields).debug(f"{operation} {outcome}")
        elif getattr(exc, "_omniq_logged", False):
            # An inner task_context logged the traceback already; don't repeat it per level.
            _marked.opt(depth=2).bind(**fields).error(
                f"{operation} failed after {duration:.3f}s: {exc!r}"
            )
        else:
            _marked.opt(depth=2, exception=(exc_type, exc, tb)).bind(**fields).error(
                f"{operation} failed after {duration:.3f}s: {exc!r}"
            )
            # An exception class with __slots__ can't be marked; worst case, a repeated traceback.
            with contextlib.suppress(AttributeError):
                exc._omniq_logged = True  # type: ignore[attr-defined]


# The event helpers live in omniq._log_events (imported last: it reads this module).
from omniq._log_events import (  # noqa: E402
    log_hook_error,
    log_permissions_tightened,
    log_schedule_fired,
    log_serialization_error,
    log_storage_error,
    log_task_completed,
    log_task_deduplicated,
    log_task_enqueued,
    log_task_failed,
    log_task_started,
    log_tasks_pruned,
    log_worker_started,
    log_worker_stopped,
)
