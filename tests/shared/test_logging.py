"""Tests for omniq.logging: output formats, etiquette, correlation context, env vars, examples.

Only ``omniq.logging`` is imported: it must work while the rest of the package is in flux.
Environment variables and import-time behaviour are tested in fresh interpreters.
"""

from __future__ import annotations

import asyncio
import bz2
import contextvars
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

import omniq.logging as omniq_logging
from omniq.logging import (
    bind_task,
    configure,
    current_correlation_id,
    get_logger,
    log_serialization_error,
    log_storage_error,
    log_task_completed,
    log_task_enqueued,
    log_task_failed,
    log_task_started,
    log_worker_started,
    log_worker_stopped,
    task_context,
)

from ._examples import python_blocks

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
ENV_VARS = (
    "OMNIQ_LOG_LEVEL",
    "OMNIQ_LOG_MODE",
    "OMNIQ_LOG_FILE",
    "OMNIQ_LOG_ROTATION",
    "OMNIQ_LOG_RETENTION",
)
PROD_FIELDS = (
    "timestamp",
    "level",
    "logger",
    "message",
    "task_id",
    "operation",
    "worker",
    "correlation_id",
)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DEV_FIRST_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| (?P<level>[A-Z]+) +\| (?P<name>[\w.]+):\d+ \| "
    r"(?P<message>.*)$"
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def clean_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts and ends with omniq logging unconfigured and no OMNIQ_LOG_* set."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    omniq_logging.reset()
    yield
    omniq_logging.reset()


@pytest.fixture
def app_records() -> Iterator[list[dict[str, Any]]]:
    """A sink the application owns, collecting every record loguru delivers to it."""
    records: list[dict[str, Any]] = []
    handler_id = logger.add(lambda message: records.append(dict(message.record)), level=0)
    yield records
    logger.remove(handler_id)


def prod(level: str = "DEBUG") -> io.StringIO:
    buffer = io.StringIO()
    configure(level=level, mode="PROD", sink=buffer)
    return buffer


def dev(level: str = "DEBUG", **options: Any) -> io.StringIO:
    buffer = io.StringIO()
    configure(level=level, mode="DEV", sink=buffer, **options)
    return buffer


def json_lines(text: str) -> list[dict[str, Any]]:
    """Parse every line as one JSON object carrying the spec's fields."""
    records = []
    for line in text.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        for field in PROD_FIELDS:
            assert field in record, (field, line)
        assert TIMESTAMP.match(record["timestamp"]), record["timestamp"]
        records.append(record)
    return records


def by_message(records: list[dict[str, Any]], fragment: str) -> dict[str, Any]:
    matches = [record for record in records if fragment in record["message"]]
    assert len(matches) == 1, (fragment, records)
    return matches[0]


def run_python(
    code: str, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with omniq's src on the path and no OMNIQ_LOG_*."""
    clean = {key: value for key, value in os.environ.items() if key not in ENV_VARS}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), clean.get("PYTHONPATH")]))
    clean.pop("LOGURU_AUTOINIT", None)
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=clean,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    return result


# --------------------------------------------------------------------------- PROD output


