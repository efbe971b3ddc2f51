"""The ``omniq`` command, driven through its entry point as a user would: a subprocess.

Every test works on a fresh SQLite store (``--base-dir``). The task functions come
from ``tests/task_functions.py``, importable in the subprocesses through the
PYTHONPATH that tests/conftest.py sets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from damaged import DEEP_PAYLOAD, YEAR_10000, record
from processes import wait_until

from omniq import OmniQ, Settings
from omniq.queue import TaskQueue
from omniq.storage.sqlite import SQLiteStorage

COMMAND = [sys.executable, "-m", "omniq"]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without OMNIQ_* variables, plus ``extra``.

    Workers may run the tests' task functions (``OMNIQ_TASK_MODULES``), as an
    application's do theirs; pass ``OMNIQ_TASK_MODULES=""`` to allow nothing.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith("OMNIQ_")}
    env["OMNIQ_TASK_MODULES"] = "task_functions"
    env.update(extra)
    return env


class Cli:
    """Runs ``python -m omniq ...`` on one store and checks what it printed."""

    def __init__(self, base_dir: Path, cwd: Path) -> None:
        self.base_dir = base_dir
        self.cwd = cwd

    def args(self, arguments: Sequence[str], store: bool) -> list[str]:
        return [*COMMAND, *arguments, *(["--base-dir", str(self.base_dir)] if store else [])]

    def run(
        self,
        *arguments: str,
        store: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.args(arguments, store),
            cwd=self.cwd,
            env=env if env is not None else clean_environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, *arguments: str, **options: Any) -> str:
        """Run; assert exit status 0; return stdout."""
        completed = self.run(*arguments, **options)
        assert completed.returncode == 0, (arguments, completed.stdout, completed.stderr)
        assert "Traceback" not in completed.stderr
        return completed.stdout

    def json(self, *arguments: str) -> Any:
        return json.loads(self.ok(*arguments, "--json"))

    def start(self, *arguments: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.args(arguments, True),
            cwd=self.cwd,
            env=clean_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def enqueue(self, func_path: str, *options: str, **run_options: Any) -> str:
        task_id = self.ok("enqueue", func_path, *options, **run_options).strip()
        assert len(task_id) == 36, task_id
        return task_id

    def task(self, task_id: str) -> dict[str, Any]:
        found = self.json("show", task_id)
        assert isinstance(found, dict)
        return found


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "store", tmp_path)


def expect_usage_error(completed: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert completed.returncode == 2, (completed.stdout, completed.stderr)
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("omniq: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert completed.stdout == ""


# ---------------------------------------------------------------------- the round trip


def test_enqueue_run_and_inspect(cli: Cli) -> None:
    task_id = cli.enqueue("task_functions.add", "--args", "[1, 2]")
    later = cli.enqueue(
        "task_functions.add", "--args", "[3]", "--kwargs", '{"b": 4}', "--delay", "1h"
    )

    status = cli.json("status")
    assert (status["pending"], status["total"]) == (2, 2)
    assert status["next_eta"] is not None
    table = cli.ok("status")
    assert "pending" in table and "next due:" in table

    listed = cli.ok("list")
    assert task_id in listed and later in listed
    assert listed.splitlines()[0].split()[:4] == ["ID", "STATUS", "QUEUE", "FUNCTION"]

    worker = cli.run("worker", "--limit", "5")
    assert worker.returncode == 0, worker.stderr
    assert "1/5 tasks done" in worker.stderr  # no terminal: plain progress lines
    assert "stopped after 1 task(s)" in worker.stderr

    done = cli.task(task_id)
    assert (done["status"], done["result"], done["attempts"]) == ("completed", 3, 1)
    assert cli.task(later)["status"] == "pending"
    assert cli.task(later)["kwargs"] == {"b": 4}
    shown = cli.ok("show", task_id)
    assert "completed" in shown and "task_functions.add" in shown


def test_the_failed_task_path_list_show_retry(cli: Cli, tmp_path: Path) -> None:
    out = str(tmp_path / "runs.log")
    task_id = cli.enqueue(
        "task_functions.fail_always", "--args", json.dumps([out]), "--max-retries", "1"
    )
    cli.ok("worker", "--limit", "1")

    failed = cli.ok("list", "--status", "failed")
    assert task_id in failed and "runtime: this task always fails" in failed
    assert cli.json("list", "--status", "completed") == []

    shown = cli.run("show", task_id)
    assert shown.returncode == 0  # show reports; the task's status is in the output
    assert "runtime: this task always fails" in shown.stdout
    assert "traceback:" in shown.stdout and "RuntimeError" in shown.stdout
    error = cli.task(task_id)["error"]
    assert error["error_type"] == "runtime" and "RuntimeError" in error["traceback"]

    assert "pending again" in cli.ok("retry", task_id)
    assert cli.task(task_id)["status"] == "pending"
    again = cli.run("retry", task_id)
    assert again.returncode == 1
    assert "is pending: only failed or cancelled tasks can be retried" in again.stderr

    cli.ok("worker", "--limit", "1")
    assert cli.json("retry", "--all-failed") == {"retried": 1}
    assert cli.json("retry", "--all-failed") == {"retried": 0}


def test_cancel_a_pending_task_but_not_a_running_one(cli: Cli) -> None:
    pending = cli.enqueue("task_functions.add", "--args", "[1, 1]", "--delay", "1h")
    assert cli.json("cancel", pending) == {"id": pending, "cancelled": True, "status": "cancelled"}
    refused = cli.run("cancel", pending)
    assert refused.returncode == 1 and "is cancelled" in refused.stderr

    running = cli.enqueue("task_functions.add", "--args", "[2, 2]")
    queue = TaskQueue(SQLiteStorage(cli.base_dir / "omniq.db"))
    try:
        claimed = queue.dequeue()  # what a worker does: now it is RUNNING
        assert claimed is not None and claimed.id == running
    finally:
        queue.close()
    refused = cli.run("cancel", running, "--json")
    assert refused.returncode == 1
    assert "is running: only pending tasks can be cancelled" in refused.stderr
    assert json.loads(refused.stdout) == {"id": running, "cancelled": False, "status": "running"}


def test_purge_old_finished_tasks(cli: Cli) -> None:
    cli.enqueue("task_functions.add", "--args", "[1, 1]")
    cli.enqueue("task_functions.add", "--args", "[1]")  # fails: wrong arguments
    keep = cli.enqueue("task_functions.add", "--args", "[2, 2]", "--delay", "1h")
    cli.ok("worker", "--limit", "2")

    assert cli.json("purge", "--older-than", "7d") == {"purged": 0}
    assert cli.json("purge", "--older-than", "0", "--status", "completed") == {"purged": 1}
    assert "1 task(s) purged" in cli.ok("purge", "--older-than", "0s")
    remaining = cli.json("list")
    assert [task["id"] for task in remaining] == [keep]


def test_enqueue_options_reach_the_task(cli: Cli) -> None:
    task_id = cli.enqueue(
        "task_functions.add",
        "--args",
        "[1, 2]",
        "--eta",
        "2030-01-31T09:30:00Z",
        "--interval",
        "1h30m",
        "--max-retries",
        "5",
        "--timeout",
        "90",
    )
    task = cli.task(task_id)
    assert task["eta"] == "2030-01-31T09:30:00+00:00"
    assert task["interval"] == 5400.0
    assert task["max_retries"] == 5
    assert task["timeout"] == 90.0
    shown = cli.ok("show", task_id)
    assert "1h30m" in shown and "1m30s" in shown


def test_queues_priorities_and_unique_keys(cli: Cli) -> None:
    report = cli.enqueue(
        "task_functions.add",
        "--args",
        "[1, 2]",
        "--queue",
        "reports",
        "--priority",
        "10",
        "--unique-key",
        "report:42",
    )
    again = cli.enqueue("task_functions.add", "--args", "[9, 9]", "--unique-key", "report:42")
    assert again == report  # the key is held: nothing new, the holder's id
    other = cli.enqueue("task_functions.add", "--args", "[3, 4]", "--priority", "-5")
    task = cli.task(report)
    assert (task["queue"], task["priority"], task["unique_key"]) == ("reports", 10, "report:42")
    assert "reports" in cli.ok("list", "--queue", "reports")
    assert other not in cli.ok("list", "--queue", "reports")
    status = cli.ok("status")
    assert "QUEUE" in status and "reports" in status and "default" in status
    assert cli.json("status")["queues"]["reports"]["pending"] == 1
    assert cli.json("worker", "--queue", "default", "--limit", "5") == {"processed": 1}
    assert cli.task(report)["status"] == "pending"  # not served
    assert cli.json("worker", "--queue", "reports", "--limit", "5") == {"processed": 1}
    shown = cli.ok("show", report)
    assert "reports" in shown and "report:42" in shown and "attempt 1" in shown


def test_a_stored_call_of_os_system_fails_as_forbidden_and_runs_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    pwned = tmp_path / "pwned"
    # Written as anyone who can write to the store could: no producer-side check.
    attack = json.dumps([f"echo PWNED > {pwned}"])
    task_id = cli.enqueue(
        "os.system", "--args", attack, env=clean_environment(OMNIQ_TASK_MODULES="")
    )
    assert cli.json("worker", "--limit", "1") == {"processed": 1}
    task = cli.task(task_id)
    assert task["status"] == "failed" and task["error"]["error_type"] == "forbidden"
    assert "os.system" in task["error"]["message"] and "--import" in task["error"]["message"]
    assert not pwned.exists()  # nothing ran


def test_the_worker_says_which_declared_tasks_it_serves(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "declared_here.py").write_text(
        "from omniq import task\n\n@task\ndef double(x: int) -> int:\n    return 2 * x\n"
    )
    env = clean_environment(OMNIQ_TASK_MODULES="")
    task_id = cli.ok("enqueue", "declared_here.double", "--args", "[21]", env=env).strip()
    worker = cli.run("worker", "--import", "declared_here", "--limit", "1", env=env)
    assert worker.returncode == 0, worker.stderr
    assert "declared tasks: declared_here.double" in worker.stderr
    assert cli.task(task_id)["result"] == 42


def test_schedules_are_listed_and_removed(cli: Cli) -> None:
    with OmniQ(Settings(base_dir=cli.base_dir)) as omniq:
        omniq.schedule("nightly", "task_functions.add", cron="0 3 * * *", args=[1, 2])
        omniq.schedule("often", "task_functions.add", every=600, args=[3, 4])
    table = cli.ok("schedules")
    assert "nightly" in table and "cron 0 3 * * * (UTC)" in table and "every 0:10:00" in table
    listed = cli.json("schedules")
    assert [entry["name"] for entry in listed] == ["nightly", "often"]
    assert listed[0]["next_fire"] is not None and listed[0]["task"] == "task_functions.add"
    assert cli.json("schedules", "remove", "often") == {"name": "often", "removed": True}
    assert [entry["name"] for entry in cli.json("schedules")] == ["nightly"]
    expect_usage_error(cli.run("schedules", "remove", "often"), "no schedule named 'often'")
    expect_usage_error(cli.run("schedules", "remove", "bad name"), "'bad name'")


def test_json_output_of_enqueue(cli: Cli) -> None:
    created = cli.json("enqueue", "task_functions.add", "--args", "[1, 2]")
    assert set(created) == {"id"}
    assert cli.task(created["id"])["args"] == [1, 2]


# ---------------------------------------------------------------------- workers


def test_async_worker_runs_coroutine_and_plain_tasks(cli: Cli) -> None:
    first = cli.enqueue("task_functions.async_add", "--args", "[1, 2]")
    second = cli.enqueue("task_functions.add", "--args", "[3, 4]")
    assert cli.json("worker", "--async", "--limit", "2") == {"processed": 2}
    assert cli.task(first)["result"] == 3
    assert cli.task(second)["result"] == 7


def test_worker_imports_modules_from_the_current_directory(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "my_tasks.py").write_text(
        textwrap.dedent(
            """
            import pathlib

            pathlib.Path("imported.flag").write_text("yes")

            def double(x):
                return 2 * x
            """
        )
    )
    # A producer without task_modules cannot check the path; the worker's --import allows it.
    task_id = cli.enqueue(
        "my_tasks.double", "--args", "[21]", env=clean_environment(OMNIQ_TASK_MODULES="")
    )
    script = Path(sys.executable).with_name("omniq")  # the console script, not python -m
    command = [str(script)] if script.exists() else COMMAND
    completed = subprocess.run(
        [
            *command,
            "worker",
            "--import",
            "my_tasks",
            "--limit",
            "1",
            "--base-dir",
            str(cli.base_dir),
        ],
        cwd=tmp_path,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "imported.flag").read_text() == "yes"
    assert cli.task(task_id)["result"] == 42


def test_worker_logs_show_omniq_records_and_the_tasks_own_once(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "loud_tasks.py").write_text(
        "from loguru import logger\n\n"
        "def hello(name):\n"
        "    logger.info('the task says hello to {}', name)\n"
    )
    task_id = cli.enqueue(
        "loud_tasks.hello", "--args", '["Ada"]', env=clean_environment(OMNIQ_TASK_MODULES="")
    )
    completed = cli.run("worker", "--import", "loud_tasks", "--limit", "1")
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.count("the task says hello to Ada") == 1
    assert completed.stderr.count(f"Task {task_id} completed") == 1
    quiet = cli.run("worker", "--limit", "1", "--log-level", "off")
    assert "INFO" not in quiet.stderr


def test_worker_import_of_a_broken_module_fails_in_one_line(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "broken_tasks.py").write_text("raise RuntimeError('boom at import')\n")
    completed = cli.run("worker", "--import", "broken_tasks", "--limit", "1")
    assert completed.returncode == 1
    assert completed.stderr.strip().splitlines()[-1].startswith("omniq: error: --import")
    assert "boom at import" in completed.stderr and "Traceback" not in completed.stderr
    debug = cli.run("worker", "--import", "broken_tasks", "--limit", "1", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_sigterm_stops_the_worker_gracefully(cli: Cli) -> None:
    task_id = cli.enqueue("task_functions.sleep_for", "--args", "[1.0]")
    worker = cli.start("worker", "--concurrency", "2")
    try:
        wait_until(lambda: cli.task(task_id)["status"] == "running", 30, "the task to start")
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr
    assert "stopped after 1 task(s)" in stderr
    assert cli.task(task_id)["status"] == "completed"  # it got its grace period


def test_a_second_signal_stops_at_once_and_puts_the_task_back(cli: Cli) -> None:
    task_id = cli.enqueue("task_functions.async_sleep_for", "--args", "[60]")
    worker = cli.start("worker", "--async")
    try:
        wait_until(lambda: cli.task(task_id)["status"] == "running", 30, "the task to start")
        worker.send_signal(signal.SIGINT)
        time.sleep(0.5)  # two signals sent at once could merge into one
        assert worker.poll() is None  # the first signal waits for the running task
        worker.send_signal(signal.SIGINT)
        _, stderr = worker.communicate(timeout=15)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr
    task = cli.task(task_id)
    assert (task["status"], task["attempts"]) == ("pending", 0)


# ---------------------------------------------------------------------- configuration


def test_the_environment_configures_the_store_and_flags_win(cli: Cli, tmp_path: Path) -> None:
    env_store = tmp_path / "env-store"
    env = clean_environment(OMNIQ_BASE_DIR=str(env_store), OMNIQ_BACKEND="sqlite")
    task_id = cli.ok("enqueue", "task_functions.add", "--args", "[1, 2]", store=False, env=env)
    assert (env_store / "omniq.db").exists()
    by_env = json.loads(cli.ok("list", "--json", store=False, env=env))
    assert [task["id"] for task in by_env] == [task_id.strip()]
    by_flag = json.loads(
        cli.ok("list", "--json", "--base-dir", str(cli.base_dir), store=False, env=env)
    )
    assert by_flag == []


def test_store_flags_may_come_before_the_command(cli: Cli) -> None:
    task_id = cli.ok("--base-dir", str(cli.base_dir), "enqueue", "task_functions.add", store=False)
    assert cli.task(task_id.strip())["func_path"] == "task_functions.add"


def test_eager_mode_is_ignored_by_the_command(cli: Cli) -> None:
    env = clean_environment(OMNIQ_EAGER="1")
    task_id = cli.ok("enqueue", "task_functions.add", "--args", "[1, 2]", env=env).strip()
    assert cli.task(task_id)["status"] == "pending"


def test_an_unexpected_error_is_one_line_unless_debug(cli: Cli, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    plain = cli.run("status", "--base-dir", str(not_a_dir), store=False)
    assert plain.returncode == 1
    assert len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    assert plain.stderr.startswith("omniq: error: ")
    debug = cli.run("status", "--base-dir", str(not_a_dir), "--debug", store=False)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_version_and_help(cli: Cli) -> None:
    assert cli.ok("--version", store=False).startswith("omniq ")
    helped = cli.ok("--help", store=False)
    for command in ("worker", "enqueue", "status", "list", "show", "retry", "cancel", "purge"):
        assert command in helped
    assert "--older-than" in cli.ok("purge", "--help", store=False)


# ---------------------------------------------------------------------- bad input

BAD_INPUT = {
    "no command": ([], "required"),
    "unknown command": (["bogus"], "invalid choice"),
    "unknown flag": (["list", "--bogus"], "unrecognized arguments"),
    "unparsable args": (["enqueue", "task_functions.add", "--args", "[1,"], "invalid JSON"),
    "args not a list": (["enqueue", "task_functions.add", "--args", '{"a": 1}'], "JSON array"),
    "kwargs not a dict": (["enqueue", "task_functions.add", "--kwargs", "[1]"], "JSON object"),
    "bad delay": (["enqueue", "task_functions.add", "--delay", "5x"], "invalid duration '5x'"),
    "bad interval": (["enqueue", "task_functions.add", "--interval", "0"], "above zero"),
    "bad eta": (["enqueue", "task_functions.add", "--eta", "tomorrow"], "ISO 8601"),
    "eta and delay": (
        ["enqueue", "task_functions.add", "--eta", "2030-01-01T00:00", "--delay", "1m"],
        "not allowed",
    ),
    "bad function path": (["enqueue", "not_a_path"], "dotted path"),
    "negative retries": (["enqueue", "task_functions.add", "--max-retries", "-1"], "from 0 to"),
    "retries past 2**63": (
        ["enqueue", "task_functions.add", "--max-retries", "9223372036854775808"],
        "from 0 to 2147483647, got '9223372036854775808'",
    ),
    "retries 2**31": (
        ["enqueue", "task_functions.add", "--max-retries", "2147483648"],
        "from 0 to 2147483647",
    ),
    "delay 1e20": (["enqueue", "task_functions.add", "--delay", "1e20"], "invalid duration"),
    "delay of 10**20 s": (
        ["enqueue", "task_functions.add", "--delay", "100000000000000000000"],
        "too long: at most 100 years",
    ),
    "interval of 110 years": (
        ["enqueue", "task_functions.add", "--interval", "40000d"],
        "too long",
    ),
    "interval under 1 ms": (
        ["enqueue", "task_functions.add", "--interval", "0.0001"],
        "interval must be at least 0.001 seconds",
    ),
    "timeout of 10**12 s": (
        ["enqueue", "task_functions.add", "--timeout", "1000000000000"],
        "too long",
    ),
    "eta past 9000": (
        ["enqueue", "task_functions.add", "--eta", "9999-12-31T23:59:59"],
        "eta must be between 1970-01-01 and 9000-01-01",
    ),
    "eta before 1970": (
        ["enqueue", "task_functions.add", "--eta", "1960-01-01T00:00+00:00"],
        "eta must be between",
    ),
    "function path and a newline": (["enqueue", "task_functions.add\n"], "dotted path"),
    "args nested 500 deep": (
        ["enqueue", "task_functions.add", "--args", "[" + "[" * 500 + "]" * 500 + "]"],
        "nested more than 100 levels",
    ),
    "bad purge age": (["purge", "--older-than", "5x"], "invalid duration"),
    "purge without age": (["purge"], "--older-than"),
    "purge pending": (["purge", "--older-than", "1d", "--status", "pending"], "invalid choice"),
    "list limit zero": (["list", "--limit", "0"], "from 1 to"),
    "list limit 1e20": (["list", "--limit", "1e20"], "whole number"),
    "list limit 10**20": (["list", "--limit", "100000000000000000000"], "from 1 to 2147483647"),
    "list offset 2**31": (["list", "--offset", "2147483648"], "from 0 to 2147483647"),
    "list bad status": (["list", "--status", "lost"], "invalid choice"),
    "show unknown id": (["show", "no-such-task"], "no task with id 'no-such-task'"),
    "retry unknown id": (["retry", "no-such-task"], "no task with id"),
    "cancel unknown id": (["cancel", "no-such-task"], "no task with id"),
    "show undecodable id": (["show", "abc\udcff"], "lone surrogate '\\udcff'"),
    "cancel undecodable id": (["cancel", "abc\udcff"], "lone surrogate"),
    "retry undecodable id": (["retry", "abc\udcff"], "lone surrogate"),
    "show long id": (["show", "x" * 300], "300 characters long, over the limit of 255"),
    "cancel empty id": (["cancel", ""], "must not be empty"),
    "retry without target": (["retry"], "required"),
    "retry id and all": (["retry", "x", "--all-failed"], "not allowed"),
    "missing module": (["worker", "--import", "no_such_module_xyz"], "no module named"),
    "bad concurrency": (["worker", "--concurrency", "0"], "from 1 to"),
    "huge concurrency": (["worker", "--concurrency", "99999999999"], "from 1 to 2147483647"),
    "bad duration": (["worker", "--duration", "1y"], "invalid duration"),
    "async and threads": (["worker", "--async", "--threads"], "not allowed"),
    "memory backend": (["--backend", "memory", "status"], "invalid choice"),
    "bad queue name": (["enqueue", "task_functions.add", "--queue", "no spaces"], "'no spaces'"),
    "priority out of range": (["enqueue", "task_functions.add", "--priority", "101"], "101"),
    "priority not a number": (["enqueue", "task_functions.add", "--priority", "hi"], "'hi'"),
    "empty unique key": (["enqueue", "task_functions.add", "--unique-key", ""], "''"),
    "worker bad queue": (["worker", "--queue", "a/b"], "'a/b'"),
    "list bad queue": (["list", "--queue", "a b"], "'a b'"),
}


@pytest.mark.parametrize(("arguments", "fragment"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_line_and_exit_2(cli: Cli, arguments: list[str], fragment: str) -> None:
    expect_usage_error(cli.run(*arguments), fragment)


@pytest.mark.parametrize(
    ("base_dir", "fragment"),
    [("", "base_dir must name a directory"), ("~nosuchuser_omniq/q", "home directory")],
)
def test_a_bad_base_dir_is_a_usage_error(cli: Cli, base_dir: str, fragment: str) -> None:
    expect_usage_error(cli.run("status", "--base-dir", base_dir, store=False), fragment)
    env = clean_environment(OMNIQ_BASE_DIR=base_dir)
    if base_dir:  # an empty variable means "not set"
        expect_usage_error(cli.run("list", store=False, env=env), fragment)


def test_a_damaged_task_is_listed_and_shown_and_breaks_no_command(cli: Cli) -> None:
    good = cli.enqueue("task_functions.add", "--args", "[1, 2]")
    deep, far = record(payload=DEEP_PAYLOAD), record(eta=YEAR_10000)
    storage = SQLiteStorage(cli.base_dir / "omniq.db")
    storage.add([deep, far])
    storage.close()

    listed = cli.json("list")
    assert {task["id"] for task in listed} == {good, deep.id, far.id}
    assert deep.id[:8] in cli.ok("list")
    shown = cli.task(deep.id)
    assert shown["args"] == [] and "RecursionError" in shown["error"]["message"]
    assert "arguments cannot be decoded" in cli.ok("show", deep.id)
    assert "eta cannot be decoded" in cli.task(far.id)["error"]["message"]
    assert cli.json("status")["pending"] == 3

    cli.ok("worker", "--limit", "5")
    failed = cli.task(deep.id)
    assert failed["status"] == "failed" and failed["error"]["error_type"] == "serialization"
    assert "cannot be decoded" in cli.ok("show", deep.id)
    assert [task["id"] for task in cli.json("list", "--status", "failed")] == [deep.id]
    assert cli.task(good)["result"] == 3


def test_bad_environment_is_a_usage_error(cli: Cli) -> None:
    expect_usage_error(
        cli.run("status", env=clean_environment(OMNIQ_CONCURRENCY="many")), "OMNIQ_CONCURRENCY"
    )
    expect_usage_error(
        cli.run("status", env=clean_environment(OMNIQ_BACKEND="memory")), "memory backend"
    )


def test_the_store_written_by_the_command_is_the_librarys(cli: Cli) -> None:
    task_id = cli.enqueue("task_functions.add", "--args", "[5, 6]")
    with OmniQ(Settings(base_dir=cli.base_dir, task_modules=["task_functions"])) as omniq:
        with omniq.worker_pool(poll_interval=0.05) as workers:
            workers.process_tasks(limit=1)
        assert omniq.get_result(task_id) == 11


# ---------------------------------------------------------------------- the process executor

WAIT_WORKER = 120.0  # seconds a worker with children may take on a very busy machine


def test_worker_with_processes_runs_tasks_in_children(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "child_tasks.py").write_text(  # found by the children too (the cwd)
        "import os\n\ndef whose():\n    return os.getpid()\n"
    )
    env = clean_environment(OMNIQ_TASK_MODULES="")
    where = cli.enqueue("child_tasks.whose", env=env)
    crash = cli.enqueue("task_functions.exit_now", "--args", "[3]", "--max-retries", "1")
    add = cli.enqueue("task_functions.async_add", "--args", "[1, 2]")
    completed = cli.run(
        "worker",
        "--import",
        "child_tasks",
        "--processes",
        "2",
        "--max-tasks-per-child",
        "10",
        "--max-memory-per-child",
        "1024",
        "--kill-grace",
        "2s",
        "--limit",
        "3",
        timeout=WAIT_WORKER,
    )
    assert completed.returncode == 0, completed.stderr
    assert "omniq worker: 2 child processes on sqlite" in completed.stderr
    assert "stopped after 3 task(s)" in completed.stderr
    assert isinstance(cli.task(where)["result"], int)
    crashed = cli.task(crash)
    assert crashed["status"] == "failed" and crashed["error"]["error_type"] == "crashed"
    assert "exited with code 3" in crashed["error"]["message"]
    assert cli.task(add)["result"] == 3
    hang = cli.enqueue("task_functions.hang_sleep", "--args", json.dumps([str(tmp_path / "h")]))
    hung = cli.run(
        "worker",
        "--async",
        "--processes",
        "1",
        "--limit",
        "1",
        env=clean_environment(OMNIQ_TASK_TIMEOUT="1"),
        timeout=WAIT_WORKER,
    )
    assert hung.returncode == 0, hung.stderr
    assert "omniq worker: 1 child process on" in hung.stderr
    assert cli.task(hang)["error"]["error_type"] == "timeout"


def test_the_environment_chooses_the_process_executor(cli: Cli) -> None:
    task_id = cli.enqueue("task_functions.add", "--args", "[2, 2]")
    env = clean_environment(OMNIQ_EXECUTOR="process", OMNIQ_PROCESSES="1")
    completed = cli.run("worker", "--limit", "1", env=env, timeout=WAIT_WORKER)
    assert completed.returncode == 0, completed.stderr
    assert "1 child process on" in completed.stderr
    assert cli.task(task_id)["result"] == 4
    expect_usage_error(
        cli.run("worker", env=clean_environment(OMNIQ_PROCESSES="2")),
        "processes need executor='process'",
    )


PROCESS_BAD_INPUT = {
    "processes zero": (["worker", "--processes", "0"], "from 1 to"),
    "child flag alone": (["worker", "--max-tasks-per-child", "5"], "add --processes N"),
    "kill grace alone": (["worker", "--kill-grace", "3"], "--kill-grace applies to the process"),
    "more tasks than children": (
        ["worker", "--processes", "2", "--concurrency", "3"],
        "--concurrency 3 exceeds the 2 child processes",
    ),
    "memory zero": (["worker", "--processes", "1", "--max-memory-per-child", "0"], "MiB above 0"),
    "memory words": (["worker", "--processes", "1", "--max-memory-per-child", "1G"], "'1G'"),
    "bad kill grace": (["worker", "--processes", "1", "--kill-grace", "5x"], "invalid duration"),
}


@pytest.mark.parametrize(
    ("arguments", "fragment"), PROCESS_BAD_INPUT.values(), ids=PROCESS_BAD_INPUT.keys()
)
def test_bad_process_flags_are_one_line_and_exit_2(
    cli: Cli, arguments: list[str], fragment: str
) -> None:
    expect_usage_error(cli.run(*arguments), fragment)
