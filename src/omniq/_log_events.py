"""omniq's log events: one small function per thing that happens (task enqueued, started,
completed, failed; worker started, stopped; a storage error...).

Each starts with the same test so that, with logging off or its level filtered out, a
call costs two attribute loads and a return: no formatting, no bind. They run per task
on the hot path. The right-hand side runs once per process at most: the first call
looks at the environment. Fields are merged into one dict before ``bind()`` so a
caller's extra can't collide with them. Re-exported by :mod:`omniq.logging`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omniq import logging as core

if TYPE_CHECKING:
    from loguru import Logger

# loguru's numbers for the standard levels (as omniq.logging's hot-path test uses them).
_INFO, _WARNING, _ERROR = 20, 30, 40


def _quiet(level: int) -> bool:
    """Whether omniq's records of ``level`` go nowhere (then nothing is built)."""
    return core._threshold > level and (core._env_checked or core._configure_from_env() > level)


def _task_fields(task_id: str, operation: str, event: str, extra: dict[str, Any]) -> dict[str, Any]:
    fields = {"operation": operation, **extra, "task_id": task_id, "event": event}
    if fields.get("correlation_id") is None:
        fields["correlation_id"] = core._correlation.get() or task_id
    return fields


def log_task_enqueued(task_id: str, func_path: str, **extra: Any) -> None:
    """Log (INFO) that ``task_id`` was enqueued to run ``func_path``."""
    if _quiet(_INFO):
        return
    fields = _task_fields(task_id, "enqueue", "task_enqueued", extra)
    fields["func_path"] = func_path
    core._events.bind(**fields).info(f"Task {task_id} enqueued: {func_path}")


def log_task_deduplicated(
    task_id: str, func_path: str, unique_key: str | None, **extra: Any
) -> None:
    """Log (INFO) that an enqueue of ``func_path`` was answered by ``task_id``, which holds
    its ``unique_key`` (so nothing new was stored)."""
    if _quiet(_INFO):
        return
    fields = _task_fields(task_id, "enqueue", "task_deduplicated", extra)
    fields["func_path"] = func_path
    fields["unique_key"] = unique_key
    core._events.bind(**fields).info(
        f"Task {task_id} already holds unique key {unique_key!r}: {func_path} not enqueued again"
    )


def log_task_started(task_id: str, attempt: int, **extra: Any) -> None:
    """Log (INFO) that attempt number ``attempt`` (1-based) of ``task_id`` started."""
    if _quiet(_INFO):
        return
    fields = _task_fields(task_id, "execute", "task_started", extra)
    fields["attempt"] = attempt
    core._events.bind(**fields).info(f"Task {task_id} started (attempt {attempt})")


def log_task_completed(task_id: str, attempt: int, **extra: Any) -> None:
    """Log (INFO) that ``task_id`` completed on attempt ``attempt``; pass ``duration=`` seconds."""
    if _quiet(_INFO):
        return
    fields = _task_fields(task_id, "execute", "task_completed", extra)
    fields["attempt"] = attempt
    duration = fields.get("duration")
    took = f" in {duration:.3f}s" if isinstance(duration, (int, float)) else ""
    core._events.bind(**fields).info(f"Task {task_id} completed (attempt {attempt}){took}")


def log_task_failed(
    task_id: str, error: str | BaseException, will_retry: bool = False, **extra: Any
) -> None:
    """Log that ``task_id`` failed: WARNING if it will be retried, ERROR if that was final.

    An exception passed as ``error`` is logged with its traceback.
    """
    level = _WARNING if will_retry else _ERROR
    if _quiet(level):
        return
    fields = _task_fields(task_id, "execute", "task_failed", extra)
    fields["error"] = str(error)
    fields["will_retry"] = will_retry
    outcome = "will retry" if will_retry else "no retries left"
    _event_logger(error).bind(**fields).log(
        "WARNING" if level == _WARNING else "ERROR", f"Task {task_id} failed: {error} ({outcome})"
    )


def log_worker_started(worker_id: str, **extra: Any) -> None:
    """Log (INFO) that worker (pool) ``worker_id`` started."""
    if _quiet(_INFO):
        return
    core._events.bind(**{**extra, "worker": worker_id, "event": "worker_started"}).info(
        f"Worker {worker_id} started"
    )


def log_worker_stopped(worker_id: str, **extra: Any) -> None:
    """Log (INFO) that worker (pool) ``worker_id`` stopped."""
    if _quiet(_INFO):
        return
    core._events.bind(**{**extra, "worker": worker_id, "event": "worker_stopped"}).info(
        f"Worker {worker_id} stopped"
    )


def log_hook_error(stage: str, error: BaseException, **extra: Any) -> None:
    """Log (ERROR) that a ``stage`` hook raised ``error``; keeps its traceback."""
    if _quiet(_ERROR):
        return
    fields = {**extra, "hook": stage, "error": str(error), "event": "hook_error"}
    _event_logger(error).bind(**fields).error(f"The {stage} hook raised {error!r}")


def log_schedule_fired(name: str, fire_time: str, task_id: str, **extra: Any) -> None:
    """Log (INFO) that schedule ``name`` enqueued ``task_id`` for its fire at ``fire_time``."""
    if _quiet(_INFO):
        return
    fields = {**extra, "schedule": name, "fire_time": fire_time, "task_id": task_id}
    fields["event"] = "schedule_fired"
    core._events.bind(**fields).info(f"Schedule {name} fired for {fire_time}: task {task_id}")


def log_tasks_pruned(count: int, retention: float, **extra: Any) -> None:
    """Log (INFO) that ``count`` finished tasks older than ``retention`` seconds were deleted."""
    if _quiet(_INFO):
        return
    fields = {**extra, "count": count, "retention": retention, "event": "tasks_pruned"}
    core._events.bind(**fields).info(
        f"Pruned {count} finished task(s) older than the retention of {retention:g}s"
    )


def log_storage_error(operation: str, error: str | BaseException, **extra: Any) -> None:
    """Log (ERROR) a storage failure during ``operation``; keeps an exception's traceback."""
    if _quiet(_ERROR):
        return
    fields = {**extra, "operation": operation, "error": str(error), "event": "storage_error"}
    _event_logger(error).bind(**fields).error(f"Storage error in {operation}: {error}")


def log_permissions_tightened(path: str, old_mode: str, new_mode: str, **extra: Any) -> None:
    """Log (WARNING) that omniq narrowed the mode of one of its files or directories."""
    if _quiet(_WARNING):
        return
    fields = {**extra, "path": path, "old_mode": old_mode, "mode": new_mode}
    core._events.bind(**fields, event="permissions_tightened").warning(
        f"{path} was mode {old_mode}, open to other users: changed to {new_mode}"
    )


def log_serialization_error(operation: str, error: str | BaseException, **extra: Any) -> None:
    """Log (ERROR) a serialization failure during ``operation``; keeps an exception's traceback."""
    if _quiet(_ERROR):
        return
    fields = {**extra, "operation": operation, "error": str(error), "event": "serialization_error"}
    _event_logger(error).bind(**fields).error(f"Serialization error in {operation}: {error}")


def _event_logger(error: str | BaseException) -> Logger:
    if not isinstance(error, BaseException):
        return core._events
    # opt() resets every option it is not given, so depth must be restated with exception.
    return core._marked.opt(depth=1, exception=error)
