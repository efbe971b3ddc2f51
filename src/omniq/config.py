"""``Settings``: which store to use and the defaults of queues and workers.

``Settings()`` works with no arguments: SQLite in ``omniq.db`` under the user's
data directory. ``Settings.from_env()`` reads the ``OMNIQ_*`` variables; explicit
keyword arguments given to it win over the environment.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from omniq import retry
from omniq._secrets import mask_dsn
from omniq._validation import (
    non_negative_number,
    normalize_executor,
    normalize_max_retries,
    normalize_module_names,
    normalize_retention,
    normalize_task_modules,
    normalize_timeout,
    positive_int,
    positive_mib,
    positive_number,
)
from omniq.durations import parse_duration

BACKENDS = ("sqlite", "file", "memory", "postgres")
DURABILITIES = ("full", "fast")
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
DEFAULT_RETENTION = 7 * 86_400.0  # seconds finished tasks are kept: a week, as Oban's Pruner a day
DEFAULT_KILL_GRACE = 5.0  # seconds from SIGTERM to SIGKILL for a child past its timeout


def default_base_dir() -> Path:
    """The per-user data directory omniq uses when no ``base_dir`` is given.

    platformdirs' ``user_data_dir("omniq")``: ``$XDG_DATA_HOME/omniq`` (Linux and macOS)
    when that variable holds an absolute path, else ``~/.local/share/omniq`` on Linux,
    ``~/Library/Application Support/omniq`` on macOS, ``%LOCALAPPDATA%\\omniq`` on
    Windows. A relative or blank ``XDG_DATA_HOME`` is ignored, as the XDG specification
    asks, so the default store never depends on the current directory.
    """
    return Path(platformdirs.user_data_dir("omniq", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Configuration of an omniq queue, its store and its workers.

    * ``backend``: ``"sqlite"`` (default), ``"file"``, ``"memory"`` or ``"postgres"``.
    * ``base_dir``: where SQLite keeps ``omniq.db`` and the file backend its tasks: a
      ``str`` or any path-like, ``~`` expanded, kept as a ``Path``; by default
      :func:`default_base_dir`, the user's data directory.
    * ``dsn``: the PostgreSQL connection string (``backend="postgres"``).
    * ``max_retries``: executions allowed per task, unless ``enqueue`` says otherwise.
    * ``task_timeout``: seconds a task may run, unless ``enqueue`` says otherwise.
    * ``concurrency``, ``poll_interval``, ``lease_timeout``: worker defaults.
    * ``durability``: ``"full"`` keeps an acknowledged enqueue through an OS crash;
      ``"fast"`` survives a crash of the process only.
    * ``max_payload_bytes``: the largest encoded ``args`` + ``kwargs`` accepted.
    * ``retention``: how long finished tasks (completed, failed, cancelled) are kept
      before worker pools delete them: a ``timedelta`` or seconds, 7 days by default;
      ``None`` keeps everything. Read back in seconds.
    * ``eager``: for tests: ``enqueue`` runs the task inline and keeps it in memory
      (``backend`` is then not used); see docs/testing.md.
    * ``task_modules``: glob patterns over import paths (``("app.tasks.*",)``) whose
      functions a worker may run besides declared tasks; a pattern without wildcards
      names a module (``"app.tasks"`` is ``"app.tasks.*"``). See docs/tasks.md.
    * ``imports``: modules a worker imports when it starts, so that their ``@task``
      declarations register; each also allows ``MODULE.*``.
    * ``executor``: how worker pools run tasks: ``"inline"`` (default; the event loop
      and threads) or ``"process"`` (reused child processes with hard timeouts, crash
      containment and recycling; see docs/workers.md).
    * ``processes``: child processes per pool with ``executor="process"`` (``None``:
      ``concurrency``); a pool's ``concurrency`` then defaults to it.
    * ``max_tasks_per_child``, ``max_memory_per_child`` (MiB): recycle a child after
      that many tasks, or when a task leaves it above that much memory (``None``:
      never). These and ``processes`` need ``executor="process"``.
    * ``kill_grace``: seconds from SIGTERM to SIGKILL for a child past its task's
      timeout (default 5; at most half the lease).
    """

    backend: str = "sqlite"
    base_dir: Path = field(default_factory=default_base_dir)
    dsn: str | None = None
    max_retries: int = retry.DEFAULT_MAX_RETRIES
    task_timeout: float | None = None
    concurrency: int = 4
    poll_interval: float = 1.0
    lease_timeout: float = 30.0
    durability: str = "full"
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    eager: bool = False
    retention: float | None = DEFAULT_RETENTION
    task_modules: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    executor: str = "inline"
    processes: int | None = None
    max_tasks_per_child: int | None = None
    max_memory_per_child: float | None = None
    kill_grace: float = DEFAULT_KILL_GRACE

    if TYPE_CHECKING:
        # What type checkers see as the constructor: the dataclass's own, except that
        # ``base_dir`` takes any path-like (``"./data"``); the field stays a ``Path`` for
        # readers, because __post_init__ converts it. tests/shared/test_config.py keeps
        # this in step with the fields.
        def __init__(
            self,
            backend: str = "sqlite",
            base_dir: str | os.PathLike[str] = ...,
            dsn: str | None = None,
            max_retries: int = retry.DEFAULT_MAX_RETRIES,
            task_timeout: float | None = None,
            concurrency: int = 4,
            poll_interval: float = 1.0,
            lease_timeout: float = 30.0,
            durability: str = "full",
            max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
            eager: bool = False,
            retention: dt.timedelta | float | None = DEFAULT_RETENTION,
            task_modules: tuple[str, ...] = (),
            imports: tuple[str, ...] = (),
            executor: str = "inline",
            processes: int | None = None,
            max_tasks_per_child: int | None = None,
            max_memory_per_child: float | None = None,
            kill_grace: float = DEFAULT_KILL_GRACE,
        ) -> None: ...

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalize in place once, at construction
        if not isinstance(self.backend, str) or self.backend.lower() not in BACKENDS:
            raise ValueError(
                f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}"
            )
        set_(self, "backend", self.backend.lower())
        set_(self, "base_dir", _base_dir(self.base_dir))
        if self.dsn is not None and not isinstance(self.dsn, str):
            # The value is not shown: it may be a secret in another shape.
            raise TypeError(
                "dsn must be a str (a libpq URL or key=value string), got "
                f"{type(self.dsn).__name__}"
            )
        if self.backend == "postgres" and not self.dsn:
            raise ValueError("backend 'postgres' needs a dsn, e.g. 'postgresql://localhost/db'")
        max_retries = normalize_max_retries(self.max_retries)
        if max_retries is None:
            raise TypeError("max_retries must be an int >= 0, got None")
        set_(self, "task_timeout", normalize_timeout(self.task_timeout, "task_timeout"))
        set_(self, "concurrency", positive_int("concurrency", self.concurrency))
        set_(self, "poll_interval", positive_number("poll_interval", self.poll_interval))
        set_(self, "lease_timeout", positive_number("lease_timeout", self.lease_timeout))
        if self.durability not in DURABILITIES:
            raise ValueError(
                f"unknown durability {self.durability!r}; choose one of {', '.join(DURABILITIES)}"
            )
        set_(self, "max_payload_bytes", positive_int("max_payload_bytes", self.max_payload_bytes))
        if not isinstance(self.eager, bool):
            raise TypeError(f"eager must be True or False, got {self.eager!r}")
        set_(self, "retention", normalize_retention(self.retention))
        set_(self, "task_modules", normalize_task_modules(self.task_modules))
        set_(self, "imports", normalize_module_names("imports", self.imports))
        set_(self, "executor", normalize_executor(self.executor))
        if self.processes is not None:
            set_(self, "processes", positive_int("processes", self.processes))
        if self.max_tasks_per_child is not None:
            set_(
                self,
                "max_tasks_per_child",
                positive_int("max_tasks_per_child", self.max_tasks_per_child),
            )
        if self.max_memory_per_child is not None:
            set_(
                self,
                "max_memory_per_child",
                positive_mib("max_memory_per_child", self.max_memory_per_child),
            )
        set_(self, "kill_grace", non_negative_number("kill_grace", self.kill_grace))
        if self.executor != "process":
            stray = [
                name
                for name in ("processes", "max_tasks_per_child", "max_memory_per_child")
                if getattr(self, name) is not None
            ]
            if stray:
                raise ValueError(
                    f"{', '.join(stray)} need executor='process' (OMNIQ_EXECUTOR=process, "
                    f"or omniq worker --processes N); the executor is {self.executor!r}"
                )

    def __repr__(self) -> str:
        # The DSN's password is masked: settings get printed and logged.
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(self.dsn, str):
            shown["dsn"] = mask_dsn(self.dsn)
        fields_text = ", ".join(f"{name}={value!r}" for name, value in shown.items())
        return f"{type(self).__name__}({fields_text})"

    @property
    def sqlite_path(self) -> Path:
        """The SQLite database file: ``base_dir / "omniq.db"``."""
        return self.base_dir / "omniq.db"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``OMNIQ_*`` variables; ``overrides`` win over the environment.

        Read: ``OMNIQ_BACKEND``, ``OMNIQ_BASE_DIR``, ``OMNIQ_DSN``,
        ``OMNIQ_MAX_RETRIES``, ``OMNIQ_TASK_TIMEOUT``, ``OMNIQ_CONCURRENCY``,
        ``OMNIQ_POLL_INTERVAL``, ``OMNIQ_LEASE_TIMEOUT``, ``OMNIQ_DURABILITY``,
        ``OMNIQ_MAX_PAYLOAD_BYTES``, ``OMNIQ_RETENTION`` (seconds or a duration such as
        ``7d``; ``none`` keeps everything), ``OMNIQ_EAGER`` (``1``/``true``/``yes``/``on``
        or ``0``/``false``/``no``/``off``), ``OMNIQ_TASK_MODULES`` and ``OMNIQ_IMPORT``
        (comma-separated), ``OMNIQ_EXECUTOR`` (``inline`` or ``process``),
        ``OMNIQ_PROCESSES``, ``OMNIQ_MAX_TASKS_PER_CHILD``, ``OMNIQ_MAX_MEMORY_PER_CHILD``
        (MiB; ``none`` for no limit) and ``OMNIQ_KILL_GRACE`` (seconds).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, convert in _ENV_FIELDS.items():
            variable = _ENV_NAMES.get(name, f"OMNIQ_{name.upper()}")
            raw = env.get(variable)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[name] = convert(raw.strip())
            except ValueError:
                raise ValueError(f"{variable}={raw!r} is not a valid {name}") from None
        values.update(overrides)
        return cls(**values)