def test_prod_lines_are_json_with_the_spec_fields() -> None:
    buffer = prod()
    log_task_enqueued("task-1", "my_module.my_function")
    log_task_started("task-1", 1, worker="pool-1")
    log_task_completed("task-1", 1, worker="pool-1", duration=0.25)
    log_task_failed("task-1", "Error message", will_retry=True, worker="pool-1")
    log_task_failed("task-1", "still broken", will_retry=False)
    log_worker_started("pool-1")
    log_worker_stopped("pool-1")
    log_storage_error("enqueue", "Database connection failed")
    log_serialization_error("deserialize", "Invalid JSON format")
    get_logger().info("Application started")

    records = json_lines(buffer.getvalue())
    assert len(records) == 10
    for record in records:
        # depth=1: the record names the caller of the helper, not omniq.logging.
        assert record["logger"] == __name__

    enqueued = by_message(records, "enqueued")
    assert enqueued["func_path"] == "my_module.my_function"
    assert enqueued["task_id"] == enqueued["correlation_id"] == "task-1"
    assert enqueued["operation"] == "enqueue"
    assert enqueued["event"] == "task_enqueued"
    assert enqueued["level"] == "INFO"

    started = by_message(records, "started (attempt 1)")
    assert (started["attempt"], started["worker"]) == (1, "pool-1")
    assert started["event"] == "task_started"

    completed = by_message(records, "completed")
    assert completed["duration"] == 0.25
    assert completed["attempt"] == 1

    retrying = by_message(records, "Error message")
    assert (retrying["will_retry"], retrying["level"]) == (True, "WARNING")
    final = by_message(records, "still broken")
    assert (final["will_retry"], final["level"]) == (False, "ERROR")

    assert by_message(records, "Worker pool-1 started")["worker"] == "pool-1"
    storage = by_message(records, "Storage error")
    assert (storage["operation"], storage["level"]) == ("enqueue", "ERROR")
    assert by_message(records, "Serialization error")["error"] == "Invalid JSON format"

    plain = by_message(records, "Application started")
    assert plain["task_id"] is None and plain["correlation_id"] is None


def test_prod_matches_the_spec_example() -> None:
    buffer = prod()
    bind_task("abc-123", operation="process_task", worker="worker-1").info("Task execution started")
    [record] = json_lines(buffer.getvalue())
    del record["timestamp"], record["logger"]
    assert record == {
        "level": "INFO",
        "message": "Task execution started",
        "task_id": "abc-123",
        "operation": "process_task",
        "worker": "worker-1",
        "correlation_id": "abc-123",
    }


def test_prod_keeps_awkward_text_on_one_line() -> None:
    buffer = prod()
    nasty = 'braces {x} {0} <module> </red> "quotes" \\ back\nsecond line \u00e9'
    log_task_failed("t", nasty)
    get_logger().bind(payload={1: float("nan")}, message="clash").warning(nasty)

    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    first, second = json_lines(buffer.getvalue())
    assert first["error"] == nasty
    assert second["message"] == nasty
    # An extra named like a schema field is kept under another name, never overwriting it.
    assert second["extra_message"] == "clash"
    assert "nan" in second["payload"]


def test_prod_exception_text_and_reraise() -> None:
    buffer = prod()
    with pytest.raises(ZeroDivisionError), task_context("task-7", "process", worker="w"):
        1 / 0  # noqa: B018

    [record] = json_lines(buffer.getvalue())
    assert record["level"] == "ERROR"
    assert (record["task_id"], record["operation"], record["worker"]) == ("task-7", "process", "w")
    assert "process failed" in record["message"]
    assert "ZeroDivisionError" in record["exception"]
    assert record["exception"].startswith("Traceback (most recent call last)")
    assert isinstance(record["duration"], float)


def test_nested_scopes_log_one_traceback() -> None:
    buffer = prod()
    with (
        pytest.raises(ValueError, match="bad"),
        task_context("req-1", "request"),
        task_context("task-1", "execute"),
    ):
        raise ValueError("bad")

    records = json_lines(buffer.getvalue())
    assert [r["operation"] for r in records] == ["execute", "request"]
    assert [("exception" in r) for r in records] == [True, False]


def test_task_context_logs_duration_at_debug_only() -> None:
    buffer = prod(level="DEBUG")
    with task_context("task-1", "process") as task_logger:
        task_logger.info("Processing data")
    records = json_lines(buffer.getvalue())
    assert [r["level"] for r in records] == ["INFO", "DEBUG"]
    assert "process finished in" in records[1]["message"]
    assert records[1]["duration"] >= 0

    buffer = prod(level="INFO")
    with task_context("task-1", "process") as task_logger:
        task_logger.info("Processing data")
    assert [r["message"] for r in json_lines(buffer.getvalue())] == ["Processing data"]


