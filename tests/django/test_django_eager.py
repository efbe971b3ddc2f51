"""Django's ``tests/tasks/test_immediate_backend.py`` (django/django, BSD licence) on
OmniQBackend in eager mode (``OPTIONS={"eager": True}``), which runs a task at enqueue.

Two behaviours differ from ``ImmediateBackend``, as the backend's contract asks: a
``KeyboardInterrupt`` raised by a task fails that task instead of propagating, and
results can be looked up again in this process (``supports_get_result`` is still False:
no other process sees them). ``run_after`` is accepted (and recorded, as omniq's eager
mode records an ``eta``), where ``ImmediateBackend`` refuses it.
"""

from __future__ import annotations

from typing import Any

import djsupport  # noqa: F401  # skips this module without Django
from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend, task_backends
from django.tasks.exceptions import InvalidTask
from django.test import SimpleTestCase, TransactionTestCase
from django.utils import timezone
from djapp import tasks as test_tasks

from omniq.contrib.django import OmniQBackend

BACKEND = "omniq.contrib.django.OmniQBackend"
EAGER = {"default": {"BACKEND": BACKEND, "QUEUES": [], "OPTIONS": {"eager": True}}}


class EagerBackendTestCase(SimpleTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.enterContext(self.settings(TASKS=EAGER))

    def test_using_correct_backend(self) -> None:
        self.assertEqual(default_task_backend, task_backends["default"])
        self.assertIsInstance(task_backends["default"], OmniQBackend)
        self.assertEqual(default_task_backend.alias, "default")
        self.assertEqual(default_task_backend.options, {"eager": True})

    def test_enqueue_task(self) -> None:
        for task in [test_tasks.noop_task, test_tasks.noop_task_async]:
            with self.subTest(task):
                result = task.enqueue(1, two=3)

                self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
                self.assertIs(result.is_finished, True)
                self.assertIsNotNone(result.started_at)
                self.assertIsNotNone(result.last_attempted_at)
                self.assertIsNotNone(result.finished_at)
                self.assertGreaterEqual(result.started_at, result.enqueued_at)
                self.assertGreaterEqual(result.finished_at, result.started_at)
                self.assertIsNone(result.return_value)
                self.assertEqual(result.task, task)
                self.assertEqual(result.args, [1])
                self.assertEqual(result.kwargs, {"two": 3})
                self.assertEqual(result.attempts, 1)

    async def test_enqueue_task_async(self) -> None:
        for task in [test_tasks.noop_task, test_tasks.noop_task_async]:
            with self.subTest(task):
                result = await task.aenqueue()

                self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
                self.assertIs(result.is_finished, True)
                self.assertIsNotNone(result.started_at)
                self.assertIsNotNone(result.last_attempted_at)
                self.assertIsNotNone(result.finished_at)
                self.assertGreaterEqual(result.started_at, result.enqueued_at)
                self.assertGreaterEqual(result.finished_at, result.started_at)
                self.assertIsNone(result.return_value)
                self.assertEqual(result.task, task)
                self.assertEqual(result.args, [])
                self.assertEqual(result.kwargs, {})
                self.assertEqual(result.attempts, 1)

    def test_catches_exception(self) -> None:
        test_data = [
            (
                test_tasks.failing_task_value_error,  # Task function.
                ValueError,  # Expected exception.
                "This Task failed due to ValueError",  # Expected message.
            ),
            (test_tasks.failing_task_system_exit, SystemExit, "This Task failed due to SystemExit"),
            (
                test_tasks.failing_task_keyboard_interrupt,
                KeyboardInterrupt,
                "This Task failed due to KeyboardInterrupt",
            ),
        ]
        for task, exception, message in test_data:
            with (
                self.subTest(task),
                self.assertLogs("django.tasks", level="ERROR") as captured_logs,
            ):
                result = task.enqueue()

                self.assertEqual(len(captured_logs.output), 1)
                self.assertIn(message, captured_logs.output[0])

                self.assertEqual(result.status, TaskResultStatus.FAILED)
                with self.assertRaisesMessage(ValueError, "Task failed"):
                    result.return_value  # noqa: B018
                self.assertIs(result.is_finished, True)
                self.assertIsNotNone(result.started_at)
                self.assertIsNotNone(result.last_attempted_at)
                self.assertIsNotNone(result.finished_at)
                self.assertGreaterEqual(result.started_at, result.enqueued_at)
                self.assertGreaterEqual(result.finished_at, result.started_at)
                self.assertEqual(result.errors[0].exception_class, exception)
                traceback = result.errors[0].traceback
                self.assertIs(
                    traceback and traceback.endswith(f"{exception.__name__}: {message}\n"),
                    True,
                    traceback,
                )
                self.assertEqual(result.task, task)
                self.assertEqual(result.args, [])
                self.assertEqual(result.kwargs, {})

    def test_complex_exception(self) -> None:
        with self.assertLogs("django.tasks", level="ERROR"):
            result = test_tasks.complex_exception.enqueue()

        self.assertEqual(result.status, TaskResultStatus.FAILED)
        with self.assertRaisesMessage(ValueError, "Task failed"):
            result.return_value  # noqa: B018
        self.assertIsNotNone(result.started_at)
        self.assertIsNotNone(result.last_attempted_at)
        self.assertIsNotNone(result.finished_at)
        self.assertGreaterEqual(result.started_at, result.enqueued_at)
        self.assertGreaterEqual(result.finished_at, result.started_at)

        self.assertIsNone(result._return_value)
        self.assertEqual(result.errors[0].exception_class, ValueError)
        self.assertIn('ValueError(ValueError("This task failed"))', result.errors[0].traceback)

        self.assertEqual(result.task, test_tasks.complex_exception)
        self.assertEqual(result.args, [])
        self.assertEqual(result.kwargs, {})

    def test_complex_return_value(self) -> None:
        with self.assertLogs("django.tasks", level="ERROR"):
            result = test_tasks.complex_return_value.enqueue()

        self.assertEqual(result.status, TaskResultStatus.FAILED)
        self.assertIsNotNone(result.started_at)
        self.assertIsNotNone(result.last_attempted_at)
        self.assertIsNotNone(result.finished_at)
        self.assertGreaterEqual(result.started_at, result.enqueued_at)
        self.assertGreaterEqual(result.finished_at, result.started_at)
        self.assertIsNone(result._return_value)
        self.assertEqual(result.errors[0].exception_class, TypeError)
        self.assertIn("Unsupported type", result.errors[0].traceback)

    def test_result(self) -> None:
        result = default_task_backend.enqueue(test_tasks.calculate_meaning_of_life, [], {})

        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(result.return_value, 42)

    async def test_result_async(self) -> None:
        result = await default_task_backend.aenqueue(test_tasks.calculate_meaning_of_life, [], {})

        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(result.return_value, 42)

    async def test_results_can_be_looked_up_in_this_process(self) -> None:
        self.assertIs(default_task_backend.supports_get_result, False)
        result = await default_task_backend.aenqueue(test_tasks.calculate_meaning_of_life, (), {})
        self.assertEqual(default_task_backend.get_result(result.id), result)
        self.assertEqual(await default_task_backend.aget_result(result.id), result)
        await result.arefresh()
        result.refresh()
        self.assertEqual(result.return_value, 42)

    def test_run_after_is_recorded_and_the_task_runs_now(self) -> None:
        later = timezone.now() + timezone.timedelta(hours=1)
        result = test_tasks.calculate_meaning_of_life.using(run_after=later).enqueue()
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(result.task.run_after, later)

    def test_enqueue_logs(self) -> None:
        with self.assertLogs("django.tasks", level="DEBUG") as captured_logs:
            result = test_tasks.noop_task.enqueue()

        self.assertEqual(len(captured_logs.output), 3)

        self.assertIn("enqueued", captured_logs.output[0])
        self.assertIn(result.id, captured_logs.output[0])

        self.assertIn("state=RUNNING", captured_logs.output[1])
        self.assertIn(result.id, captured_logs.output[1])

        self.assertIn("state=SUCCESSFUL", captured_logs.output[2])
        self.assertIn(result.id, captured_logs.output[2])

    def test_failed_logs(self) -> None:
        with self.assertLogs("django.tasks", level="DEBUG") as captured_logs:
            result = test_tasks.failing_task_value_error.enqueue()

        self.assertEqual(len(captured_logs.output), 3)
        self.assertIn("state=RUNNING", captured_logs.output[1])
        self.assertIn(result.id, captured_logs.output[1])

        self.assertIn("state=FAILED", captured_logs.output[2])
        self.assertIn(result.id, captured_logs.output[2])
        self.assertIn("Traceback", captured_logs.output[2])  # logged inside the except

    def test_takes_context(self) -> None:
        result = test_tasks.get_task_id.enqueue()

        self.assertEqual(result.return_value, result.id)

    def test_context(self) -> None:
        result = test_tasks.test_context.enqueue(1)
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)

    def test_validate_on_enqueue(self) -> None:
        task_with_custom_queue_name = test_tasks.noop_task.using(queue_name="unknown_queue")

        tasks: dict[str, Any] = {
            "default": {"BACKEND": BACKEND, "QUEUES": ["queue-1"], "OPTIONS": {"eager": True}}
        }
        with (
            self.settings(TASKS=tasks),
            self.assertRaisesMessage(InvalidTask, "Queue 'unknown_queue' is not valid for backend"),
        ):
            task_with_custom_queue_name.enqueue()

    async def test_validate_on_aenqueue(self) -> None:
        task_with_custom_queue_name = test_tasks.noop_task.using(queue_name="unknown_queue")

        tasks: dict[str, Any] = {
            "default": {"BACKEND": BACKEND, "QUEUES": ["queue-1"], "OPTIONS": {"eager": True}}
        }
        with (
            self.settings(TASKS=tasks),
            self.assertRaisesMessage(InvalidTask, "Queue 'unknown_queue' is not valid for backend"),
        ):
            await task_with_custom_queue_name.aenqueue()


class EagerBackendTransactionTestCase(TransactionTestCase):
    available_apps = ["djapp"]  # Django's test has []: tasks come from installed apps only

    def test_doesnt_wait_until_transaction_commit_by_default(self) -> None:
        with self.settings(TASKS=EAGER):
            with transaction.atomic():
                result = test_tasks.noop_task.enqueue()

                self.assertIsNotNone(result.enqueued_at)

                self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)

            self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