def _base_dir(value: object) -> Path:
    """``base_dir`` as an absolute-or-relative ``Path`` with ``~`` expanded, or a clear error."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"base_dir must be a str or path, got {value!r}")
    text = os.fspath(value)
    if not isinstance(text, str):
        raise TypeError(f"base_dir must be a str or path, got {value!r}")
    if not text.strip():
        raise ValueError(f"base_dir must name a directory, got {value!r}")
    if "\x00" in text:
        raise ValueError(f"base_dir must not hold a NUL character, got {value!r}")
    try:
        return Path(text).expanduser()
    except RuntimeError:  # "~user" for a user that does not exist, or no home at all
        raise ValueError(
            f"base_dir {text!r} starts with '~' but that home directory cannot be found"
        ) from None


def _retention(raw: str) -> float | None:
    """``OMNIQ_RETENTION``: seconds or a duration (``7d``, ``12h``); ``none``/``off`` keeps all."""
    if raw.lower() in ("none", "off", "never", "forever"):
        return None
    return parse_duration(raw)


def _optional_float(raw: str) -> float | None:
    return None if raw.lower() in ("none", "0", "") else float(raw)


def _optional_int(raw: str) -> int | None:
    return None if raw.lower() == "none" else int(raw)


def _optional_number(raw: str) -> float | None:
    return None if raw.lower() == "none" else float(raw)


def _comma_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _flag(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_ENV_FIELDS: dict[str, Any] = {
    "backend": str,
    "base_dir": Path,
    "dsn": str,
    "max_retries": int,
    "task_timeout": _optional_float,
    "concurrency": int,
    "poll_interval": float,
    "lease_timeout": float,
    "durability": str,
    "max_payload_bytes": int,
    "eager": _flag,
    "retention": _retention,
    "task_modules": _comma_list,
    "imports": _comma_list,
    "executor": str,
    "processes": _optional_int,
    "max_tasks_per_child": _optional_int,
    "max_memory_per_child": _optional_number,
    "kill_grace": float,
}
_ENV_NAMES = {"imports": "OMNIQ_IMPORT"}  # singular, as `omniq worker --import`
