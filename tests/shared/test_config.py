"""``Settings``: defaults, validation and the ``OMNIQ_*`` environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from omniq import Settings
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
