"""The allow-list: declared tasks, task_modules globs with the ``__module__`` check,
paths the facade enqueued, the refusal, and importing the worker's task modules."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from omniq import Settings, TaskError
from omniq._functions import FunctionNotFound
from omniq.allowlist import (
    AllowList,
    TaskForbidden,
    TaskModuleImportError,
    import_task_modules,
    task_module_names,
)
from omniq.models import ErrorType

MakePackage = Callable[[dict[str, str]], str]

# A task module as applications write them: it imports os, helpers and declared tasks.
TASKS = """
    import os
    from os import system

    from omniq import task

    from .util import helper

    def send(to):
        return f"sent {to}"

    @task
    def declared(x):
        return x * 2

    @task
    async def declared_async(x):
        return x + 1

    class Jobs:
        @staticmethod
        def nightly():
            return "nightly"

    alias = send
"""
UTIL = """
    def helper():
        return "helper"
"""
# Importing this module leaves a mark, so a test can tell it was never imported.
TRAP = """
    import os

    open(os.environ["OMNIQ_TEST_TRAP"], "w").close()

    def run():
        return "ran"
"""


@pytest.fixture
def app(make_package: MakePackage) -> str:
    """A fresh package with ``tasks``, ``util`` and ``trap`` modules, none imported yet."""
    return make_package({"tasks.py": TASKS, "util.py": UTIL, "trap.py": TRAP})


@pytest.fixture
def trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    mark = tmp_path / "imported-the-trap"
    monkeypatch.setenv("OMNIQ_TEST_TRAP", str(mark))
    return mark


# ---------------------------------------------------------------- rule 1: declared


def test_a_declared_task_runs_without_any_pattern(app: str) -> None:
    module = importlib.import_module(f"{app}.tasks")
    allow = AllowList()
    path = f"{app}.tasks.declared"
    assert allow.check(path) is None
    assert allow.resolve(path) is module.declared.func  # the function itself, unwrapped
    assert allow.resolve(f"{app}.tasks.declared_async") is module.declared_async.func


# --------------------------------------------------------------- refusal, no import


def test_an_unknown_path_is_refused_before_anything_is_imported(app: str, trap: Path) -> None:
    allow = AllowList([f"{app}.tasks.*"])
    path = f"{app}.trap.run"
    reason = allow.check(path)
    assert reason is not None
    with pytest.raises(TaskForbidden) as raised:
        allow.resolve(path)
    assert str(raised.value) == reason
    assert f"{app}.trap" not in sys.modules and not trap.exists()


def test_the_refusal_names_the_path_and_how_to_allow_it() -> None:
    reason = AllowList(["app.tasks.*"]).check("os.system")
    assert reason is not None
    for fragment in [
        "'os.system'",
        "not a task declared with @task",
        "none of task_modules (app.tasks.*)",
        "@omniq.task",
        "omniq worker --import os",
        "OMNIQ_IMPORT=os",
        'Settings(task_modules=["os.*"])',
        'OMNIQ_TASK_MODULES="os.*"',
    ]:
        assert fragment in reason
    assert "no task_modules are allowed" in (AllowList().check("os.system") or "")


def test_a_refusal_is_a_forbidden_task_error() -> None:
    with pytest.raises(TaskForbidden) as raised:
        AllowList().resolve("os.system")
    error = TaskError.from_exception(raised.value, raised.value.error_type, is_retryable=False)
    assert error.error_type == ErrorType.FORBIDDEN == "forbidden"
    assert "'os.system'" in error.message


# ------------------------------------------------------------------- rule 2: globs


def test_a_matching_path_whose_function_lives_there_is_allowed(app: str) -> None:
    allow = AllowList([f"{app}.tasks.*"])
    assert allow.check(f"{app}.tasks.send") is None
    assert allow.resolve(f"{app}.tasks.send")("a") == "sent a"
    assert allow.resolve(f"{app}.tasks.Jobs.nightly")() == "nightly"
    assert allow.resolve(f"{app}.tasks.alias")("b") == "sent b"  # an alias of its own function


@pytest.mark.parametrize("attribute", ["os.system", "system", "helper", "importlib.import_module"])
def test_an_attribute_walk_out_of_the_allowed_module_is_refused(app: str, attribute: str) -> None:
    allow = AllowList([f"{app}.tasks.*"])
    path = f"{app}.tasks.{attribute}"
    assert allow.check(path) is None  # the path matches; the function found there does not
    with pytest.raises((TaskForbidden, FunctionNotFound)) as raised:
        allow.resolve(path)
    if isinstance(raised.value, TaskForbidden):
        assert "defined outside the allowed modules" in str(raised.value)
        assert f"({app}.tasks.*)" in str(raised.value)


def test_the_os_module_walk_names_what_it_found(app: str) -> None:
    allow = AllowList([f"{app}.tasks.*"])
    with pytest.raises(TaskForbidden) as raised:
        allow.resolve(f"{app}.tasks.os.system")
    assert f"resolves to {os.system.__module__}.system" in str(raised.value)
    function = importlib.import_module(f"{app}.tasks").os.system
    assert allow.verify_resolved(f"{app}.tasks.os.system", function) is not None


def test_dunder_segments_never_match() -> None:
    allow = AllowList(["app.*"])
    assert allow.matches("app.tasks.send")
    assert not allow.matches("app.tasks.send.__globals__")
    assert not allow.matches("app.__builtins__.eval")


def test_a_pattern_without_wildcards_names_a_module_or_function(app: str) -> None:
    module_pattern = AllowList([f"{app}.tasks"])
    assert module_pattern.resolve(f"{app}.tasks.send")("c") == "sent c"
    function_pattern = AllowList([f"{app}.tasks.send"])
    assert function_pattern.resolve(f"{app}.tasks.send")("d") == "sent d"
    assert function_pattern.check(f"{app}.tasks.Jobs.nightly") is not None
    assert not AllowList(["app.tasks"]).matches("app.tasks_other.f")


def test_imports_allow_their_modules(app: str) -> None:
    allow = AllowList(imports=[f"{app}.tasks"])
    assert allow.patterns == (f"{app}.tasks",)
    assert allow.resolve(f"{app}.tasks.send")("e") == "sent e"
    settings = Settings(backend="memory", imports=(f"{app}.util",))
    from_settings = AllowList.from_settings(settings, extra_imports=[f"{app}.tasks"])
    assert from_settings.resolve(f"{app}.util.helper")() == "helper"
    assert from_settings.resolve(f"{app}.tasks.send")("f") == "sent f"


@pytest.mark.parametrize(
    ("patterns", "exc", "fragment"),
    [
        (["*"], ValueError, "'*'"),
        (["*.tasks"], ValueError, "'*.tasks'"),
        (["app..tasks"], ValueError, "'app..tasks'"),
        (["app tasks"], ValueError, "'app tasks'"),
        ("app.tasks.*", TypeError, "'app.tasks.*'"),
        ([3], TypeError, "3"),
    ],
)
def test_bad_patterns_are_refused(patterns: object, exc: type[Exception], fragment: str) -> None:
    with pytest.raises(exc) as raised:
        AllowList(patterns)  # type: ignore[arg-type]
    assert fragment in str(raised.value)
    with pytest.raises(exc):
        Settings(task_modules=patterns)  # type: ignore[arg-type]


# --------------------------------------------------------------- rule 3: enqueued


def test_a_path_this_facade_enqueued_is_allowed(app: str) -> None:
    enqueued: set[str] = set()
    allow = AllowList(enqueued_paths=enqueued)
    path = f"{app}.util.helper"
    assert allow.check(path) is not None
    allow.record_enqueued(path)
    assert path in enqueued
    assert allow.check(path) is None
    assert allow.resolve(path)() == "helper"
    assert AllowList().check(path) is not None  # another facade did not enqueue it


def test_an_enqueued_path_that_does_not_exist_is_an_import_error(app: str) -> None:
    allow = AllowList()
    allow.record_enqueued(f"{app}.util.missing")
    with pytest.raises(FunctionNotFound):
        allow.resolve(f"{app}.util.missing")


# --------------------------------------------------------------------- producers


def test_producers_without_patterns_check_nothing() -> None:
    AllowList().check_enqueue("any.thing.at_all")


def test_producers_with_patterns_fail_at_the_call(app: str, trap: Path) -> None:
    allow = AllowList([f"{app}.tasks.*"])
    allow.check_enqueue(f"{app}.tasks.send")
    with pytest.raises(ValueError, match="has no attribute 'sned'"):
        allow.check_enqueue(f"{app}.tasks.sned")
    with pytest.raises(ValueError, match="not allowed here"):
        allow.check_enqueue(f"{app}.trap.run")
    assert not trap.exists()
    with pytest.raises(ValueError, match="outside the allowed modules"):
        allow.check_enqueue(f"{app}.tasks.system")


# ------------------------------------------------------------------ task modules


def test_task_module_names_come_from_imports_extra_and_patterns() -> None:
    settings = Settings(
        backend="memory",
        imports=("app.tasks", "billing.jobs"),
        task_modules=("app.tasks.*", "reports.*.build", "solo.fn", "deep.sub.send_*"),
    )
    assert task_module_names(settings, ["extra.mod", "app.tasks"]) == [
        "app.tasks",
        "billing.jobs",
        "extra.mod",
        "reports",
        "solo.fn",
        "deep.sub",
    ]


def test_import_task_modules_registers_their_declared_tasks(app: str) -> None:
    settings = Settings(backend="memory", task_modules=(f"{app}.tasks.*",))
    assert f"{app}.tasks" not in sys.modules
    served = import_task_modules(settings)
    assert f"{app}.tasks.declared" in served and f"{app}.tasks.declared_async" in served
    assert served == sorted(served)
    assert AllowList.from_settings(settings).resolve(f"{app}.tasks.declared")(4) == 8


def test_import_task_modules_accepts_a_function_pattern(app: str) -> None:
    served = import_task_modules(Settings(backend="memory", task_modules=(f"{app}.tasks.send",)))
    assert f"{app}.tasks.declared" in served  # its module was imported


def test_a_missing_task_module_is_named(app: str) -> None:
    with pytest.raises(TaskModuleImportError, match=f"'{app}.taks'"):
        import_task_modules(Settings(backend="memory"), [f"{app}.taks"])
    with pytest.raises(TaskModuleImportError, match="has no attribute 'nope'"):
        import_task_modules(Settings(backend="memory", task_modules=(f"{app}.tasks.nope",)))
    with pytest.raises(TaskModuleImportError, match=f"'{app}.tasks.nope'"):
        import_task_modules(Settings(backend="memory", imports=(f"{app}.tasks.nope",)))


def test_a_task_module_that_fails_to_import_is_named(make_package: MakePackage) -> None:
    broken = make_package({"tasks.py": "raise RuntimeError('no database')\n"})
    with pytest.raises(TaskModuleImportError, match="RuntimeError: no database") as raised:
        import_task_modules(Settings(backend="memory", imports=(f"{broken}.tasks",)))
    assert f"'{broken}.tasks'" in str(raised.value)
