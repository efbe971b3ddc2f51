"""``omniq_worker`` in this process (``call_command``): what Django's immediate-backend
tests check of a task's execution (django/django ``tests/tasks/test_immediate_backend.py``,
BSD licence), here enqueued on the store and run by the worker, and what
django-tasks-db's ``db_worker`` tests check of a worker's options.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from io import StringIO
from pathlib import Path
from typing import Any, cast
from unittest import mock

import djsupport
from django.core.management import CommandError, call_command
from django.db import close_old_connections as real_close_old_connections
from django.tasks import TaskResultStatus, default_task_backend, task_backends
from django.tasks.base import Task
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_finished, task_started
from django.test import SimpleTestCase, TransactionTestCase
from django.utils import timezone
from djapp import tasks as test_tasks

from omniq import OmniQ
from omniq.contrib.django import OmniQBackend, worker
from omniq.contrib.django.run import run_django_task
from omniq.models import TaskStatus

WORKER_ID = "test-worker"


def run_worker(**options: Any) -> None:
    options.setdefault("verbosity", 0)
    options.setdefault("worker_id", WORKER_ID)
    call_command("omniq_worker", batch=True, **options)


class WorkerTestCase(djsupport.StoreTestMixin, SimpleTestCase):
    def tearDown(self) -> None:
        for name in ("django.tasks", "omniq.contrib.django"):  # handlers bound to a stdout
            found = logging.getLogger(name)
            for handler in list(found.handlers):
                found.removeHandler(handler)
        super().tearDown()

    def test_run_enqueued_task(self) -> None:
        for task in [test_tasks.noop_task, test_tasks.noop_task_async]:
            with self.subTest(task):
                result = cast(Task, task).enqueue(1, two=3)
                run_worker()

                self.assertEqual(result.status, TaskResultStatus.READY)
                result.refresh()
                self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
                self.assertIs(result.is_finished, True)
                self.assertGreaterEqual(result.started_at, result.enqueued_at)
                self.assertGreaterEqual(result.last_attempted_at, result.started_at)
                self.assertGreaterEqual(result.finished_at, result.started_at)
                self.assertIsNone(result.return_value)
                self.assertEqual(result.task, task)
                self.assertEqual(result.args, [1])
                self.assertEqual(result.kwargs, {"two": 3})
                self.assertEqual(result.attempts, 1)
                self.assertEqual(result.worker_ids, [WORKER_ID])

    def test_catches_exception(self) -> None:
        test_data = [
            (test_tasks.failing_task_value_error, ValueError, "This Task failed due to ValueError"),
            (test_tasks.failing_task_system_exit, SystemExit, "This Task failed due to SystemExit"),
            (
                test_tasks.failing_task_keyboard_interrupt,
                KeyboardInterrupt,
                "This Task failed due to KeyboardInterrupt",
            ),
            (test_tasks.exit_task, SystemExit, "1"),
        ]
        for task, exception, message in test_data:
            with self.subTest(task):
                result = task.enqueue()
                with self.assertLogs("django.tasks", level="ERROR") as captured_logs:
                    run_worker()  # the worker survives SystemExit and KeyboardInterrupt

                self.assertEqual(len(captured_logs.output), 1)
                self.assertIn(message, captured_logs.output[0])
                self.assertIn("Traceback", captured_logs.output[0])

                result.refresh()
                self.assertEqual(result.status, TaskResultStatus.FAILED)
                with self.assertRaisesMessage(ValueError, "Task failed"):
                    result.return_value  # noqa: B018
                self.assertGreaterEqual(result.finished_at, result.started_at)
                self.assertEqual(len(result.errors), 1)
                self.assertEqual(result.errors[0].exception_class, exception)
                traceback = result.errors[0].traceback
                self.assertTrue(traceback.endswith(f"{exception.__name__}: {message}\n"), traceback)
                self.assertEqual(result.task, task)
                self.assertEqual(result.worker_ids, [WORKER_ID])

    def test_complex_exception(self) -> None:
        result = test_tasks.complex_exception.enqueue()
        with self.assertLogs("django.tasks", level="ERROR"):
            run_worker()
        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.FAILED)
        self.assertIsNone(result._return_value)
        self.assertEqual(result.errors[0].exception_class, ValueError)
        self.assertIn('ValueError(ValueError("This task failed"))', result.errors[0].traceback)

    def test_return_values_json_cannot_hold_fail_the_task(self) -> None:
        results = [
            test_tasks.complex_return_value.enqueue(),
            test_tasks.return_float.enqueue("nan"),
        ]
        with self.assertLogs("django.tasks", level="ERROR") as captured_logs:
            run_worker()
        self.assertEqual(len(captured_logs.output), 2)
        for result in results:
            result.refresh()
            self.assertEqual(result.status, TaskResultStatus.FAILED)
            self.assertIsNone(result._return_value)
            self.assertEqual(result.errors[0].exception_class, TypeError)
        self.assertIn("Unsupported type", results[0].errors[0].traceback)

    def test_return_value_is_normalised(self) -> None:
        result = test_tasks.return_value.enqueue({"a": [1, 2.5, None, True, "x"]})
        run_worker()
        result.refresh()
        self.assertEqual(result.return_value, {"a": [1, 2.5, None, True, "x"]})

    def test_result(self) -> None:
        result = default_task_backend.enqueue(test_tasks.calculate_meaning_of_life, [], {})
        run_worker()
        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(result.return_value, 42)

    def test_logs(self) -> None:
        with self.assertLogs("django.tasks", level="DEBUG") as captured_logs:
            result = test_tasks.noop_task.enqueue()
            run_worker()

        self.assertEqual(len(captured_logs.output), 3)
        self.assertIn("enqueued", captured_logs.output[0])
        self.assertIn("state=RUNNING", captured_logs.output[1])
        self.assertIn("state=SUCCESSFUL", captured_logs.output[2])
        for line in captured_logs.output:
            self.assertIn(result.id, line)

    def test_signals_have_the_backend_as_sender_and_the_running_result(self) -> None:
        seen: list[tuple[str, type, str, list[str]]] = []

        def receive(signal: str) -> Any:
            def receiver(sender: type, task_result: Any, **kwargs: Any) -> None:
                seen.append((signal, sender, str(task_result.status), task_result.worker_ids))

            return receiver

        started, finished = receive("started"), receive("finished")
        task_started.connect(started, weak=False)
        task_finished.connect(finished, weak=False)
        self.addCleanup(task_started.disconnect, started)
        self.addCleanup(task_finished.disconnect, finished)
        test_tasks.noop_task.enqueue()
        run_worker()
        self.assertEqual(
            seen,
            [
                ("started", OmniQBackend, "RUNNING", [WORKER_ID]),
                ("finished", OmniQBackend, "SUCCESSFUL", [WORKER_ID]),
            ],
        )

    def test_takes_context(self) -> None:
        result = test_tasks.get_task_id.enqueue()
        run_worker()
        result.refresh()
        self.assertEqual(result.return_value, result.id)

    def test_context(self) -> None:
        result = test_tasks.test_context.enqueue(1)
        run_worker()
        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)

    def test_context_is_omniqs_task(self) -> None:
        result = test_tasks.describe_context.enqueue()
        run_worker()
        result.refresh()
        self.assertEqual(
            result.return_value,
            {
                "id": result.id,
                "attempt": 1,
                "status": "RUNNING",
                "worker_ids": [WORKER_ID],
                "omniq_id": result.id,
                "omniq_attempt": 1,
                "omniq_worker": WORKER_ID,
                "queue": "default:default",
            },
        )

    def test_batch_processes_all_tasks(self) -> None:
        for _ in range(3):
            test_tasks.noop_task.enqueue()
        failing = test_tasks.failing_task_value_error.enqueue()
        with self.assertLogs("django.tasks", level="ERROR"):
            run_worker()
        failing.refresh()
        self.assertEqual(failing.status, TaskResultStatus.FAILED)
        self.assertEqual(default_task_backend.omniq.stats()["completed"], 3)

    def test_no_tasks(self) -> None:
        stdout = StringIO()
        run_worker(verbosity=1, stdout=stdout)
        self.assertEqual(
            stdout.getvalue().splitlines(),
            [
                f"Starting worker worker_id={WORKER_ID} queues=default,emails,queue_1",
                f"No more tasks to run for worker_id={WORKER_ID} - exiting gracefully.",
            ],
        )

    def test_verbose_logging(self) -> None:
        result = test_tasks.noop_task.enqueue()
        stdout = StringIO()
        run_worker(verbosity=1, stdout=stdout, queue_name="default")
        self.assertEqual(
            stdout.getvalue().splitlines(),
            [
                f"Starting worker worker_id={WORKER_ID} queues=default",
                f"Task id={result.id} path=djapp.tasks.noop_task state=RUNNING",
                f"Task id={result.id} path=djapp.tasks.noop_task state=SUCCESSFUL",
                f"No more tasks to run for worker_id={WORKER_ID} - exiting gracefully.",
            ],
        )

    def test_doesnt_process_different_queue(self) -> None:
        result = test_tasks.noop_task.using(queue_name="queue_1").enqueue()
        run_worker(queue_name="default,emails")
        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.READY)
        run_worker(queue_name="queue_1")
        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)

    def test_process_all_queues(self) -> None:
        results = [
            test_tasks.noop_task.using(queue_name=q).enqueue() for q in ("queue_1", "emails")
        ]
        run_worker(queue_name="*")
        for result in results:
            result.refresh()
            self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)

    def test_doesnt_process_different_backend(self) -> None:
        mine = test_tasks.noop_task.enqueue()
        other = test_tasks.noop_task.using(backend="other").enqueue()
        run_worker(backend_name="other")
        mine.refresh()
        other.refresh()
        self.assertEqual(mine.status, TaskResultStatus.READY)
        self.assertEqual(other.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(other.backend, "other")

    def test_run_after(self) -> None:
        later = test_tasks.noop_task.using(run_after=timezone.now() + dt.timedelta(hours=10))
        result = later.enqueue()
        run_worker()
        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.READY)
        due = test_tasks.noop_task.using(run_after=timezone.now() - dt.timedelta(seconds=1))
        done = due.enqueue()
        run_worker()
        done.refresh()
        self.assertEqual(done.status, TaskResultStatus.SUCCESSFUL)

    def test_priority_then_run_after_then_enqueue_order(self) -> None:
        out = self.store_dir / "order.log"
        now = timezone.now()

        def add(name: str, **using: Any) -> None:
            test_tasks.append_line.using(**using).enqueue(str(out), name)

        add("low", priority=-2)
        add("plain-1")
        add("old", run_after=now - dt.timedelta(hours=2))
        add("future", priority=50, run_after=now + dt.timedelta(hours=2))
        add("high", priority=10)
        add("plain-2")
        add("very-old", run_after=now - dt.timedelta(hours=10))
        run_worker(concurrency=1)
        order = [line.split()[0] for line in out.read_text().splitlines()]
        self.assertEqual(order, ["high", "very-old", "old", "plain-1", "plain-2", "low"])

    def test_max_tasks(self) -> None:
        results = [test_tasks.noop_task.enqueue() for _ in range(5)]
        stdout = StringIO()
        run_worker(max_tasks=2, stdout=stdout, verbosity=1, concurrency=1)
        self.assertIn("Run maximum tasks (2)", stdout.getvalue())
        for result in results:
            result.refresh()
        statuses = Counter(result.status for result in results)
        self.assertEqual(statuses[TaskResultStatus.SUCCESSFUL], 2)
        self.assertEqual(statuses[TaskResultStatus.READY], 3)

    def test_bad_options(self) -> None:
        tasks = djsupport.django_test_settings.tasks_setting(self.options)
        tasks["dummy"] = {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}
        tasks["anyqueue"] = {"BACKEND": "omniq.contrib.django.OmniQBackend", "QUEUES": []}
        cases = [
            ({"backend_name": "unknown"}, "The connection 'unknown' doesn't exist."),
            ({"backend_name": "dummy"}, "not omniq.contrib.django.OmniQBackend"),
            ({"backend_name": "anyqueue"}, "list them with --queue-name"),
            ({"queue_name": "nope"}, "'nope' is not in TASKS['default']['QUEUES']"),
            ({"queue_name": "*,default"}, "stands alone"),
            ({"worker_id": "A" * 65}, "at most 64 characters"),
            ({"worker_id": ""}, "must not be empty"),
        ]
        with self.settings(TASKS=tasks):
            for options, message in cases:
                with self.subTest(options):
                    with self.assertRaisesMessage(CommandError, message) as raised:
                        run_worker(**options)
                    self.assertEqual(raised.exception.returncode, 2)

    def test_invalid_task_path_fails_without_importing_it(self) -> None:
        omniq = default_task_backend.omniq
        forged = {
            "task": "subprocess.check_output",
            "backend": "default",
            "args": [["touch", str(self.store_dir / "pwned")]],
            "kwargs": {},
            "run_after": None,
            "enqueued_at": timezone.now(),
        }
        forged_id = omniq.enqueue(run_django_task, kwargs=forged, queue="default:default")
        missing_id = omniq.enqueue(
            run_django_task,
            kwargs={**forged, "task": "djapp.tasks.no_such_task", "args": []},
            queue="default:default",
        )
        other_alias_id = omniq.enqueue(
            run_django_task,
            kwargs={**forged, "task": "djapp.tasks.noop_task", "backend": "other"},
            queue="default:default",
        )
        run_worker()
        for task_id in (forged_id, missing_id, other_alias_id):
            record = omniq.get_task(task_id)
            self.assertEqual(record.status, TaskStatus.FAILED)
            self.assertEqual(record.error.error_type, "forbidden", record.error)
        self.assertFalse((self.store_dir / "pwned").exists())
        with self.assertRaises(TaskResultDoesNotExist):
            default_task_backend.get_result(forged_id)

    def test_plain_omniq_tasks_in_an_aliass_queue_are_refused(self) -> None:
        # Enqueued by another facade: the worker's own may run what it enqueued itself.
        with OmniQ(default_task_backend.settings) as producer:
            task_id = producer.enqueue(
                "djapp.tasks.append_line.func", args=["x", "y"], queue="default:default"
            )
        run_worker()
        record = default_task_backend.omniq.get_task(task_id)
        self.assertEqual(record.status, TaskStatus.FAILED)
        self.assertEqual(record.error.error_type, "forbidden")

    def test_a_cancelled_task_is_failed_with_an_error(self) -> None:
        result = test_tasks.noop_task.enqueue()
        self.assertTrue(default_task_backend.omniq.cancel(result.id))
        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.FAILED)
        self.assertEqual(result.errors[0].exception_class_path, "omniq.exceptions.TaskCancelled")
        self.assertEqual(result.worker_ids, [])
        self.assertIsNotNone(result.finished_at)

    def test_a_task_retried_by_omniq_keeps_one_error_and_worker_per_run(self) -> None:
        result = test_tasks.failing_task_value_error.enqueue()
        with self.assertLogs("django.tasks", level="ERROR"):
            run_worker(worker_id="first")
            self.assertTrue(default_task_backend.omniq.retry(result.id))
            run_worker(worker_id="second")
        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.FAILED)
        self.assertEqual(result.worker_ids, ["first", "second"])
        self.assertEqual([e.exception_class for e in result.errors], [ValueError, ValueError])
        self.assertLess(result.started_at, result.last_attempted_at)


class WorkerDatabaseTestCase(djsupport.StoreTestMixin, TransactionTestCase):
    available_apps = ["omniq.contrib.django", "djapp"]

    def test_stale_connections_are_closed_around_each_task_on_its_thread(self) -> None:
        calls: list[int] = []

        def close_old_connections() -> None:
            calls.append(threading.get_ident())
            real_close_old_connections()

        results = [test_tasks.touch_database.enqueue() for _ in range(2)]
        with mock.patch.object(worker, "close_old_connections", close_old_connections):
            run_worker(concurrency=1)
        threads = []
        for result in results:
            result.refresh()
            self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL, result.errors)
            threads.append(result.return_value["thread"])
        # before and after each task, on the thread that ran it
        self.assertEqual(calls, [threads[0], threads[0], threads[1], threads[1]])


def test_the_backend_module_is_task_backends_default() -> None:
    # a plain pytest function, outside the TestCase classes: the configured TASKS work too
    assert isinstance(task_backends["default"], OmniQBackend)
    assert Path(task_backends["default"].settings.base_dir).name
