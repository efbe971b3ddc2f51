"""Django's ``tests/tasks/test_dummy_backend.py`` (django/django, BSD licence) on OmniQBackend,
and the rest of the backend's contract: configuration, flags, ids, aliases, signals.

Django's dummy backend keeps READY results in a list; OmniQBackend stores them, so
where Django edits that list these tests run a worker (``omniq_worker --batch``).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast
from unittest import mock

import djsupport
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend, task_backends
from django.tasks.base import Task
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.test import SimpleTestCase, TransactionTestCase
from django.utils import timezone
from djapp import tasks as test_tasks

from omniq.contrib.django import OmniQBackend
from omniq.contrib.django.run import run_django_task

BACKEND = "omniq.contrib.django.OmniQBackend"


def run_worker(**options: Any) -> None:
    call_command("omniq_worker", batch=True, verbosity=0, **options)


@contextmanager
def enqueued_signals() -> Iterator[list[tuple[type, Any]]]:
    received: list[tuple[type, Any]] = []

    def receive(sender: type, task_result: Any, **kwargs: Any) -> None:
        received.append((sender, task_result))

    task_enqueued.connect(receive, dispatch_uid="omniq-test", weak=False)
    try:
        yield received
    finally:
        task_enqueued.disconnect(dispatch_uid="omniq-test")


class OmniQBackendTestCase(djsupport.StoreTestMixin, SimpleTestCase):
    def test_using_correct_backend(self) -> None:
        self.assertEqual(default_task_backend, task_backends["default"])
        self.assertIsInstance(task_backends["default"], OmniQBackend)
        self.assertEqual(default_task_backend.alias, "default")
        self.assertEqual(default_task_backend.options, self.options)

    def test_enqueue_task(self) -> None:
        for task in [test_tasks.noop_task, test_tasks.noop_task_async]:
            with self.subTest(task), enqueued_signals() as received:
                result = cast(Task, task).enqueue(1, two=3)

                self.assertEqual(result.status, TaskResultStatus.READY)
                self.assertIs(result.is_finished, False)
                self.assertIsNone(result.started_at)
                self.assertIsNone(result.last_attempted_at)
                self.assertIsNone(result.finished_at)
                with self.assertRaisesMessage(ValueError, "Task has not finished yet"):
                    result.return_value  # noqa: B018
                self.assertEqual(result.task, task)
                self.assertEqual(result.args, [1])
                self.assertEqual(result.kwargs, {"two": 3})
                self.assertEqual(result.attempts, 0)
                self.assertEqual(result.enqueued_at.tzinfo, dt.timezone.utc)

                self.assertEqual(default_task_backend.get_result(result.id), result)
                self.assertEqual(received, [(OmniQBackend, result)])

    async def test_enqueue_task_async(self) -> None:
        for task in [test_tasks.noop_task, test_tasks.noop_task_async]:
            with self.subTest(task), enqueued_signals() as received:
                result = await cast(Task, task).aenqueue()

                self.assertEqual(result.status, TaskResultStatus.READY)
                self.assertIs(result.is_finished, False)
                self.assertIsNone(result.started_at)
                self.assertIsNone(result.last_attempted_at)
                self.assertIsNone(result.finished_at)
                with self.assertRaisesMessage(ValueError, "Task has not finished yet"):
                    result.return_value  # noqa: B018
                self.assertEqual(result.task, task)
                self.assertEqual(result.args, [])
                self.assertEqual(result.kwargs, {})
                self.assertEqual(result.attempts, 0)

                self.assertEqual(await default_task_backend.aget_result(result.id), result)
                self.assertEqual(received, [(OmniQBackend, result)])

    def test_one_omniq_task_with_the_tasks_options(self) -> None:
        run_after = timezone.now() + dt.timedelta(hours=1)
        result = test_tasks.noop_task.using(
            priority=7, queue_name="emails", run_after=run_after
        ).enqueue(1)
        record = default_task_backend.omniq.get_task(result.id)
        self.assertEqual(record.func_path, run_django_task.path)
        self.assertEqual(record.queue, "default:emails")
        self.assertEqual(record.priority, 7)
        self.assertEqual(record.eta, run_after)
        self.assertEqual(record.max_retries, 1)  # a Django task runs once
        self.assertEqual(record.kwargs["task"], "djapp.tasks.noop_task")
        self.assertEqual(record.kwargs["args"], [1])
        # The rebuilt task compares equal, run_after to the microsecond.
        self.assertEqual(default_task_backend.get_result(result.id).task, result.task)
        self.assertEqual(result.task.run_after, run_after)

    def test_get_result(self) -> None:
        result = default_task_backend.enqueue(test_tasks.noop_task, (), {})

        new_result = default_task_backend.get_result(result.id)

        self.assertEqual(result, new_result)

    async def test_get_result_async(self) -> None:
        result = await default_task_backend.aenqueue(test_tasks.noop_task, (), {})

        new_result = await default_task_backend.aget_result(result.id)

        self.assertEqual(result, new_result)

    def test_refresh_result(self) -> None:
        result = default_task_backend.enqueue(test_tasks.calculate_meaning_of_life, (), {})

        run_worker(worker_id="refresh-worker")

        self.assertEqual(result.status, TaskResultStatus.READY)
        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(result.return_value, 42)
        self.assertEqual(result.worker_ids, ["refresh-worker"])
        self.assertEqual(result.attempts, 1)
        for moment in (result.started_at, result.last_attempted_at, result.finished_at):
            self.assertEqual(moment.tzinfo, dt.timezone.utc)
        self.assertGreaterEqual(result.started_at, result.enqueued_at)
        self.assertGreaterEqual(result.finished_at, result.started_at)

    async def test_refresh_result_async(self) -> None:
        result = await default_task_backend.aenqueue(test_tasks.calculate_meaning_of_life, (), {})

        await _async_worker()

        self.assertEqual(result.status, TaskResultStatus.READY)
        await result.arefresh()
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)

    async def test_get_missing_result(self) -> None:
        with self.assertRaises(TaskResultDoesNotExist):
            default_task_backend.get_result("123")

        with self.assertRaises(TaskResultDoesNotExist):
            await default_task_backend.aget_result("123")

    def test_malformed_ids_do_not_exist(self) -> None:
        real = test_tasks.noop_task.enqueue().id
        for bad in ["", "x" * 1000, "a\x00b", "\udce9", 123, None, b"id", real.upper()]:
            with self.subTest(bad), self.assertRaises(TaskResultDoesNotExist):
                default_task_backend.get_result(bad)

    def test_an_omniq_task_that_is_no_django_task_does_not_exist(self) -> None:
        omniq = default_task_backend.omniq
        plain = omniq.enqueue("djapp.tasks.noop_task", queue="default:default")
        with self.assertRaises(TaskResultDoesNotExist):
            default_task_backend.get_result(plain)
        forged = omniq.enqueue(
            run_django_task,
            kwargs={
                "task": "subprocess.check_output",
                "backend": "default",
                "args": [["true"]],
                "kwargs": {},
                "run_after": None,
                "enqueued_at": timezone.now(),
            },
            queue="default:default",
        )
        with self.assertRaisesMessage(TaskResultDoesNotExist, "not in an installed app"):
            default_task_backend.get_result(forged)

    def test_another_aliass_result_does_not_exist_here(self) -> None:
        other = test_tasks.noop_task.using(backend="other").enqueue()
        self.assertEqual(task_backends["other"].get_result(other.id), other)
        with self.assertRaises(TaskResultDoesNotExist):
            default_task_backend.get_result(other.id)

    def test_enqueue_logs(self) -> None:
        with self.assertLogs("django.tasks", level="DEBUG") as captured_logs:
            result = test_tasks.noop_task.enqueue()

        self.assertEqual(len(captured_logs.output), 1)
        self.assertIn("enqueued", captured_logs.output[0])
        self.assertIn(result.id, captured_logs.output[0])

    def test_errors(self) -> None:
        result = test_tasks.noop_task.enqueue()
        self.assertEqual(result.errors, [])

    def test_validate_disallowed_async_task(self) -> None:
        with (
            mock.patch.multiple(default_task_backend, supports_async_task=False),
            self.assertRaisesMessage(InvalidTask, "Backend does not support async Tasks."),
        ):
            default_task_backend.validate_task(test_tasks.noop_task_async)

    def test_check(self) -> None:
        errors = list(default_task_backend.check())
        self.assertEqual(len(errors), 0, errors)

    def test_check_without_the_app(self) -> None:
        with self.settings(INSTALLED_APPS=["djapp"]):
            errors = list(default_task_backend.check())
        self.assertEqual([error.id for error in errors], ["omniq.E001"])
        self.assertIn("omniq.contrib.django", errors[0].hint)

    def test_takes_context(self) -> None:
        result = test_tasks.get_task_id.enqueue()
        self.assertEqual(result.status, TaskResultStatus.READY)

    def test_validate_on_enqueue(self) -> None:
        any_queue = {"default": {"BACKEND": BACKEND, "QUEUES": [], "OPTIONS": self.options}}
        with self.settings(TASKS=any_queue):
            task_with_custom_queue_name = test_tasks.noop_task.using(queue_name="unknown_queue")

        tasks = {"default": {"BACKEND": BACKEND, "QUEUES": ["queue-1"], "OPTIONS": self.options}}
        with (
            self.settings(TASKS=tasks),
            self.assertRaisesMessage(InvalidTask, "Queue 'unknown_queue' is not valid for backend"),
        ):
            task_with_custom_queue_name.enqueue()

    async def test_validate_on_aenqueue(self) -> None:
        any_queue = {"default": {"BACKEND": BACKEND, "QUEUES": [], "OPTIONS": self.options}}
        with self.settings(TASKS=any_queue):
            task_with_custom_queue_name = test_tasks.noop_task.using(queue_name="unknown_queue")

        tasks = {"default": {"BACKEND": BACKEND, "QUEUES": ["queue-1"], "OPTIONS": self.options}}
        with (
            self.settings(TASKS=tasks),
            self.assertRaisesMessage(InvalidTask, "Queue 'unknown_queue' is not valid for backend"),
        ):
            await task_with_custom_queue_name.aenqueue()

    def test_backend_flags(self) -> None:
        durable = default_task_backend
        for flag in ("supports_defer", "supports_async_task", "supports_priority"):
            self.assertIs(getattr(durable, flag), True, flag)
        self.assertIs(durable.supports_get_result, djsupport.BACKEND != "memory")
        memory = OmniQBackend("memory", {"OPTIONS": {"backend": "memory"}})
        eager = OmniQBackend("eager", {"OPTIONS": {"eager": True}})
        for backend in (memory, eager):
            self.assertIs(backend.supports_get_result, False)
            self.assertIs(backend.supports_defer, True)
            self.assertIs(backend.supports_priority, True)

    def test_bad_options_name_what_is_wrong(self) -> None:
        cases = [
            ({"OPTIONS": {"colour": "blue"}}, "unknown keys colour"),
            ({"OPTIONS": {"backend": "nope"}}, "unknown backend 'nope'"),
            ({"OPTIONS": ["backend"]}, "must be a dict"),
            ({"QUEUES": ["has space"]}, "cannot be stored by omniq"),
        ]
        for params, message in cases:
            with self.subTest(params), self.assertRaisesMessage(ImproperlyConfigured, message):
                OmniQBackend("default", params)
        with self.assertRaisesMessage(ImproperlyConfigured, "cannot name omniq queues"):
            OmniQBackend("bad:alias", {})

    def test_constructing_touches_no_store_and_starts_no_thread(self) -> None:
        threads = threading.active_count()
        store = self.store_dir / "untouched"
        OmniQBackend("fresh", {"OPTIONS": {"base_dir": str(store)}})
        self.assertFalse(store.exists())
        self.assertEqual(threading.active_count(), threads)


class ImportWithoutSettingsTestCase(SimpleTestCase):
    def test_importing_the_backend_needs_no_configured_settings(self) -> None:
        code = (
            "import os; os.environ.pop('DJANGO_SETTINGS_MODULE', None)\n"
            "from omniq.contrib.django import OmniQBackend\n"
            "from django.conf import settings\n"
            "assert not settings.configured\n"
            "print(OmniQBackend.__name__)\n"
        )
        completed = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        self.assertEqual(completed.returncode, 0, completed.stderr)
        self.assertEqual(completed.stdout.strip(), "OmniQBackend")


class OmniQBackendTransactionTestCase(djsupport.StoreTestMixin, TransactionTestCase):
    # Django's test has []; tasks are only imported from installed (here: available) apps.
    available_apps = ["djapp"]

    def test_doesnt_wait_until_transaction_commit_by_default(self) -> None:
        with transaction.atomic():
            result = test_tasks.noop_task.enqueue()

            self.assertIsNotNone(result.enqueued_at)

            self.assertEqual(default_task_backend.get_result(result.id), result)

        self.assertEqual(default_task_backend.get_result(result.id), result)

    def test_on_commit_defers_the_enqueue(self) -> None:
        enqueued: list[Any] = []
        with transaction.atomic():
            transaction.on_commit(lambda: enqueued.append(test_tasks.noop_task.enqueue()))
            self.assertEqual(enqueued, [])
        self.assertEqual(len(enqueued), 1)
        self.assertEqual(default_task_backend.get_result(enqueued[0].id), enqueued[0])


async def _async_worker() -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(run_worker)()