async def test_cancellation_is_not_logged_as_an_error() -> None:
    buffer = prod()
    started = asyncio.Event()

    async def work() -> None:
        with task_context("task-c", "execute"):
            started.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(work())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = json_lines(buffer.getvalue())
    assert record["level"] == "DEBUG"
    assert "interrupted" in record["message"]


def test_exception_passed_as_error_keeps_its_traceback() -> None:
    buffer = prod()
    try:
        raise OSError("disk full")
    except OSError as exc:
        log_storage_error("complete", exc, task_id="t-1")
    [record] = json_lines(buffer.getvalue())
    assert record["error"] == "disk full"
    assert "OSError: disk full" in record["exception"]
    assert record["task_id"] == "t-1"


# --------------------------------------------------------------------------- DEV output


def test_dev_shows_context_on_a_second_line() -> None:
    buffer = dev()
    bind_task("abc-123", operation="process_task", worker="worker-1").info("Task execution started")
    get_logger().info("Application started")

    lines = buffer.getvalue().splitlines()
    assert len(lines) == 3
    first = DEV_FIRST_LINE.match(lines[0])
    assert first is not None, lines[0]
    assert first["level"] == "INFO"
    assert first["name"] == __name__
    assert first["message"] == "Task execution started"
    # The spec's line exactly: correlation_id equals task_id, so it is not repeated.
    assert lines[1] == "└── task_id: abc-123 | operation: process_task | worker: worker-1"
    # No context, no second line.
    second = DEV_FIRST_LINE.match(lines[2])
    assert second is not None and second["message"] == "Application started"
    assert "\x1b[" not in buffer.getvalue()  # not a terminal: no colour codes


def test_dev_shows_a_foreign_correlation_id_and_extras() -> None:
    buffer = dev()
    with task_context("task-9", "execute", correlation_id="req-1", worker="w-1"):
        log_task_started("task-9", 2)
    line = buffer.getvalue().splitlines()[1]
    assert line == (
        "└── task_id: task-9 | operation: execute | worker: w-1 | correlation_id: req-1"
        " | attempt: 2"
    )


def test_dev_colours_on_request() -> None:
    buffer = dev(colorize=True)
    get_logger().warning("careful")
    assert "\x1b[" in buffer.getvalue()


# --------------------------------------------------------------------------- etiquette


def test_omniq_is_silent_until_configured(app_records: list[dict[str, Any]]) -> None:
    log_task_enqueued("t", "m.f")
    log_task_started("t", 1)
    log_task_failed("t", "x")
    log_worker_started("w")
    log_storage_error("op", "e")
    with task_context("t", "execute"):
        pass
    # A module of omniq logging straight through loguru is disabled too.
    exec("logger.info('from inside omniq')", {"__name__": "omniq.fake", "logger": logger})
    assert app_records == []

    buffer = prod()
    exec("logger.info('from inside omniq')", {"__name__": "omniq.fake", "logger": logger})
    [record] = json_lines(buffer.getvalue())
    assert record["logger"] == "omniq.fake"
    assert [r["message"] for r in app_records] == ["from inside omniq"]


def test_the_application_keeps_its_sinks_and_its_records(
    app_records: list[dict[str, Any]],
) -> None:
    first = prod(level="INFO")
    second = prod(level="INFO")  # replaces omniq's first sink, not the application's
    log_worker_started("w")
    logger.info("the application's own record")
    with task_context("task-1", "execute"):
        logger.info("user code inside a task")

    assert first.getvalue() == ""
    # omniq's sink takes omniq's records (and records from loggers omniq handed out), not
    # everything the application logs.
    assert [r["message"] for r in json_lines(second.getvalue())] == ["Worker w started"]
    messages = [r["message"] for r in app_records if r["level"].name == "INFO"]
    assert messages == [
        "Worker w started",
        "the application's own record",
        "user code inside a task",
    ]
    # The application's record inside the scope still carries the task context.
    assert app_records[2]["extra"]["task_id"] == "task-1"
    assert "_omniq" not in app_records[2]["extra"]

    omniq_logging.reset()
    logger.info("after reset")
    assert app_records[-1]["message"] == "after reset"


