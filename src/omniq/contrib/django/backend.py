"""``OmniQBackend``: Django's Tasks framework on an omniq store.

::

    TASKS = {"default": {
        "BACKEND": "omniq.contrib.django.OmniQBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {"backend": "sqlite", "base_dir": BASE_DIR / "omniq"},
    }}

``OPTIONS`` are ``omniq.Settings`` keywords (checked when the backend is made, with an
``ImproperlyConfigured`` naming the bad one). Making a backend touches no store and
starts no thread: the store opens on the first enqueue or look-up, through one facade
per store and process (:mod:`omniq.contrib.django.facades`). Tasks run in
``manage.py omniq_worker`` (:mod:`omniq.contrib.django.worker`).

``enqueue`` stores the task at once (defer it with ``transaction.on_commit`` if it
must wait for the transaction), as one omniq task with ``eta=run_after``, the task's
queue (``<alias>:<queue_name>``, :mod:`omniq.contrib.django.naming`) and priority, and
one execution (``max_retries=1``: a Django task runs once). With
``OPTIONS={"eager": True}`` it runs the task before returning, as Django's
``ImmediateBackend`` does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from asgiref.sync import sync_to_async
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import Task as DjangoTask
from django.tasks.base import TaskResult, TaskResultStatus
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils.json import normalize_json

from omniq import OmniQ, Settings
from omniq.allowlist import AllowList
from omniq.contrib.django.facades import facade_for
from omniq.contrib.django.naming import check_alias, omniq_queue
from omniq.contrib.django.results import Payload, task_result
from omniq.contrib.django.run import EAGER_ENQUEUE, run_django_task

APP = "omniq.contrib.django"


def settings_from_options(alias: str, options: object) -> Settings:
    """``omniq.Settings(**OPTIONS)`` of the alias; ``ImproperlyConfigured`` naming what is wrong."""
    where = f"TASKS[{alias!r}]['OPTIONS']"
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"{where} must be a dict of omniq.Settings keywords")
    known = [field.name for field in dataclasses.fields(Settings)]
    unknown = sorted(str(key) for key in options if key not in known)
    if unknown:
        raise ImproperlyConfigured(
            f"{where} has unknown keys {', '.join(unknown)}; omniq.Settings takes "
            + ", ".join(known)
        )
    try:
        return Settings(**options)
    except (TypeError, ValueError) as error:
        raise ImproperlyConfigured(f"{where}: {error}") from error


class OmniQBackend(BaseTaskBackend):
    """A Django Tasks backend storing tasks in omniq (see the module docstring).

    ``supports_defer``, ``supports_async_task`` and ``supports_priority`` are True
    (workers claim by priority, then ``run_after``, then enqueue order);
    ``supports_get_result`` is True on stores every process shares (SQLite, files,
    PostgreSQL), False for the in-memory store and eager mode, whose results only this
    process sees.
    """

    supports_defer = True
    supports_async_task = True
    supports_priority = True
    supports_get_result = True

    def __init__(self, alias: str, params: Mapping[str, Any]) -> None:
        super().__init__(alias, params)
        try:
            check_alias(alias)
            for queue_name in self.queues:
                omniq_queue(alias, queue_name)
        except ValueError as error:
            raise ImproperlyConfigured(str(error)) from None
        self.settings = settings_from_options(alias, self.options)
        self.supports_get_result = not self.settings.eager and self.settings.backend != "memory"
        self.allow = AllowList.from_settings(self.settings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alias={self.alias!r}, settings={self.settings!r})"

    @property
    def omniq(self) -> OmniQ:
        """The blocking facade on this alias's store (shared by the aliases and threads on it)."""
        return facade_for(self.settings)

    # ------------------------------------------------------------------ enqueueing

    def validate_task(self, task: DjangoTask) -> None:
        """Django's checks, and that omniq can name the task's queue (``InvalidTask``)."""
        super().validate_task(task)
        try:
            omniq_queue(self.alias, task.queue_name)
        except ValueError as error:
            raise InvalidTask(str(error)) from None

    def enqueue(
        self, task: DjangoTask, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> TaskResult:
        """Store ``task`` with its arguments; return its READY ``TaskResult``.

        Arguments go through Django's ``normalize_json`` (``TypeError("Unsupported
        type ...")`` for a ``date``, ``UUID``, ``Decimal``, ``set``...). In eager mode
        the task has run when this returns, and its finished result is returned.
        """
        result = self._store(task, args, kwargs)
        if not self.settings.eager:  # an eager run sent it already, before it started
            task_enqueued.send(type(self), task_result=result)
        return result

    async def aenqueue(
        self, task: DjangoTask, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> TaskResult:
        """:meth:`enqueue` without blocking the event loop."""
        if self.settings.eager:  # the task runs here: where sync code of the caller runs
            return await sync_to_async(self.enqueue, thread_sensitive=True)(task, args, kwargs)
        result = await sync_to_async(self._store, thread_sensitive=False)(task, args, kwargs)
        await task_enqueued.asend(type(self), task_result=result)
        return result

    def _store(
        self, task: DjangoTask, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> TaskResult:
        self.validate_task(task)
        payload = Payload(
            task=task.module_path,
            backend=self.alias,
            args=normalize_json(args),
            kwargs=normalize_json(kwargs),
            run_after=task.run_after,
            enqueued_at=dt.datetime.now(dt.timezone.utc),
        )
        token = EAGER_ENQUEUE.set(task) if self.settings.eager else None
        try:
            task_id = self.omniq.enqueue(
                run_django_task,
                kwargs=payload.as_kwargs(),
                eta=task.run_after,
                queue=omniq_queue(self.alias, task.queue_name),
                priority=int(task.priority),
                max_retries=1,
            )
        finally:
            if token is not None:
                EAGER_ENQUEUE.reset(token)
        if self.settings.eager:
            return self.get_result(task_id)
        result = TaskResult(
            task=task,
            id=task_id,
            status=TaskResultStatus.READY,
            enqueued_at=payload.enqueued_at,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=payload.args,
            kwargs=payload.kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        return result

    # ------------------------------------------------------------------ results

    def get_result(self, result_id: str) -> TaskResult:
        """The task's current ``TaskResult``; ``TaskResultDoesNotExist`` for an unknown,
        malformed or other alias's id."""
        try:
            record = self.omniq.get_task(result_id)
        except (TypeError, ValueError):  # not a well-formed task id
            raise TaskResultDoesNotExist(result_id) from None
        if record is None:
            raise TaskResultDoesNotExist(result_id)
        return task_result(record, self)

    async def aget_result(self, result_id: str) -> TaskResult:
        """:meth:`get_result` without blocking the event loop."""
        return await sync_to_async(self.get_result, thread_sensitive=False)(result_id)

    # ------------------------------------------------------------------ checks

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        """Django's system checks: the ``omniq.contrib.django`` app must be installed."""
        yield from super().check(**kwargs)
        from django.apps import apps

        if not apps.is_installed(APP):
            yield checks.Error(
                f"the TASKS alias {self.alias!r} uses OmniQBackend, but {APP!r} is not in "
                "INSTALLED_APPS, so there is no omniq_worker command to run its tasks",
                hint=f"add {APP!r} to INSTALLED_APPS",
                id="omniq.E001",
            )
