"""``OmniQ(app)``: omniq in a Flask app, configured by ``app.config``.

::

    from omniq.contrib.flask import OmniQ

    omniq = OmniQ()

    def create_app() -> Flask:
        app = Flask(__name__)
        app.config["OMNIQ_BASE_DIR"] = "./omniq_data"
        omniq.init_app(app)          # or OmniQ(app)
        return app

    @app.post("/reports")
    def create_report():
        task_id = word_report.using(omniq.facade).enqueue(text)

**Settings.** ``init_app`` reads the ``OMNIQ_*`` keys of ``app.config`` (the names of
the ``OMNIQ_*`` environment variables ``Settings.from_env`` reads: ``OMNIQ_BACKEND``,
``OMNIQ_BASE_DIR``, ``OMNIQ_DSN``, ``OMNIQ_TASK_MODULES``...) over those environment
variables, so the app and an ``omniq worker`` started with the same environment use one
store. A string value is read as the environment's would be (``"7d"``, ``"a,b"``);
other values are passed as they are (a ``Path``, a ``timedelta``, a tuple).
``OMNIQ_SETTINGS`` may hold a whole ``omniq.Settings`` instead. Bad values fail in
``init_app``, at start-up, with the key named.

**One facade per process.** ``facade`` is the app's blocking ``omniq.OmniQ``, made on
first use and shared by every request and thread of the process. Stores are fork-safe,
so under ``gunicorn --preload`` an app that touched its store while loading keeps
working in every forked worker.

**Closing.** Flask has no "app stopped" signal (``teardown_appcontext`` runs after every
request, far too often to close a store), so the facade is closed when the process
exits (``atexit``), or by :meth:`OmniQ.close`.

``flask omniq worker`` runs a worker pool on the app's store, each task inside an app
context of its own (``current_app``, ``app.config`` and extensions work in tasks).
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib
import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import click
from flask import Flask, current_app, has_app_context
from flask.cli import with_appcontext

import omniq
from omniq.config import _ENV_NAMES, Settings

EXTENSION = "omniq"
PREFIX = "OMNIQ_"
SETTINGS_KEY = "OMNIQ_SETTINGS"


def _config_keys() -> dict[str, str]:
    """``OMNIQ_*`` config key -> ``Settings`` field."""
    return {
        _ENV_NAMES.get(field.name, f"{PREFIX}{field.name.upper()}"): field.name
        for field in dataclasses.fields(Settings)
    }


def settings_from_config(
    config: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Settings:
    """The ``Settings`` of ``config``'s ``OMNIQ_*`` keys over the ``OMNIQ_*`` variables of
    ``environ`` (default: ``os.environ``); ``ValueError``/``TypeError`` naming a bad key."""
    keys = _config_keys()
    given = {key: value for key, value in config.items() if key.startswith(PREFIX)}
    if SETTINGS_KEY in given:
        settings = given.pop(SETTINGS_KEY)
        if not isinstance(settings, Settings):
            raise TypeError(f"{SETTINGS_KEY} must be an omniq.Settings, got {settings!r}")
        if given:
            raise ValueError(
                f"{SETTINGS_KEY} is given, so {', '.join(sorted(given))} would be ignored: "
                "set those fields on the Settings instead"
            )
        return settings
    unknown = sorted(key for key in given if key not in keys)
    if unknown:
        raise ValueError(
            f"unknown omniq keys in app.config: {', '.join(unknown)} (known: "
            f"{', '.join(sorted([*keys, SETTINGS_KEY]))})"
        )
    env = os.environ if environ is None else environ
    strings = {name: value for name, value in env.items() if name in keys}
    overrides: dict[str, Any] = {}
    for key, value in given.items():
        if isinstance(value, str):
            strings[key] = value  # read as the environment variable would be
        else:
            strings.pop(key, None)
            overrides[keys[key]] = value
    try:
        return Settings.from_env(strings, **overrides)
    except (TypeError, ValueError) as error:
        raise type(error)(f"app.config: {error}") from None


def _current_app() -> Flask:
    """The app behind ``current_app`` (the proxy only works inside its context)."""
    return current_app._get_current_object()  # type: ignore[attr-defined, no-any-return]


class _AppState:
    """What the extension keeps for one app: its settings and, once used, its facade."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._facade: omniq.OmniQ | None = None
        self._lock = threading.Lock()
        _STATES.add(self)

    def facade(self) -> omniq.OmniQ:
        with self._lock:
            if self._facade is None:
                self._facade = omniq.OmniQ(self.settings)
            return self._facade

    def close(self) -> None:
        with self._lock:
            facade, self._facade = self._facade, None
        if facade is not None:
            facade.close()