def test_app_removing_all_sinks_does_not_break_omniq() -> None:
    # In a fresh interpreter: a bare logger.remove() here would strip the test session's sinks.
    result = ok(
        run_python(
            """
            import io, json
            from loguru import logger
            import omniq.logging as ol
            ol.configure(mode="PROD", sink=io.StringIO())
            logger.remove()  # the application clears everything, omniq's sink included
            ol.log_task_started("t", 1)
            buffer = io.StringIO()
            ol.configure(mode="PROD", sink=buffer)  # omniq's stale sink id is no error
            ol.log_task_started("t", 1)
            ol.reset()
            assert json.loads(buffer.getvalue())["task_id"] == "t"
            """
        )
    )
    assert result.stderr == ""


def test_import_adds_and_removes_no_sink() -> None:
    result = ok(
        run_python(
            """
            from loguru import logger
            received = []
            logger.add(received.append, format="{message}")
            logger.remove(0)  # the default stderr sink: now nothing else may print
            import omniq.logging as ol
            ol.get_logger().info("app record")
            ol.log_task_started("t", 1)
            with ol.task_context("t", "execute"):
                pass
            assert received == ["app record\\n"], received
            """
        )
    )
    assert result.stderr == ""


def test_logging_off_costs_no_formatting(monkeypatch: pytest.MonkeyPatch) -> None:
    class Untouchable:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"loguru touched while logging is off: {name}")

    log_task_started("t", 1)  # the one-time look at the (empty) environment
    monkeypatch.setattr(omniq_logging, "_events", Untouchable())
    monkeypatch.setattr(omniq_logging, "_marked", Untouchable())
    log_task_enqueued("t", "m.f", worker="w")
    log_task_started("t", 1, worker="w")
    log_task_completed("t", 1, duration=0.1)
    log_task_failed("t", "e", will_retry=True)
    log_worker_started("w")
    log_worker_stopped("w")
    log_storage_error("op", "e")
    log_serialization_error("op", "e")


