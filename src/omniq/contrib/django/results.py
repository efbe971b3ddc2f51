"""From omniq's record of a task to Django's ``TaskResult``, and what a run stores.

One Django task is one omniq task of :data:`RUN_TASK` whose keyword arguments are a
:class:`Payload`: the Django task's ``module_path``, its alias, its (normalised)
arguments, its ``run_after`` and when it was enqueued, the last two kept as given so a
rebuilt task compares equal to the original. The omniq queue is
``<alias>:<queue_name>`` (:mod:`omniq.contrib.django.naming`) and the priority omniq's
own. The mapping:

==============================  ===============================================
``TaskResult``                  from the omniq task
==============================  ===============================================
``status``                      pending -> READY, running -> RUNNING, completed ->
                                SUCCESSFUL, failed and cancelled -> FAILED
``enqueued_at``                 the payload's ``enqueued_at``
``started_at``                  the first execution's start (the claim while the
                                first one runs)
``last_attempted_at``           the latest execution's start
``finished_at``                 when it finished (completed, failed, cancelled)
``return_value``                the result of a completed task
``errors``                      one per failed execution: the exception's class
                                path and traceback (a cancelled task gets one too)
``worker_ids``                  one per execution that spent an attempt (the
                                attempt history, plus the running one)
==============================  ===============================================

Every time is an aware UTC ``datetime``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.tasks.base import Task as DjangoTask
from django.tasks.base import TaskError as DjangoTaskError
from django.tasks.base import TaskResult, TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils.module_loading import import_string

from omniq.allowlist import AllowList
from omniq.contrib.django.exceptions import TaskNotAllowed
from omniq.contrib.django.naming import django_queue_name
from omniq.exceptions import OmniQError, TaskCancelled, TaskTimeout
from omniq.models import AttemptOutcome, ErrorType, Task, TaskError, TaskStatus

if TYPE_CHECKING:
    from omniq.contrib.django.backend import OmniQBackend

RUN_TASK = "omniq.contrib.django.run.run_django_task"
"""The one omniq task every Django task is stored as (see :mod:`omniq.contrib.django.run`)."""

STATUSES = {
    TaskStatus.PENDING: TaskResultStatus.READY,
    TaskStatus.RUNNING: TaskResultStatus.RUNNING,
    TaskStatus.COMPLETED: TaskResultStatus.SUCCESSFUL,
    TaskStatus.FAILED: TaskResultStatus.FAILED,
    TaskStatus.CANCELLED: TaskResultStatus.FAILED,
}

# Errors omniq writes without an exception of the task's: the class each one means.
_ERROR_CLASSES = {
    ErrorType.TIMEOUT: f"{TaskTimeout.__module__}.{TaskTimeout.__qualname__}",
    ErrorType.WORKER_LOST: "omniq.contrib.django.exceptions.WorkerLost",
}
_OMNIQ_ERROR = f"{OmniQError.__module__}.{OmniQError.__qualname__}"


@dataclasses.dataclass(frozen=True)
class Payload:
    """The omniq keyword arguments of one Django task (see the module docstring)."""

    task: str
    backend: str
    args: list[Any]
    kwargs: dict[str, Any]
    run_after: dt.datetime | None
    enqueued_at: dt.datetime

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :data:`RUN_TASK` (``run_django_task``)."""
        # Not dataclasses.asdict: it deep-copies the arguments, once per enqueue.
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    @classmethod
    def of(cls, record: Task) -> Payload | None:
        """The payload of ``record``, or ``None`` if it is not a Django task's."""
        if record.func_path != RUN_TASK or record.args:
            return None
        values: Mapping[str, Any] = record.kwargs
        if set(values) != {field.name for field in dataclasses.fields(cls)}:
            return None
        run_after = values["run_after"]
        if not (
            isinstance(values["task"], str)
            and isinstance(values["backend"], str)
            and isinstance(values["args"], list)
            and isinstance(values["kwargs"], dict)
            and (run_after is None or isinstance(run_after, dt.datetime))
            and isinstance(values["enqueued_at"], dt.datetime)
        ):
            return None
        return cls(**values)


