"""``python -m django omniq_worker`` as real processes: batch, max-tasks, queue names, two
aliases on one store, SIGINT/SIGTERM, and several workers running each task once.

Each worker is a separate process on the test's store, started as a user starts one,
and the test waits for what it prints or for files its tasks write, never for a time.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import djsupport
from django.tasks import TaskResultStatus, default_task_backend, task_backends
from django.test import SimpleTestCase
from djapp import tasks as test_tasks

from omniq.contrib.django.exceptions import WorkerLost
from omniq.models import AttemptOutcome

PROCESS_TIMEOUT = 120.0


class Worker:
    """A worker process whose stdout and stderr are read as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (process.stdout, process.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, fragment: str) -> None:
        djsupport.wait_until(
            lambda: fragment in self.output or self.process.poll() is not None,
            PROCESS_TIMEOUT,
            f"{fragment!r} from the worker",
        )
        assert fragment in self.output, self.output

    def finish(self) -> int:
        code = self.process.wait(timeout=PROCESS_TIMEOUT)
        for reader in self._readers:
            reader.join(timeout=PROCESS_TIMEOUT)
        return code


class WorkerProcessTestCase(djsupport.StoreTestMixin, SimpleTestCase):
    def worker(self, *options: str) -> Worker:
        return Worker(self.start_worker(*options))

    def path(self, name: str) -> str:
        return str(self.store_dir / name)

    def test_batch_runs_what_is_due_and_exits_0(self) -> None:
        ok = [test_tasks.calculate_meaning_of_life.enqueue() for _ in range(3)]
        failing = test_tasks.failing_task_value_error.enqueue()
        worker = self.worker("--batch", "--worker-id", "batch-worker")
        self.assertEqual(worker.finish(), 0, worker.output)
        for result in ok:
            result.refresh()
            self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
            self.assertEqual(result.return_value, 42)
            self.assertEqual(result.worker_ids, ["batch-worker"])
        failing.refresh()
        self.assertEqual(failing.status, TaskResultStatus.FAILED)
        self.assertEqual(failing.errors[0].exception_class, ValueError)
        self.assertIn("No more tasks to run for worker_id=batch-worker", worker.output)
        self.assertIn(
            f"Task id={failing.id} path=djapp.tasks.failing_task_value_error", worker.output
        )

    def test_max_tasks_waits_for_tasks_then_exits_0(self) -> None:
        worker = self.worker("--max-tasks", "2", "--concurrency", "1")
        worker.wait_for("Starting worker")
        results = [test_tasks.append_line.enqueue(self.path("out"), str(i)) for i in range(3)]
        self.assertEqual(worker.finish(), 0, worker.output)
        self.assertIn("Run maximum tasks (2)", worker.output)
        for result in results:
            result.refresh()
        statuses = Counter(result.status for result in results)
        self.assertEqual(statuses, {TaskResultStatus.SUCCESSFUL: 2, TaskResultStatus.READY: 1})

    def test_queue_names(self) -> None:
        emails = test_tasks.noop_task.using(queue_name="emails").enqueue()
        default = test_tasks.noop_task.enqueue()
        self.assertEqual(self.worker("--batch", "--queue-name", "emails").finish(), 0)
        emails.refresh()
        default.refresh()
        self.assertEqual(emails.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(default.status, TaskResultStatus.READY)
        self.assertEqual(self.worker("--batch", "--queue-name", "queue_1,default").finish(), 0)
        default.refresh()
        self.assertEqual(default.status, TaskResultStatus.SUCCESSFUL)

    def test_two_aliases_on_one_store_each_worker_runs_its_own(self) -> None:
        mine = test_tasks.noop_task.enqueue()
        other = test_tasks.noop_task.using(backend="other").enqueue()
        self.assertEqual(self.worker("--batch", "--backend", "other").finish(), 0)
        mine.refresh()
        other.refresh()
        self.assertEqual(mine.status, TaskResultStatus.READY)
        self.assertEqual(other.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(task_backends["other"].get_result(other.id), other)
        self.assertEqual(self.worker("--batch").finish(), 0)
        mine.refresh()
        self.assertEqual(mine.status, TaskResultStatus.SUCCESSFUL)

    def test_a_signal_lets_the_running_task_finish_then_exits_0(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with self.subTest(signal.Signals(signum).name):
                started, release = self.path(f"started-{signum}"), self.path(f"release-{signum}")
                result = test_tasks.wait_for_file.enqueue(started, release)
                worker = self.worker("--worker-id", f"w{signum}", "--concurrency", "1")
                djsupport.wait_for_file(started, PROCESS_TIMEOUT)
                result.refresh()
                self.assertEqual(result.status, TaskResultStatus.RUNNING)
                self.assertEqual(result.worker_ids, [f"w{signum}"])

                worker.process.send_signal(signum)
                worker.wait_for("signal again to stop now")
                later = test_tasks.noop_task.enqueue()  # a stopping worker takes no more
                Path(release).touch()
                self.assertEqual(worker.finish(), 0, worker.output)

                result.refresh()
                self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
                self.assertEqual(result.return_value, "released")
                later.refresh()
                self.assertEqual(later.status, TaskResultStatus.READY)
                self.assertEqual(self.worker("--batch").finish(), 0)  # the next worker does

    def test_a_second_sigint_stops_at_once_and_puts_the_task_back(self) -> None:
        started = self.path("started")
        result = test_tasks.wait_for_file.enqueue(started, self.path("never"))
        worker = self.worker("--worker-id", "impatient")
        djsupport.wait_for_file(started, PROCESS_TIMEOUT)
        worker.process.send_signal(signal.SIGINT)
        worker.wait_for("signal again to stop now")
        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.RUNNING)
        worker.process.send_signal(signal.SIGINT)
        self.assertEqual(worker.finish(), 0, worker.output)

        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.READY)  # never left RUNNING
        self.assertEqual(result.worker_ids, [])  # the run was put back, not spent
        history = default_task_backend.omniq.get_task(result.id).attempts_history
        self.assertEqual([entry.outcome for entry in history], [AttemptOutcome.RELEASED])
        self.assertEqual(history[0].worker, "impatient")

    def test_a_signal_while_idle_exits_0(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with self.subTest(signal.Signals(signum).name):
                worker = self.worker()
                worker.wait_for("Starting worker")
                worker.process.send_signal(signum)
                self.assertEqual(worker.finish(), 0, worker.output)

    def test_system_exit_and_keyboard_interrupt_fail_the_task_not_the_worker(self) -> None:
        results = [
            test_tasks.failing_task_system_exit.enqueue(),
            test_tasks.failing_task_keyboard_interrupt.enqueue(),
            test_tasks.exit_task.enqueue(),
        ]
        after = test_tasks.calculate_meaning_of_life.enqueue()
        worker = self.worker("--batch", "--concurrency", "1")
        self.assertEqual(worker.finish(), 0, worker.output)
        expected = [SystemExit, KeyboardInterrupt, SystemExit]
        for result, exception in zip(results, expected, strict=True):
            result.refresh()
            self.assertEqual(result.status, TaskResultStatus.FAILED)
            self.assertEqual(result.errors[0].exception_class, exception)
        after.refresh()
        self.assertEqual(after.return_value, 42)

    def test_async_tasks_run_too(self) -> None:
        result = test_tasks.append_line_async.enqueue(self.path("out"), "async")
        self.assertEqual(self.worker("--batch").finish(), 0)
        result.refresh()
        self.assertEqual(result.return_value, "async")

    def test_three_workers_run_each_task_exactly_once(self) -> None:
        out = self.path("runs")
        results = [test_tasks.append_line.enqueue(out, f"task-{i}") for i in range(30)]
        workers = [self.worker("--batch", "--worker-id", f"w{i}") for i in range(3)]
        for worker in workers:
            self.assertEqual(worker.finish(), 0, worker.output)
        runs = Counter(line.split()[0] for line in Path(out).read_text().splitlines())
        self.assertEqual(runs, Counter({f"task-{i}": 1 for i in range(30)}))
        names = set()
        for result in results:
            result.refresh()
            self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
            self.assertEqual(len(result.worker_ids), 1)
            names.update(result.worker_ids)
        self.assertLessEqual(names, {"w0", "w1", "w2"})

    def test_bad_options_exit_2_with_one_line(self) -> None:
        worker = self.worker("--backend", "nope")
        self.assertEqual(worker.finish(), 2)
        self.assertIn(
            "CommandError: --backend nope: The connection 'nope' doesn't exist.", worker.output
        )


class KilledWorkerTestCase(djsupport.StoreTestMixin, SimpleTestCase):
    extra_options = {"lease_timeout": 1.0}  # recovered 1 s after its worker died

    def test_the_task_of_a_killed_worker_fails_as_worker_lost(self) -> None:
        started = str(self.store_dir / "started")
        result = test_tasks.wait_for_file.enqueue(started, str(self.store_dir / "never"))
        victim = Worker(self.start_worker("--worker-id", "victim"))
        djsupport.wait_for_file(started, PROCESS_TIMEOUT)
        victim.process.kill()
        self.assertEqual(victim.finish(), -signal.SIGKILL)
        result.refresh()
        self.assertEqual(result.status, TaskResultStatus.RUNNING)  # until its lease runs out

        rescuer = Worker(self.start_worker("--worker-id", "rescuer"))

        def failed() -> bool:
            result.refresh()
            return bool(result.status == TaskResultStatus.FAILED)

        djsupport.wait_until(failed, PROCESS_TIMEOUT, "the lost task to fail")
        rescuer.process.send_signal(signal.SIGTERM)
        self.assertEqual(rescuer.finish(), 0, rescuer.output)
        self.assertEqual(result.worker_ids, ["victim"])  # its one execution, spent
        self.assertEqual(
            result.errors[0].exception_class_path, "omniq.contrib.django.exceptions.WorkerLost"
        )
        self.assertIs(result.errors[0].exception_class, WorkerLost)
        self.assertIn("lease ran out", result.errors[0].traceback)