def test_level_filters_omniq_records(app_records: list[dict[str, Any]]) -> None:
    buffer = prod(level="ERROR")
    log_task_started("t", 1)
    log_task_failed("t", "boom", will_retry=True)
    log_task_failed("t", "final", will_retry=False)
    with task_context("t", "execute"):
        pass
    assert [r["message"] for r in json_lines(buffer.getvalue())] == [
        "Task t failed: final (no retries left)"
    ]
    # omniq's level is omniq's verbosity: records below it are never made, so the
    # application's sinks don't get them either.
    assert [r["message"] for r in app_records] == ["Task t failed: final (no retries left)"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        ({"level": "LOUD"}, ["'LOUD'", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
        ({"mode": "STAGING"}, ["'STAGING'", "DEV", "PROD"]),
        ({"rotation": "whenever"}, ["rotation", "'whenever'", "100 MB"]),
        ({"retention": "forever-ish"}, ["retention", "'forever-ish'", "30 days"]),
        ({"compression": "rar"}, ["compression", "'rar'", "gz"]),
    ],
)
def test_bad_values_raise_clear_errors(options: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        configure(**options)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_levels_and_modes_are_case_insensitive() -> None:
    buffer = io.StringIO()
    configure(level="warning", mode="prod", sink=buffer)
    get_logger().warning("w")
    assert json_lines(buffer.getvalue())[0]["level"] == "WARNING"


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNIQ_LOG_ROTATION", "whenever")
    with pytest.raises(ValueError, match="OMNIQ_LOG_ROTATION"):
        configure()


def test_unwritable_file_fails_at_configure(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(OSError, match="cannot write its log file") as info:
        configure(file=blocker / "omniq.log")
    assert str(blocker) in str(info.value)
    with pytest.raises(OSError, match="cannot write its log file"):
        configure(file=tmp_path)  # a directory


def test_failed_configure_keeps_the_previous_setup(tmp_path: Path) -> None:
    buffer = prod()
    with pytest.raises(ValueError):
        configure(level="LOUD")
    blocker = tmp_path / "f"
    blocker.write_text("")
    with pytest.raises(OSError):
        configure(file=blocker / "x.log")
    log_task_started("t", 1)
    assert len(json_lines(buffer.getvalue())) == 1


# --------------------------------------------------------------------------- file sink


def test_file_sink_writes_json_with_rotation_and_retention(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "omniq.log"
    configure(
        level="INFO", mode="PROD", file=path, rotation="1 MB", retention="1 day", compression="gz"
    )
    log_task_enqueued("t", "m.f")
    with task_context("t", "execute") as task_logger:
        task_logger.info("inside")
    omniq_logging.reset()  # removing the sink flushes its queue
    records = json_lines(path.read_text(encoding="utf-8"))
    assert [r["message"] for r in records] == ["Task t enqueued: m.f", "inside"]


def _modes(directory: Path) -> dict[str, int]:
    return {
        str(path.relative_to(directory)): os.stat(path).st_mode & 0o777
        for path in sorted(directory.rglob("*"))
    }


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_log_files_are_created_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "logs" / "sub" / "omniq.log"
    old = os.umask(umask)
    try:
        configure(level="INFO", mode="PROD", file=path, rotation="300 B", compression="gz")
        for number in range(12):  # several rotations, each archive compressed
            log_task_enqueued(f"task-{number}", "m.f")
        omniq_logging.reset()
    finally:
        os.umask(old)
    modes = _modes(tmp_path / "logs")
    assert modes.pop("sub") == 0o700
    assert modes.pop("sub/omniq.log") == 0o600
    assert len(modes) >= 3 and all(name.endswith(".log.gz") for name in modes)
    assert set(modes.values()) == {0o600}
    assert (tmp_path / "logs").stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("compression", ["zip", "tar.xz", "bz2"])
def test_archives_of_every_format_are_0600_and_readable(tmp_path: Path, compression: str) -> None:
    old = os.umask(0)
    try:
        configure(file=tmp_path / "omniq.log", rotation="100 B", compression=compression)
        log_task_started("task-1", 1)
        log_task_started("task-2", 1)  # rotates: task-1's file is archived
        omniq_logging.reset()
    finally:
        os.umask(old)
    archives = sorted(tmp_path.glob(f"omniq.*.log.{compression}"))
    assert archives and {path.stat().st_mode & 0o777 for path in archives} == {0o600}
    assert "Task task-1 started" in "".join(_unpacked(path, compression) for path in archives)


def _unpacked(archive: Path, compression: str) -> str:
    if compression == "bz2":
        with bz2.open(archive, "rt", encoding="utf-8") as text:
            return text.read()
    out = archive.with_name(archive.name + ".out")
    shutil.unpack_archive(archive, out, format=_ARCHIVE_FORMATS[compression])
    return "".join(path.read_text(encoding="utf-8") for path in out.iterdir())


_ARCHIVE_FORMATS = {"zip": "zip", "tar.xz": "xztar"}


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_an_existing_log_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "omniq.log"
    path.write_text("")
    os.chmod(path, 0o640)  # e.g. readable by a log shipper's group, on purpose
    configure(file=path)
    log_task_started("task-1", 1)
    omniq_logging.reset()
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_the_env_log_file_is_0600_under_umask_000(tmp_path: Path) -> None:
    path = tmp_path / "env.log"
    ok(
        run_python(
            "import os; os.umask(0)\n"
            "from loguru import logger; logger.remove()\n" + textwrap.dedent(EVENTS),
            env={"OMNIQ_LOG_MODE": "PROD", "OMNIQ_LOG_FILE": str(path)},
        )
    )
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(json_lines(path.read_text(encoding="utf-8"))) == 2


def test_numeric_rotation_and_retention_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OMNIQ_LOG_ROTATION", "1048576")
    monkeypatch.setenv("OMNIQ_LOG_RETENTION", "5")
    configure(file=tmp_path / "omniq.log")
    log_task_started("t", 1)
    omniq_logging.reset()
    assert "Task t started" in (tmp_path / "omniq.log").read_text(encoding="utf-8")


@pytest.mark.slow
def test_processes_sharing_a_file_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "shared.log"
    code = f"""
        import omniq.logging as ol
        ol.configure(mode="PROD", file={str(path)!r})
        for i in range(300):
            ol.log_task_started(f"task-{{i}}", 1, worker="w" * 200)
        """
    env = {"PYTHONPATH": str(SRC)}
    clean = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    processes = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env={**clean, **env})
        for _ in range(3)
    ]
    assert [process.wait(timeout=120) for process in processes] == [0, 0, 0]
    assert len(json_lines(path.read_text(encoding="utf-8"))) == 900


# --------------------------------------------------------------------------- correlation


def test_task_context_sets_and_restores_the_correlation_id() -> None:
    assert current_correlation_id() is None
    with task_context("task-1", "process") as task_logger:
        assert current_correlation_id() == "task-1"
        with task_context("task-2", "child"):
            # An inner scope inherits the caller's correlation id beside its own task id.
            assert current_correlation_id() == "task-1"
        with task_context("task-3", "execute", correlation_id="req-9"):
            assert current_correlation_id() == "req-9"
        assert current_correlation_id() == "task-1"
    assert current_correlation_id() is None
    # The yielded logger stays bound after the block.
    assert task_logger is not None


def test_bind_task_changes_no_ambient_state() -> None:
    buffer = prod()
    bound = bind_task("task-456", worker="worker-1", operation="enqueue")
    assert current_correlation_id() is None
    bound.info("Task enqueued with context")
    get_logger().info("unrelated")
    first, second = json_lines(buffer.getvalue())
    assert (first["task_id"], first["correlation_id"], first["worker"]) == (
        "task-456",
        "task-456",
        "worker-1",
    )
    assert second["task_id"] is None
    with task_context("req-1", "request"):
        inside = bind_task("task-457")
    inside.info("enqueued on behalf of a request")
    third = json_lines(buffer.getvalue())[-1]
    assert (third["task_id"], third["correlation_id"]) == ("task-457", "req-1")


def test_the_callers_correlation_id_follows_the_task_through_attempts() -> None:
    buffer = prod(level="INFO")
    stored: dict[str, str | None] = {}

    # A web request enqueues; the queue stores the ambient id on the task.
    with task_context("req-42", "http_request"):
        stored["task-1"] = current_correlation_id()
        log_task_enqueued("task-1", "app.jobs.send_mail")
    assert stored["task-1"] == "req-42"

    # The worker runs two attempts, each in a scope carrying the stored id.
    for attempt, will_retry in ((1, True), (2, False)):
        with task_context(
            "task-1", "execute", correlation_id=stored["task-1"], worker="pool-1"
        ) as task_logger:
            log_task_started("task-1", attempt)
            task_logger.info("user code")
            if will_retry:
                log_task_failed("task-1", "smtp down", will_retry=True)
            else:
                log_task_completed("task-1", attempt, duration=0.01)

    records = json_lines(buffer.getvalue())
    task_records = [r for r in records if r["task_id"] == "task-1"]
    # enqueued, then started + user code + failed/completed per attempt
    assert len(task_records) == 7
    assert {r["correlation_id"] for r in records} == {"req-42"}
    assert {r["worker"] for r in task_records if r["operation"] == "execute"} == {"pool-1"}


async def test_context_follows_awaits_and_threads(app_records: list[dict[str, Any]]) -> None:
    def blocking(label: str) -> str | None:
        logger.info(label)
        return current_correlation_id()

    async def one_task(n: int) -> None:
        with task_context(f"task-{n}", "execute"):
            await asyncio.sleep(0)
            logger.info(f"task-{n} after await")
            assert await asyncio.to_thread(blocking, f"task-{n} in to_thread") == f"task-{n}"
            await asyncio.sleep(0.001 * (n % 3))
            logger.info(f"task-{n} after sleep")
        logger.info(f"outside task-{n}")

    await asyncio.gather(*(one_task(n) for n in range(40)))

    assert len(app_records) == 40 * 4
    for record in app_records:
        if record["message"].startswith("outside"):
            assert "task_id" not in record["extra"]
        else:
            expected = record["message"].split()[0]
            assert record["extra"]["task_id"] == expected
            assert record["extra"]["correlation_id"] == expected


def test_context_follows_into_a_thread_that_copies_it(
    app_records: list[dict[str, Any]],
) -> None:
    seen: list[str | None] = []

    def in_thread() -> None:
        seen.append(current_correlation_id())
        logger.info("in thread")

    with task_context("task-t", "execute", correlation_id="req-t"):
        context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(in_thread,))
    thread.start()
    thread.join()

    assert seen == ["req-t"]
    assert app_records[-1]["extra"]["task_id"] == "task-t"
    assert app_records[-1]["extra"]["correlation_id"] == "req-t"


def test_threads_logging_at_once_neither_interleave_nor_mix_context() -> None:
    buffer = prod(level="INFO")

    def worker(n: int) -> None:
        for i in range(100):
            with task_context(f"task-{n}-{i}", "execute", worker=f"thread-{n}"):
                log_task_started(f"task-{n}-{i}", 1, payload="x" * 300)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    records = json_lines(buffer.getvalue())
    assert len(records) == 800
    for record in records:
        assert record["message"] == f"Task {record['task_id']} started (attempt 1)"
        assert record["worker"] == "thread-" + record["task_id"].split("-")[1]


# --------------------------------------------------------------------------- environment


EVENTS = """
    from omniq.logging import log_task_started, log_task_failed
    log_task_started("task-1", 1, worker="w")
    log_task_failed("task-1", "boom", will_retry=True)
"""


def test_env_prod_mode_writes_json_to_stderr() -> None:
    result = ok(
        run_python(
            "from loguru import logger; logger.remove()\n" + textwrap.dedent(EVENTS),
            env={"OMNIQ_LOG_MODE": "PROD"},
        )
    )
    records = json_lines(result.stderr)
    assert [r["level"] for r in records] == ["INFO", "WARNING"]
    assert records[0]["worker"] == "w"


def test_env_level_filters() -> None:
    result = ok(
        run_python(
            "from loguru import logger; logger.remove()\n" + textwrap.dedent(EVENTS),
            env={"OMNIQ_LOG_MODE": "PROD", "OMNIQ_LOG_LEVEL": "WARNING"},
        )
    )
    assert [r["level"] for r in json_lines(result.stderr)] == ["WARNING"]


def test_env_dev_is_the_default_mode() -> None:
    result = ok(
        run_python(
            "from loguru import logger; logger.remove()\n" + textwrap.dedent(EVENTS),
            env={"OMNIQ_LOG_LEVEL": "DEBUG"},
        )
    )
    lines = result.stderr.splitlines()
    assert DEV_FIRST_LINE.match(lines[0]), lines
    assert lines[1].startswith("└── task_id: task-1 | operation: execute | worker: w")


def test_without_env_or_configure_omniq_prints_nothing() -> None:
    # loguru's default sink stays installed here, as in any application that never asks.
    result = ok(run_python(EVENTS))
    assert result.stderr == ""


def test_env_file_rotation_retention(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "app.log"
    result = ok(
        run_python(
            "from loguru import logger; logger.remove()\n" + textwrap.dedent(EVENTS),
            env={
                "OMNIQ_LOG_MODE": "PROD",
                "OMNIQ_LOG_FILE": str(path),
                "OMNIQ_LOG_ROTATION": "100 MB",
                "OMNIQ_LOG_RETENTION": "30 days",
            },
        )
    )
    assert result.stderr == ""  # the file replaces stderr
    assert len(json_lines(path.read_text(encoding="utf-8"))) == 2


def test_explicit_arguments_win_over_the_environment() -> None:
    result = ok(
        run_python(
            """
            from loguru import logger; logger.remove()
            from omniq.logging import configure, log_task_started
            configure(level="DEBUG", mode="DEV")
            log_task_started("task-1", 1)
            """,
            env={"OMNIQ_LOG_MODE": "PROD", "OMNIQ_LOG_LEVEL": "ERROR"},
        )
    )
    assert DEV_FIRST_LINE.match(result.stderr.splitlines()[0]), result.stderr


def test_configure_without_arguments_reads_the_environment() -> None:
    result = ok(
        run_python(
            """
            from loguru import logger; logger.remove()
            from omniq.logging import configure, log_task_started
            configure()
            log_task_started("task-1", 1)
            """,
            env={"OMNIQ_LOG_MODE": "PROD"},
        )
    )
    assert len(json_lines(result.stderr)) == 1


def test_bad_env_warns_instead_of_crashing_a_worker() -> None:
    result = ok(run_python(EVENTS, env={"OMNIQ_LOG_MODE": "LOUD"}))
    assert "RuntimeWarning" in result.stderr
    assert "OMNIQ_LOG_MODE" in result.stderr and "DEV, PROD" in result.stderr
    assert "Task task-1" not in result.stderr

    result = run_python(
        "from omniq.logging import configure; configure()", env={"OMNIQ_LOG_MODE": "LOUD"}
    )
    assert result.returncode != 0
    assert "ValueError: Unknown omniq log mode 'LOUD' (from OMNIQ_LOG_MODE)" in result.stderr


def test_unwritable_env_file_falls_back_to_stderr(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = ok(
        run_python(
            "from loguru import logger; logger.remove()\n" + textwrap.dedent(EVENTS),
            env={"OMNIQ_LOG_MODE": "PROD", "OMNIQ_LOG_FILE": str(blocker / "omniq.log")},
        )
    )
    warning, *rest = result.stderr.splitlines()
    assert "cannot write its log file" in warning and "OMNIQ_LOG_FILE" in warning
    assert len(json_lines("\n".join(line for line in rest if line.startswith("{")))) == 2


# --------------------------------------------------------------------------- examples

# The spec's Python examples about logging, read verbatim from the spec itself. (Examples in
# README.md and docs/*.md, docs/logging.md included, are run by test_readme.py.)
SPEC = REPO / "tests" / "spec" / "seed-readme.md"
SPEC_EXAMPLES = [
    pytest.param(code, id=f"seed-readme.md:{line}")
    for line, code in python_blocks(SPEC)
    if "omniq.logging" in code
]


def test_the_spec_has_eight_logging_examples() -> None:
    assert len(SPEC_EXAMPLES) == 8


@pytest.mark.parametrize("code", SPEC_EXAMPLES)
def test_spec_examples_run_verbatim(code: str, tmp_path: Path) -> None:
    ok(run_python(code, cwd=tmp_path))


@pytest.mark.parametrize("code", SPEC_EXAMPLES)
def test_spec_examples_in_prod_mode_emit_only_json(code: str, tmp_path: Path) -> None:
    # Without loguru's default sink, omniq's JSON is all there is on stderr.
    result = ok(
        run_python(code, cwd=tmp_path, env={"OMNIQ_LOG_MODE": "PROD", "LOGURU_AUTOINIT": "0"})
    )
    assert json_lines(result.stderr)


def test_spec_example_output_in_dev_mode(tmp_path: Path) -> None:
    core_api = next(
        code
        for _, code in python_blocks(SPEC)
        if 'bind_task("task-456", worker="worker-1", operation="enqueue")' in code
    )
    result = ok(run_python(core_api, cwd=tmp_path, env={"LOGURU_AUTOINIT": "0"}))
    lines = result.stderr.splitlines()
    messages = [m["message"] for m in map(DEV_FIRST_LINE.match, lines) if m]
    assert messages == ["Application started", "Processing data", "Task enqueued with context"]
    assert "└── task_id: task-123 | operation: process" in lines
    assert "└── task_id: task-456 | operation: enqueue | worker: worker-1" in lines