def load_task(path: str, allow: AllowList) -> DjangoTask:
    """The Django task at ``path``; :class:`TaskNotAllowed` unless it may be imported here.

    Its module must lie inside an installed app (or ``path`` match the backend's
    ``task_modules``) *before* anything is imported, and the object found must be a
    Django ``Task`` whose own ``module_path`` is ``path``.
    """
    module = path.rpartition(".")[0]
    if not module or (apps.get_containing_app_config(module) is None and not allow.matches(path)):
        raise TaskNotAllowed(
            f"{path!r} is not in an installed app, so it is not imported: Django tasks run "
            "from the modules of INSTALLED_APPS (or add its module to OPTIONS['task_modules'])"
        )
    try:
        found = import_string(path)
    except ImportError as error:
        raise TaskNotAllowed(f"cannot import the Django task {path!r}: {error}") from error
    if not isinstance(found, DjangoTask) or found.module_path != path:
        raise TaskNotAllowed(f"{path!r} does not name a Django task (found {type(found)!r})")
    return found


def task_result(record: Task, backend: OmniQBackend) -> TaskResult:
    """Django's view of ``record``; ``TaskResultDoesNotExist`` unless it is ``backend``'s."""
    payload = Payload.of(record)
    queue_name = django_queue_name(backend.alias, record.queue)
    if payload is None or payload.backend != backend.alias or queue_name is None:
        raise TaskResultDoesNotExist(record.id)
    try:
        django_task = load_task(payload.task, backend.allow).using(
            priority=record.priority,
            queue_name=queue_name,
            run_after=payload.run_after,
            backend=backend.alias,
        )
    except TaskNotAllowed as error:
        raise TaskResultDoesNotExist(f"{record.id}: {error}") from error
    runs = [entry for entry in record.attempts_history if entry.outcome != AttemptOutcome.RELEASED]
    starts = [entry.started_at for entry in record.attempts_history if entry.started_at]
    running = record.status == TaskStatus.RUNNING
    if running and record.started_at is not None:
        starts.append(record.started_at)
    errors = [django_error(entry.error) for entry in runs if entry.error is not None]
    if record.status == TaskStatus.FAILED and not errors and record.error is not None:
        errors.append(django_error(record.error))  # failed without a run (a damaged record)
    if record.status == TaskStatus.CANCELLED:
        errors.append(_cancelled(record.id))
    finished = record.status.is_final
    result = TaskResult(
        task=django_task,
        id=record.id,
        status=STATUSES[record.status],
        enqueued_at=payload.enqueued_at,
        started_at=starts[0] if starts else None,
        finished_at=(record.finished_at or record.updated_at) if finished else None,
        last_attempted_at=starts[-1] if starts else None,
        args=payload.args,
        kwargs=payload.kwargs,
        backend=backend.alias,
        errors=errors,
        worker_ids=[entry.worker or "" for entry in runs]
        + ([record.worker or ""] if running else []),
    )
    if record.status == TaskStatus.COMPLETED:
        object.__setattr__(result, "_return_value", record.result)
    return result


def django_error(error: TaskError) -> DjangoTaskError:
    """An omniq ``TaskError`` as Django's: the exception's class path and its traceback."""
    path = error.exception_type or _ERROR_CLASSES.get(error.error_type, _OMNIQ_ERROR)
    text = error.traceback or f"{path}: {error.message}\n"
    return DjangoTaskError(exception_class_path=path, traceback=text)


def exception_error(exception: BaseException) -> DjangoTaskError:
    """Django's ``TaskError`` of an exception raised by a run, as ``ImmediateBackend`` writes it."""
    kind = type(exception)
    return DjangoTaskError(
        exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
        traceback="".join(traceback.format_exception(exception)),
    )


def _cancelled(task_id: str) -> DjangoTaskError:
    path = f"{TaskCancelled.__module__}.{TaskCancelled.__qualname__}"
    return DjangoTaskError(
        exception_class_path=path, traceback=f"{path}: {TaskCancelled(task_id)}\n"
    )
