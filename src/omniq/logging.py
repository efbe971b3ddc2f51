"""omniq's logging, built on loguru.

Core API: :func:`configure`, :func:`get_logger`, :func:`task_context`, :func:`bind_task`
(plus :func:`current_correlation_id` and :func:`reset`). Event helpers: ``log_task_*``,
``log_worker_*``, :func:`log_storage_error`, :func:`log_serialization_error`.

Etiquette: importing omniq adds no sink and removes none. omniq's own records stay silent
until :func:`configure` is called, or until the first omniq log call finds
``OMNIQ_LOG_LEVEL``, ``OMNIQ_LOG_MODE`` or ``OMNIQ_LOG_FILE`` set, which configures from
the environment once. :func:`configure` only ever replaces the sinks omniq itself added.

This module holds the per-task API and logging's state; the configuration machinery lives
in :mod:`omniq._log_config` and the event helpers in :mod:`omniq._log_events`, both
re-exported here. Of omniq it imports only those private parts (and they only the leaves
:mod:`omniq._log_format` and :mod:`omniq._logfile`): everything else imports it. omniq's
own modules log through :func:`get_logger` or the helpers, never the bare loguru logger, so
that each of their records carries the ``_omniq`` marker applications can filter on.
"""

from __future__ import annotations

import contextlib
import threading
import time
from contextlib import AbstractContextManager
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any

from loguru import logger as _root_logger

if TYPE_CHECKING:
    from loguru import Logger

    from omniq._log_config import _Settings

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

# Every record omniq emits, and every record logged through a logger omniq hands out, carries
# this extra key. omniq's sinks select on it, and applications can filter their own sinks by it.
MARKER = "_omniq"

# Ambient correlation id of the innermost task_context scope. loguru keeps its own contextvar
# for contextualize(), but that one is private, so the queue reads ours.
_correlation: ContextVar[str | None] = ContextVar("omniq_correlation_id", default=None)

# loguru's numbers for the standard levels, for the hot-path test below.
_DEBUG, _INFO, _WARNING, _ERROR = 10, 20, 30, 40
_OFF = 1_000  # above every level: nothing passes

# Logging's mutable state: one copy, here, where the per-task hot path reads it as a plain
# module global. omniq._log_config assigns it (as omniq.logging.<name>, never a copy of its
# own), always under _lock.
_lock = threading.RLock()
_sink_ids: list[int] = []  # the sinks omniq added, the only ones configure() replaces
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


# The configuration machinery and the event helpers live in their own modules, imported last:
# both read this module. Their names are re-exported, so omniq.logging keeps its whole API
# (``X as X`` marks a re-export of a name outside __all__, for mypy; I001 because isort would
# give each of those a statement of its own); _configure_from_env is also what the hot path
# above calls for its one-time look at the environment.
from omniq._log_config import (  # noqa: E402, I001
    ALLOWED_LEVELS,
    ALLOWED_MODES,
    DEFAULT_LEVEL as DEFAULT_LEVEL,
    DEFAULT_MODE as DEFAULT_MODE,
    DEFAULT_RETENTION as DEFAULT_RETENTION,
    DEFAULT_ROTATION as DEFAULT_ROTATION,
    ENV_FILE,
    ENV_LEVEL,
    ENV_MODE,
    ENV_RETENTION,
    ENV_ROTATION,
    RetentionValue as RetentionValue,
    RotationValue as RotationValue,
    SinkValue as SinkValue,
    _configure_from_env as _configure_from_env,
    apply_config as apply_config,
    configure,
    export_config as export_config,
    prepare_child_process as prepare_child_process,
    reset,
)
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
