"""``Settings``: which store to use and the defaults of queues and workers.

``Settings()`` works with no arguments: SQLite in ``omniq.db`` under the user's
data directory. ``Settings.from_env()`` reads the ``OMNIQ_*`` variables; explicit
keyword arguments given to it win over the environment.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omniq import retry
from omniq._secrets import mask_dsn
from omniq._validation import (
    normalize_max_retries,
    normalize_timeout,
    positive_int,
    positive_number,
)

BACKENDS = ("sqlite", "file", "memory", "postgres")
DURABILITIES = ("full", "fast")
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024


def default_base_dir() -> Path:
    """The per-user data directory omniq uses when no ``base_dir`` is given."""
    if sys.platform == "win32":
        root = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        root = str(Path.home() / "Library" / "Application Support")
    else:
        root = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(root) / "omniq"


@dataclass(frozen=True)
class Settings:
    """Configuration of an omniq queue, its store and its workers.

    * ``backend``: ``"sqlite"`` (default), ``"file"``, ``"memory"`` or ``"postgres"``.
    * ``base_dir``: where SQLite keeps ``omniq.db`` and the file backend its tasks.
    * ``dsn``: the PostgreSQL connection string (``backend="postgres"``).
    * ``max_retries``: executions allowed per task, unless ``enqueue`` says otherwise.
    * ``task_timeout``: seconds a task may run, unless ``enqueue`` says otherwise.
    * ``concurrency``, ``poll_interval``, ``lease_timeout``: worker defaults.
    * ``durability``: ``"full"`` keeps an acknowledged enqueue through an OS crash;
      ``"fast"`` survives a crash of the process only.
    * ``max_payload_bytes``: the largest encoded ``args`` + ``kwargs`` accepted.
    * ``eager``: for tests: ``enqueue`` runs the task inline and keeps it in memory
      (``backend`` is then not used); see docs/testing.md.
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
        ``OMNIQ_MAX_PAYLOAD_BYTES``, ``OMNIQ_EAGER`` (``1``/``true``/``yes``/``on`` or
        ``0``/``false``/``no``/``off``).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, convert in _ENV_FIELDS.items():
            raw = env.get(f"OMNIQ_{name.upper()}")
            if raw is None or raw.strip() == "":
                continue
            try:
                values[name] = convert(raw.strip())
            except ValueError:
                raise ValueError(f"OMNIQ_{name.upper()}={raw!r} is not a valid {name}") from None
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


def _optional_float(raw: str) -> float | None:
    return None if raw.lower() in ("none", "0", "") else float(raw)


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
}
