"""Exceptions raised by omniq, shared by both twins."""

from __future__ import annotations


class OmniQError(Exception):
    """Base class of every exception omniq raises on purpose."""


class TaskTimeout(OmniQError):
    """A task ran longer than its timeout.

    A coroutine task is cancelled at the timeout. A blocking function cannot be
    interrupted, so its thread is abandoned and keeps running to its end, but the
    task is failed as a timeout and the worker moves on.
    """


class TaskNotFound(OmniQError, KeyError):
    """No task with the given id exists in the store."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id

    def __str__(self) -> str:
        return f"no task with id {self.task_id!r}"


class TaskFunctionError(OmniQError):
    """The task's function path cannot be resolved to a callable."""


class StorageError(OmniQError):
    """The store could not carry out an operation (disk full, read-only, corrupt)."""


class TaskFailed(OmniQError):
    """The task ended FAILED; ``error`` is its :class:`~omniq.models.TaskError`."""

    def __init__(self, task_id: str, error: object) -> None:
        super().__init__(f"task {task_id} failed: {error}")
        self.task_id = task_id
        self.error = error


class TaskCancelled(OmniQError):
    """The task was cancelled before it ran."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} was cancelled")
        self.task_id = task_id
