"""``run_django_task``: the one omniq task that runs Django tasks inside an omniq worker.

The backend stores each Django task as this declared omniq task, so a worker that
imported this module (``omniq_worker`` does) runs it and nothing else it is not told
to. Each run:

1. checks that its queue belongs to its alias and imports the Django task (only from
   an installed app: :func:`omniq.contrib.django.results.load_task`);
2. builds the running ``TaskResult`` from the store (status RUNNING, this worker in
   ``worker_ids``) and sends ``task_started``;
3. calls the task (``TaskContext`` first if it ``takes_context``), normalises the
   return value as Django normalises arguments (a value JSON cannot hold fails the task
   with ``TypeError``) and sends ``task_finished``; on failure ``task_finished`` is sent
   from inside the ``except`` block, so Django's log line carries the traceback, and the
   exception goes on to omniq, which records it. ``SystemExit`` and
   ``KeyboardInterrupt`` raised by the task fail the task, never the worker.

``task_finished`` is sent as the task's function ends, before omniq records the
outcome (in the same batch as the worker's next claim): a receiver that calls
``result.refresh()`` may still see RUNNING.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from django.tasks.base import Task as DjangoTask
from django.tasks.base import TaskContext, TaskResult, TaskResultStatus
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils.json import normalize_json

from omniq import current_task, task
from omniq.contrib.django.exceptions import TaskNotAllowed
from omniq.contrib.django.naming import django_queue_name
from omniq.contrib.django.results import Payload, exception_error, load_task, task_result
from omniq.models import Task, TaskStatus
from omniq.serialization import DEFAULT_SERIALIZER, encode
from omniq.task_context import TaskContext as OmniQContext

if TYPE_CHECKING:
    from omniq.contrib.django.backend import OmniQBackend

EAGER_ENQUEUE: contextvars.ContextVar[DjangoTask | None] = contextvars.ContextVar(
    "omniq_django_eager_enqueue", default=None
)
"""Set by an eager backend's ``enqueue`` around the inline run: the task being enqueued,
whose ``task_enqueued`` the run sends before ``task_started`` (as Django's
``ImmediateBackend`` orders them)."""


@task(max_retries=1)
def run_django_task(
    task: str,
    backend: str,
    args: list[Any],
    kwargs: dict[str, Any],
    run_after: dt.datetime | None,
    enqueued_at: dt.datetime,
) -> Any:
    """Run the Django task at ``task`` of the ``backend`` alias once (see the module docstring)."""
    context = current_task()
    if context is None:
        raise RuntimeError("run_django_task runs Django tasks inside an omniq worker only")
    owner = _backend(backend)
    if django_queue_name(backend, context.queue) is None:
        raise TaskNotAllowed(
            f"a task of the TASKS alias {backend!r} cannot come from the queue {context.queue!r}"
        )
    load_task(task, owner.allow)  # refused before anything is imported: TaskNotAllowed
    payload = Payload(task, backend, args, kwargs, run_after, enqueued_at)
    eager = EAGER_ENQUEUE.get()
    record = None if eager is not None else owner.omniq.get_task(context.id)
    if record is None:  # eager: the run happens on a scratch store, before enqueue returns
        record = _running_record(context, payload, 0 if eager is None else eager.priority)
    running = task_result(record, owner)
    sender = type(owner)
    if eager is not None:
        EAGER_ENQUEUE.set(None)
        ready = dataclasses.replace(
            running,
            status=TaskResultStatus.READY,
            started_at=None,
            last_attempted_at=None,
            worker_ids=[],
        )
        task_enqueued.send(sender, task_result=ready)
    return _run(running, sender)


def _run(running: TaskResult, sender: type[Any]) -> Any:
    django_task = running.task
    try:
        task_started.send(sender=sender, task_result=running)
        if django_task.takes_context:
            raw = django_task.call(
                TaskContext(task_result=running), *running.args, **running.kwargs
            )
        else:
            raw = django_task.call(*running.args, **running.kwargs)
        value = normalize_json(raw)
        # What omniq stores must also be refused here, so the signal tells the truth.
        encode(DEFAULT_SERIALIZER, value, "the return value")
        done = _ended(running, TaskResultStatus.SUCCESSFUL)
        object.__setattr__(done, "_return_value", value)
        task_finished.send(sender, task_result=done)
        return value
    except BaseException as error:  # SystemExit and KeyboardInterrupt fail the task too
        failed = _ended(running, TaskResultStatus.FAILED, [*running.errors, exception_error(error)])
        task_finished.send(sender, task_result=failed)
        raise


def _ended(running: TaskResult, status: str, errors: list[Any] | None = None) -> TaskResult:
    return dataclasses.replace(
        running,
        status=status,
        finished_at=dt.datetime.now(dt.timezone.utc),
        errors=list(running.errors) if errors is None else errors,
    )


def _backend(alias: str) -> OmniQBackend:
    from django.tasks import task_backends

    from omniq.contrib.django.backend import OmniQBackend

    found = task_backends[alias]
    if not isinstance(found, OmniQBackend):
        raise TaskNotAllowed(f"the TASKS alias {alias!r} does not use omniq's OmniQBackend")
    return found


def _running_record(context: OmniQContext, payload: Payload, priority: int) -> Task:
    """The claimed task as the store would show it, for a run with no stored record."""
    now = dt.datetime.now(dt.timezone.utc)
    return Task(
        id=context.id,
        func_path=context.func_path,
        kwargs=payload.as_kwargs(),
        status=TaskStatus.RUNNING,
        attempts=context.attempt,
        max_retries=context.max_retries,
        eta=context.eta,
        created_at=payload.enqueued_at,
        updated_at=now,
        started_at=now,
        queue=context.queue,
        priority=priority,
        worker=context.worker,
    )
