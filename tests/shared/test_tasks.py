"""``@task``: declaration, the registry, typed enqueueing with ``.using()``, ``func_path_of``."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import importlib
import inspect
import os
from collections.abc import Callable
from typing import Any

import pytest

from omniq import AsyncOmniQ, OmniQ, Settings, task
from omniq.schedules import get_schedule
from omniq.tasks import (
    AsyncBoundTask,
    BoundTask,
    DeclaredTask,
    TaskOptions,
    declared_options,
    declared_paths,
    enqueue_options,
    func_path_of,
    get_declared,
)

MakePackage = Callable[[dict[str, str]], str]
HERE = __name__  # the import path prefix of the tasks below ("shared.test_tasks")


@task
def add(a: int, b: int = 0) -> int:
    """Add two numbers."""
    return a + b


@task(queue="emails", priority=5, max_retries=5, timeout=30)
def send_email(to: str, subject: str) -> str:
    return f"{to}:{subject}"


@task()
async def resize(image_id: int) -> int:
    await asyncio.sleep(0)
    return image_id * 2


def plain(x: int) -> int:
    return x + 1


class Holder:
    @staticmethod
    def static(x: int) -> int:
        return x

    @classmethod
    def klass(cls, x: int) -> int:
        return x

    def method(self, x: int) -> int:
        return x


def _no_wraps(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


@_no_wraps
def wrapped_badly(x: int) -> int:
    return x


def shadowed(x: int) -> int:
    return x


shadowed_original = shadowed


def shadowed(x: int) -> int:  # the module attribute now names another function
    return -x


# ------------------------------------------------------------------------ declaring


def test_a_declared_function_keeps_running_in_place() -> None:
    assert isinstance(add, DeclaredTask)
    assert add(2, 3) == 5
    assert add(2, b=5) == 7
    assert send_email("a@b.c", "hi") == "a@b.c:hi"
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two numbers."
    assert inspect.signature(add) == inspect.signature(add.func)


async def test_a_declared_coroutine_function_is_awaited_in_place() -> None:
    assert resize.is_async and not add.is_async
    assert await resize(21) == 42


def test_the_path_is_the_import_path_and_the_options_are_kept() -> None:
    assert add.path == f"{HERE}.add"
    assert send_email.path == f"{HERE}.send_email"
    assert send_email.options == TaskOptions(queue="emails", priority=5, max_retries=5, timeout=30)
    assert add.options == TaskOptions()
    assert repr(send_email) == (
        f"<task {HERE}.send_email queue='emails' priority=5 max_retries=5 timeout=30.0>"
    )


def test_declared_tasks_are_registered_by_path() -> None:
    assert get_declared(f"{HERE}.send_email") is send_email
    assert get_declared(f"{HERE}.plain") is None
    assert {add.path, send_email.path, resize.path} <= set(declared_paths())
    assert declared_options(send_email.path).queue == "emails"
    assert declared_options(f"{HERE}.plain") == TaskOptions()


@pytest.mark.parametrize(
    ("options", "exc", "fragment"),
    [
        ({"queue": "no spaces"}, ValueError, "'no spaces'"),
        ({"queue": ""}, ValueError, "''"),
        ({"queue": 7}, TypeError, "7"),
        ({"priority": 101}, ValueError, "101"),
        ({"priority": -101}, ValueError, "-101"),
        ({"priority": True}, TypeError, "True"),
        ({"priority": "5"}, TypeError, "'5'"),
        ({"max_retries": -1}, ValueError, "-1"),
        ({"max_retries": 2.5}, TypeError, "2.5"),
        ({"timeout": 0}, ValueError, "0"),
        ({"timeout": "30"}, TypeError, "'30'"),
        ({"cron": "61 * * * *"}, ValueError, "'61 * * * *'"),
        ({"cron": "* * *"}, ValueError, "'* * *'"),
        ({"cron": "0 7 * * *", "tz": "Mars/Olympus"}, ValueError, "'Mars/Olympus'"),
        ({"every": 0}, ValueError, "0"),
        ({"every": dt.timedelta(seconds=-5)}, ValueError, "timedelta(days=-1"),
        ({"tz": "Europe/Berlin"}, ValueError, "tz="),
        ({"args": [1]}, ValueError, "args="),
        ({"catch_up": True}, ValueError, "catch_up="),
        ({"every": 60, "catch_up": "yes"}, TypeError, "'yes'"),
        ({"every": 60, "max_catch_up": 0}, ValueError, "0"),
    ],
)
def test_bad_options_fail_at_declaration_naming_the_value(
    options: dict[str, Any], exc: type[Exception], fragment: str, clean_registry: None
) -> None:
    with pytest.raises(exc) as raised:
        task(**options)(plain)
    assert fragment in str(raised.value)
    assert get_declared(f"{HERE}.plain") is None


def test_targets_no_worker_could_import_are_refused(clean_registry: None) -> None:
    def local(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="lambda"):
        task(lambda: None)
    with pytest.raises(ValueError, match="inside a function"):
        task(local)
    with pytest.raises(TypeError, match="needs a function"):
        task(functools.partial(plain, 1))
    with pytest.raises(TypeError, match="needs a function"):
        task(Holder)
    with pytest.raises(TypeError, match="needs a function"):
        task("shared.test_tasks.plain")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="already a declared task"):
        task(add)


def test_generator_functions_are_refused(clean_registry: None) -> None:
    def numbers() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        task(numbers)


def test_methods_are_refused(clean_registry: None) -> None:
    class Mailer:
        def send(self, to: str) -> str:
            return to

    Mailer.send.__qualname__ = "Mailer.send"  # as if the class were at module level
    with pytest.raises(ValueError, match="is a method") as raised:
        task(Mailer.send)
    assert "@staticmethod" in str(raised.value)
    assert task(Holder.static).path == f"{HERE}.Holder.static"  # a staticmethod is fine


def _function_in(filename: str, module: str) -> Any:
    namespace: dict[str, Any] = {"__name__": module}
    exec(compile("def job(x):\n    return x\n", filename, "exec"), namespace)
    return namespace["job"]


def test_a_script_or_notebook_may_redefine_its_tasks(clean_registry: None) -> None:
    first = task(_function_in("<cell-1>", "__main__"))
    second = task(_function_in("<cell-2>", "__main__"))
    assert first.path == second.path == "__main__.job"
    assert get_declared("__main__.job") is second
    task(_function_in("/app/one.py", "pkg_elsewhere.jobs"))
    with pytest.raises(ValueError, match="already declared by another function"):
        task(_function_in("/app/two.py", "pkg_elsewhere.jobs"))


def test_declaring_the_same_function_again_replaces_it(clean_registry: None) -> None:
    first = task(plain)
    second = task(queue="other")(plain)
    assert get_declared(first.path) is second
    assert second.options.queue == "other"


def test_another_function_cannot_take_a_declared_path(clean_registry: None) -> None:
    namespace: dict[str, Any] = {}
    code = compile("def add(a, b=0):\n    return a - b\n", "/elsewhere/impostor.py", "exec")
    exec(code, namespace)
    impostor = namespace["add"]
    impostor.__module__ = HERE  # claims this module's path
    with pytest.raises(ValueError, match="already declared by another function") as raised:
        task(impostor)
    assert "test_tasks.py" in str(raised.value)  # where the declared one lives
    assert get_declared(add.path) is add


def test_a_reloaded_module_declares_its_tasks_again(make_package: MakePackage) -> None:
    package = make_package(
        {
            "tasks.py": """
                from omniq import task

                @task(cron="0 7 * * *")
                def report() -> int:
                    return 1
            """
        }
    )
    module = importlib.import_module(f"{package}.tasks")
    first = module.report
    assert get_schedule(first.path) is first.schedule
    source = module.__file__
    assert source is not None
    with open(source, "w", encoding="utf-8") as handle:
        handle.write("from omniq import task\n\n@task\ndef report() -> int:\n    return 2\n")
    os.utime(source, (1, 1))  # an older mtime than the cached bytecode's
    importlib.invalidate_caches()
    reloaded = importlib.reload(module)
    assert reloaded.report is not first
    assert get_declared(first.path) is reloaded.report
    assert reloaded.report() == 2
    assert get_schedule(first.path) is None  # the new declaration has no schedule


def test_cron_and_every_declare_a_schedule_named_after_the_task(clean_registry: None) -> None:
    scheduled = task(cron="0 7 * * mon-fri", tz="Europe/Berlin", args=[1], priority=3)(plain)
    schedule = scheduled.schedule
    assert schedule is not None
    assert get_schedule(scheduled.path) is schedule
    assert (schedule.name, schedule.func_path) == (scheduled.path, scheduled.path)
    assert (schedule.cron, schedule.tz, schedule.args, schedule.priority) == (
        "0 7 * * mon-fri",
        "Europe/Berlin",
        (1,),
        3,
    )
    every = task(every=dt.timedelta(minutes=10), kwargs={"x": 1})(plain)
    assert every.schedule is not None and every.schedule.every == dt.timedelta(minutes=10)


def test_schedule_arguments_must_fit_the_function(clean_registry: None) -> None:
    with pytest.raises(TypeError, match="do not fit") as raised:
        task(every=60, args=[1, 2])(plain)
    assert "[1, 2]" in str(raised.value)
    with pytest.raises(TypeError, match="do not fit"):
        task(cron="@daily")(plain)  # x is required


# ----------------------------------------------------------------------- enqueueing


@pytest.fixture
def omniq() -> Any:
    with OmniQ(Settings(backend="memory")) as facade:
        yield facade


def test_using_enqueues_with_the_functions_signature(omniq: OmniQ) -> None:
    bound = add.using(omniq)
    assert isinstance(bound, BoundTask)
    task_id = bound.enqueue(1, b=2)
    assert isinstance(task_id, str)
    stored = omniq.get_task(task_id)
    assert stored is not None
    assert (stored["func_path"], stored["args"], stored["kwargs"]) == (add.path, (1,), {"b": 2})
    with omniq.worker_pool() as workers:
        workers.process_tasks(limit=1)
    assert omniq.get_result(task_id) == 3


def test_a_declared_coroutine_runs_in_a_worker(omniq: OmniQ) -> None:
    task_id = resize.using(omniq).enqueue(5)
    with omniq.worker_pool() as workers:
        workers.process_tasks(limit=1)
    assert omniq.get_result(task_id) == 10


async def test_using_an_async_facade_gives_an_awaitable() -> None:
    async with AsyncOmniQ(Settings(backend="memory")) as aomniq:
        bound = add.using(aomniq, eta=dt.datetime.now(dt.timezone.utc))
        assert isinstance(bound, AsyncBoundTask)
        pending = bound.enqueue(4, 5)
        assert inspect.iscoroutine(pending)
        task_id = await pending
        async with aomniq.worker_pool() as workers:
            await workers.process_tasks(limit=1)
        assert await aomniq.get_result(task_id) == 9


def test_wrong_arguments_fail_at_the_call_and_store_nothing(omniq: OmniQ) -> None:
    with pytest.raises(TypeError, match=r"shared\.test_tasks\.add\(\)") as raised:
        add.using(omniq).enqueue(1, c=3)  # type: ignore[call-arg]
    assert "'c'" in str(raised.value)
    with pytest.raises(TypeError, match="missing a required argument: 'subject'"):
        send_email.using(omniq).enqueue("a@b.c")  # type: ignore[call-arg]
    assert omniq.stats()["total"] == 0


async def test_wrong_arguments_fail_before_anything_is_awaited() -> None:
    async with AsyncOmniQ(Settings(backend="memory")) as aomniq:
        with pytest.raises(TypeError, match="too many positional arguments"):
            resize.using(aomniq).enqueue(1, 2)  # type: ignore[call-arg]
        assert (await aomniq.stats())["total"] == 0


def test_options_given_to_using_win_over_declared_ones_which_win_over_settings(
    clean_registry: None,
) -> None:
    declared = task(max_retries=5, timeout=30)(plain)
    with OmniQ(Settings(backend="memory", max_retries=7, task_timeout=99)) as omniq:
        by_default = omniq.get_task(add.using(omniq).enqueue(1))
        by_declaration = omniq.get_task(declared.using(omniq).enqueue(1))
        by_call = omniq.get_task(declared.using(omniq, max_retries=2, timeout=4).enqueue(1))
    assert by_default is not None and by_declaration is not None and by_call is not None
    assert (by_default["max_retries"], by_default["timeout"]) == (7, None)
    assert (by_declaration["max_retries"], by_declaration["timeout"]) == (5, 30.0)
    assert (by_call["max_retries"], by_call["timeout"]) == (2, 4.0)


class RecordingOmniQ(OmniQ):
    """Captures what ``enqueue`` receives (the v2 options reach the store with issue 11)."""

    def __init__(self) -> None:
        super().__init__(Settings(backend="memory"))
        self.calls: list[tuple[str, Any, Any, dict[str, Any]]] = []

    def enqueue(  # type: ignore[override]
        self, func_path: str, args: Any = None, kwargs: Any = None, **options: Any
    ) -> str:
        self.calls.append((func_path, args, kwargs, options))
        return "recorded"


def test_queue_priority_and_unique_key_reach_the_facade() -> None:
    facade = RecordingOmniQ()
    assert send_email.using(facade).enqueue("a@b.c", subject="hi") == "recorded"
    send_email.using(facade, queue="urgent", priority=-3, unique_key="mail:1").enqueue("x", "y")
    assert facade.calls == [
        (
            send_email.path,
            ["a@b.c"],
            {"subject": "hi"},
            {"queue": "emails", "priority": 5, "max_retries": 5, "timeout": 30.0},
        ),
        (
            send_email.path,
            ["x", "y"],
            {},
            {
                "queue": "urgent",
                "priority": -3,
                "unique_key": "mail:1",
                "max_retries": 5,
                "timeout": 30.0,
            },
        ),
    ]


@pytest.mark.parametrize(
    ("options", "exc", "fragment"),
    [
        ({"queue": "a b"}, ValueError, "'a b'"),
        ({"priority": 1000}, ValueError, "1000"),
        ({"unique_key": ""}, ValueError, "''"),
        ({"unique_key": "k" * 201}, ValueError, "1-200"),
        ({"unique_key": 5}, TypeError, "5"),
        ({"eta": "tomorrow"}, TypeError, "'tomorrow'"),
        ({"interval": -1}, ValueError, "-1"),
        ({"max_retries": -2}, ValueError, "-2"),
        ({"timeout": -1}, ValueError, "-1"),
    ],
)
def test_bad_using_options_raise_naming_the_value(
    omniq: OmniQ, options: dict[str, Any], exc: type[Exception], fragment: str
) -> None:
    with pytest.raises(exc) as raised:
        add.using(omniq, **options)
    assert fragment in str(raised.value)


@pytest.mark.parametrize("target", [object(), "omniq", None, Settings()])
def test_using_something_that_is_not_a_facade_is_a_type_error(target: Any) -> None:
    with pytest.raises(TypeError, match="needs an OmniQ or AsyncOmniQ") as raised:
        add.using(target)
    assert repr(target) in str(raised.value)


def test_enqueue_options_take_the_call_then_the_declaration() -> None:
    assert enqueue_options(send_email.path) == {
        "queue": "emails",
        "priority": 5,
        "max_retries": 5,
        "timeout": 30.0,
    }
    assert enqueue_options(send_email.path, queue="x", priority=None, unique_key="k") == {
        "queue": "x",
        "priority": 5,
        "max_retries": 5,
        "timeout": 30.0,
        "unique_key": "k",
    }
    assert enqueue_options(f"{HERE}.plain", timeout=None, eta=None) == {}


# --------------------------------------------------------------------- func_path_of


def test_func_path_of_declared_and_plain_callables() -> None:
    assert func_path_of(send_email) == send_email.path
    assert func_path_of(send_email.func) == send_email.path  # the function behind it
    assert func_path_of(plain) == f"{HERE}.plain"
    assert func_path_of(Holder.static) == f"{HERE}.Holder.static"
    assert func_path_of(Holder.klass) == f"{HERE}.Holder.klass"
    assert func_path_of(len) == "builtins.len"
    assert func_path_of(os.path.join) == f"{os.path.join.__module__}.join"
    assert func_path_of("app.tasks.send_email") == "app.tasks.send_email"


def test_func_path_of_refuses_what_no_worker_could_find() -> None:
    def local() -> None:
        pass

    with pytest.raises(ValueError, match="lambda"):
        func_path_of(lambda: None)
    with pytest.raises(ValueError, match="inside a function"):
        func_path_of(local)
    with pytest.raises(TypeError, match="bound to an instance"):
        func_path_of(Holder().method)
    with pytest.raises(TypeError, match="no import path"):
        func_path_of(functools.partial(plain, 1))
    with pytest.raises(TypeError, match="got int: 42"):
        func_path_of(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inside a function"):
        func_path_of(wrapped_badly)  # its wrapper's qualname is _no_wraps.<locals>.wrapper
    with pytest.raises(ValueError, match="not what a worker finds"):
        func_path_of(shadowed_original)
    with pytest.raises(ValueError, match="'no_dots'"):
        func_path_of("no_dots")