_STATES: weakref.WeakSet[_AppState] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A fork while another thread held a lock must not leave the child's lock held."""
    for state in list(_STATES):
        state._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class OmniQ:
    """The Flask extension: ``OmniQ(app)``, or ``OmniQ()`` then ``init_app(app)``.

    One extension object may serve several apps (an app factory, tests); :attr:`facade`
    is the current app's.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._app = app
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(app={self._app!r})"

    def init_app(self, app: Flask) -> None:
        """Read ``app``'s ``OMNIQ_*`` config (bad values raise here) and register the
        ``flask omniq`` commands; the store is opened on first use, closed at exit."""
        state = _AppState(settings_from_config(app.config))
        app.extensions[EXTENSION] = state
        atexit.register(state.close)
        app.cli.add_command(_cli(self))

    def _state(self, app: Flask | None = None) -> _AppState:
        if app is None:
            app = _current_app() if has_app_context() else self._app
        if app is None:
            raise RuntimeError(
                "no Flask app: use OmniQ.facade inside an app context (a request, "
                "app.app_context()), or make the extension with OmniQ(app)"
            )
        state = app.extensions.get(EXTENSION)
        if not isinstance(state, _AppState):
            raise RuntimeError(f"{app!r} has no omniq extension: call init_app(app) first")
        return state

    @property
    def facade(self) -> omniq.OmniQ:
        """The current app's blocking ``omniq.OmniQ`` (made on first use, one per process)."""
        return self._state().facade()

    def facade_for(self, app: Flask) -> omniq.OmniQ:
        """``app``'s facade, outside an app context."""
        return self._state(app).facade()

    def settings_for(self, app: Flask) -> Settings:
        """The ``Settings`` read from ``app.config``."""
        return self._state(app).settings

    def close(self, app: Flask | None = None) -> None:
        """Close the app's facade now (a later use opens a new one)."""
        self._state(app).close()


# ---------------------------------------------------------------------- flask omniq worker


def _cli(extension: OmniQ) -> click.Group:
    @click.group("omniq")
    def group() -> None:
        """omniq on this app's store."""

    @group.command("worker")
    @click.option("--import", "imports", multiple=True, help="a module of tasks to import")
    @click.option("--queue", "queues", multiple=True, help="a queue to serve (default: all)")
    @click.option("--concurrency", type=click.IntRange(min=1), default=None)
    @click.option("--limit", type=click.IntRange(min=1), default=None, help="tasks to run")
    @click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None)
    @with_appcontext
    def worker(
        imports: tuple[str, ...],
        queues: tuple[str, ...],
        concurrency: int | None,
        limit: int | None,
        duration: float | None,
    ) -> None:
        """Run tasks until Ctrl-C or SIGTERM (or --limit/--duration), each in an app context."""
        app = _current_app()  # the app itself: tasks run on threads without this context
        for name in imports:
            importlib.import_module(name)
        facade = extension.facade_for(app)
        options: dict[str, Any] = {"queues": list(queues) or None}
        if concurrency is not None:
            options["concurrency"] = concurrency
        pool = facade.worker_pool(**options)
        contexts: dict[str, Any] = {}

        def push(task: omniq.Task) -> None:
            contexts[task.id] = context = app.app_context()
            context.push()

        def pop(task: omniq.Task, outcome: object) -> None:
            context = contexts.pop(task.id, None)
            if context is not None:
                context.pop()

        pool.before_task(push)
        pool.after_task(pop)
        click.echo(f"omniq worker: {pool.concurrency} threads on {app.name}'s store", err=True)
        with pool:
            processed = pool.process_tasks(limit=limit, duration=duration)
        click.echo(f"omniq worker: stopped after {processed} task(s)", err=True)

    return group
