"""``omniq.contrib.flask.OmniQ``: settings from ``app.config``, one facade per app and process."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import omniq
from omniq import Settings
from omniq.contrib.flask import OmniQ, settings_from_config


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    return app


def test_settings_come_from_app_config_over_the_environment(tmp_path: Path) -> None:
    environ = {"OMNIQ_BASE_DIR": "/from/env", "OMNIQ_CONCURRENCY": "7", "OMNIQ_RETENTION": "2d"}
    config = {
        "OMNIQ_BASE_DIR": tmp_path,  # not a str: used as it is
        "OMNIQ_TASK_MODULES": "app.tasks.*,jobs",  # a str: read as the variable would be
        "OMNIQ_IMPORT": ("app.tasks",),
        "SECRET_KEY": "not ours",
    }
    settings = settings_from_config(config, environ)
    assert settings.base_dir == tmp_path
    assert settings.concurrency == 7  # from the environment
    assert settings.retention == dt.timedelta(days=2).total_seconds()
    assert settings.task_modules == ("app.tasks.*", "jobs")
    assert settings.imports == ("app.tasks",)


def test_a_whole_settings_object(tmp_path: Path) -> None:
    given = Settings(base_dir=tmp_path)
    assert settings_from_config({"OMNIQ_SETTINGS": given}, {}) is given
    with pytest.raises(ValueError, match="OMNIQ_BASE_DIR would be ignored"):
        settings_from_config({"OMNIQ_SETTINGS": given, "OMNIQ_BASE_DIR": "x"}, {})
    with pytest.raises(TypeError, match=r"must be an omniq\.Settings"):
        settings_from_config({"OMNIQ_SETTINGS": {"backend": "sqlite"}}, {})


def test_bad_config_fails_at_init_app_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"unknown omniq keys in app\.config: OMNIQ_BASEDIR"):
        OmniQ(make_app(OMNIQ_BASEDIR="typo"))
    with pytest.raises(ValueError, match="OMNIQ_CONCURRENCY"):
        OmniQ(make_app(OMNIQ_CONCURRENCY="many"))
    with pytest.raises(ValueError, match="unknown backend"):
        OmniQ(make_app(OMNIQ_BACKEND="nope"))


def test_one_facade_per_app_shared_by_threads_made_on_first_use(tmp_path: Path) -> None:
    extension = OmniQ()
    first = make_app(OMNIQ_BASE_DIR=str(tmp_path / "a"))
    second = make_app(OMNIQ_BASE_DIR=str(tmp_path / "b"))
    extension.init_app(first)
    extension.init_app(second)
    assert not (tmp_path / "a").exists()  # nothing opened yet
    seen: list[omniq.OmniQ] = []

    def use() -> None:
        with first.app_context():
            seen.append(extension.facade)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(facade) for facade in seen}) == 1
    with second.app_context():
        assert extension.facade is not seen[0]
        assert extension.facade.settings.base_dir == tmp_path / "b"
    task_id = extension.facade_for(first).enqueue("task_functions.add", args=[1, 2])
    assert extension.facade_for(first).get_task(task_id) is not None
    extension.close(first)
    extension.close(second)


def test_outside_an_app_context(tmp_path: Path) -> None:
    app = make_app(OMNIQ_BASE_DIR=str(tmp_path))
    bound = OmniQ(app)
    assert bound.facade.settings.base_dir == tmp_path  # the app it was made with
    bound.close()
    unbound = OmniQ()
    unbound.init_app(app)
    with pytest.raises(RuntimeError, match="no Flask app"):
        unbound.facade  # noqa: B018
    with pytest.raises(RuntimeError, match="call init_app"):
        unbound.facade_for(make_app())


def test_close_then_use_again_opens_a_new_facade(tmp_path: Path) -> None:
    app = make_app(OMNIQ_BASE_DIR=str(tmp_path))
    extension = OmniQ(app)
    before = extension.facade
    before.stats()
    extension.close()
    after = extension.facade
    assert after is not before
    assert after.stats()["total"] == 0
    extension.close()


def _enqueue_in_child(extension: OmniQ, app: Flask, results: Any) -> None:
    with app.app_context():
        task_id = extension.facade.enqueue("task_functions.add", args=[2, 3])
        results.put(extension.facade.get_task(task_id)["status"].value)


def test_a_facade_used_before_fork_works_in_the_children(tmp_path: Path) -> None:
    app = make_app(OMNIQ_BASE_DIR=str(tmp_path), OMNIQ_TASK_MODULES="task_functions")
    extension = OmniQ(app)
    extension.facade.enqueue("task_functions.add", args=[1, 1])  # touched in the parent
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    children = [
        context.Process(target=_enqueue_in_child, args=(extension, app, results)) for _ in range(2)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    assert [results.get(timeout=10) for _ in children] == ["pending", "pending"]
    assert extension.facade.stats()["pending"] == 3
    extension.close()


def test_flask_omniq_worker_is_registered(tmp_path: Path) -> None:
    app = make_app(OMNIQ_BASE_DIR=str(tmp_path))
    OmniQ(app)
    result = app.test_cli_runner().invoke(args=["omniq", "worker", "--help"])
    assert result.exit_code == 0
    assert "Run tasks until Ctrl-C or SIGTERM" in " ".join(result.output.split())
