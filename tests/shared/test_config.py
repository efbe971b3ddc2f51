"""``Settings``: defaults, validation and the ``OMNIQ_*`` environment."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import sys
from pathlib import Path

import pytest

from omniq import Settings
from omniq import config as config_module
from omniq.config import default_base_dir


def test_defaults_need_no_arguments() -> None:
    settings = Settings()
    assert settings.backend == "sqlite"
    assert settings.base_dir == default_base_dir()
    assert settings.sqlite_path == settings.base_dir / "omniq.db"
    assert settings.max_retries == 3
    assert settings.durability == "full"


def test_base_dir_accepts_str_and_expands_home() -> None:
    assert Settings(base_dir="~/x").base_dir == Path.home() / "x"
    assert Settings(backend="FILE", base_dir="./data").backend == "file"


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"backend": "mongo"}, ValueError, "'mongo'"),
        ({"backend": "postgres"}, ValueError, "dsn"),
        ({"max_retries": -1}, ValueError, "-1"),
        ({"max_retries": "3"}, TypeError, "'3'"),
        ({"task_timeout": 0}, ValueError, "0"),
        ({"task_timeout": -1.5}, ValueError, "-1.5"),
        ({"concurrency": 0}, ValueError, "0"),
        ({"poll_interval": 0}, ValueError, "0"),
        ({"lease_timeout": -1}, ValueError, "-1"),
        ({"durability": "maybe"}, ValueError, "'maybe'"),
        ({"base_dir": 42}, TypeError, "42"),
        ({"base_dir": ""}, ValueError, "base_dir"),
        ({"base_dir": "   "}, ValueError, "base_dir"),
        ({"base_dir": "~nosuchuser_omniq/q"}, ValueError, "~nosuchuser_omniq/q"),
        ({"base_dir": "a\x00b"}, ValueError, "NUL"),
        ({"dsn": 42}, TypeError, "dsn must be a str"),
        ({"backend": "postgres", "dsn": b"postgresql://h/db"}, TypeError, "bytes"),
        ({"max_retries": 2**31}, ValueError, "2147483648"),
        ({"max_retries": 9223372036854775808}, ValueError, "9223372036854775808"),
        ({"task_timeout": 1e12}, ValueError, "100 years"),
        ({"task_timeout": 10**400}, ValueError, "too large"),
        ({"poll_interval": float("inf")}, ValueError, "finite"),
        ({"poll_interval": 1e12}, ValueError, "1000000000000.0"),
        ({"lease_timeout": 1e12}, ValueError, "lease_timeout"),
        ({"concurrency": 2**31}, ValueError, "2147483648"),
    ],
)
def test_bad_settings_raise_naming_the_value(
    kwargs: dict[str, object], exc: type[Exception], fragment: str
) -> None:
    with pytest.raises(exc) as raised:
        Settings(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(raised.value)


def test_from_env_reads_omniq_variables(tmp_path: Path) -> None:
    env = {
        "OMNIQ_BACKEND": "file",
        "OMNIQ_BASE_DIR": str(tmp_path),
        "OMNIQ_MAX_RETRIES": "5",
        "OMNIQ_TASK_TIMEOUT": "2.5",
        "OMNIQ_CONCURRENCY": "8",
        "OMNIQ_POLL_INTERVAL": "0.5",
        "OMNIQ_LEASE_TIMEOUT": "12",
        "OMNIQ_DURABILITY": "fast",
        "UNRELATED": "x",
    }
    settings = Settings.from_env(env)
    assert settings.backend == "file"
    assert settings.base_dir == tmp_path
    assert settings.max_retries == 5
    assert settings.task_timeout == 2.5
    assert settings.concurrency == 8
    assert settings.poll_interval == 0.5
    assert settings.lease_timeout == 12
    assert settings.durability == "fast"


def test_from_env_overrides_win_and_os_environ_is_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OMNIQ_BACKEND", "memory")
    monkeypatch.setenv("OMNIQ_BASE_DIR", str(tmp_path))
    assert Settings.from_env().backend == "memory"
    assert Settings.from_env(backend="sqlite").backend == "sqlite"


def test_from_env_names_a_bad_variable() -> None:
    with pytest.raises(ValueError, match="OMNIQ_CONCURRENCY='many'"):
        Settings.from_env({"OMNIQ_CONCURRENCY": "many"})
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        Settings.from_env({"OMNIQ_BACKEND": "nope"})


class _PathLike(os.PathLike[str]):
    def __init__(self, path: str) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return self.path


def test_base_dir_accepts_any_path_like_and_reads_as_a_path(tmp_path: Path) -> None:
    for given in (str(tmp_path), tmp_path, _PathLike(str(tmp_path))):
        settings = Settings(base_dir=given)
        assert type(settings.base_dir) is type(tmp_path)  # a concrete Path, not what was given
        assert settings.base_dir == tmp_path
    assert Settings(base_dir=_PathLike("~/y")).base_dir == Path.home() / "y"


@pytest.fixture
def data_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fake home (and current directory) so that the default directory can be observed."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.mark.skipif(sys.platform != "linux", reason="the XDG layout of Linux")
@pytest.mark.parametrize("value", ["relative/data", "./data", "data", "   ", "", "~/data"])
def test_an_invalid_xdg_data_home_is_ignored(
    data_home: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # The XDG spec: a relative path in XDG_DATA_HOME is invalid and ignored, so the
    # default store never follows the current directory (a blank one used to give
    # '   /omniq').
    monkeypatch.setenv("XDG_DATA_HOME", value)
    expected = data_home / ".local" / "share" / "omniq"
    assert default_base_dir() == expected
    assert Settings().base_dir == expected
    assert Settings().sqlite_path.is_absolute()


@pytest.mark.skipif(sys.platform != "linux", reason="the XDG layout of Linux")
def test_an_absolute_xdg_data_home_is_used(
    data_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Settings().base_dir == tmp_path / "xdg" / "omniq"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert Settings().base_dir == data_home / ".local" / "share" / "omniq"


def test_the_default_directory_is_absolute_and_not_created(data_home: Path) -> None:
    settings = Settings()
    assert settings.base_dir.is_absolute()
    assert not settings.base_dir.exists()  # created on first use by the store, not here


def test_the_type_checkers_constructor_matches_the_fields() -> None:
    # Settings declares, for type checkers only, an __init__ whose base_dir takes any
    # path-like; every other parameter must be the dataclass field, in order, with its
    # annotation and default, or a user's mypy would see a different constructor.
    tree = ast.parse(inspect.getsource(config_module))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings"]
    (block,) = [
        n for n in cls.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
    ]
    (init,) = [n for n in block.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    params = init.args.args[1:]
    assert not init.args.kwonlyargs and not init.args.vararg and not init.args.kwarg
    fields = [f for f in dataclasses.fields(Settings) if f.init]
    assert [p.arg for p in params] == [f.name for f in fields]
    assert len(init.args.defaults) == len(params)
    for param, default, f in zip(params, init.args.defaults, fields, strict=True):
        annotation = ast.unparse(param.annotation) if param.annotation else None
        if f.name == "base_dir":
            assert annotation == "str | os.PathLike[str]"
        elif f.name == "retention":
            assert annotation == "dt.timedelta | float | None"
        else:
            assert annotation == f.type, f.name
        if f.default is dataclasses.MISSING:
            assert ast.unparse(default) == "...", f.name
        else:
            assert eval(ast.unparse(default), vars(config_module)) == f.default, f.name


def test_task_modules_and_imports_default_to_nothing_and_are_normalized() -> None:
    settings = Settings()
    assert settings.task_modules == () and settings.imports == ()
    chosen = Settings(task_modules=["app.tasks.*", " app.jobs ", "app.tasks.*"], imports=["app.x"])
    assert chosen.task_modules == ("app.tasks.*", "app.jobs")  # stripped, no repeats
    assert chosen.imports == ("app.x",)


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"task_modules": "app.tasks.*"}, TypeError, "'app.tasks.*'"),
        ({"task_modules": ["*"]}, ValueError, "'*'"),
        ({"task_modules": ["?pp.tasks"]}, ValueError, "'?pp.tasks'"),
        ({"task_modules": ["app/tasks"]}, ValueError, "'app/tasks'"),
        ({"imports": "app.tasks"}, TypeError, "'app.tasks'"),
        ({"imports": ["app.tasks.*"]}, ValueError, "'app.tasks.*'"),
        ({"imports": [None]}, TypeError, "None"),
    ],
)
def test_bad_task_modules_and_imports_raise_naming_the_value(
    kwargs: dict[str, object], exc: type[Exception], fragment: str
) -> None:
    with pytest.raises(exc) as raised:
        Settings(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(raised.value)


def test_from_env_reads_task_modules_and_imports_comma_separated() -> None:
    settings = Settings.from_env(
        {"OMNIQ_TASK_MODULES": "app.tasks.*, billing.jobs ,,", "OMNIQ_IMPORT": "app.tasks,reports"}
    )
    assert settings.task_modules == ("app.tasks.*", "billing.jobs")
    assert settings.imports == ("app.tasks", "reports")
    with pytest.raises(ValueError, match="'\\*'"):
        Settings.from_env({"OMNIQ_TASK_MODULES": "*"})


def test_values_at_the_bounds_are_accepted() -> None:
    settings = Settings(max_retries=2**31 - 1, task_timeout=100 * 365.25 * 86_400)
    assert settings.max_retries == 2**31 - 1
    assert Settings(lease_timeout=0.001, poll_interval=0.001).poll_interval == 0.001


def test_a_non_string_dsn_is_not_echoed() -> None:
    class Secret:
        def __repr__(self) -> str:
            return "hunter2"

    with pytest.raises(TypeError) as raised:
        Settings(dsn=Secret())  # type: ignore[arg-type]
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (
            "postgresql://app:hunter2@db.example:5432/jobs",
            "postgresql://app:***@db.example:5432/jobs",
        ),
        (
            "postgresql://app:hun%40ter2@db/jobs?sslmode=require",
            "postgresql://app:***@db/jobs?sslmode=require",
        ),
        (
            "postgresql://db/jobs?user=app&password=hunter2",
            "postgresql://db/jobs?user=app&password=***",
        ),
        (
            "host=db user=app password=hunter2 dbname=jobs",
            "host=db user=app password=*** dbname=jobs",
        ),
        ("host=db password = 'hun ter\\'2' dbname=jobs", "host=db password = *** dbname=jobs"),
        ("postgresql://app@db/jobs", "postgresql://app@db/jobs"),
    ],
)
def test_repr_and_print_mask_the_dsn_password(
    dsn: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(backend="postgres", dsn=dsn)
    assert f"dsn={shown!r}" in repr(settings)
    print(settings)
    printed = capsys.readouterr().out
    assert f"dsn={shown!r}" in printed
    for secret in ("hunter2", "hun%40ter2", "hun@ter2", "hun ter"):
        assert secret not in printed and secret not in repr(settings)
    assert settings.dsn == dsn  # the real value is untouched
    assert "backend='postgres'" in printed and "max_retries=3" in printed


def test_the_process_executor_settings_and_their_variables() -> None:
    assert (Settings().executor, Settings().processes, Settings().kill_grace) == ("inline", None, 5)
    settings = Settings.from_env(
        {
            "OMNIQ_EXECUTOR": "Process",
            "OMNIQ_PROCESSES": "3",
            "OMNIQ_MAX_TASKS_PER_CHILD": "100",
            "OMNIQ_MAX_MEMORY_PER_CHILD": "512.5",
            "OMNIQ_KILL_GRACE": "2",
        }
    )
    assert settings.executor == "process"
    assert (settings.processes, settings.max_tasks_per_child) == (3, 100)
    assert (settings.max_memory_per_child, settings.kill_grace) == (512.5, 2.0)
    unlimited = Settings.from_env(
        {"OMNIQ_EXECUTOR": "process", "OMNIQ_MAX_MEMORY_PER_CHILD": "none"}
    )
    assert unlimited.max_memory_per_child is None and unlimited.processes is None


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"executor": "threads"}, ValueError, "unknown executor 'threads'"),
        ({"executor": None}, ValueError, "unknown executor None"),
        ({"executor": "process", "processes": 0}, ValueError, "processes must be >= 1"),
        ({"executor": "process", "max_tasks_per_child": "9"}, TypeError, "'9'"),
        ({"executor": "process", "max_memory_per_child": 0}, ValueError, "MiB, got 0"),
        ({"executor": "process", "max_memory_per_child": float("nan")}, ValueError, "nan"),
        ({"executor": "process", "kill_grace": -1}, ValueError, "kill_grace"),
        ({"processes": 4}, ValueError, "processes need executor='process'"),
        ({"max_memory_per_child": 256}, ValueError, "OMNIQ_EXECUTOR=process"),
    ],
)
def test_bad_process_executor_settings_name_the_value(
    kwargs: dict[str, object], exc: type[Exception], fragment: str
) -> None:
    with pytest.raises(exc) as raised:
        Settings(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(raised.value)
    with pytest.raises(ValueError, match="OMNIQ_PROCESSES='two'"):
        Settings.from_env({"OMNIQ_EXECUTOR": "process", "OMNIQ_PROCESSES": "two"})
